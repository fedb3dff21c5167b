// The benchmark workloads: what load generator runs against which targets,
// and how one measured run turns into one sample. Each run starts a fresh
// proxy, waits until it forwards, runs a bounded load generator, samples the
// proxy's CPU time over exactly the measured interval (between the
// generator's "MEASURE" line and its result line), and stops the proxy.

import path from 'node:path';
import { machineCpu, start, stop, treeCpu, treeCpuEach, treeRss, treeSwitches, waitLine, type Proc } from './procs.js';
import { startPeer, type Carriage, type Env, type Peer, type Running } from './peers.js';

export interface Target {
  peer: Peer;
  carriage: Carriage;
  /** Short column name. */
  key: string;
  label: string;
  /** Data-plane workers for this target (the worker matrix); else env.workers. */
  workers?: number;
}

export interface Sample {
  value: number;
  p50?: number;
  p99?: number;
  /** Cores the proxy used while measuring (100 % = 1). */
  proxyCpu: number;
  loadCpu: number;
  /** Cores each process of the proxy used while measuring, the started process first (main / master, then workers). */
  procCpu?: number[];
  /** Cores the whole machine was busy while measuring (every process, this run's and others'). */
  machineCpu?: number;
  /** Cores the echo servers used while measuring. */
  echoCpu?: number;
  /** The proxy's context switches per second while measuring: voluntary (it waited), involuntary (it was preempted). */
  switches?: { vol: number; invol: number };
  note?: string;
}

export interface Params {
  warmup: number;
  duration: number;
  idleSessions: number;
  maxNewSessions: number;
}

export interface Workload {
  id: string;
  title: string;
  unit: string;
  /** false: lower is better (memory). */
  higherIsBetter: boolean;
  targets: Target[];
  run(t: Target, env: Env, p: Params): Promise<Sample>;
}

export const T = (peer: Peer, carriage: Carriage, key: string = peer, label: string = peer, workers?: number): Target => ({ peer, carriage, key, label, workers });

/** The floor under a JavaScript-decided session (bench/bare-proxy.ts): session-setup workloads only. */
const bare = (c: 'udp' | 'tcp'): Target => T('bare', c, 'bare', 'bare (least JavaScript)');
/** The floor for the raw TCP path's system calls without Node (bench/cref/tcp_cref.c): small-message TCP workloads only (it never buffers). */
const cref: Target = T('cref', 'tcp', 'cref', 'cref (C, no Node)');
/** The addon's Forwarder in Node's loop, no JavaScript per connection: what a compiled listener could reach (docs/compiled-listeners.md). */
const forwarder: Target = T('forwarder', 'tcp', 'forwarder', 'forwarder (C pairs in Node)');

/** The run's environment for target t (its own worker count, if it has one). */
export function envFor(t: Target, env: Env): Env {
  return t.workers === undefined ? env : { ...env, workers: t.workers };
}

export function bin(env: Env, name: string): string {
  return path.join(env.root, 'dist/bench/bin', name);
}

interface LoadJson {
  rate: number;
  p50_us?: number;
  p99_us?: number;
  load_cpu?: number;
  lost?: number;
  errors?: number | string[];
  failed?: number;
  error?: string;
}

/** Run one load generator against a running target; CPU sampled over its measured interval. */
type Measured = Pick<Sample, 'proxyCpu' | 'procCpu' | 'machineCpu' | 'echoCpu' | 'switches'> & { json: LoadJson };

async function measure(gen: Proc, target: Running, deadlineMs: number, echoPids: number[] = []): Promise<Measured> {
  const echoCpu = () => echoPids.reduce((sum, p) => sum + treeCpu(p), 0);
  const pid = target.proc?.child.pid;
  try {
    await waitLine(gen, /MEASURE/, deadlineMs);
    const t0 = performance.now();
    const c0 = treeCpu(pid);
    const e0 = treeCpuEach(pid);
    const s0 = treeSwitches(pid);
    const mc0 = machineCpu();
    const ec0 = echoCpu();
    const m = await waitLine(gen, /^\{.*\}$/m, deadlineMs);
    const secs = (performance.now() - t0) / 1000;
    const c1 = treeCpu(pid);
    const e1 = treeCpuEach(pid);
    const s1 = treeSwitches(pid);
    const mc1 = machineCpu();
    const ec1 = echoCpu();
    const json = JSON.parse(m[0]) as LoadJson;
    if (json.error) throw new Error(`${gen.what}: ${json.error}`);
    // Processes alive at both ends, in tree order (root first): a worker restarted meanwhile is left out.
    const procCpu = [...e1].filter(([p]) => e0.has(p)).map(([p, c]) => (c - e0.get(p)!) / secs);
    return {
      json, procCpu,
      proxyCpu: pid === undefined ? NaN : (c1 - c0) / secs,
      machineCpu: (mc1.busy - mc0.busy) / secs,
      echoCpu: (ec1 - ec0) / secs,
      switches: { vol: (s1.vol - s0.vol) / secs, invol: (s1.invol - s0.invol) / secs },
    };
  } finally {
    await stop(gen, 500); // also on a timeout: no generator outlives its run
  }
}

