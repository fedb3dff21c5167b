// Summaries of the worker matrix (bench/lib/matrix.ts): for every workload
// and worker count, the gateway's and nginx's medians, each one's scaling
// ratio (N workers ÷ 1), the gateway's scaling relative to nginx's, and
// gateway-N ÷ nginx-N; the issue's acceptance lines; where `bare` ran, the
// floor of a session decided in JavaScript at each count; per-round values
// and the CPU each process (main / master and workers) used. Written to
// bench/RESULTS-workers.md.

import { wkey } from './matrix.js';
import { cells, fmt, fmtRatio, median, perRound, spread, type Cell, type Meta, type RunRecord } from './report.js';
import type { Workload } from './workloads.js';

const us = (n: number) => (Number.isFinite(n) ? (n < 10 ? n.toFixed(2) : Math.round(n).toLocaleString('en-US')) : '–');
const pct = (n: number) => (Number.isFinite(n) ? `${Math.round(n * 100)} %` : '–');

/** Median cores per process position (0 = the started process, then its children in tree order). */
function procSplit(w: Workload, runs: RunRecord[], key: string): string {
  const rs = runs.filter((r) => r.workload === w.id && r.target === key && r.sample?.procCpu);
  if (rs.length === 0) return '–';
  const n = Math.max(...rs.map((r) => r.sample!.procCpu!.length));
  const cols: string[] = [];
  for (let i = 0; i < n; i++) cols.push(pct(median(rs.map((r) => r.sample!.procCpu![i] ?? NaN))));
  return cols.join(' + ');
}

/** Median of one sample field over a target's runs. */
function med(w: Workload, runs: RunRecord[], key: string, f: (s: NonNullable<RunRecord['sample']>) => number | undefined): number {
  return median(runs.filter((r) => r.workload === w.id && r.target === key && r.sample).map((r) => f(r.sample!) ?? NaN));
}

/** Machine CPU that was neither the proxy, the load generator nor the echo servers: the kernel's own threads and other work. */
const rest = (x: NonNullable<RunRecord['sample']>) => (x.machineCpu ?? NaN) - (Number.isFinite(x.proxyCpu) ? x.proxyCpu : 0) - x.loadCpu - (x.echoCpu ?? NaN);

/** A run during which other work took less than this share of the machine (cores) is "quiet". */
export const QUIET_REST = 0.2;

/** The runs during which the rest of the machine stayed under QUIET_REST (direct runs included: they have no proxy). */
export function quietRuns(runs: RunRecord[]): RunRecord[] {
  return runs.filter((r) => r.sample !== undefined && rest(r.sample) < QUIET_REST);
}

interface Row {
  workload: Workload;
  n: number;
  gw?: Cell;
  ng?: Cell;
  gwScale: number;
  ngScale: number;
}

function rows(workloads: Workload[], runs: RunRecord[], counts: number[]): Row[] {
  const out: Row[] = [];
  for (const w of workloads) {
    const cs = cells(w, runs);
    const get = (peer: string, n: number) => cs.find((c) => c.key === wkey(peer, n));
    const base = counts[0]!;
    for (const n of counts) {
      const gw = get('gateway', n);
      const ng = get('nginx', n);
      out.push({
        workload: w, n, gw, ng,
        gwScale: n === base ? NaN : (gw?.median ?? NaN) / (get('gateway', base)?.median ?? NaN),
        ngScale: n === base ? NaN : (ng?.median ?? NaN) / (get('nginx', base)?.median ?? NaN),
      });
    }
  }
  return out;
}

function table(workloads: Workload[], runs: RunRecord[], counts: number[]): string[][] {
  const base = counts[0]!;
  const t: string[][] = [['workload', 'unit', 'workers', 'gateway', 'nginx', 'gateway ÷ nginx', `gateway ÷ ${base}w`, `nginx ÷ ${base}w`, 'gateway scaling ÷ nginx scaling', 'gateway CPU (main + workers)', 'nginx CPU (master + workers)']];
  for (const r of rows(workloads, runs, counts)) {
    const w = r.workload;
    t.push([
      w.id, w.unit, String(r.n), fmt(r.gw?.median ?? NaN, w.unit), r.ng ? fmt(r.ng.median, w.unit) : 'no peer',
      fmtRatio((r.gw?.median ?? NaN) / (r.ng?.median ?? NaN)), fmtRatio(r.gwScale), fmtRatio(r.ngScale), fmtRatio(r.gwScale / r.ngScale),
      procSplit(w, runs, wkey('gateway', r.n)), r.ng ? procSplit(w, runs, wkey('nginx', r.n)) : '–',
    ]);
  }
  return t;
}

/**
 * The floor at each count, for the workloads `bare` ran: bare ÷ nginx is what
 * N event loops of Node with the least per-session JavaScript reach; gateway
 * ÷ bare is what the gateway's session machinery costs on top.
 */
