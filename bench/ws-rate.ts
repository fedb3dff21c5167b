// WebSocket message-rate run: the gateway's WebSocket listener on
// uWebSockets.js (engine uws) against the same route served by the `ws`
// library (engine ws), in the same run, plus a direct baseline (a bare uWS
// WebSocket echo, no gateway) as the ceiling.
//
//   load generator (bench/ws-load.ts, own process)
//     -> gateway (own process): WebSocket listener -> UDP cluster
//     -> UDP echo (bench/echo/udp_echo.c, recvmmsg/sendmmsg; Node fallback)
//
// Runs alternate engines (uws, ws, ws, uws, uws, ws) so drift in the machine's
// speed hits both alike; each engine's median is reported with the ratio
// uws/ws. Results go to stdout and to bench/RESULTS-ws.md.
//
// Usage: npm run bench:ws -- [--connections 8] [--window 16] [--size 64]
//   [--warmup 1] [--duration 5] [--runs 3] [--pin] [--out FILE]

import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { uwsStatus } from '../gateway/src/protocols/common/uws.js';
import { PortAllocator } from '../conformance/ports.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '../..');

const { values: a } = parseArgs({
  options: {
    connections: { type: 'string', default: '8' },
    window: { type: 'string', default: '16' },
    size: { type: 'string', default: '64' },
    warmup: { type: 'string', default: '1' },
    duration: { type: 'string', default: '5' },
    runs: { type: 'string', default: '3' },
    pin: { type: 'boolean', default: false },
    out: { type: 'string', default: path.join(root, 'bench/RESULTS-ws.md') },
  },
});
const P = {
  connections: Number(a.connections),
  window: Number(a.window),
  size: Number(a.size),
  warmup: Number(a.warmup),
  duration: Number(a.duration),
  runs: Math.max(1, Math.min(9, Number(a.runs))),
};
/** One load run may take this long, handshakes and drain included. */
const RUN_TIMEOUT_MS = (P.warmup + P.duration + 20) * 1000;
/** The whole benchmark, start-up included. */
const TOTAL_TIMEOUT_MS = RUN_TIMEOUT_MS * (3 * P.runs + 2) + 60_000;

// ---- child processes: tracked, bounded, killed on every way out ----

const children = new Set<ChildProcess>();

function killAll(): void {
  for (const c of children) {
    try { c.kill('SIGKILL'); } catch { /* gone */ }
  }
  children.clear();
}
process.on('exit', killAll);
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
  process.on(sig, () => { killAll(); process.exit(130); });
}
process.on('uncaughtException', (err) => { process.stderr.write(`ws-rate: ${err.stack ?? err.message}\n`); killAll(); process.exit(1); });
const watchdog = setTimeout(() => {
  process.stderr.write(`ws-rate: gave up after ${TOTAL_TIMEOUT_MS / 1000} s\n`);
  killAll();
  process.exit(1);
}, TOTAL_TIMEOUT_MS);

const hasTaskset = spawnSync('taskset', ['-V']).status === 0;
const pinning = a.pin && hasTaskset && os.cpus().length >= 2;

/** Spawn a tracked child; with --pin, the server under test gets CPU 0 and everything else CPU 1. */
function start(cmd: string, args: string[], cpu: 0 | 1): ChildProcess {
  const [c, ar] = pinning ? ['taskset', ['-c', String(cpu), cmd, ...args]] : [cmd, args];
  const child = spawn(c, ar, { stdio: ['ignore', 'pipe', 'pipe'] });
  children.add(child);
  child.on('exit', () => children.delete(child));
  let err = '';
  child.stderr!.on('data', (d) => { if (err.length < 4000) err += String(d); });
  (child as ChildProcess & { errText: () => string }).errText = () => err;
  return child;
}

function errText(c: ChildProcess): string {
  return ((c as ChildProcess & { errText?: () => string }).errText?.() ?? '').trim();
}

function stopChild(c: ChildProcess): Promise<void> {
  return new Promise((resolve) => {
    if (c.exitCode !== null || c.signalCode !== null) return resolve();
    const t = setTimeout(() => c.kill('SIGKILL'), 2000);
    c.once('exit', () => { clearTimeout(t); resolve(); });
    c.kill('SIGTERM');
  });
}

