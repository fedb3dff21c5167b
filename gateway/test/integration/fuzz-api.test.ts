// Property-based robustness of the REST API (fast-check, fixed seed, bounded
// time): thousands of random and mutated requests against an in-process
// gateway. Every answer must come in time, be 4xx with a JSON error body
// ({status, message, content, code}), never 5xx; the process keeps serving;
// and GET /api/v1/config is byte-for-byte the same after every rejected call
// ("a rejected call changes nothing"). A call that happens to be valid and is
// accepted is left out of the invariant: the configuration it produced
// becomes the new reference.
//
// On a failure fast-check prints the seed and the counterexample (the
// request); replay with FUZZ_SEED=<seed>.

import test, { type ExecutionContext } from 'ava';
import fc from 'fast-check';
import { stringify as toYaml } from 'yaml';
import { routes } from '../../src/api/generated/routes.js';
import { api, echo, freePort, peer, startGw } from './helpers.js';
import type { Gateway } from '../../src/core/gateway.js';

const SEED = Number(process.env.FUZZ_SEED ?? 20261128);
/** Per property: at most this many runs, and at most this long (the machine is small and shared). */
const BUDGET = { mutated: { runs: 1500, ms: 14_000 }, raw: { runs: 800, ms: 10_000 }, paths: { runs: 600, ms: 6_000 } };
const CALL_TIMEOUT_MS = 10_000;
const MAX_BODY = 256 * 1024;

const JSON_TYPES = ['application/json', 'application/json; charset=utf-8', 'text/json', 'application/x-json'];
const YAML_TYPES = ['text/x-yaml', 'text/yaml', 'application/yaml', 'application/x-yaml'];
const ODD_TYPES = ['', 'text/plain', 'application/xml', 'multipart/form-data; boundary=x', 'application/x-www-form-urlencoded', 'application/octet-stream', '*/*', 'application/json+yaml', ';;;', 'application/JSON; q=0'];

interface Req {
  method: string;
  path: string;
  body?: Uint8Array<ArrayBuffer> | string;
  contentType?: string;
}

type ConfigDump = Partial<Record<'listeners' | 'rulelists' | 'rules' | 'routes' | 'clusters' | 'endpoints', Array<{ name: string; rules?: unknown }>>>;

interface Outcome {
  status: number;
  text: string;
  contentType: string;
}

/** One call with a deadline: a hang is a failure, not a stuck test. */
async function send(base: string, r: Req): Promise<Outcome> {
  const headers: Record<string, string> = {};
  if (r.contentType !== undefined) headers['content-type'] = r.contentType;
  const res = await fetch(base + r.path, {
    method: r.method,
    headers,
    ...(r.body !== undefined ? { body: r.body } : {}),
    signal: AbortSignal.timeout(CALL_TIMEOUT_MS),
  });
  return { status: res.status, text: await res.text(), contentType: res.headers.get('content-type') ?? '' };
}

function describe(r: Req): string {
  const b = r.body === undefined ? '' : typeof r.body === 'string' ? r.body : Buffer.from(r.body).toString('latin1');
  return `${r.method} ${r.path} [${r.contentType ?? '-'}] ${b.length > 300 ? `${b.slice(0, 300)}… (${b.length} chars)` : b}`;
}

/**
 * The fuzzing harness around one gateway: checks the invariant after every
 * call and keeps the reference configuration.
 */
class Harness {
  reference = '';
  calls = 0;
  accepted = 0;
  readonly statuses = new Map<number, number>();

  constructor(readonly base: string) {}

  async snapshot(): Promise<string> {
    const res = await send(this.base, { method: 'GET', path: '/api/v1/config' });
    if (res.status !== 200) throw new Error(`GET /api/v1/config answered ${res.status}: ${res.text}`);
    return res.text;
  }

  async init(): Promise<void> {
    this.reference = await this.snapshot();
    this.initial = JSON.parse(this.reference) as ConfigDump;
  }

  private initial: ConfigDump | undefined;

