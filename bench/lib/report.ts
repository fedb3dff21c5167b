// Summaries of the benchmark runs: medians per workload and target, the
// gateway's ratio to each peer, the issue's targets, the console table and
// bench/RESULTS.md.

import fs from 'node:fs';
import os from 'node:os';
import type { Sample, Workload } from './workloads.js';

export interface RunRecord {
  round: number;
  order: number;
  workload: string;
  target: string;
  sample?: Sample;
  error?: string;
}

export interface Cell {
  key: string;
  label: string;
  values: number[];
  median: number;
  p50: number;
  p99: number;
  proxyCpu: number;
  /** Figure per proxy CPU-second: steadier than the figure when other work takes CPU. */
  perCpu: number;
  notes: string[];
  errors: string[];
}

export function median(xs: number[]): number {
  const s = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (s.length === 0) return NaN;
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

export function cells(w: Workload, runs: RunRecord[]): Cell[] {
  return w.targets.map((t) => {
    const rs = runs.filter((r) => r.workload === w.id && r.target === t.key);
    const ok = rs.filter((r) => r.sample !== undefined).map((r) => r.sample!);
    return {
      key: t.key,
      label: t.label,
      values: ok.map((s) => s.value),
      median: median(ok.map((s) => s.value)),
      p50: median(ok.map((s) => s.p50 ?? NaN)),
      p99: median(ok.map((s) => s.p99 ?? NaN)),
      proxyCpu: median(ok.map((s) => s.proxyCpu)),
      perCpu: median(ok.map((s) => s.value / s.proxyCpu)),
      notes: ok.map((s) => s.note).filter((n): n is string => !!n),
      errors: rs.filter((r) => r.error).map((r) => r.error!),
    };
  });
}

/** Gateway ÷ peer, oriented so that > 1 means the gateway is better. */
export function ratio(w: Workload, gw: number, peer: number): number {
  return w.higherIsBetter ? gw / peer : peer / gw;
}

export function fmt(n: number, unit = ''): string {
  if (!Number.isFinite(n)) return 'n/a';
  if (unit === 'MB/s') return n.toFixed(0);
  if (unit === 'bytes/session') return `${(n / 1024).toFixed(2)} KiB`;
  return Math.round(n).toLocaleString('en-US');
}
const fmtUs = (n: number) => (Number.isFinite(n) ? Math.round(n).toLocaleString('en-US') : '–');
const fmtCpu = (n: number) => (Number.isFinite(n) ? `${Math.round(n * 100)} %` : '–');
/** A ratio as the reports print it: 1.23×, or – when there is none. */
export const fmtRatio = (n: number) => (Number.isFinite(n) ? `${n.toFixed(2)}×` : '–');

/** The gateway's cell of a workload (for WebSocket: the default engine). */
function gatewayCell(cs: Cell[]): Cell | undefined {
  return cs.find((c) => c.key === 'gateway');
}

export function consoleTable(workloads: Workload[], runs: RunRecord[]): string {
  const rows: string[][] = [['workload', 'target', 'median', 'unit', 'p50 µs', 'p99 µs', 'proxy CPU', 'per CPU-s', 'gateway ÷ target']];
  for (const w of workloads) {
    const cs = cells(w, runs);
    const gw = gatewayCell(cs);
    for (const c of cs) {
      rows.push([w.id, c.key, fmt(c.median, w.unit), w.unit, fmtUs(c.p50), fmtUs(c.p99), fmtCpu(c.proxyCpu), fmt(c.perCpu, w.unit),
        gw && c !== gw && c.key !== 'direct' ? fmtRatio(ratio(w, gw.median, c.median)) : c.key === 'direct' && gw ? `${Math.round((gw.median / c.median) * 100)} % of direct` : '']);
    }
  }
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  return rows.map((r) => r.map((c, i) => (i < 2 || i === 3 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ')).join('\n');
}

/**
 * A ratio of targets' figures taken within each round, where the targets ran
 * minutes apart at most: the machine's drift between rounds (this VM's
 * rounds of one target differ by 20-40 %) cancels. `f` gets each target's
 * figure in the round and returns the ratio; rounds missing a target are left out.
 */
export function perRound(w: Workload, runs: RunRecord[], keys: string[], f: (v: number[]) => number): number[] {
  const rounds = [...new Set(runs.map((r) => r.round))].sort((a, b) => a - b);
  const out: number[] = [];
  for (const round of rounds) {
    const v = keys.map((k) => runs.find((r) => r.round === round && r.workload === w.id && r.target === k)?.sample?.value ?? NaN);
    const x = f(v);
    if (Number.isFinite(x)) out.push(x);
  }
  return out;
}

/** ", per round 0.91–1.04× (3 of 5 ≥ 1.00)": how steady a ratio is, and on which side of its line. */
export function spread(xs: number[], line: number): string {
  if (xs.length < 2) return '';
  return `; per round ${Math.min(...xs).toFixed(2)}–${fmtRatio(Math.max(...xs))} (${xs.filter((x) => x >= line).length} of ${xs.length} ≥ ${line.toFixed(2)})`;
}

export interface Goal {
  text: string;
  value: number;
  want: number;
  /** The same ratio within each round (perRound), where it is one. */
  rounds?: number[];
}

/** Issue 7's targets, evaluated on this run's medians. */
export function goals(workloads: Workload[], runs: RunRecord[]): Goal[] {
  const get = medianOf(workloads, runs);
  return [
    { text: 'UDP 64 B ping-pong ≥ 1.0× nginx stream', value: get('udp-pingpong', 'gateway') / get('udp-pingpong', 'nginx'), want: 1.0 },
    { text: 'TCP bulk ≥ 0.8× nginx stream', value: get('tcp-bulk', 'gateway') / get('tcp-bulk', 'nginx'), want: 0.8 },
    { text: 'TCP connection rate ≥ 0.8× nginx stream', value: get('tcp-connrate', 'gateway') / get('tcp-connrate', 'nginx'), want: 0.8 },
    { text: 'WebSocket → UDP ≥ 2× the same route on the ws library', value: get('ws-rate', 'gateway') / get('ws-rate', 'gateway-ws'), want: 2.0 },
    { text: 'Memory per idle UDP session ≤ 4 KiB', value: get('udp-idle-memory', 'gateway') / 1024, want: -4 },
  ];
}

/**
 * Issue 17's targets (the raw TCP path): connection rate and ping-pong at
 * least nginx's, bulk not below its ratio when the issue was filed (1.00-1.11×).
 */
export function goals17(workloads: Workload[], runs: RunRecord[]): Goal[] {
  const get = medianOf(workloads, runs);
  const vsNginx = (id: string, text: string, want: number): Goal => {
    const w = workloads.find((x) => x.id === id);
    return {
      text, want, value: get(id, 'gateway') / get(id, 'nginx'),
      rounds: w ? perRound(w, runs, ['gateway', 'nginx'], ([g, n]) => g! / n!) : [],
    };
  };
  return [
    vsNginx('tcp-connrate', 'TCP connection rate ≥ 1.0× nginx stream', 1.0),
    vsNginx('tcp-pingpong', 'TCP ping-pong ≥ 1.0× nginx stream', 1.0),
    vsNginx('tcp-bulk', 'TCP bulk ≥ 1.0× nginx stream (its ratio when issue 17 was filed: 1.00–1.11×)', 1.0),
  ];
}

function medianOf(workloads: Workload[], runs: RunRecord[]): (id: string, key: string) => number {
  return (id, key) => {
    const w = workloads.find((x) => x.id === id);
    return w ? cells(w, runs).find((c) => c.key === key)?.median ?? NaN : NaN;
  };
}

export function goalLine(g: Goal): string {
  if (!Number.isFinite(g.value)) return `- ${g.text}: not measured`;
  if (g.want < 0) return `- ${g.text}: ${g.value.toFixed(2)} KiB — ${g.value <= -g.want ? 'met' : 'NOT met'}`;
  return `- ${g.text}: ${g.value.toFixed(2)}× — ${g.value >= g.want ? 'met' : 'NOT met'}${spread(g.rounds ?? [], g.want)}`;
}

export interface Meta {
  machine: Record<string, string>;
  setup: string[];
  command: string;
}

export function machine(loadStart: number[], extra: Record<string, string>): Record<string, string> {
  let cpu = os.cpus()[0]?.model ?? 'unknown';
  try {
    const m = /^model name\s*:\s*(.+)$/m.exec(fs.readFileSync('/proc/cpuinfo', 'utf8'));
    if (m) cpu = m[1]!.trim();
  } catch { /* not Linux */ }
  const l = (x: number[]) => x.map((v) => v.toFixed(2)).join(' / ');
  return {
    CPU: cpu,
    Cores: String(os.cpus().length),
    Memory: `${(os.totalmem() / 2 ** 30).toFixed(1)} GiB`,
    Kernel: `${os.type()} ${os.release()}`,
    Node: process.version,
    ...extra,
    Date: new Date().toISOString(),
    'Load average (1/5/15 min)': `${l(loadStart)} at start, ${l(os.loadavg())} at the end`,
  };
}

export function markdown(workloads: Workload[], runs: RunRecord[], meta: Meta): string {
  const L: string[] = [];
  L.push('# Benchmark results: the gateway against nginx stream, haproxy and socat', '');
  L.push(`Written by \`${meta.command}\` (bench/run.ts); bench/README.md says what each workload measures. Compare ratios, not absolute figures, across machines.`, '');
  L.push('## Machine', '');
  for (const [k, v] of Object.entries(meta.machine)) L.push(`- ${k}: ${v}`);
  L.push('', '## Setup', '');
  for (const s of meta.setup) L.push(`- ${s}`);
  L.push('', '## Targets from issue 7', '');
  for (const g of goals(workloads, runs)) L.push(goalLine(g));
  L.push('', '## Targets from issue 17', '');
  for (const g of goals17(workloads, runs)) L.push(goalLine(g));
  L.push('', '## Results (medians)', '');
  L.push('"gateway ÷ target" > 1 means the gateway did better (for memory: used less). "direct" is the load generator against the echo server with no proxy: the ceiling of this machine and load generator. Proxy CPU is cores busy during the measured interval (100 % = one core; a forking peer counts all its processes); a proxy near 100 % is CPU-bound, well below while it is the bottleneck means other work took the CPU.', '');
  for (const w of workloads) {
    const cs = cells(w, runs);
    const gw = gatewayCell(cs);
    L.push(`### ${w.title} (${w.unit}${w.higherIsBetter ? '' : ', lower is better'})`, '');
    L.push('| target | median | per round | p50 µs | p99 µs | proxy CPU | per proxy CPU-s | gateway ÷ target | gateway ÷ target per CPU-s | notes |');
    L.push('|---|---:|---|---:|---:|---:|---:|---:|---:|---|');
    for (const c of cs) {
      const r = gw && c !== gw ? ratio(w, gw.median, c.median) : NaN;
      const notes = [...new Set([...c.notes, ...c.errors.map((e) => `error: ${e}`)])].slice(0, 3).join('; ');
      L.push(`| ${c.label} | ${fmt(c.median, w.unit)} | ${c.values.map((v) => fmt(v, w.unit)).join(', ')} | ${fmtUs(c.p50)} | ${fmtUs(c.p99)} | ${fmtCpu(c.proxyCpu)} | ${fmt(c.perCpu, w.unit)} | ${c.key === 'direct' && gw ? `gateway at ${Math.round((gw.median / c.median) * 100)} % of direct` : fmtRatio(r)} | ${gw && c !== gw && c.key !== 'direct' && w.higherIsBetter ? fmtRatio(gw.perCpu / c.perCpu) : '–'} | ${notes.replace(/\|/g, '/')} |`);
    }
    L.push('');
  }
  L.push('## Runs in order', '');
  L.push('| round | # | workload | target | value | p50 µs | p99 µs | proxy CPU | load gen CPU | note |');
  L.push('|---:|---:|---|---|---:|---:|---:|---:|---:|---|');
  for (const r of runs) {
    const w = workloads.find((x) => x.id === r.workload)!;
    const s = r.sample;
    L.push(`| ${r.round} | ${r.order} | ${r.workload} | ${r.target} | ${s ? fmt(s.value, w.unit) : 'failed'} | ${fmtUs(s?.p50 ?? NaN)} | ${fmtUs(s?.p99 ?? NaN)} | ${fmtCpu(s?.proxyCpu ?? NaN)} | ${fmtCpu(s?.loadCpu ?? NaN)} | ${(r.error ?? s?.note ?? '').replace(/\|/g, '/').slice(0, 200)} |`);
  }
  return `${L.join('\n')}\n`;
}
