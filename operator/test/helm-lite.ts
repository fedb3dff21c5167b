// A renderer for the subset of Helm's Go templates our charts use, so tests can
// render them where no helm binary exists. Not Helm: it supports text, actions
// with `{{-`/`-}}` trimming, comments, if/else if/else/end, range/end,
// define/end, pipelines, parenthesised sub-expressions,
// .Values/.Release/.Chart/.Files.Get, and the functions include, toYaml,
// toJson, nindent, indent, quote, not, and, or, eq, ne, fail, replace,
// sha256sum, default, printf (%s %d %v), trunc, trimSuffix, contains.
// Anything else throws, so a template that strays from the subset fails the
// chart test instead of being rendered wrongly. As `helm install` and
// `helm template` do, the merged values are first validated against the
// chart's values.schema.json (when it has one).

import { Ajv, type ValidateFunction } from 'ajv';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { parse, stringify } from 'yaml';

type Node =
  | { t: 'text'; s: string }
  | { t: 'action'; p: string }
  | { t: 'if'; p: string; then: Node[]; else: Node[] }
  | { t: 'range'; p: string; body: Node[] }
  | { t: 'define'; name: string; body: Node[] };

interface Tok { text?: string; action?: string }

function lex(src: string): Tok[] {
  const out: Tok[] = [];
  let i = 0;
  while (i < src.length) {
    const open = src.indexOf('{{', i);
    if (open < 0) { out.push({ text: src.slice(i) }); break; }
    let text = src.slice(i, open);
    const close = src.indexOf('}}', open);
    if (close < 0) throw new Error('unclosed {{');
    let inner = src.slice(open + 2, close);
    if (inner.startsWith('-')) { text = text.replace(/\s+$/, ''); inner = inner.slice(1); }
    let trimAfter = false;
    if (inner.endsWith('-')) { trimAfter = true; inner = inner.slice(0, -1); }
    out.push({ text });
    inner = inner.trim();
    if (!inner.startsWith('/*')) out.push({ action: inner });
    i = close + 2;
    if (trimAfter) while (i < src.length && /\s/.test(src[i]!)) i++;
  }
  return out;
}

/** An `if` whose condition is `cond`, its `else if` branches nested as ifs that share the one `end`. */
function parseIf(cond: string, toks: Tok[], pos: { i: number }): Node {
  const then = parseNodes(toks, pos, ['else', 'end']);
  let els: Node[] = [];
  if (then.end === 'else') {
    const rest = then.action.slice(4).trim();
    els = rest.startsWith('if ') ? [parseIf(rest.slice(3).trim(), toks, pos)] : parseNodes(toks, pos, ['end']).nodes;
  }
  return { t: 'if', p: cond, then: then.nodes, else: els };
}

function parseNodes(toks: Tok[], pos: { i: number }, stop: string[]): { nodes: Node[]; end: string; action: string } {
  const nodes: Node[] = [];
  while (pos.i < toks.length) {
    const tk = toks[pos.i++]!;
    if (tk.text !== undefined) { if (tk.text) nodes.push({ t: 'text', s: tk.text }); continue; }
    const a = tk.action!;
    const word = a.split(/\s+/)[0]!;
    if (stop.includes(word)) return { nodes, end: word, action: a };
    if (word === 'if') {
      nodes.push(parseIf(a.slice(2).trim(), toks, pos));
    } else if (word === 'range') {
      nodes.push({ t: 'range', p: a.slice(5).trim(), body: parseNodes(toks, pos, ['end']).nodes });
    } else if (word === 'define') {
      nodes.push({ t: 'define', name: JSON.parse(a.slice(6).trim()) as string, body: parseNodes(toks, pos, ['end']).nodes });
    } else if (['else', 'end', 'with', 'template', 'block'].includes(word)) {
      throw new Error(`unsupported or unbalanced action {{ ${a} }}`);
    } else {
      nodes.push({ t: 'action', p: a });
    }
  }
  if (stop.length > 0) throw new Error(`missing {{ ${stop.join(' or ')} }}`);
  return { nodes, end: '', action: '' };
}

/** Split on `sep` outside quotes and parentheses. */
function split(s: string, sep: RegExp): string[] {
  const out: string[] = [];
  let depth = 0; let q = false; let cur = '';
  for (let i = 0; i < s.length; i++) {
    const c = s[i]!;
    if (c === '"' && s[i - 1] !== '\\') q = !q;
    if (!q && c === '(') depth++;
    if (!q && c === ')') depth--;
    if (!q && depth === 0 && sep.test(c)) { out.push(cur); cur = ''; continue; }
    cur += c;
  }
  out.push(cur);
  return out.map((x) => x.trim()).filter((x) => x !== '');
}