  /** Delete the objects an accepted call added (names not in the initial config), in dependency order. */
  private async cleanUp(): Promise<void> {
    const cfg = JSON.parse(await this.snapshot()) as ConfigDump;
    const kinds = ['listeners', 'rulelists', 'rules', 'routes', 'clusters', 'endpoints'] as const;
    const had = (k: (typeof kinds)[number], n: string) => (this.initial?.[k] ?? []).some((o) => o.name === n);
    // Rules inserted into the fixture's rule list: remove them by position, last first.
    const rl1 = cfg.rulelists?.find((r) => r.name === 'rl1');
    const rules = (rl1?.rules ?? []) as string[];
    for (let i = rules.length - 1; i >= 0; i--) {
      if (rules[i] !== 'r1') await send(this.base, { method: 'DELETE', path: `/api/v1/rulelists/rl1/rules/${i}` });
    }
    for (const k of kinds) {
      for (const o of cfg[k] ?? []) {
        if (!had(k, o.name)) await send(this.base, { method: 'DELETE', path: `/api/v1/${k}/${encodeURIComponent(o.name)}?recursive=true` });
      }
    }
  }

  /** Send, check the answer; throws (with the request) on any violation. */
  async check(r: Req): Promise<void> {
    this.calls++;
    let out: Outcome;
    try {
      out = await send(this.base, r);
    } catch (err) {
      throw new Error(`no answer (${(err as Error).message}) to ${describe(r)}`);
    }
    this.statuses.set(out.status, (this.statuses.get(out.status) ?? 0) + 1);
    if (out.status >= 200 && out.status < 300) {
      // Valid after all: not part of the invariant. Undo what it added (as far as
      // deletes can: a config that grows with every accepted huge string makes each
      // later snapshot slower); what remains is the new reference.
      this.accepted++;
      await this.cleanUp();
      this.reference = await this.snapshot();
      return;
    }
    if (out.status < 400 || out.status >= 500) throw new Error(`status ${out.status} (${out.text.slice(0, 500)}) for ${describe(r)}`);
    if (!out.contentType.startsWith('application/json')) throw new Error(`content-type "${out.contentType}" for ${describe(r)}`);
    let body: { status?: unknown; message?: unknown; content?: unknown; code?: unknown };
    try {
      body = JSON.parse(out.text) as typeof body;
    } catch {
      throw new Error(`a non-JSON error body ${JSON.stringify(out.text.slice(0, 200))} for ${describe(r)}`);
    }
    if (body.status !== out.status || typeof body.message !== 'string' || typeof body.content !== 'string' || typeof body.code !== 'string') {
      throw new Error(`an error body without {status, message, content, code}: ${out.text.slice(0, 300)} for ${describe(r)}`);
    }
    const now = await this.snapshot();
    if (now !== this.reference) {
      throw new Error(`the configuration changed after a rejected call (${out.status} ${String(body.code)}: ${String(body.content)}) for ${describe(r)}`);
    }
  }

  summary(): string {
    const s = [...this.statuses.entries()].sort((a, b) => a[0] - b[0]).map(([k, v]) => `${k}×${v}`).join(' ');
    return `${this.calls} calls, ${this.accepted} accepted; statuses ${s}; config ${this.reference.length} bytes`;
  }
}

// ---------------------------------------------------------------- fixtures

interface Fixture {
  base: string;
  gw: Gateway;
  harness: Harness;
  /** A valid body per body-taking operation, with the path to POST it to. */
  templates: Array<{ operationId: string; path: string; body: Record<string, unknown> }>;
  names: Set<string>;
}

