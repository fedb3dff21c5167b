// Peer comparison runner (`npm run bench`): every workload through the
// gateway and through nginx stream, haproxy and socat, plus the direct,
// proxy-less figure, in one run on one machine. Rounds alternate the order of
// targets (forward, then reversed) so a machine that speeds up or slows down
// during the run hurts everyone alike; each figure is the median over rounds.
// Prints a table with the gateway's ratio to each peer and writes
// bench/RESULTS.md with the machine description.
//
// Usage: npm run bench -- [--quick] [--rounds 3] [--warmup 1] [--duration 3]
//   [--only udp-pingpong,tcp-bulk,...] [--peers gateway,nginx,...]
//   [--sessions 4000] [--workers N] [--out bench/RESULTS.md | -]
//   --workers N: the gateway with admin.workers N, nginx with worker_processes N.
// Worker matrix (issue 16; bench/lib/matrix.ts, writes bench/RESULTS-workers.md):
//   node dist/bench/run.js --workers-matrix 1,2 [--flows 16] [--pin auto|none|load:CPUS;proxy:CPUS]
// Needs: cc, nginx with the stream module, haproxy, socat (bench/setup.sh).

import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { rawAddon } from '../gateway/src/native/rawstream.js';
import { uwsStatus } from '../gateway/src/protocols/common/uws.js';
import { compileBins, startEcho } from './lib/bins.js';
import { guard, killAll, stop } from './lib/procs.js';
import type { Env, Peer } from './lib/peers.js';
import { consoleTable, fmt, goalLine, goals, goals17, machine, markdown, type RunRecord } from './lib/report.js';
import { WORKLOADS, type Params } from './lib/workloads.js';
import { MATRIX_IDS, matrixWorkloads, pinning, workerCountsOf } from './lib/matrix.js';
import { matrixConsole, matrixGoals, matrixMarkdown, quietRuns } from './lib/report-workers.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '../..');

const { values: a } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    rounds: { type: 'string' },
    warmup: { type: 'string' },
    duration: { type: 'string' },
    only: { type: 'string' },
    peers: { type: 'string' },
    sessions: { type: 'string' },
    workers: { type: 'string' },
    'workers-matrix': { type: 'string' },
    flows: { type: 'string' },
    pin: { type: 'string' },
    out: { type: 'string' },
  },
});

const counts = a['workers-matrix'] !== undefined ? workerCountsOf(a['workers-matrix']) : undefined;
const outFile = a.out ?? path.join(root, counts ? 'bench/RESULTS-workers.md' : 'bench/RESULTS.md');
const pin = pinning(a.pin ?? (counts ? 'auto' : 'none'), counts ?? [Number(a.workers ?? 1)], os.cpus().length);

const quick = a.quick === true;
const rounds = Math.max(1, Math.min(9, Number(a.rounds ?? (quick ? 1 : 3))));
const params: Params = {
  warmup: Number(a.warmup ?? (quick ? 0.5 : 1)),
  duration: Number(a.duration ?? (quick ? 1 : 3)),
  // The gateway holds two sockets per UDP session; keep under the fd limit.
  idleSessions: Math.min(8000, Number(a.sessions ?? (quick ? 2000 : 4000))),
  maxNewSessions: 6000,
};
const only = a.only ? new Set(a.only.split(',')) : undefined;
const peers = a.peers ? new Set(a.peers.split(',')) : undefined;
const pool = counts ? matrixWorkloads(counts, Math.max(2, Math.min(250, Number(a.flows ?? 16)))) : WORKLOADS;
const workloads = pool
  .filter((w) => !only || only.has(w.id))
  .map((w) => ({ ...w, targets: w.targets.filter((t) => !peers || peers.has(t.peer) || peers.has(t.key)) }))
  .filter((w) => w.targets.length > 0);
if (workloads.length === 0) throw new Error(`no workload selected; known: ${(counts ? MATRIX_IDS : WORKLOADS.map((w) => w.id)).join(', ')}`);

const runCount = workloads.reduce((s, w) => s + w.targets.length, 0) * rounds;
/** Generous per-run bound (start-up, warm-up, measuring, drain, stop); the whole run gets this many. */
const PER_RUN_MS = (params.warmup + params.duration + 25) * 1000;
const TOTAL_MS = runCount * PER_RUN_MS + 120_000;
const watchdog = guard(TOTAL_MS, 'bench');

// ---- build the C parts ----

function toolVersions(): Record<string, string> {
  const v = (cmd: string, args: string[], re: RegExp) => {
    const r = spawnSync(cmd, args, { encoding: 'utf8' });
    if (r.error) return 'not installed';
    const m = re.exec(`${r.stdout}${r.stderr}`);
    return m ? m[1]! : 'unknown';
  };
  return {
    nginx: v('nginx', ['-v'], /nginx\/(\S+)/),
    haproxy: v('haproxy', ['-v'], /version (\S+)/),
    socat: v('socat', ['-V'], /socat version (\S+)/),
    cc: v('cc', ['--version'], /^(.*)$/m),
    uWS: uwsStatus(),
  };
}