function note(j: LoadJson): string | undefined {
  const parts: string[] = [];
  if (j.lost) parts.push(`${j.lost} lost`);
  if (typeof j.errors === 'number' && j.errors) parts.push(`${j.errors} errors`);
  if (Array.isArray(j.errors) && j.errors.length) parts.push(j.errors.join('; '));
  if (j.failed) parts.push(`${j.failed} failed`);
  return parts.length ? parts.join(', ') : undefined;
}

/** The common shape: start target, run generator `args(port)`, stop target. */
export async function simple(t: Target, env: Env, p: Params, cmd: string, args: (port: number) => string[]): Promise<Sample> {
  const target = await startPeer(t.peer, t.carriage, envFor(t, env));
  try {
    const deadline = (p.warmup + p.duration + 30) * 1000;
    const gen = start(cmd, args(target.port), `${path.basename(cmd)} → ${t.key}`, { cpus: env.loadCpus });
    const { json, ...cpu } = await measure(gen, target, deadline, env.echoPids);
    const us = (x: number | undefined) => (x !== undefined && x >= 0 ? x : undefined); // -1: not measured (bulk)
    return { value: json.rate, p50: us(json.p50_us), p99: us(json.p99_us), ...cpu, loadCpu: json.load_cpu ?? NaN, note: note(json) };
  } finally {
    if (target.proc) await stop(target.proc);
  }
}

export const timing = (p: Params, extra = 30) => ['--warmup', String(p.warmup), '--duration', String(p.duration), '--deadline', String(Math.ceil(p.warmup + p.duration + extra))];

export const udpPingpong: Workload = {
  id: 'udp-pingpong',
  title: 'UDP 64 B ping-pong, 16 in flight',
  unit: 'datagrams/s',
  higherIsBetter: true,
  targets: [T('direct', 'udp'), T('gateway', 'udp'), T('nginx', 'udp'), T('socat', 'udp')],
  run: (t, env, p) => simple(t, env, p, bin(env, 'udp_load'), (port) => ['--mode', 'pingpong', '--port', String(port), '--size', '64', '--window', '16', ...timing(p)]),
};

export const udpSessions: Workload = {
  id: 'udp-sessions',
  title: 'UDP session setup (new source port, one echo)',
  unit: 'sessions/s',
  higherIsBetter: true,
  // socat forks a process per UDP peer: thousands of forks would measure fork(), and load a shared machine.
  targets: [T('direct', 'udp'), T('gateway', 'udp'), bare('udp'), T('nginx', 'udp')],
  run: (t, env, p) => simple(t, env, p, bin(env, 'udp_load'), (port) => [
    '--mode', 'sessions', '--port', String(port), '--concurrency', '16', '--max', String(p.maxNewSessions), '--timeout-ms', '1000',
    ...timing({ ...p, warmup: Math.min(p.warmup, 0.3) }),
  ]),
};

/**
 * Memory per idle UDP session, as the marginal cost of one more session:
 * warm the proxy up with as many sessions as will be measured, then 3 s of
 * ping-pong through it, read its RSS, open N more sessions that each exchange
 * one datagram and then stay idle, wait a second, read RSS again. (RSS after -
 * before) / N is the figure; for the gateway the V8 heap delta from its
 * Prometheus metrics is noted too. Why so much warm-up: the first few thousand
 * sessions grow V8's young generation to its 32 MiB maximum and the ping-pong
 * touches all of it. Measured after 200 warm-up sessions, that one-time growth
 * was more than half of the figure (4 KiB of 7 per session at 4000 sessions),
 * and it does not grow with the session count.
 */