async function fixture(t: ExecutionContext): Promise<Fixture> {
  const echoPort = await freePort();
  const listenPort = await freePort();
  const spare = await freePort();
  await peer(t, echo.udp(echoPort));
  const { base, gw } = await startGw(t, {
    admin: { log_level: 'silent', metrics: { enabled: false }, limits: { api_rate: 0, max_body_bytes: MAX_BODY } },
    clusters: [{ name: 'c1', spec: { protocol: 'UDP', port: echoPort }, endpoints: [{ name: 'e1', spec: { address: '127.0.0.1' } }] }],
    routes: [{ name: 'rt1', destination: 'c1' }],
    rules: [{ name: 'r1', action: { route: 'rt1' } }],
    rulelists: [{ name: 'rl1', rules: ['r1'] }],
    listeners: [{ name: 'l1', spec: { protocol: 'UDP', address: '127.0.0.1', port: listenPort }, rules: 'rl1' }],
  });
  const bodies: Record<string, { params?: Record<string, string>; body: Record<string, unknown> }> = {
    setConf: { body: { config: { clusters: [{ name: 'fz-c0', spec: { protocol: 'TCP', port: 9 }, endpoints: [{ spec: { address: '127.0.0.1' } }] }] } } },
    applyAdmin: { body: { admin: { log_level: 'silent', strict: false } } },
    addListener: {
      body: {
        listener: {
          name: 'fz-l', spec: { protocol: 'UDP', address: '127.0.0.1', port: spare },
          rules: [{ match: { op: 'matches', path: '/IP/src_addr', value: '^127\\.' }, action: { route: { destination: 'c1', retry: { retry_on: 'always', num_retries: 2, timeout: 100 } } } }],
          options: { track: 10 },
        },
      },
    },
    addCluster: {
      body: {
        cluster: {
          name: 'fz-c', spec: { protocol: 'TCP', port: 9 },
          endpoints: [{ name: 'fz-e', spec: { address: '127.0.0.1', port: 9 }, weight: 2 }],
          loadbalancer: { policy: 'ConsistentHash', key: '/IP/src_addr' },
        },
      },
    },
    addEndPoint: { params: { name: 'c1' }, body: { endpoint: { name: 'fz-e2', spec: { address: '127.0.0.2' }, weight: 1 } } },
    addRuleList: { body: { rulelist: { name: 'fz-rl', rules: [{ action: { route: { destination: 'c1' } } }, 'r1'] } } },
    addRuleToRuleList: { params: { name: 'rl1', position: '0' }, body: { rule: { action: { rewrite: [{ path: '/HTTP/url/path', value: '/x' }], route: 'rt1' } } } },
    addRule: { body: { rule: { name: 'fz-r', match: { op: 'exact', path: '/HTTP/method', value: 'GET' }, action: { route: 'rt1' } } } },
    addRoute: { body: { route: { name: 'fz-rt', destination: 'c1', ingress: [], egress: [], retry: { retry_on: 'connect-failure', num_retries: 1, timeout: 50 } } } },
  };
  const templates = routes.filter((r) => r.hasBody).map((r) => {
    const b = bodies[r.operationId];
    if (!b) throw new Error(`no fuzz template for ${r.operationId}: add one to fuzz-api.test.ts`);
    const path = r.path.replace(/\{(\w+)\}/g, (_m, p: string) => encodeURIComponent(b.params?.[p] ?? 'x'));
    return { operationId: r.operationId, path, body: b.body };
  });
  const harness = new Harness(base);
  await harness.init();
  return { base, gw, harness, templates, names: new Set(['c1', 'e1', 'rt1', 'r1', 'rl1', 'l1', 'controller-listener', 'controller']) };
}

// -------------------------------------------------------------- arbitraries

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };
type Path = Array<string | number>;

/** Every location in a JSON value (the root included), for mutation. */
function locations(v: Json, at: Path = []): Path[] {
  const out: Path[] = [at];
  if (Array.isArray(v)) v.forEach((x, i) => out.push(...locations(x, [...at, i])));
  else if (v !== null && typeof v === 'object') for (const [k, x] of Object.entries(v)) out.push(...locations(x, [...at, k]));
  return out;
}

const DEEP = '\u0000DEEP\u0000';