function floorTable(workloads: Workload[], runs: RunRecord[], counts: number[]): string[][] {
  const t: string[][] = [['workload', 'unit', 'workers', 'gateway', 'bare', 'nginx', 'bare ÷ nginx', 'gateway ÷ bare', `bare ÷ ${counts[0]!}w`, 'proxy CPU-µs per unit: gateway / bare / nginx']];
  for (const w of workloads) {
    const cs = cells(w, runs);
    const get = (peer: string, n: number) => cs.find((c) => c.key === wkey(peer, n))?.median ?? NaN;
    if (!counts.some((n) => Number.isFinite(get('bare', n)))) continue;
    const perUnit = (peer: string, n: number) => us(med(w, runs, wkey(peer, n), (x) => (x.proxyCpu / x.value) * 1e6));
    for (const n of counts) {
      const [gw, bare, ng] = [get('gateway', n), get('bare', n), get('nginx', n)];
      t.push([
        w.id, w.unit, String(n), fmt(gw, w.unit), fmt(bare, w.unit), fmt(ng, w.unit), fmtRatio(bare / ng), fmtRatio(gw / bare),
        n === counts[0] ? '–' : fmtRatio(bare / get('bare', counts[0]!)), `${perUnit('gateway', n)} / ${perUnit('bare', n)} / ${perUnit('nginx', n)}`,
      ]);
    }
  }
  return t.length > 1 ? t : [];
}

const mdTable = (t: string[][]): string[] => (t.length === 0 ? [] : [
  `| ${t[0]!.join(' | ')} |`, `|${t[0]!.map((_, i) => (i < 2 ? '---' : '---:')).join('|')}|`, ...t.slice(1).map((r) => `| ${r.join(' | ')} |`),
]);