const udpIdleMemory: Workload = {
  id: 'udp-idle-memory',
  title: 'Memory per idle UDP session (RSS delta / sessions)',
  unit: 'bytes/session',
  higherIsBetter: false,
  targets: [T('gateway', 'udp'), T('nginx', 'udp')],
  async run(t, env, p) {
    const target = await startPeer(t.peer, t.carriage, env, { metrics: t.peer === 'gateway' });
    const gens: Proc[] = [];
    try {
      const pid = target.proc!.child.pid;
      const open = async (n: number, what: string) => {
        const g = start(bin(env, 'udp_load'), ['--mode', 'sessions', '--keep', '1', '--port', String(target.port), '--concurrency', '32',
          '--max', String(n), '--hold', '60', '--deadline', '90', '--timeout-ms', '2000'], what, { stdin: 'pipe' });
        gens.push(g);
        const m = await waitLine(g, /READY (\d+)/, 60_000);
        return Number(m[1]);
      };
      await open(p.idleSessions, 'udp_load warm-up');
      const churn = start(bin(env, 'udp_load'), ['--mode', 'pingpong', '--port', String(target.port), '--size', '64', '--window', '16',
        '--warmup', '0', '--duration', '3', '--deadline', '30'], 'udp_load churn');
      try {
        await waitLine(churn, /^\{.*\}$/m, 40_000);
      } finally {
        await stop(churn, 500);
      }
      await new Promise((r) => setTimeout(r, 500));
      const heap0 = await heapUsed(target);
      const rss0 = treeRss(pid);
      const c0 = treeCpu(pid);
      const n = await open(p.idleSessions, 'udp_load idle');
      await new Promise((r) => setTimeout(r, 1000));
      const rss1 = treeRss(pid);
      const heap1 = await heapUsed(target);
      const cpu = treeCpu(pid) - c0;
      const per = (rss1 - rss0) / n;
      const heapNote = Number.isFinite(heap0) && Number.isFinite(heap1) ? `; V8 heap used ${Math.round((heap1 - heap0) / n)} B/session` : '';
      return { value: per, proxyCpu: NaN, loadCpu: NaN, note: `${n} sessions, RSS ${mib(rss0)} → ${mib(rss1)} MiB, ${cpu.toFixed(2)} CPU-s to set up${heapNote}` };
    } finally {
      for (const g of gens) await stop(g, 500);
      if (target.proc) await stop(target.proc);
    }
  },
};

const mib = (b: number) => (b / 1048576).toFixed(1);

/** nodejs_heap_size_used_bytes from the gateway's Prometheus listener, or NaN. */
async function heapUsed(target: Running): Promise<number> {
  if (target.metricsPort === undefined) return NaN;
  try {
    const res = await fetch(`http://127.0.0.1:${target.metricsPort}/metrics`, { signal: AbortSignal.timeout(3000) });
    const m = /^nodejs_heap_size_used_bytes (\S+)$/m.exec(await res.text());
    return m ? Number(m[1]) : NaN;
  } catch {
    return NaN;
  }
}

const tcpPeers = (): Target[] => [T('direct', 'tcp'), T('gateway', 'tcp'), T('nginx', 'tcp'), T('haproxy', 'tcp'), T('socat', 'tcp')];

const tcpPingpong: Workload = {
  id: 'tcp-pingpong',
  title: 'TCP 64 B ping-pong, 16 connections × 1 in flight',
  unit: 'messages/s',
  higherIsBetter: true,
  targets: [...tcpPeers(), cref],
  run: (t, env, p) => simple(t, env, p, bin(env, 'tcp_load'), (port) => ['--mode', 'pingpong', '--port', String(port), '--connections', '16', '--window', '1', '--size', '64', ...timing(p)]),
};

const tcpBulk: Workload = {
  id: 'tcp-bulk',
  title: 'TCP bulk echo, 2 connections, 64 KiB writes',
  unit: 'MB/s',
  higherIsBetter: true,
  targets: tcpPeers(),
  run: (t, env, p) => simple(t, env, p, bin(env, 'tcp_load'), (port) => ['--mode', 'bulk', '--port', String(port), '--connections', '2', '--chunk', '65536', ...timing(p)]),
};

export const tcpConnrate: Workload = {
  id: 'tcp-connrate',
  title: 'TCP connection rate (connect, 64 B echo, close), 16 concurrent',
  unit: 'connections/s',
  higherIsBetter: true,
  targets: [T('direct', 'tcp'), T('gateway', 'tcp'), bare('tcp'), forwarder, cref, T('nginx', 'tcp'), T('haproxy', 'tcp'), T('socat', 'tcp')],
  run: (t, env, p) => simple(t, env, p, bin(env, 'tcp_load'), (port) => ['--mode', 'connrate', '--port', String(port), '--concurrency', '16', '--size', '64', ...timing(p)]),
};

export const wsRate: Workload = {
  id: 'ws-rate',
  title: 'WebSocket → UDP 64 B messages, 8 connections × 16 in flight',
  unit: 'messages/s',
  higherIsBetter: true,
  targets: [
    T('direct', 'ws-uws', 'direct', 'direct (bare uWS echo, no UDP hop)'),
    T('gateway', 'ws-uws', 'gateway', 'gateway (engine uws)'),
    T('gateway', 'ws-ws', 'gateway-ws', 'gateway, engine ws (the `ws` library)'),
  ],
  run: (t, env, p) => simple(t, env, p, process.execPath, (port) => [
    path.join(env.root, 'dist/bench/ws-load.js'), '--url', `ws://127.0.0.1:${port}/bench`, '--connections', '8', '--window', '16', '--size', '64',
    '--warmup', String(p.warmup), '--duration', String(p.duration), '--timeout', String(Math.ceil(p.warmup + p.duration + 25)),
  ]),
};

export const WORKLOADS: Workload[] = [udpPingpong, udpSessions, udpIdleMemory, tcpPingpong, tcpBulk, tcpConnrate, wsRate];