const truthy = (v: unknown) => !(v === undefined || v === null || v === false || v === 0 || v === '' ||
  (Array.isArray(v) && v.length === 0) || (typeof v === 'object' && v !== null && !Array.isArray(v) && Object.keys(v).length === 0));

const str = (v: unknown) => (v === undefined || v === null ? '' : typeof v === 'object' ? JSON.stringify(v) : String(v));
const indent = (n: number, s: string) => s.split('\n').map((l) => ' '.repeat(n) + l).join('\n');
const toYaml = (v: unknown) => (v === undefined || v === null ? 'null' : stringify(v, { lineWidth: 0 }).replace(/\n$/, ''));

export class TemplateFailure extends Error {}

/** The values do not match the chart's values.schema.json (helm refuses them before rendering). */
export class SchemaFailure extends Error {}

function printf(format: string, args: unknown[]): string {
  let i = 0;
  return format.replace(/%([sdvq%])/g, (_m, verb: string) => {
    if (verb === '%') return '%';
    const v = args[i++];
    if (verb === 'q') return JSON.stringify(str(v));
    if (verb === 'd') return String(Math.trunc(Number(v)));
    return str(v);
  });
}

export class Chart {
  readonly values: Record<string, unknown>;
  readonly meta: Record<string, unknown>;
  private readonly defines = new Map<string, Node[]>();
  readonly templates = new Map<string, Node[]>();
  /** values.schema.json, compiled; undefined when the chart has none. */
  readonly schema: ValidateFunction | undefined;

  constructor(readonly dir: string) {
    this.values = parse(fs.readFileSync(path.join(dir, 'values.yaml'), 'utf8')) ?? {};
    const chart = parse(fs.readFileSync(path.join(dir, 'Chart.yaml'), 'utf8')) as Record<string, unknown>;
    this.meta = { Name: chart.name, Version: chart.version, AppVersion: chart.appVersion };
    const schemaFile = path.join(dir, 'values.schema.json');
    if (fs.existsSync(schemaFile)) {
      this.schema = new Ajv({ allErrors: true, strict: true, allowUnionTypes: true }).compile(JSON.parse(fs.readFileSync(schemaFile, 'utf8')));
    }
    for (const f of fs.readdirSync(path.join(dir, 'templates')).sort()) {
      const nodes = parseNodes(lex(fs.readFileSync(path.join(dir, 'templates', f), 'utf8')), { i: 0 }, []).nodes;
      for (const n of nodes) if (n.t === 'define') this.defines.set(n.name, n.body);
      if (f.endsWith('.yaml')) this.templates.set(f, nodes);
    }
  }

  /** Render every template with values.yaml deep-merged with `overrides` (checked against values.schema.json first); returns the manifests. */
  render(overrides: Record<string, unknown> = {}, release = { Name: 'test', Namespace: 'l7mp' },
    opts: { skipSchemaValidation?: boolean } = {}): Array<Record<string, any>> {
    const values = merge(structuredClone(this.values), overrides);
    if (!opts.skipSchemaValidation) this.check(values); // helm's --skip-schema-validation turns it off
    const root = { Values: values, Release: { Service: 'Helm', ...release }, Chart: this.meta, Files: { Get: (p: string) => fs.readFileSync(path.join(this.dir, p), 'utf8') } };
    const docs: Array<Record<string, any>> = [];
    for (const [f, nodes] of this.templates) {
      const text = this.exec(nodes, root, root);
      for (const part of text.split(/^---\s*$/m)) {
        if (part.trim() === '' || part.split('\n').every((l) => l.trim() === '' || l.trim().startsWith('#'))) continue;
        let doc: unknown;
        try { doc = parse(part); } catch (err) { throw new Error(`${f}: rendered YAML does not parse: ${(err as Error).message}\n${part}`); }
        if (doc) docs.push(doc as Record<string, any>);
      }
    }
    return docs;
  }

  /** Validate values as helm does against values.schema.json; throws SchemaFailure listing every violation. */
  check(values: unknown): void {
    if (!this.schema || this.schema(values)) return;
    const errs = (this.schema.errors ?? []).map((e) => `${e.instancePath || '(root)'} ${e.message}${e.params && 'additionalProperty' in e.params ? ` (${String(e.params.additionalProperty)})` : ''}`);
    throw new SchemaFailure(`values do not match values.schema.json: ${errs.join('; ')}`);
  }