export function matrixConsole(workloads: Workload[], runs: RunRecord[], counts: number[]): string {
  const text = (t: string[][]): string => {
    const widths = t[0]!.map((_, i) => Math.max(...t.map((r) => r[i]!.length)));
    return t.map((r) => r.map((c, i) => (i < 2 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ')).join('\n');
  };
  const floor = floorTable(workloads, runs, counts);
  return floor.length === 0 ? text(table(workloads, runs, counts)) : `${text(table(workloads, runs, counts))}\n\n${text(floor)}`;
}

/** Issue 16's acceptance, for every count above the base. */
export function matrixGoals(workloads: Workload[], runs: RunRecord[], counts: number[]): string[] {
  const out: string[] = [];
  const base = counts[0]!;
  for (const r of rows(workloads, runs, counts)) {
    if (r.n === base) continue;
    const w = r.workload;
    const id = w.id;
    if (id === 'udp-pingpong-flows' || id === 'tcp-connrate') {
      const v = r.gwScale / r.ngScale;
      const rounds = perRound(w, runs, [wkey('gateway', r.n), wkey('gateway', base), wkey('nginx', r.n), wkey('nginx', base)], ([g, g1, n, n1]) => (g! / g1!) / (n! / n1!));
      out.push(`- ${id}, ${r.n} workers: gateway scaling ${fmtRatio(r.gwScale)} ≥ 0.9 × nginx scaling ${fmtRatio(r.ngScale)}: ${fmtRatio(v)} of nginx's — ${Number.isFinite(v) ? (v >= 0.9 ? 'met' : 'NOT met') : 'not measured'}${spread(rounds, 0.9)}`);
    }
    if (r.ng && id !== 'tcp-connrate') {
      const v = (r.gw?.median ?? NaN) / r.ng.median;
      const rounds = perRound(w, runs, [wkey('gateway', r.n), wkey('nginx', r.n)], ([g, n]) => g! / n!);
      out.push(`- ${id}, ${r.n} workers: gateway ≥ 1.0 × nginx: ${fmtRatio(v)} — ${Number.isFinite(v) ? (v >= 1 ? 'met' : 'NOT met') : 'not measured'}${spread(rounds, 1)}`);
    }
    if (!r.ng) out.push(`- ${id}, ${r.n} workers: no nginx equivalent (WebSocket → UDP); gateway ${fmtRatio(r.gwScale)} of its own ${counts[0]}-worker figure`);
  }
  return out;
}

export function matrixMarkdown(workloads: Workload[], runs: RunRecord[], counts: number[], meta: Meta): string {
  const L: string[] = [];
  L.push('# Worker matrix: the gateway with 1 and N workers next to nginx with 1 and N worker processes', '');
  L.push(`Written by \`${meta.command}\` (bench/run.ts, bench/lib/matrix.ts); bench/README.md says what each workload measures.`, '');
  L.push('## Machine', '');
  for (const [k, v] of Object.entries(meta.machine)) L.push(`- ${k}: ${v}`);
  L.push('', '## Setup', '');
  for (const s of meta.setup) L.push(`- ${s}`);
  const quiet = quietRuns(runs);
  L.push('', '## Acceptance (issue 16)', '');
  L.push('All rounds:', '', ...matrixGoals(workloads, runs, counts), '');
  L.push(`Quiet runs only (other work under ${QUIET_REST * 100} % of a core; ${quiet.length} of ${runs.length} runs):`, '', ...matrixGoals(workloads, quiet, counts));
  L.push('', '## Results (medians over rounds)', '');
  L.push('"gateway ÷ 1w" is the scaling ratio (the figure with N workers ÷ with one); "gateway scaling ÷ nginx scaling" divides the two ratios. CPU is cores busy during the measured interval (100 % = one core), median per process: the started process first (the gateway\'s main process, nginx\'s master), then each worker.', '');
  L.push(...mdTable(table(workloads, runs, counts)));
  const floor = floorTable(workloads, runs, counts);
  if (floor.length > 0) {
    L.push('', '## The floor under JavaScript: `bare` with 1 and N processes (medians)', '');
    L.push('`bare` (bench/bare-proxy.ts) makes the gateway\'s system calls with the least JavaScript a per-session decision can have, one process per worker on one SO_REUSEPORT port. "bare ÷ nginx" is what N event loops of Node can reach on this machine; "gateway ÷ bare" is what the gateway\'s session machinery costs on top of that.', '');
    L.push(...mdTable(floor));
  }
  L.push('', `## Results, quiet runs only (medians)`, '');
  L.push(`Only the runs during which the rest of the machine (busy CPU that was neither the proxy, the load generator nor the echo servers: other jobs on this shared machine, kernel threads) stayed under ${QUIET_REST * 100} % of a core. Runs per target: ${[...new Set(runs.map((r) => `${r.workload}/${r.target}`))].map((k) => `${k} ${quiet.filter((r) => `${r.workload}/${r.target}` === k).length}`).join(', ')}.`, '');
  L.push(...mdTable(table(workloads, quiet, counts)));
  L.push('', '## Per target', '');
  for (const w of workloads) {
    L.push(`### ${w.title} (${w.unit})`, '');
    L.push('| target | median | per round | p50 µs | p99 µs | proxy CPU | CPU per process | proxy CPU-µs per unit | machine busy (100 % = one core) | load generator + echo | rest of the machine | proxy context switches/s, voluntary / involuntary | notes |');
    L.push('|---|---:|---|---:|---:|---:|---|---:|---:|---:|---:|---:|---|');
    for (const c of cells(w, runs)) {
      const notes = [...new Set([...c.notes, ...c.errors.map((e) => `error: ${e}`)])].slice(0, 3).join('; ').replace(/\|/g, '/');
        L.push(`| ${c.label} | ${fmt(c.median, w.unit)} | ${c.values.map((v) => fmt(v, w.unit)).join(', ')} | ${us(c.p50)} | ${us(c.p99)} | ${pct(c.proxyCpu)} | ${procSplit(w, runs, c.key)} | ${us(med(w, runs, c.key, (x) => (x.proxyCpu / x.value) * 1e6))} | ${pct(med(w, runs, c.key, (x) => x.machineCpu))} | ${pct(med(w, runs, c.key, (x) => x.loadCpu + (x.echoCpu ?? NaN)))} | ${pct(med(w, runs, c.key, rest))} | ${us(med(w, runs, c.key, (x) => x.switches?.vol))} / ${us(med(w, runs, c.key, (x) => x.switches?.invol))} | ${notes} |`);
    }
    L.push('');
  }
  L.push('## Runs in order', '');
  L.push('| round | # | workload | target | value | proxy CPU | CPU per process | machine busy | load gen CPU | echo CPU | rest of the machine | note |');
  L.push('|---:|---:|---|---|---:|---:|---|---:|---:|---:|---:|---|');
  for (const r of runs) {
    const w = workloads.find((x) => x.id === r.workload)!;
    const s = r.sample;
    L.push(`| ${r.round} | ${r.order} | ${r.workload} | ${r.target} | ${s ? fmt(s.value, w.unit) : 'failed'} | ${pct(s?.proxyCpu ?? NaN)} | ${s?.procCpu?.map(pct).join(' + ') ?? '–'} | ${pct(s?.machineCpu ?? NaN)} | ${pct(s?.loadCpu ?? NaN)} | ${pct(s?.echoCpu ?? NaN)} | ${pct(s ? rest(s) : NaN)} | ${(r.error ?? s?.note ?? '').replace(/\|/g, '/').slice(0, 200)} |`);
  }
  return `${L.join('\n')}\n`;
}