/** Values that are wrong in interesting ways: wrong types, edge numbers, names that mean something, huge strings. */
const weird: fc.Arbitrary<Json> = fc.oneof(
  { weight: 4, arbitrary: fc.jsonValue({ maxDepth: 3 }) as fc.Arbitrary<Json> },
  {
    weight: 4,
    arbitrary: fc.constantFrom<Json>(
      -1, 0, 1.5, 65536, 1e308, -1e308, 2 ** 53, 4294967296, '', ' ', '*', '..', '../../etc/passwd', 'a b', '\u0000', 'UDP', 'TCP', 'HTTP',
      'L7mpController', 'STDIO-fork', 'Echo', 'Logger', 'SCTP', 'c1', 'rl1', 'r1', 'rt1', 'l1', 'controller-listener', '127.0.0.1', '::1', '0.0.0.0',
      '256.1.1.1', 'localhost', '/IP/src_addr', '/HTTP/url/path', '[', '(?<', '.*', 'always', 'never', 'ConsistentHash', 'WeightedRandom',
      null, true, false, [], {}, [[]], { op: 'matches', path: '/x', value: '(' }, { policy: 'nope' }, { protocol: 'UDP' }, { name: '' },
      { __proto__: { polluted: true } } as unknown as Json, { constructor: { prototype: { polluted: true } } },
    ),
  },
  { weight: 1, arbitrary: fc.integer({ min: 1_000, max: 200_000 }).map((n) => 'x'.repeat(n)) },
  { weight: 1, arbitrary: fc.string({ unit: 'binary', maxLength: 64 }) },
  { weight: 1, arbitrary: fc.constant(DEEP) },
);

const unknownKey = fc.oneof(fc.string({ maxLength: 12 }), fc.constantFrom('__proto__', 'constructor', 'prototype', 'toString', 'hasOwnProperty', 'extra', 'Name', 'SPEC'));

type Mutation = { kind: 'replace'; at: Path; value: Json } | { kind: 'delete'; at: Path } | { kind: 'add'; at: Path; key: string; value: Json };

function clone(v: Json): Json {
  return JSON.parse(JSON.stringify(v)) as Json;
}

function apply(body: Json, m: Mutation): Json {
  if (m.at.length === 0) {
    if (m.kind === 'replace') return m.value;
    if (m.kind === 'delete') return null;
  }
  const root = clone(body);
  let parent: Json | undefined = root;
  // An earlier mutation may have removed or replaced the place: then this one does nothing.
  for (const k of m.at.slice(0, -1)) {
    if (parent === null || typeof parent !== 'object') return root;
    parent = (parent as Record<string | number, Json>)[k];
  }
  if (parent === null || parent === undefined || typeof parent !== 'object') return root;
  const last = m.at[m.at.length - 1];
  if (m.kind === 'add') {
    const target = (m.at.length === 0 ? root : (parent as Record<string | number, Json>)[last!]) as Json | undefined;
    if (target === undefined) return root;
    if (target !== null && typeof target === 'object' && !Array.isArray(target)) {
      // defineProperty: a "__proto__" key must become a real own key, as JSON.parse makes it.
      Object.defineProperty(target, m.key, { value: m.value, enumerable: true, writable: true, configurable: true });
    } else if (Array.isArray(target)) target.push(m.value);
    return root;
  }
  if (m.kind === 'delete') {
    if (Array.isArray(parent)) parent.splice(last as number, 1);
    else delete (parent as Record<string, Json>)[last as string];
    return root;
  }
  (parent as Record<string | number, Json>)[last!] = m.value;
  return root;
}

/** A JSON text, with the deep-nesting marker expanded to thousands of nested arrays and objects. */
function render(v: Json, depth: number): string {
  const text = JSON.stringify(v);
  const deep = '[{"a":'.repeat(depth) + '1' + '}]'.repeat(depth);
  return text.split(JSON.stringify(DEEP)).join(deep);
}