/** Wait for a "PORT n" line from a child. */
function portLine(c: ChildProcess, what: string, timeoutMs = 10_000): Promise<number> {
  return new Promise((resolve, reject) => {
    let out = '';
    const t = setTimeout(() => reject(new Error(`${what} did not start in ${timeoutMs} ms: ${errText(c)}`)), timeoutMs);
    c.stdout!.on('data', (d) => {
      out += String(d);
      const m = /PORT (\d+)/.exec(out);
      if (m) { clearTimeout(t); resolve(Number(m[1])); }
    });
    c.once('exit', (code) => { clearTimeout(t); reject(new Error(`${what} exited with ${code}: ${errText(c)}`)); });
  });
}

const ports = new PortAllocator();

/** A loopback port below the ephemeral range, never handed out twice (conformance/ports.ts). */
function freePort(): Promise<number> {
  return ports.next();
}

function tcpOpen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const c = net.connect(port, '127.0.0.1');
    c.once('connect', () => { c.destroy(); resolve(true); });
    c.once('error', () => resolve(false));
  });
}

async function waitListening(port: number, child: ChildProcess, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`${what} exited with ${child.exitCode}: ${errText(child)}`);
    if (await tcpOpen(port)) return;
    if (Date.now() > deadline) throw new Error(`${what} not listening on ${port} after ${timeoutMs} ms: ${errText(child)}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

// ---- CPU time of a process, from /proc ----

const CLK_TCK = Number(spawnSync('getconf', ['CLK_TCK']).stdout?.toString().trim()) || 100;

function cpuSeconds(pid: number | undefined): number {
  if (pid === undefined) return NaN;
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // Fields 14 and 15 (utime, stime); f[0] is field 3.
    return (Number(f[11]) + Number(f[12])) / CLK_TCK;
  } catch {
    return NaN;
  }
}

// ---- the UDP echo upstream ----

interface Echo { child: ChildProcess; port: number; kind: string }

async function startEcho(): Promise<Echo> {
  const src = path.join(root, 'bench/echo/udp_echo.c');
  const bin = path.join(root, 'dist/bench/udp_echo');
  const lifetime = String(Math.ceil(TOTAL_TIMEOUT_MS / 1000));
  const cc = spawnSync('cc', ['-O2', '-Wall', '-o', bin, src], { encoding: 'utf8' });
  if (cc.status === 0) {
    const child = start(bin, ['0', lifetime], 1);
    return { child, port: await portLine(child, 'UDP echo (C)'), kind: 'C, recvmmsg/sendmmsg (bench/echo/udp_echo.c, cc -O2)' };
  }
  const why = cc.error ? `no C compiler (${cc.error.message})` : `cc failed: ${cc.stderr.trim().split('\n')[0]}`;
  process.stderr.write(`ws-rate: ${why}; falling back to the Node dgram echo, which may be the bottleneck\n`);
  const child = start(process.execPath, [path.join(root, 'dist/bench/udp-echo.js'), '0', lifetime], 1);
  return { child, port: await portLine(child, 'UDP echo (Node)'), kind: `Node dgram fallback (bench/udp-echo.ts) because ${why}: may be the bottleneck` };
}

// ---- one measured run ----

type Target = 'uws' | 'ws' | 'baseline';

interface LoadResult {
  rate: number;
  p50_us: number;
  p99_us: number;
  mean_us: number;
  lost: number;
  size_errors: number;
  load_cpu: number;
  errors: string[];
  error?: string;
}

interface Run extends LoadResult {
  target: Target;
  order: number;
  /** CPU cores used by the server under test (gateway or bare echo) while measuring. */
  server_cpu: number;
  /** CPU cores used by the UDP echo while measuring (gateway runs only). */
  echo_cpu: number;
  /** Messages per CPU-second of the server under test: steadier than msg/s when other work steals CPU. */
  per_cpu: number;
}

function gatewayConfig(engine: 'uws' | 'ws', port: number, echoPort: number): unknown {
  return {
    admin: { log_level: 'warn', log_file: 'stderr' },
    listeners: [{
      name: 'ws-bench',
      spec: { protocol: 'WebSocket', engine, address: '127.0.0.1', port },
      rules: [{ action: { route: { destination: 'udp-echo' } } }],
    }],
    clusters: [{ name: 'udp-echo', spec: { protocol: 'UDP', port: echoPort }, endpoints: [{ spec: { address: '127.0.0.1' } }] }],
  };
}

async function runOnce(target: Target, order: number, echo: Echo, tmp: string): Promise<Run> {
  const port = await freePort();
  let server: ChildProcess;
  if (target === 'baseline') {
    server = start(process.execPath, [path.join(root, 'dist/bench/uws-echo.js'), String(port), String(RUN_TIMEOUT_MS / 1000 + 30)], 0);
    await portLine(server, 'uWS echo');
  } else {
    const cfg = path.join(tmp, `gateway-${target}.json`);
    fs.writeFileSync(cfg, JSON.stringify(gatewayConfig(target, port, echo.port), null, 2));
    server = start(process.execPath, [path.join(root, 'dist/gateway/src/main.js'), '-c', cfg, '-l', 'warn'], 0);
    await waitListening(port, server, `gateway (${target})`);
  }
  try {
    const load = start(process.execPath, [
      path.join(root, 'dist/bench/ws-load.js'), '--url', `ws://127.0.0.1:${port}/bench`,
      '--connections', String(P.connections), '--window', String(P.window), '--size', String(P.size),
      '--warmup', String(P.warmup), '--duration', String(P.duration), '--timeout', String(RUN_TIMEOUT_MS / 1000 - 2),
    ], 1);
    const result = await new Promise<{ res: LoadResult; serverCpu: number; echoCpu: number }>((resolve, reject) => {
      let out = '';
      let s0 = NaN;
      let e0 = NaN;
      let s1 = NaN;
      let e1 = NaN;
      let t0 = 0;
      let t1 = 0;
      const t = setTimeout(() => { load.kill('SIGKILL'); reject(new Error(`load run (${target}) timed out`)); }, RUN_TIMEOUT_MS);
      load.stdout!.on('data', (d) => {
        const before = out;
        out += String(d);
        if (!before.includes('MEASURE') && out.includes('MEASURE')) {
          t0 = performance.now();
          s0 = cpuSeconds(server.pid);
          e0 = cpuSeconds(echo.child.pid);
        }
        const line = out.split('\n').find((l) => l.startsWith('{'));
        if (line && t1 === 0 && out.endsWith('\n')) {
          // The load generator samples its CPU when measuring stops, then drains for <= 0.5 s.
          t1 = performance.now();
          s1 = cpuSeconds(server.pid);
          e1 = cpuSeconds(echo.child.pid);
        }
      });
      load.once('exit', (code) => {
        clearTimeout(t);
        const line = out.split('\n').find((l) => l.startsWith('{'));
        if (!line) return reject(new Error(`load generator exited with ${code}: ${errText(load)}`));
        const res = JSON.parse(line) as LoadResult;
        if (res.error) return reject(new Error(`load generator: ${res.error}`));
        const secs = (t1 - t0) / 1000;
        resolve({ res, serverCpu: (s1 - s0) / secs, echoCpu: target === 'baseline' ? NaN : (e1 - e0) / secs });
      });
    });
    return { ...result.res, target, order, server_cpu: result.serverCpu, echo_cpu: result.echoCpu, per_cpu: result.res.rate / result.serverCpu };
  } finally {
    await stopChild(server);
  }
}

