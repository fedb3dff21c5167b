// The suite's report in three forms: console text, Markdown and HTML. All
// three show the same matrix (rows: listener protocols, columns: cluster
// protocols and transforms), then the failing cases, the skips grouped by
// reason, and what the heavy cases measured.

import type { CaseResult } from './cases.js';

export interface PairResult {
  /** "LISTENER:CLUSTER" */
  readonly key: string;
  readonly row: string;
  readonly col: string;
  /** run: cases ran; skip: the whole pair was skipped; na: not a pair (shown, not counted). */
  readonly type: 'run' | 'skip' | 'na';
  readonly status: 'pass' | 'fail' | 'skip' | 'na';
  readonly reason?: string;
  readonly representative: boolean;
  readonly cases: readonly CaseResult[];
  readonly ms: number;
}

export interface RunResult {
  readonly mode: string;
  /** The gateway under test: its command (process mode) or image (container mode). */
  readonly gateway?: string;
  /** The raw stream path the gateway ran with (L7MP_TCP_FASTPATH), when the cases checked it. */
  readonly tcpFastpath?: 'on' | 'off';
  /** 'off': the gateway ran with L7MP_COMPILED=off (every stream connection decided in JavaScript). */
  readonly compiled?: 'off';
  readonly only: string | undefined;
  readonly rows: readonly string[];
  /** Columns, with the registry protocols behind each (several for a transform group). */
  readonly cols: readonly { readonly id: string; readonly kind: string; readonly protocols: readonly string[] }[];
  readonly pairs: readonly PairResult[];
  readonly outside: readonly { readonly name: string; readonly reason: string }[];
  readonly passed: number;
  readonly failed: number;
  readonly skipped: number;
  readonly durationMs: number;
}

export function pairStatus(cases: readonly CaseResult[]): 'pass' | 'fail' | 'skip' {
  if (cases.some((c) => c.status === 'fail')) return 'fail';
  if (cases.some((c) => c.status === 'pass')) return 'pass';
  return 'skip';
}

function count(p: PairResult, s: CaseResult['status']): number {
  return p.cases.filter((c) => c.status === s).length;
}

/** The text of one matrix cell. */
export function cellText(p: PairResult | undefined): string {
  if (p === undefined) return '';
  if (p.type === 'na') return '·';
  if (p.status === 'skip') return 'skip';
  const pass = count(p, 'pass');
  const fail = count(p, 'fail');
  const skip = count(p, 'skip');
  const star = p.representative ? '*' : '';
  if (p.status === 'fail') return `FAIL ${fail}/${fail + pass + skip}${star}`;
  return `pass ${pass}${skip > 0 ? ` +${skip}s` : ''}${star}`;
}

/** Which stream path the run checked, and on how many passing cases each answer was seen; undefined when unchecked. */
export function pathLine(r: RunResult): string | undefined {
  if (r.tcpFastpath === undefined) return undefined;
  const n = (e: string) => r.pairs.reduce((a, p) => a + p.cases.filter((c) => c.status === 'pass' && c.path === e).length, 0);
  const compiled = compiledCases(r);
  const on = r.tcpFastpath === 'on' ? `raw socket path on, ${r.compiled === 'off' ? 'compiled listeners off (L7MP_COMPILED=off)' : 'compiled listeners on'}` : 'off (L7MP_TCP_FASTPATH=off)';
  return `TCP/Unix stream path: ${on}; checked on ${n('raw')} case(s) that must show "path": "raw" (${compiled} of them on sessions a compiled listener set up), ${n('socket')} that must show none, ${n('not-raw')} that must not show "raw"`;
}

/** Passing cases whose path check read only sessions a compiled listener set up. */
export function compiledCases(r: RunResult): number {
  return r.pairs.reduce((a, p) => a + p.cases.filter((c) => c.status === 'pass' && c.compiled === true).length, 0);
}

export function summaryLine(r: RunResult): string {
  return `${r.passed} passed, ${r.failed} failed, ${r.skipped} skipped`;
}

const arrow = (p: PairResult) => `${p.row}→${p.col}`;

interface Details {
  failures: { pair: string; c: CaseResult }[];
  /** reason → pairs (whole-pair skips) */
  pairSkips: Map<string, string[]>;
  /** "case: reason" → pairs */
  caseSkips: Map<string, string[]>;
  heavy: { pair: string; c: CaseResult }[];
  unavailable: Map<string, string>;
}