/** Which peers can run here; the others are skipped with a reason. */
function missingPeers(): Map<Peer, string> {
  const miss = new Map<Peer, string>();
  const has = (cmd: string, args: string[]) => !spawnSync(cmd, args).error;
  if (!has('nginx', ['-v'])) miss.set('nginx', 'nginx not installed (bench/setup.sh)');
  else if (!fs.existsSync('/usr/lib/nginx/modules/ngx_stream_module.so')) miss.set('nginx', 'nginx stream module missing (libnginx-mod-stream; bench/setup.sh)');
  if (!has('haproxy', ['-v'])) miss.set('haproxy', 'haproxy not installed (bench/setup.sh)');
  if (!has('socat', ['-V'])) miss.set('socat', 'socat not installed (bench/setup.sh)');
  if (rawAddon() === undefined) miss.set('bare', 'the sockets addon is not built, or L7MP_TCP_FASTPATH=off (npm run build:native)');
  return miss;
}

async function main(): Promise<void> {
  for (const f of ['dist/gateway/src/main.js', 'dist/bench/ws-load.js', 'dist/bench/uws-echo.js']) {
    if (!fs.existsSync(path.join(root, f))) throw new Error(`${f} is missing: run "npm run build" first`);
  }
  const loadStart = os.loadavg();
  const bin = compileBins(root);
  const missing = missingPeers();
  for (const [p, why] of missing) process.stdout.write(`skipping ${p}: ${why}\n`);
  const lifetime = Math.ceil(TOTAL_MS / 1000);
  const udpEcho = await startEcho(bin, 'udp_echo', lifetime, pin.loadCpus);
  const tcpEcho = await startEcho(bin, 'tcp_echo', lifetime, pin.loadCpus);
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'l7mp-bench-'));
  // Config files go with the run, however it ends (signal, watchdog, error).
  process.on('exit', () => fs.rmSync(tmp, { recursive: true, force: true }));
  const env: Env = { root, tmp, udpEcho: udpEcho.port, tcpEcho: tcpEcho.port, echoPids: [udpEcho.proc.child.pid!, tcpEcho.proc.child.pid!], lifetime, workers: Math.max(1, Math.min(64, Number(a.workers ?? 1))),
    proxyCpus: pin.proxyCpus, loadCpus: pin.loadCpus };
  process.stdout.write(`${pin.text}\n`);
  process.stdout.write(`${runCount} runs (${rounds} round${rounds > 1 ? 's' : ''}, ${params.warmup} s warm-up + ${params.duration} s each); echo servers udp:${udpEcho.port} tcp:${tcpEcho.port}\n`);
  if (loadStart[0]! > os.cpus().length / 2) process.stdout.write(`note: load average ${loadStart.map((x) => x.toFixed(2)).join(' / ')} on ${os.cpus().length} cores: other work is running, expect noise\n`);

  const runs: RunRecord[] = [];
  let order = 0;
  for (let round = 1; round <= rounds; round++) {
    for (const w of workloads) {
      // Alternate: forward in odd rounds, reversed in even ones.
      const ts = round % 2 === 1 ? w.targets : [...w.targets].reverse();
      for (const t of ts) {
        order++;
        const rec: RunRecord = { round, order, workload: w.id, target: t.key };
        if (missing.has(t.peer)) {
          rec.error = `skipped: ${missing.get(t.peer)}`;
        } else {
          try {
            rec.sample = await w.run(t, env, params);
          } catch (err) {
            rec.error = (err as Error).message.split('\n')[0]!.slice(0, 300);
          }
        }
        runs.push(rec);
        const s = rec.sample;
        process.stdout.write(`[${String(order).padStart(3)}/${runCount}] r${round} ${w.id.padEnd(16)} ${t.key.padEnd(10)} ${s ? `${fmt(s.value, w.unit).padStart(11)} ${w.unit}${s.p50 !== undefined && s.p50 >= 0 ? `  p50 ${Math.round(s.p50)} µs p99 ${Math.round(s.p99 ?? NaN)} µs` : ''}${Number.isFinite(s.proxyCpu) ? `  proxy CPU ${Math.round(s.proxyCpu * 100)} %` : ''}${s.note ? `  (${s.note})` : ''}` : rec.error}\n`);
      }
    }
  }
  await stop(udpEcho.proc);
  await stop(tcpEcho.proc);
  fs.rmSync(tmp, { recursive: true, force: true });

  if (counts) {
    process.stdout.write(`\n${matrixConsole(workloads, runs, counts)}\n\n${matrixGoals(workloads, runs, counts).join('\n')}\n`);
    const quiet = quietRuns(runs);
    process.stdout.write(`\nquiet runs only (${quiet.length} of ${runs.length}):\n${matrixConsole(workloads, quiet, counts)}\n\n${matrixGoals(workloads, quiet, counts).join('\n')}\n`);
  } else {
    process.stdout.write(`\n${consoleTable(workloads, runs)}\n\n`);
    for (const g of [...goals(workloads, runs), ...goals17(workloads, runs)]) process.stdout.write(`${goalLine(g)}\n`);
  }
  const args = process.argv.slice(2).join(' ');
  const command = process.env.npm_lifecycle_event === 'bench'
    ? `npm run bench${args ? ` -- ${args}` : ''}`
    : `node dist/bench/run.js${args ? ` ${args}` : ''}`;
  if (outFile !== '-' && counts) {
    const machineInfo = machine(loadStart, toolVersions());
    fs.writeFileSync(outFile, matrixMarkdown(workloads, runs, counts, {
      command,
      machine: machineInfo,
      setup: [
        `Worker counts ${counts.join(', ')}: every count of the gateway (admin.workers; 1 = the single-process gateway) and of nginx (worker_processes; 1 = master_process off, one process; more = a master and N workers, each with its own reuseport listener) is a target of its own.`,
        `${rounds} round${rounds > 1 ? 's' : ''}; in each, every workload runs against every target, forward order in odd rounds and reversed in even ones. Figures are medians over rounds.`,
        `Each run: a fresh proxy, ${params.warmup} s warm-up, ${params.duration} s measured. Load generators: bench/load/udp_load.c (ping-pong over ${Math.max(2, Math.min(250, Number(a.flows ?? 16)))} flows from 127.0.0.2... and new sessions), tcp_load.c (connection rate), bench/ws-load.ts (WebSocket); C echo servers (bench/echo), one process each for the whole run.`,
        `CPU: ${pin.text}.`,
        'WebSocket → UDP has no nginx equivalent: the gateway with 1 and N workers only, next to a bare uWS echo.',
      ],
    }));
    process.stdout.write(`\nwritten to ${path.relative(process.cwd(), outFile) || outFile}\n`);
  } else if (outFile !== '-') {
    fs.writeFileSync(outFile, markdown(workloads, runs, {
      command,
      machine: machine(loadStart, toolVersions()),
      setup: [
        `${rounds} round${rounds > 1 ? 's' : ''}; in each, every workload runs against every target, forward order in odd rounds and reversed in even ones. Figures are medians over rounds.`,
        `Each run: a fresh proxy process, ${params.warmup} s warm-up, ${params.duration} s measured. Load generators are C (bench/load/*.c, cc -O2, epoll + recvmmsg/sendmmsg) except WebSocket (bench/ws-load.ts, raw frames on a TCP socket).`,
        'Echo servers: C (bench/echo/udp_echo.c with recvmmsg/sendmmsg, bench/echo/tcp_echo.c with epoll), one process each for the whole run; "direct" is the load generator against them with no proxy.',
        'Peers: gateway = node dist/gateway/src/main.js, one JavaScript thread; nginx stream with master_process off (one process = one worker); haproxy nbthread 1, mode tcp (no UDP in haproxy 2.6); socat forking per connection / per UDP peer (skipped for session setup and idle memory, where it would fork thousands of processes); bare (session setup only) = node dist/bench/bare-proxy.js, the gateway\'s native primitives with the least JavaScript a session decided in JavaScript can have: the floor under a session decided in JavaScript (bench/README.md); forwarder (TCP connection rate) = node dist/bench/bare-proxy.js tcp-forwarder, the addon\'s Forwarder alone in a Node process, no JavaScript per connection: what a compiled listener can reach (docs/compiled-listeners.md); cref (TCP connection rate and ping-pong) = bench/cref/tcp_cref.c, a C proxy making the raw TCP path\'s system calls with no Node: the machine\'s floor for those calls.',
        `UDP sessions: gateway idle_timeout and nginx proxy_timeout 60 s; the session-rate run stops after ${params.maxNewSessions} new sessions; the idle-memory run opens ${params.idleSessions} sessions after as many warm-up ones and 3 s of ping-pong (the young generation's one-time growth is not a per-session cost), from source addresses 127.0.0.2-251.`,
        `All traffic is on 127.0.0.0/8. CPU: ${pin.text}; on a busy machine single runs differ by up to several times: compare the proxy CPU and per-CPU-second columns.`,
      ],
    }));
    process.stdout.write(`\nwritten to ${path.relative(process.cwd(), outFile) || outFile}\n`);
  }
  clearTimeout(watchdog);
}

main().then(() => process.exit(0), (err: Error) => {
  process.stderr.write(`bench: ${err.message}\n`);
  killAll();
  process.exit(1);
});