function mutatedRequests(f: Fixture): fc.Arbitrary<Req> {
  return fc.constantFrom(...f.templates).chain((tpl) => {
    const locs = locations(tpl.body as Json);
    const mutation: fc.Arbitrary<Mutation> = fc.oneof(
      { weight: 5, arbitrary: fc.record({ kind: fc.constant('replace' as const), at: fc.constantFrom(...locs), value: weird }) },
      { weight: 2, arbitrary: fc.record({ kind: fc.constant('delete' as const), at: fc.constantFrom(...locs) }) },
      { weight: 2, arbitrary: fc.record({ kind: fc.constant('add' as const), at: fc.constantFrom(...locs), key: unknownKey, value: weird }) },
    );
    return fc.tuple(fc.array(mutation, { minLength: 1, maxLength: 3 }), fc.boolean(), fc.integer({ min: 10, max: 20_000 })).map(([ms, yaml, depth]) => {
      let body = tpl.body as Json;
      for (const m of ms) body = apply(body, m);
      const text = render(body, depth);
      // Half of them as YAML (when there is no deep marker: the YAML parser gets its own deep input below).
      if (yaml && !text.includes('[{"a":[{"a":')) {
        return { method: 'POST', path: tpl.path, body: toYaml(JSON.parse(text)), contentType: YAML_TYPES[depth % YAML_TYPES.length]! };
      }
      return { method: 'POST', path: tpl.path, body: text, contentType: JSON_TYPES[depth % JSON_TYPES.length]! };
    });
  });
}

/** YAML that is malformed or hostile: alias bombs, tags, deep flows, duplicate keys, tabs. */
const badYaml = fc.oneof(
  fc.constant('a: &a [x,x,x,x,x,x,x,x,x]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\nd: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]\ne: [*d,*d,*d,*d,*d,*d,*d,*d,*d]\n'),
  fc.constant('listener: !!js/function "function(){}"\n'),
  fc.constant('listener:\n  name: a\n  name: b\n'),
  fc.constant('listener:\n\t- tab\n'),
  fc.constant('--- \n--- \n'),
  fc.constant('? [a, b]\n: c\n'),
  fc.constant('listener: *undefined_alias\n'),
  fc.constant('listener: &a {name: x, spec: *a}\n'), // a cycle: the alias refers to its own anchor
  fc.constant('config: &c {listeners: [*c], clusters: [*c]}\n'),
  fc.integer({ min: 100, max: 20_000 }).map((n) => `listener: ${'['.repeat(n)}${']'.repeat(n)}\n`),
  fc.integer({ min: 100, max: 5_000 }).map((n) => `listener:\n${Array.from({ length: n }, (_, i) => `${' '.repeat(i + 1)}- `).join('\n')}\n`),
  fc.string({ maxLength: 200 }),
);

/** Bodies that are not what they claim to be: truncated, binary, mislabelled, empty. */
function rawRequests(f: Fixture): fc.Arbitrary<Req> {
  const tpl = fc.constantFrom(...f.templates);
  return fc.oneof(
    tpl.chain((t) => fc.nat({ max: JSON.stringify(t.body).length - 1 }).map((cut): Req => ({ method: 'POST', path: t.path, body: JSON.stringify(t.body).slice(0, cut), contentType: 'application/json' }))),
    fc.tuple(tpl, badYaml, fc.constantFrom(...YAML_TYPES)).map(([t, y, ct]): Req => ({ method: 'POST', path: t.path, body: y, contentType: ct })),
    fc.tuple(tpl, fc.uint8Array({ maxLength: 512 }), fc.constantFrom(...JSON_TYPES, ...YAML_TYPES)).map(([t, b, ct]): Req => ({ method: 'POST', path: t.path, body: new Uint8Array(b), contentType: ct })),
    fc.tuple(tpl, fc.oneof(fc.constantFrom(...ODD_TYPES), fc.string({ maxLength: 40 }))).map(([t, ct]): Req => ({ method: 'POST', path: t.path, body: JSON.stringify(t.body), contentType: ct })),
    fc.tuple(tpl, fc.constantFrom('', ' ', '\n', 'null', '[]', '0', '"x"', 'true', '{}', '{"a":1}')).map(([t, b]): Req => ({ method: 'POST', path: t.path, body: b, contentType: 'application/json' })),
    fc.tuple(tpl, fc.constantFrom('', ' ', '~', 'null', '[]', '0', 'x', 'true', '{}')).map(([t, b]): Req => ({ method: 'POST', path: t.path, body: b, contentType: 'text/x-yaml' })),
    // Over the body limit: 413 from the head (Content-Length), before anything is parsed.
    tpl.map((t): Req => ({ method: 'POST', path: t.path, body: `{"pad":"${'y'.repeat(MAX_BODY)}"}`, contentType: 'application/json' })),
    // No Content-Type at all.
    tpl.map((t): Req => ({ method: 'POST', path: t.path, body: JSON.stringify(t.body) })),
  );
}