function details(r: RunResult): Details {
  const d: Details = { failures: [], pairSkips: new Map(), caseSkips: new Map(), heavy: [], unavailable: new Map() };
  const add = (m: Map<string, string[]>, k: string, v: string) => {
    const list = m.get(k);
    if (list) list.push(v);
    else m.set(k, [v]);
  };
  const unavailableIds = new Set(r.cols.filter((c) => c.kind === 'unavailable').map((c) => c.id));
  for (const p of r.pairs) {
    if (p.type === 'na') continue;
    if (p.type === 'skip') {
      const who = [p.row, p.col].find((id) => unavailableIds.has(id) && p.reason?.includes(`"${id}"`) === true);
      if (who !== undefined) {
        d.unavailable.set(who, p.reason!);
        continue;
      }
      add(d.pairSkips, p.reason ?? 'skipped', arrow(p));
      continue;
    }
    for (const c of p.cases) {
      if (c.status === 'fail') d.failures.push({ pair: arrow(p), c });
      else if (c.status === 'skip') add(d.caseSkips, `${c.name}: ${c.reason ?? ''}`, arrow(p));
      if (p.representative && ['retry', 'lb-weighted', 'lb-hash', 'convergence', 'health'].includes(c.name)) d.heavy.push({ pair: arrow(p), c });
    }
  }
  return d;
}

function pairAt(r: RunResult, row: string, col: string): PairResult | undefined {
  return r.pairs.find((p) => p.row === row && p.col === col);
}

const LEGEND = 'pass N: N cases passed (+Ks: K cases skipped as not applicable); FAIL F/N: F of N cases failed; ' +
  'skip: the pair cannot run (reason below); ·: not a pair (transforms run on base pairs only); ' +
  '*: representative pair (also retry, load balancing, convergence, health)';

// ----------------------------------------------------------------- text

export function renderText(r: RunResult): string {
  const out: string[] = [];
  const rows = r.rows.filter((row) => r.pairs.some((p) => p.row === row));
  const cols = r.cols.filter((c) => r.pairs.some((p) => p.col === c.id));
  const head = 'listener \\ cluster';
  const w0 = Math.max(head.length, ...rows.map((x) => x.length)) + 2;
  const widths = cols.map((c) => Math.max(c.id.length, ...rows.map((row) => cellText(pairAt(r, row, c.id)).length)) + 2);
  out.push(`Conformance matrix (${r.mode} mode${r.only ? `, only ${r.only}` : ''}): rows are listener protocols, columns cluster protocols and transforms`);
  if (r.gateway !== undefined) out.push(`Gateway under test: ${r.gateway}`);
  const paths = pathLine(r);
  if (paths !== undefined) out.push(paths);
  out.push(head.padEnd(w0) + cols.map((c, i) => c.id.padEnd(widths[i]!)).join('').trimEnd());
  for (const row of rows) {
    out.push(row.padEnd(w0) + cols.map((c, i) => cellText(pairAt(r, row, c.id)).padEnd(widths[i]!)).join('').trimEnd());
  }
  out.push(`(${LEGEND})`);
  const d = details(r);
  if (d.failures.length > 0) {
    out.push('', 'Failures:');
    for (const f of d.failures) out.push(`  FAIL ${f.pair} ${f.c.name}: ${f.c.reason ?? ''}`);
  }
  if (d.heavy.length > 0) {
    out.push('', 'Representative pairs (heavy cases):');
    for (const h of d.heavy) out.push(`  ${h.c.status === 'pass' ? 'pass' : h.c.status === 'fail' ? 'FAIL' : 'skip'} ${h.pair} ${h.c.name}: ${h.c.note ?? h.c.reason ?? ''}`);
  }
  if (d.pairSkips.size > 0 || d.unavailable.size > 0 || d.caseSkips.size > 0) {
    out.push('', 'Skipped:');
    for (const [reason, pairs] of d.pairSkips) out.push(`  skip ${pairs.join(', ')}: ${reason}`);
    for (const [name, reason] of d.unavailable) out.push(`  skip every pair with ${name} (row and column): ${reason}`);
    for (const [what, pairs] of d.caseSkips) out.push(`  skip ${what} (${pairs.join(', ')})`);
  }
  if (r.outside.length > 0) {
    out.push('', 'Not in the matrix:');
    for (const o of r.outside) out.push(`  ${o.name}: ${o.reason}`);
  }
  out.push('', `Ran in ${(r.durationMs / 1000).toFixed(1)} s.`);
  out.push(summaryLine(r));
  return out.join('\n');
}