// ---- summary ----

function median(xs: number[]): number {
  const s = xs.filter((x) => Number.isFinite(x)).sort((x, y) => x - y);
  if (s.length === 0) return NaN;
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

const fmtInt = (n: number) => (Number.isFinite(n) ? Math.round(n).toLocaleString('en-US') : 'n/a');
const fmtCpu = (n: number) => (Number.isFinite(n) ? `${Math.round(n * 100)} %` : 'n/a');

interface Summary { target: Target; label: string; rates: number[]; rate: number; perCpu: number; p50: number; p99: number; serverCpu: number; echoCpu: number; loadCpu: number; lost: number }

function summarise(runs: Run[]): Summary[] {
  const labels: Record<Target, string> = {
    uws: 'gateway, engine uws (uWebSockets.js)',
    ws: 'gateway, engine ws (`ws` library)',
    baseline: 'baseline: bare uWS echo, no gateway',
  };
  return (['uws', 'ws', 'baseline'] as const).map((target) => {
    const rs = runs.filter((r) => r.target === target);
    return {
      target,
      label: labels[target],
      rates: rs.map((r) => r.rate),
      rate: median(rs.map((r) => r.rate)),
      perCpu: median(rs.map((r) => r.per_cpu)),
      p50: median(rs.map((r) => r.p50_us)),
      p99: median(rs.map((r) => r.p99_us)),
      serverCpu: median(rs.map((r) => r.server_cpu)),
      echoCpu: median(rs.map((r) => r.echo_cpu)),
      loadCpu: median(rs.map((r) => r.load_cpu)),
      lost: rs.reduce((s, r) => s + r.lost, 0),
    };
  });
}

function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  return rows.map((r) => r.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ')).join('\n');
}

const fmtLoad = (l: number[]) => l.map((x) => x.toFixed(2)).join(' / ');
const loadAtStart = os.loadavg();

function machine(): Record<string, string> {
  let cpu = os.cpus()[0]?.model ?? 'unknown';
  try {
    const m = /^model name\s*:\s*(.+)$/m.exec(fs.readFileSync('/proc/cpuinfo', 'utf8'));
    if (m) cpu = m[1]!.trim();
  } catch { /* not Linux */ }
  const wsVersion = (JSON.parse(fs.readFileSync(path.join(root, 'node_modules/ws/package.json'), 'utf8')) as { version: string }).version;
  return {
    CPU: cpu,
    Cores: String(os.cpus().length),
    Kernel: `${os.type()} ${os.release()}`,
    Node: process.version,
    uWS: uwsStatus(),
    ws: `ws ${wsVersion}`,
    Date: new Date().toISOString(),
    // The run's own processes (gateway, load generator, echo) add about 2-3 to the figure at the end.
    'Load average (1/5/15 min)': `${fmtLoad(loadAtStart)} at start, ${fmtLoad(os.loadavg())} at the end (this run's own processes add about 2-3)${loadAtStart[0]! > os.cpus().length / 2 ? '; other work was running before the start, so expect noise (see the server CPU column)' : ''}`,
  };
}

function markdown(runs: Run[], sums: Summary[], echo: Echo, ratio: number, cpuRatio: number): string {
  const m = machine();
  const [u, w, b] = sums as [Summary, Summary, Summary];
  const lines: string[] = [];
  lines.push('# WebSocket message rate: uWebSockets.js listener vs `ws` listener', '');
  lines.push('Written by `npm run bench:ws` (bench/ws-rate.ts); see bench/README.md for what it measures. Numbers from one run on the machine below; compare ratios, not absolute rates, across machines.', '');
  lines.push('## Machine', '');
  for (const [k, val] of Object.entries(m)) lines.push(`- ${k}: ${val}`);
  lines.push('', '## Setup', '');
  lines.push(`- Route: load generator → gateway WebSocket listener (engine uws or ws) → UDP cluster → UDP echo → back the same way. One gateway process per run (\`node dist/gateway/src/main.js -c <config> -l warn\`).`);
  lines.push(`- UDP echo: ${echo.kind}.`);
  lines.push(`- Load: ${P.connections} connections × ${P.window} messages in flight, ${P.size} B binary messages, closed loop; ${P.warmup} s warm-up, then ${P.duration} s measured.`);
  lines.push(`- Order: ${runs.map((r) => r.target).join(', ')}. Medians per target over ${P.runs} runs (each column's median on its own).`);
  lines.push(`- CPU pinning: ${pinning ? 'server under test on CPU 0; load generator and UDP echo on CPU 1 (taskset)' : 'none (the OS schedules all processes on all cores)'}.`);
  lines.push('', '## Result', '');
  lines.push(`**uws / ws = ${ratio.toFixed(2)}×** (median messages/s of the uWebSockets.js listener over the \`ws\` listener). The bare uWS echo, without gateway or UDP hop, reaches ${fmtInt(b.rate)} msg/s: the gateway with engine uws gets ${(u.rate / b.rate * 100).toFixed(0)} % of that ceiling, engine ws ${(w.rate / b.rate * 100).toFixed(0)} %.`, '');
  lines.push(`Per CPU-second of the server under test (msg/s ÷ its CPU share, steadier when other work takes CPU): uws / ws = **${cpuRatio.toFixed(2)}×**.`, '');
  lines.push('| target | msg/s (median) | msg/s per run | msg per server CPU-s | p50 RTT µs | p99 RTT µs | server CPU | echo CPU | load gen CPU | lost |');
  lines.push('|---|---:|---|---:|---:|---:|---:|---:|---:|---:|');
  for (const s of sums) {
    lines.push(`| ${s.label} | ${fmtInt(s.rate)} | ${s.rates.map(fmtInt).join(', ')} | ${fmtInt(s.perCpu)} | ${fmtInt(s.p50)} | ${fmtInt(s.p99)} | ${fmtCpu(s.serverCpu)} | ${fmtCpu(s.echoCpu)} | ${fmtCpu(s.loadCpu)} | ${s.lost} |`);
  }
  lines.push('', 'CPU columns: cores busy while measuring (100 % = one core), from /proc for the server and echo and from process.cpuUsage() for the load generator. A server below ~90 % while it is the bottleneck was short of CPU (other processes ran); "msg per server CPU-s" (msg/s ÷ server CPU) corrects for that. "lost": messages still unanswered 0.5 s after the load stopped, summed over runs.', '');
  lines.push('## Runs', '');
  lines.push('| # | target | msg/s | msg per server CPU-s | p50 µs | p99 µs | mean µs | server CPU | echo CPU | load gen CPU | lost |');
  lines.push('|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|');
  for (const r of runs) {
    lines.push(`| ${r.order} | ${r.target} | ${fmtInt(r.rate)} | ${fmtInt(r.per_cpu)} | ${fmtInt(r.p50_us)} | ${fmtInt(r.p99_us)} | ${fmtInt(r.mean_us)} | ${fmtCpu(r.server_cpu)} | ${fmtCpu(r.echo_cpu)} | ${fmtCpu(r.load_cpu)} | ${r.lost} |`);
  }
  const errs = [...new Set(runs.flatMap((r) => r.errors))];
  if (errs.length) lines.push('', `Errors reported by the load generator: ${errs.join('; ')}`);
  return `${lines.join('\n')}\n`;
}

// ---- main ----

async function main(): Promise<void> {
  for (const f of ['dist/gateway/src/main.js', 'dist/bench/ws-load.js', 'dist/bench/uws-echo.js']) {
    if (!fs.existsSync(path.join(root, f))) throw new Error(`${f} is missing: run "npm run build" first`);
  }
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'l7mp-bench-'));
  const echo = await startEcho();
  process.stdout.write(`UDP echo on 127.0.0.1:${echo.port}: ${echo.kind}\n`);
  if (loadAtStart[0]! > os.cpus().length / 2) process.stdout.write(`note: load average ${fmtLoad(loadAtStart)} on ${os.cpus().length} cores: other work is running, expect noise\n`);
  if (a.pin && !pinning) process.stdout.write('--pin ignored: taskset missing or fewer than 2 cores\n');

  // Engines alternate (uws, ws, ws, uws, uws, ws, ...); baselines at the start, middle and end.
  const engines: Target[] = [];
  for (let i = 0; i < P.runs; i++) engines.push(...(i % 2 === 0 ? ['uws', 'ws'] as const : ['ws', 'uws'] as const));
  const at = Array.from({ length: P.runs }, (_, k) => (P.runs === 1 ? 0 : Math.round((k * engines.length) / (P.runs - 1))));
  const order: Target[] = [];
  for (let i = 0; i <= engines.length; i++) {
    for (const p of at) if (p === i) order.push('baseline');
    if (i < engines.length) order.push(engines[i]!);
  }

  const runs: Run[] = [];
  for (const [i, target] of order.entries()) {
    const r = await runOnce(target, i + 1, echo, tmp);
    runs.push(r);
    process.stdout.write(`run ${String(i + 1).padStart(2)}/${order.length} ${target.padEnd(8)} ${fmtInt(r.rate).padStart(9)} msg/s  p50 ${fmtInt(r.p50_us)} µs  p99 ${fmtInt(r.p99_us)} µs  server CPU ${fmtCpu(r.server_cpu)} (${fmtInt(r.per_cpu)}/CPU-s)  lost ${r.lost}${r.errors.length ? `  errors: ${r.errors.join('; ')}` : ''}\n`);
  }
  await stopChild(echo.child);
  fs.rmSync(tmp, { recursive: true, force: true });

  const sums = summarise(runs);
  const [u, w] = sums as [Summary, Summary, Summary];
  const ratio = u.rate / w.rate;
  const cpuRatio = u.perCpu / w.perCpu;
  process.stdout.write('\n');
  process.stdout.write(`${table([
    ['target', 'msg/s (median)', 'msg/server CPU-s', 'p50 µs', 'p99 µs', 'server CPU'],
    ...sums.map((s) => [s.label, fmtInt(s.rate), fmtInt(s.perCpu), fmtInt(s.p50), fmtInt(s.p99), fmtCpu(s.serverCpu)]),
  ])}\n\nratio uws/ws: ${ratio.toFixed(2)} (msg/s), ${cpuRatio.toFixed(2)} (per server CPU-second)\n`);
  const out = a.out!;
  if (out !== '-') {
    fs.writeFileSync(out, markdown(runs, sums, echo, ratio, cpuRatio));
    process.stdout.write(`written to ${path.relative(process.cwd(), out) || out}\n`);
  }
  clearTimeout(watchdog);
}

main().then(() => process.exit(0), (err: Error) => {
  process.stderr.write(`ws-rate: ${err.message}\n`);
  killAll();
  process.exit(1);
});