/** Paths and methods: unknown operations, odd names and encodings, wrong methods, bodies where none belong. */
function pathRequests(f: Fixture): fc.Arbitrary<Req> {
  const name = fc.oneof(
    fc.string({ minLength: 1, maxLength: 30 }).filter((s) => !f.names.has(s)),
    fc.constantFrom('%', '%E0%A4%A', '%ZZ', '%00', '%2F', '..', '%2e%2e', 'a%2Fb', '%C0%AE', '%FF%FE', 'x'.repeat(5000)),
  );
  const encoded = name.map((n) => (/%/.test(n) && n.length < 20 ? n : encodeURIComponent(n)));
  const kinds = ['listeners', 'clusters', 'endpoints', 'rulelists', 'rules', 'routes', 'sessions'];
  return fc.oneof(
    fc.tuple(fc.constantFrom('GET', 'DELETE'), fc.constantFrom(...kinds), encoded, fc.constantFrom('', '?recursive=true', '?recursive=%ZZ', '?format=terse')).map(([m, k, n, q]): Req => ({ method: m, path: `/api/v1/${k}/${n}${q}` })),
    fc.tuple(fc.constantFrom('GET', 'POST', 'DELETE'), encoded, fc.oneof(encoded, fc.constantFrom('-1', '1e3', '99999999999999999999', '0x1', ' 1', '1.5'))).map(([m, n, p]): Req => ({
      method: m, path: `/api/v1/rulelists/${m === 'GET' ? n : 'rl1'}/rules/${p}`, ...(m === 'POST' ? { body: '{"rule":{"action":{"route":"rt1"}}}', contentType: 'application/json' } : {}),
    })),
    fc.tuple(fc.constantFrom('GET', 'DELETE'), encoded).map(([m, n]): Req => ({ method: m, path: `/api/v1/clusters/${n}/endpoints` })),
    fc.tuple(fc.constantFrom('PUT', 'PATCH', 'OPTIONS', 'DELETE', 'POST'), fc.constantFrom('/api/v1/config', '/api/v1/admin', '/api/v1/listeners', '/api/v1/sessions', '/api/v2/config', '/api/v1', '/', '/ui', '/api/v1/docs')).map(([m, p]): Req => ({
      method: m, path: p, ...(m !== 'OPTIONS' ? { body: '{}', contentType: 'application/json' } : {}),
    })),
    fc.tuple(fc.constantFrom('GET', 'POST'), fc.webPath({ size: 'small' })).map(([m, p]): Req => ({ method: m, path: `/api/v1${p.startsWith('/') ? p : `/${p}`}` })),
  );
}

// -------------------------------------------------------------------- tests

async function run(t: ExecutionContext, f: Fixture, arb: fc.Arbitrary<Req>, budget: { runs: number; ms: number }): Promise<void> {
  const started = Date.now();
  const deadline = started + budget.ms;
  await fc.assert(
    // Out of time: the remaining runs pass at once. (fast-check's own time limit would
    // abandon a call in flight, which could then change the configuration after the last check.)
    fc.asyncProperty(arb, async (r) => { if (Date.now() <= deadline) await f.harness.check(r); }),
    { seed: SEED, numRuns: budget.runs, endOnFailure: true, includeErrorInReport: true },
  );
  // The process still serves, and the configuration is the reference.
  const cfg = await api(f.base, 'GET', '/api/v1/config');
  t.is(cfg.status, 200);
  t.is(cfg.text, f.harness.reference);
  // With data-plane workers (fuzz-api-workers.test.ts) every worker holds that same graph.
  const workers = f.gw.workers as unknown as { graphs?(): Promise<Record<string, unknown>[]> } | undefined;
  if (workers?.graphs !== undefined) {
    const { admin: _a, sessions: _s, ...graph } = JSON.parse(cfg.text) as Record<string, unknown>;
    const graphs = await workers.graphs();
    t.is(graphs.length, Number(process.env.L7MP_TEST_WORKERS), 'every worker answers');
    for (const g of graphs) t.deepEqual(g, graph, 'a worker\'s configuration is the main process\'s');
  }
  t.log(`seed ${SEED}: ${f.harness.summary()} in ${Date.now() - started} ms`);
  t.true(f.harness.calls >= 100, `too few calls in the time budget: ${f.harness.summary()}`);
}