// ------------------------------------------------------------- markdown

function mdEscape(s: string): string {
  return s.replace(/\|/g, '\\|').replace(/\n/g, ' ');
}

export function renderMarkdown(r: RunResult): string {
  const out: string[] = [];
  const rows = r.rows.filter((row) => r.pairs.some((p) => p.row === row));
  const cols = r.cols.filter((c) => r.pairs.some((p) => p.col === c.id));
  out.push('# Conformance report', '');
  out.push(`Mode: ${r.mode}${r.only ? `, only ${mdEscape(r.only)}` : ''}. Ran in ${(r.durationMs / 1000).toFixed(1)} s.`, '');
  if (r.gateway !== undefined) out.push(`Gateway under test: \`${r.gateway.replace(/`/g, "'")}\``, '');
  const paths = pathLine(r);
  if (paths !== undefined) out.push(mdEscape(paths), '');
  out.push(`**${summaryLine(r)}**`, '');
  out.push('Rows are listener protocols, columns cluster protocols and transforms.', '');
  out.push(`| listener \\ cluster | ${cols.map((c) => mdEscape(c.id)).join(' | ')} |`);
  out.push(`|---|${cols.map(() => '---').join('|')}|`);
  const icon = (p: PairResult | undefined) => (p === undefined || p.type === 'na' ? '' : p.status === 'pass' ? '✅ ' : p.status === 'fail' ? '❌ ' : '⬜ ');
  for (const row of rows) {
    out.push(`| **${mdEscape(row)}** | ${cols.map((c) => {
      const p = pairAt(r, row, c.id);
      return `${icon(p)}${mdEscape(cellText(p))}`;
    }).join(' | ')} |`);
  }
  out.push('', `_${LEGEND}_`, '');
  const d = details(r);
  out.push('## Failures', '');
  if (d.failures.length === 0) out.push('None.', '');
  else {
    for (const f of d.failures) out.push(`- **${mdEscape(f.pair)}** \`${f.c.name}\`: ${mdEscape(f.c.reason ?? '')}`);
    out.push('');
  }
  if (d.heavy.length > 0) {
    out.push('## Representative pairs', '');
    out.push('| pair | case | result | detail |', '|---|---|---|---|');
    for (const h of d.heavy) out.push(`| ${mdEscape(h.pair)} | ${h.c.name} | ${h.c.status} | ${mdEscape(h.c.note ?? h.c.reason ?? '')} |`);
    out.push('');
  }
  out.push('## Skipped', '');
  for (const [reason, pairs] of d.pairSkips) out.push(`- ${mdEscape(pairs.join(', '))}: ${mdEscape(reason)}`);
  for (const [name, reason] of d.unavailable) out.push(`- every pair with **${mdEscape(name)}** (row and column): ${mdEscape(reason)}`);
  for (const [what, pairs] of d.caseSkips) out.push(`- \`${mdEscape(what.split(':')[0]!)}\`:${mdEscape(what.slice(what.indexOf(':') + 1))} (${mdEscape(pairs.join(', '))})`);
  out.push('');
  if (r.outside.length > 0) {
    out.push('## Not in the matrix', '');
    for (const o of r.outside) out.push(`- ${mdEscape(o.name)}: ${mdEscape(o.reason)}`);
    out.push('');
  }
  out.push('## Every case', '');
  for (const p of r.pairs.filter((x) => x.type === 'run')) {
    out.push(`<details><summary>${mdEscape(arrow(p))}: ${mdEscape(cellText(p))} (${(p.ms / 1000).toFixed(1)} s)</summary>`, '');
    for (const c of p.cases) out.push(`- ${c.status === 'pass' ? '✅' : c.status === 'fail' ? '❌' : '⬜'} \`${c.name}\` ${mdEscape(c.reason ?? c.note ?? '')}`);
    out.push('', '</details>', '');
  }
  return out.join('\n');
}

// ----------------------------------------------------------------- html