  private exec(nodes: Node[], dot: unknown, root: unknown): string {
    let out = '';
    for (const n of nodes) {
      switch (n.t) {
        case 'text': out += n.s; break;
        case 'define': break;
        case 'action': out += str(this.pipeline(n.p, dot, root)); break;
        case 'if': out += this.exec(truthy(this.pipeline(n.p, dot, root)) ? n.then : n.else, dot, root); break;
        case 'range': {
          const v = this.pipeline(n.p, dot, root);
          const items = Array.isArray(v) ? v : v && typeof v === 'object' ? Object.values(v) : [];
          for (const item of items) out += this.exec(n.body, item, root);
          break;
        }
      }
    }
    return out;
  }

  private pipeline(p: string, dot: unknown, root: unknown): unknown {
    let acc: unknown;
    let first = true;
    for (const cmd of split(p, /\|/)) {
      acc = this.command(split(cmd, /\s/), dot, root, first ? undefined : { v: acc });
      first = false;
    }
    return acc;
  }

  private term(tok: string, dot: unknown, root: unknown): unknown {
    if (tok.startsWith('(')) return this.pipeline(tok.slice(1, -1), dot, root);
    if (tok.startsWith('"')) return JSON.parse(tok);
    if (/^-?\d+$/.test(tok)) return Number(tok);
    if (tok === 'true' || tok === 'false') return tok === 'true';
    if (tok === '.') return dot;
    if (tok === '$') return root;
    if (tok.startsWith('.') || tok.startsWith('$.')) {
      let cur: unknown = tok.startsWith('$') ? root : dot;
      for (const k of tok.replace(/^\$/, '').split('.').filter(Boolean)) cur = cur === undefined || cur === null ? undefined : (cur as Record<string, unknown>)[k];
      return cur;
    }
    throw new Error(`unsupported term "${tok}"`);
  }

  private command(toks: string[], dot: unknown, root: unknown, piped: { v: unknown } | undefined): unknown {
    const [head, ...rest] = toks;
    const args = () => { const a = rest.map((x) => this.term(x, dot, root)); if (piped) a.push(piped.v); return a; };
    if (head === undefined) throw new Error('empty command');
    if (/^[a-zA-Z]/.test(head)) {
      const a = args();
      switch (head) {
        case 'include': {
          const body = this.defines.get(a[0] as string);
          if (!body) throw new Error(`include of unknown template "${String(a[0])}"`);
          return this.exec(body, a[1], root);
        }
        case 'toYaml': return toYaml(a[0]);
        case 'toJson': return JSON.stringify(a[0] ?? null);
        case 'nindent': return '\n' + indent(a[0] as number, str(a[1]));
        case 'indent': return indent(a[0] as number, str(a[1]));
        case 'quote': return JSON.stringify(str(a[0]));
        case 'not': return !truthy(a[0]);
        case 'and': return a.reduce((x, y) => (truthy(x) ? y : x));
        case 'or': return a.reduce((x, y) => (truthy(x) ? x : y));
        case 'eq': return str(a[0]) === str(a[1]);
        case 'ne': return str(a[0]) !== str(a[1]);
        case 'fail': throw new TemplateFailure(String(a[0]));
        case 'replace': return str(a[2]).split(String(a[0])).join(String(a[1]));
        case 'sha256sum': return createHash('sha256').update(str(a[0])).digest('hex');
        case 'default': return truthy(a[1]) ? a[1] : a[0];
        case 'printf': return printf(String(a[0]), a.slice(1));
        case 'trunc': return str(a[1]).slice(0, a[0] as number);
        case 'trimSuffix': { const s = str(a[1]); const suf = String(a[0]); return suf !== '' && s.endsWith(suf) ? s.slice(0, -suf.length) : s; }
        case 'contains': return str(a[1]).includes(String(a[0]));
        default: throw new Error(`unsupported function "${head}"`);
      }
    }
    const v = this.term(head, dot, root);
    if (typeof v === 'function') return (v as (...x: unknown[]) => unknown)(...args());
    if (rest.length > 0 || piped) throw new Error(`"${head}" is not a function`);
    return v;
  }
}

function merge(base: Record<string, unknown>, over: Record<string, unknown>): Record<string, unknown> {
  for (const [k, v] of Object.entries(over)) {
    const b = base[k];
    if (v && typeof v === 'object' && !Array.isArray(v) && b && typeof b === 'object' && !Array.isArray(b)) merge(b as Record<string, unknown>, v as Record<string, unknown>);
    else base[k] = v;
  }
  return base;
}

/** Every `.Values.a.b` path a chart's templates mention. */
export function referencedValues(dir: string): string[] {
  const out = new Set<string>();
  for (const f of fs.readdirSync(path.join(dir, 'templates'))) {
    const text = fs.readFileSync(path.join(dir, 'templates', f), 'utf8');
    for (const m of text.matchAll(/\.Values((?:\.[A-Za-z_][A-Za-z0-9_]*)+)/g)) out.add(m[1]!.slice(1));
  }
  return [...out].sort();
}
