// The worker matrix (issue 16, `bench/run.ts --workers-matrix 1,2`): the
// gateway with admin.workers 1 and N next to nginx stream with
// worker_processes 1 and N (reuseport listeners), in one run, on the
// workloads a multi-worker data plane should scale: multi-flow UDP
// ping-pong, UDP session setup, TCP connection rate and WebSocket -> UDP
// (gateway only: nginx has no WebSocket-to-UDP route). On session setup the
// `bare` peer runs with 1 and N processes too: the least a session decided
// in JavaScript costs, at each count, so that a gap to nginx splits into
// what the session machinery costs and what N event loops of Node cost.
// Each worker count is its own target, so the runner's alternating order and
// medians apply to the counts as to the peers.

import type { Carriage, Env } from './peers.js';
import { bin, simple, T, tcpConnrate, timing, udpSessions, wsRate, type Params, type Target, type Workload } from './workloads.js';

/** Target key of `peer` with `n` workers, e.g. gateway-2w. */
export const wkey = (peer: string, n: number) => `${peer}-${n}w`;

function targets(counts: number[], carriage: Carriage, withNginx: boolean, withBare = false): Target[] {
  const ts: Target[] = [T('direct', carriage, 'direct', carriage === 'ws-uws' ? 'direct (bare uWS echo, no UDP hop)' : 'direct (no proxy)')];
  for (const n of counts) ts.push(T('gateway', carriage, wkey('gateway', n), `gateway, ${n} worker${n > 1 ? 's' : ''}`, n));
  if (withNginx) for (const n of counts) ts.push(T('nginx', carriage, wkey('nginx', n), `nginx, worker_processes ${n}`, n));
  if (withBare) for (const n of counts) ts.push(T('bare', carriage, wkey('bare', n), `bare, ${n} process${n > 1 ? 'es' : ''}`, n));
  return ts;
}

/**
 * UDP ping-pong over `flows` client sockets from 127.0.0.2, .3, ..., each
 * with 4 datagrams in flight. One socket is one 4-tuple, which SO_REUSEPORT
 * keeps on one worker, so the single-socket udp-pingpong cannot scale for
 * any proxy; with 16 flows the kernel's hash spreads them (unevenly: the
 * split is a property of the 4-tuples and the listener port, the same for
 * every proxy on a given port, but the port changes per run).
 */
function udpPingpongFlows(flows: number): Workload {
  return {
    id: 'udp-pingpong-flows',
    title: `UDP 64 B ping-pong, ${flows} flows × 4 in flight`,
    unit: 'datagrams/s',
    higherIsBetter: true,
    targets: [],
    run: (t: Target, env: Env, p: Params) => simple(t, env, p, bin(env, 'udp_load'), (port) => [
      '--mode', 'pingpong', '--flows', String(flows), '--port', String(port), '--size', '64', '--window', String(4 * flows), ...timing(p),
    ]),
  };
}

/**
 * New UDP sessions, with a longer warm-up than the peer comparison's (0.3 s or
 * 6000 sessions there): every worker process warms its own JIT and grows its
 * own V8 young generation, each on its share of the sessions, so the warm-up
 * is per worker: 8000 sessions for each of a target's workers (at most 1 s
 * each), then 8000 are measured. Measured (flock, alternating, 2 rounds):
 * 0.3 s / 6000 sessions gave 2 workers 111-120 CPU-µs per session against
 * 50-60 for one worker; 8000-9000 warm-up sessions gave both 52-79. With
 * 8000 for the pair (4000 each) the 2 workers still spent 63-68 µs per
 * session (39-43 of it user time) where one spent 43-48 (15-20); 12000 for
 * the pair brought them to 46.5 (28 user), one worker's figure
 * (/proc/<pid>/stat over the process tree, 2026-12-06). Sessions stay open
 * for their idle timeout: with 2 workers 24000, i.e. 12000 per process,
 * within the gateway's 20000 descriptors and nginx's 40000 connections per
 * worker (two per session).
 */
const WARM_SESSIONS_PER_WORKER = 8000;
const udpSessionsWarm: Workload = {
  ...udpSessions,
  run: (t: Target, env: Env, p: Params) => {
    const n = t.workers ?? 1;
    return simple(t, env, p, bin(env, 'udp_load'), (port) => [
      '--mode', 'sessions', '--port', String(port), '--concurrency', '16', '--max', '8000',
      '--warmup-max', String(WARM_SESSIONS_PER_WORKER * n), ...timing({ ...p, warmup: p.warmup * n }),
    ]);
  },
};

export const MATRIX_IDS = ['udp-pingpong-flows', 'udp-sessions', 'tcp-connrate', 'ws-rate'];

/** The matrix workloads for worker counts `counts` (the first is the base of the scaling ratios). */
export function matrixWorkloads(counts: number[], flows: number): Workload[] {
  return [
    { ...udpPingpongFlows(flows), targets: targets(counts, 'udp', true) },
    { ...udpSessionsWarm, targets: targets(counts, 'udp', true, true) },
    { ...tcpConnrate, targets: targets(counts, 'tcp', true, true) },
    { ...wsRate, title: 'WebSocket → UDP 64 B messages, 8 connections × 16 in flight (engine uws)', targets: targets(counts, 'ws-uws', false) },
  ];
}

/** Which CPUs proxies and load run on: `auto` pins apart only where every worker and the load each get a core. */
export function pinning(spec: string, counts: number[], cores: number): { proxyCpus?: string; loadCpus?: string; text: string } {
  if (spec === 'none') return { text: 'no pinning: proxies, load generators and echo servers share every core' };
  if (spec === 'auto') {
    const n = Math.max(...counts);
    if (cores < n + 2) return { text: `no pinning: ${cores} cores cannot hold ${n} workers and the load generator and echo servers apart (--pin auto needs ${n + 2})` };
    const proxyCpus = `0-${n - 1}`;
    const loadCpus = `${n}-${cores - 1}`;
    return { proxyCpus, loadCpus, text: `pinned apart (taskset): proxies on CPUs ${proxyCpus}, load generators and echo servers on ${loadCpus}` };
  }
  // load:LIST[,proxy:LIST] (taskset lists use commas too, so ';' separates the parts)
  const out: { proxyCpus?: string; loadCpus?: string } = {};
  for (const part of spec.split(';')) {
    const m = /^(load|proxy):([0-9,-]+)$/.exec(part);
    if (!m) throw new Error(`--pin: want auto, none or load:CPUS[;proxy:CPUS], got ${spec}`);
    if (m[1] === 'load') out.loadCpus = m[2]; else out.proxyCpus = m[2];
  }
  return { ...out, text: `pinned (taskset): load generators and echo servers on ${out.loadCpus ?? 'any CPU'}, proxies on ${out.proxyCpus ?? 'any CPU'}` };
}

export const workerCountsOf = (spec: string): number[] => {
  const counts = spec.split(',').map(Number);
  if (counts.length < 2 || counts.some((n) => !Number.isInteger(n) || n < 1 || n > 64)) throw new Error(`--workers-matrix: want two or more counts 1..64 such as 1,2; got ${spec}`);
  return counts;
};