test.serial('mutated valid bodies (wrong values, unknown fields, deep nesting, huge strings, YAML) are rejected cleanly and change nothing', async (t) => {
  const f = await fixture(t);
  await run(t, f, mutatedRequests(f), BUDGET.mutated);
});

test.serial('malformed bodies (truncated, binary, hostile YAML, wrong or missing content types, over the limit) are rejected cleanly', async (t) => {
  const f = await fixture(t);
  await run(t, f, rawRequests(f), BUDGET.raw);
  t.true(f.harness.statuses.has(413) && f.harness.statuses.has(415) && f.harness.statuses.has(400), f.harness.summary());
});

test.serial('unknown paths, odd names and encodings, and wrong methods get 4xx JSON errors', async (t) => {
  const f = await fixture(t);
  await run(t, f, pathRequests(f), BUDGET.paths);
  t.true(f.harness.statuses.has(404), f.harness.summary());
});

// Bugs this fuzzer found, pinned down as plain tests.

test('a malformed percent-escape in a path parameter is a 400 naming the parameter (was a 500)', async (t) => {
  const { base } = await startGw(t, {});
  for (const [m, p] of [['DELETE', '/api/v1/listeners/%E0%A4%A'], ['GET', '/api/v1/clusters/%ZZ/endpoints'], ['DELETE', '/api/v1/sessions/%']] as const) {
    const r = await api(base, m, p);
    t.is(r.status, 400, p);
    t.is(r.body?.code, 'INVALID_INPUT', p);
  }
  const r = await api(base, 'GET', '/api/v1/rulelists/%C0%AE/rules/0');
  t.is(r.status, 400);
  t.is(r.body?.field, 'name');
});

test('odd YAML in a REST body does not make the process print warnings (unknown tags, collection keys)', async (t) => {
  const { base } = await startGw(t, {});
  const warnings: string[] = [];
  const onWarning = (w: Error) => { warnings.push(w.message); };
  process.on('warning', onWarning);
  t.teardown(() => { process.off('warning', onWarning); });
  for (const body of ['listener: !!js/function "function(){}"\n', '? [a, b]\n: c\n']) {
    const r = await api(base, 'POST', '/api/v1/listeners', body, 'text/x-yaml');
    t.is(r.status, 400, body);
  }
  // process warnings are emitted on the next tick
  await new Promise<void>((resolve) => setImmediate(resolve));
  t.deepEqual(warnings, []);
});

test('bodies nested too deep, and YAML whose aliases make a cycle, are a 400 (deep ones were a 500 from a stack overflow; a cycle froze the process)', async (t) => {
  const { base } = await startGw(t, {});
  const before = (await api(base, 'GET', '/api/v1/config')).text;
  const deep = `{"cluster":{"name":"deep","spec":{"protocol":"UDP","port":${'['.repeat(20_000)}${']'.repeat(20_000)}}}}`;
  const cases: Array<[string, string, string]> = [
    ['/api/v1/clusters', deep, 'application/json'],
    ['/api/v1/config', `{"config":{"clusters":[{"name":"d","spec":{"protocol":"TCP","port":${'[{"a":'.repeat(20_000)}1${'}]'.repeat(20_000)}}}]}}`, 'application/json'],
    ['/api/v1/listeners', 'listener: &a {name: x, spec: *a}\n', 'text/x-yaml'],
    ['/api/v1/config', 'config: &c {listeners: [*c], clusters: [*c]}\n', 'text/x-yaml'],
  ];
  for (const [p, body, type] of cases) {
    const r = await api(base, 'POST', p, body, type);
    t.is(r.status, 400, `${p} ${body.slice(0, 60)}: ${r.text.slice(0, 200)}`);
    t.is(r.body?.field, 'body');
  }
  t.is((await api(base, 'GET', '/api/v1/config')).text, before);
});