function h(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

export function renderHtml(r: RunResult): string {
  const rows = r.rows.filter((row) => r.pairs.some((p) => p.row === row));
  const cols = r.cols.filter((c) => r.pairs.some((p) => p.col === c.id));
  const d = details(r);
  const cls = (p: PairResult | undefined) => (p === undefined || p.type === 'na' ? 'na' : p.status);
  const title = (p: PairResult | undefined): string => {
    if (p === undefined) return '';
    if (p.type !== 'run') return p.reason ?? '';
    return p.cases.map((c) => `${c.status} ${c.name}${c.reason ? `: ${c.reason}` : c.note ? `: ${c.note}` : ''}`).join('\n');
  };
  const table = [
    '<table class="matrix">',
    `<tr><th>listener \\ cluster</th>${cols.map((c) => `<th class="${h(c.kind)}">${h(c.id)}</th>`).join('')}</tr>`,
    ...rows.map((row) => `<tr><th>${h(row)}</th>${cols.map((c) => {
      const p = pairAt(r, row, c.id);
      return `<td class="${cls(p)}" title="${h(title(p))}">${h(cellText(p))}</td>`;
    }).join('')}</tr>`),
    '</table>',
  ].join('\n');
  const list = (items: string[]) => (items.length === 0 ? '<p>None.</p>' : `<ul>${items.map((i) => `<li>${i}</li>`).join('')}</ul>`);
  const cases = r.pairs.filter((x) => x.type === 'run').map((p) => `<details><summary class="${p.status}">${h(arrow(p))}: ${h(cellText(p))} (${(p.ms / 1000).toFixed(1)} s)</summary><ul>${p.cases.map((c) => `<li class="${c.status}"><code>${h(c.name)}</code> ${h(c.status)} ${h(c.reason ?? c.note ?? '')}</li>`).join('')}</ul></details>`);
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Conformance report</title>
<style>
body { font-family: system-ui, sans-serif; margin: 1.5em; }
table.matrix { border-collapse: collapse; }
table.matrix th, table.matrix td { border: 1px solid #999; padding: 0.3em 0.6em; text-align: center; font-size: 0.9em; }
table.matrix th.transform { background: #eef; }
table.matrix th.unavailable { color: #777; }
td.pass { background: #2e9d45; color: #fff; }
td.fail { background: #d2332f; color: #fff; font-weight: bold; }
td.skip { background: #bbb; color: #333; }
td.na { background: #f4f4f4; color: #aaa; }
li.fail, summary.fail { color: #b00; }
li.skip { color: #666; }
code { background: #f2f2f2; padding: 0 0.2em; }
</style></head><body>
<h1>Conformance report</h1>
<p>Mode: ${h(r.mode)}${r.only ? `, only ${h(r.only)}` : ''}. Ran in ${(r.durationMs / 1000).toFixed(1)} s.</p>
${r.gateway !== undefined ? `<p>Gateway under test: <code>${h(r.gateway)}</code></p>` : ''}
<p><strong>${h(summaryLine(r))}</strong></p>
<p>Rows are listener protocols, columns cluster protocols and transforms. Hover a cell for its cases.</p>
${table}
<p><em>${h(LEGEND)}</em></p>
<h2>Failures</h2>
${list(d.failures.map((f) => `<b>${h(f.pair)}</b> <code>${h(f.c.name)}</code>: ${h(f.c.reason ?? '')}`))}
<h2>Representative pairs</h2>
${list(d.heavy.map((x) => `<b>${h(x.pair)}</b> <code>${h(x.c.name)}</code> ${h(x.c.status)}: ${h(x.c.note ?? x.c.reason ?? '')}`))}
<h2>Skipped</h2>
${list([
    ...[...d.pairSkips].map(([reason, pairs]) => `${h(pairs.join(', '))}: ${h(reason)}`),
    ...[...d.unavailable].map(([name, reason]) => `every pair with <b>${h(name)}</b> (row and column): ${h(reason)}`),
    ...[...d.caseSkips].map(([what, pairs]) => `<code>${h(what.split(':')[0]!)}</code>:${h(what.slice(what.indexOf(':') + 1))} (${h(pairs.join(', '))})`),
  ])}
${r.outside.length > 0 ? `<h2>Not in the matrix</h2>${list(r.outside.map((o) => `${h(o.name)}: ${h(o.reason)}`))}` : ''}
<h2>Every case</h2>
${cases.join('\n')}
</body></html>
`;
}
