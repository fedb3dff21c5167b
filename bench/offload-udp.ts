// Packets per second of small UDP datagrams through the gateway, with and
// without the kernel offload, in one run, in the namespace topology of the
// offload tests (client ns -> gateway ns -> server ns over veths):
//
//   udp_blast send (client ns) --UDP--> gateway listener --UDP--> udp_blast sink (server ns)
//
// Each run starts a fresh gateway process (offload `disable` or `init`),
// pings once through it so that both directions of the session exist, waits
// (offload runs) until the API shows the session offloaded, then sends
// SIZE-byte datagrams as fast as one sendmmsg loop can for DURATION seconds
// (at most MAX packets). The rate is what the sink received per second over
// the send window. Runs alternate between the modes (user space; user space
// on node:dgram when the sockets addon makes batching the default; kernel
// offload); the medians are compared.
//
//   node dist/bench/offload-udp.js [--duration 3] [--runs 3] [--size 64]
//        [--max 5000000] [--pin] [--rps] [--out bench/RESULTS-offload.md | -]
// --pin: sender on CPU 0, gateway and sink on CPU 1 (taskset).
// --rps: the gateway veths' receive processing on CPU 1 (RPS), off the sender's core.
// Needs root, the bpf addon and object (npm run build:native), cc, ip, ethtool.

import { spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { createTopology, inNs, killGroup, spawnInNs, topologyUnavailable, type Topology } from '../conformance/netns.js';
import { loadBpf } from '../gateway/src/fastpath/offload/native.js';
import { udpBatchAddon } from '../gateway/src/protocols/udp/batch.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const { values: opt } = parseArgs({
  options: {
    duration: { type: 'string', default: '3' },
    runs: { type: 'string', default: '3' },
    size: { type: 'string', default: '64' },
    max: { type: 'string', default: '5000000' },
    out: { type: 'string', default: path.join(root, 'bench', 'RESULTS-offload.md') },
    pin: { type: 'boolean', default: false },
    rps: { type: 'boolean', default: false },
  },
});
const DURATION = Math.min(Number(opt.duration), 10);
const RUNS = Math.min(Number(opt.runs), 5);
const SIZE = Number(opt.size);
const MAX = Math.min(Number(opt.max), 20_000_000);
/** --pin: sender (and the softirq work it triggers) on CPU 0; gateway and sink on CPU 1. */
const pinned = (cpu: number, cmd: string, args: string[]): [string, string[]] => (opt.pin ? ['taskset', ['-c', String(cpu), cmd, ...args]] : [cmd, args]);

class Lines {
  readonly all: string[] = [];
  constructor(readonly p: ChildProcess) {
    readline.createInterface({ input: p.stdout! }).on('line', (l) => this.all.push(l));
    p.stderr!.on('data', (d: Buffer) => this.all.push(`stderr: ${d.toString().trim()}`));
  }
  async waitFor(pred: (l: string) => boolean, ms: number, what: string): Promise<string> {
    const end = Date.now() + ms;
    for (;;) {
      const hit = this.all.find(pred);
      if (hit !== undefined) return hit;
      if (Date.now() > end || this.p.exitCode !== null) throw new Error(`timed out waiting for ${what}: ${this.all.slice(-5).join(' | ')}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  }
}

async function until<T>(fn: () => Promise<T | undefined>, ms: number, what: string): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await fn().catch(() => undefined);
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

type Mode = 'user space' | 'user space, node:dgram' | 'kernel offload';
interface Run { mode: Mode; sent: number; received: number; seconds: number; pps: number; load: string; gwCpu: number }

/** CPU seconds (user + system) a process used so far, from /proc/PID/stat. */
function cpuSeconds(pid: number | undefined): number {
  if (pid === undefined) return 0;
  try {
    const f = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = f.slice(f.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) / 100; // utime, stime in clock ticks (USER_HZ = 100)
  } catch {
    return 0;
  }
}

async function oneRun(topo: Topology, blast: string, sink: Lines, mode: Mode, port: number, dir: string): Promise<Run> {
  const base = `http://${topo.addr.gwHost}:1234`;
  const cfg = {
    admin: { log_level: 'warn', offload: mode === 'kernel offload' ? 'init' : 'disable', offload_ifs: [topo.ifs.gwClient, topo.ifs.gwServer], metrics: { enabled: false }, limits: { api_rate: 0 } },
    listeners: [
      { name: 'controller-listener', spec: { protocol: 'HTTP', address: topo.addr.gwHost, port: 1234 }, rules: [{ action: { route: { destination: { name: 'controller', spec: { protocol: 'L7mpController' } } } } }] },
      { name: 'udp', spec: { protocol: 'UDP', address: topo.addr.gwClient, port: 5000, idle_timeout: 60 }, rules: [{ action: { route: { destination: { name: 'server', spec: { protocol: 'UDP', port: 6000 }, endpoints: [{ spec: { address: topo.addr.server } }] } } } }] },
    ],
  };
  const file = path.join(dir, `gw-${port}.json`);
  fs.writeFileSync(file, JSON.stringify(cfg));
  // 'user space, node:dgram': the gateway without its recvmmsg/sendmmsg batching (udp-batch.ts).
  const env = { ...process.env, L7MP_UDP_BATCH: mode === 'user space, node:dgram' ? 'off' : 'on' };
  const gw = new Lines(spawnInNs(topo.ns.gateway, ...pinned(1, process.execPath, [path.join(root, 'dist/gateway/src/main.js'), '-c', file]), env));
  let sender: Lines | undefined;
  try {
    await until(async () => ((await fetch(`${base}/api/v1/admin`)).ok ? true : undefined), 30_000, 'gateway API');
    // Only now: the sender pings for 5 s at most.
    sender = new Lines(spawnInNs(topo.ns.client, ...pinned(0, blast, ['send', topo.addr.client, String(port), topo.addr.gwClient, '5000', String(SIZE), String(DURATION), String(MAX)])));
    await sender.waitFor((l) => l === 'ready', 30_000, 'sender ready');
    if (mode === 'kernel offload') {
      await until(async () => {
        const s = (await (await fetch(`${base}/api/v1/sessions`)).json()) as Array<{ name: string; offloaded?: boolean }>;
        return s.find((x) => x.name.includes(`:${port}-`) && x.offloaded === true) ? true : undefined;
      }, 5000, 'session offloaded');
    }
    const load = os.loadavg().map((x) => x.toFixed(2)).join(' ');
    // ip netns exec (and taskset) exec the command: the child's pid is the gateway's.
    const cpu0 = cpuSeconds(gw.p.pid);
    sender.p.stdin!.write('go\n');
    const sent = Number((await sender.waitFor((l) => l.startsWith('sent '), (DURATION + 10) * 1000, 'sender done')).split(' ')[1]);
    const start = Number(sender.all.find((l) => l.startsWith('start '))!.split(' ')[1]);
    const stop = Number(sender.all.find((l) => l.startsWith('stop '))!.split(' ')[1]);
    const gwCpu = cpuSeconds(gw.p.pid) - cpu0;
    // Let the sink report what was still in flight.
    await sink.waitFor((l) => Number(l.split(' ')[0]) > stop + 200, 2000, 'sink sample after the window');
    const samples = sink.all.map((l) => l.split(' ').map(Number)).filter((x) => x.length === 2 && !Number.isNaN(x[0]));
    const before = [...samples].reverse().find((x) => x[0]! <= start) ?? samples[0]!;
    const after = samples.find((x) => x[0]! >= stop + 150) ?? samples[samples.length - 1]!;
    const received = after[1]! - before[1]!;
    const seconds = (stop - start) / 1000;
    return { mode, sent, received, seconds, pps: received / seconds, load, gwCpu: gwCpu / seconds };
  } finally {
    if (sender) {
      sender.p.stdin?.end();
      killGroup(sender.p);
    }
    killGroup(gw.p);
    await until(async () => (gw.p.exitCode !== null || gw.p.signalCode !== null ? true : undefined), 5000, 'gateway exit').catch(() => undefined);
  }
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};

async function main(): Promise<void> {
  const why = topologyUnavailable() ?? (loadBpf().ok ? undefined : (loadBpf() as { reason: string }).reason);
  if (why) throw new Error(`cannot run: ${why}`);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'l7mp-bench-offload-'));
  const blast = path.join(dir, 'udp_blast');
  const cc = spawnSync('cc', ['-O2', '-Wall', '-o', blast, path.join(root, 'bench/offload/udp_blast.c')], { encoding: 'utf8' });
  if (cc.status !== 0) throw new Error(`cc failed: ${cc.stderr}`);
  const topo = createTopology();
  const cleanup = (): void => topo.destroy();
  process.on('SIGINT', () => { cleanup(); process.exit(130); });
  const runs: Run[] = [];
  // With the sockets addon the gateway's default UDP path is batched; node:dgram is measured too.
  const batched = udpBatchAddon() !== undefined;
  const modes: Mode[] = batched ? ['user space', 'user space, node:dgram', 'kernel offload'] : ['user space', 'kernel offload'];
  let sink: Lines | undefined;
  try {
    if (opt.rps) {
      // The gateway's receive processing (where the tc program runs) on CPU 1, as a NIC's
      // receive-side scaling would put it on a core other than the sender's.
      inNs(topo.ns.gateway, 'sh', ['-c', `echo 2 > /sys/class/net/${topo.ifs.gwClient}/queues/rx-0/rps_cpus && echo 2 > /sys/class/net/${topo.ifs.gwServer}/queues/rx-0/rps_cpus`]);
    }
    sink = new Lines(spawnInNs(topo.ns.server, ...pinned(1, blast, ['sink', topo.addr.server, '6000'])));
    await sink.waitFor((l) => l === 'ready', 30_000, 'sink ready');
    for (let i = 0; i < RUNS; i++) {
      for (const mode of modes) {
        const r = await oneRun(topo, blast, sink, mode, 7000 + runs.length, dir);
        console.log(`${r.mode}: sent ${r.sent} in ${r.seconds.toFixed(2)} s, received ${r.received} (${Math.round(r.pps)} pps), gateway CPU ${Math.round(r.gwCpu * 100)} %, load ${r.load}`);
        runs.push(r);
      }
    }
  } finally {
    if (sink) { sink.p.stdin?.end(); killGroup(sink.p); }
    cleanup();
    fs.rmSync(dir, { recursive: true, force: true });
  }
  const med = (m: Mode): number => median(runs.filter((r) => r.mode === m).map((r) => r.pps));
  const medCpu = (m: Mode): number => median(runs.filter((r) => r.mode === m).map((r) => r.gwCpu));
  const user = med('user space');
  const kernel = med('kernel offload');
  const dgram = batched ? med('user space, node:dgram') : user;
  const ratio = kernel / user;
  console.log(`median: user space ${Math.round(user)} pps${batched ? ` (node:dgram ${Math.round(dgram)})` : ''}, kernel offload ${Math.round(kernel)} pps, ratio ${ratio.toFixed(1)}x${batched ? ` (vs node:dgram ${(kernel / dgram).toFixed(1)}x)` : ''}`);
  if (opt.out === '-') return;
  const cpu = os.cpus()[0]?.model ?? 'unknown CPU';
  const fmt = (n: number): string => Math.round(n).toLocaleString('en-US');
  const row = (label: string, m: Mode): string => `| ${label} | ${fmt(med(m))} | ${Math.round(medCpu(m) * 100)} % |`;
  const md = `# UDP kernel offload: packets per second

Measured with \`node dist/bench/offload-udp.js --duration ${DURATION} --runs ${RUNS} --size ${SIZE}${opt.pin ? ' --pin' : ''}${opt.rps ? ' --rps' : ''}\`
(bench/offload-udp.ts) on ${new Date().toISOString().slice(0, 16).replace('T', ' ')} UTC, ${os.cpus().length} × ${cpu},
Linux ${os.release()}, Node ${process.version}.

Topology: client netns → veth → gateway netns (one gateway process) → veth → server netns.
\`udp_blast send\` (bench/offload/udp_blast.c, sendmmsg) in the client netns sends ${SIZE}-byte
UDP datagrams to the gateway's UDP listener as fast as it can for ${DURATION} s (at most
${MAX} packets); the gateway forwards them to \`udp_blast sink\` (recvmmsg) in the server netns,
which counts what arrives. Rate = datagrams received by the sink per second of the send window.
Each run starts a fresh gateway: \`offload: disable\` (user space) or \`offload: init\` (the
tc-bpf program on the gateway's two veths; the session is offloaded after one ping each way).
${batched ? 'User space is measured twice: the default path (the sockets addon\'s recvmmsg/sendmmsg batching, gateway/src/protocols/udp/batch.ts) and node:dgram (`L7MP_UDP_BATCH=off`). ' : ''}Runs alternate between the modes; checksum offloads are off on every veth (real checksums,
verified by the receiver). "Gateway CPU" is the gateway process's user + system time over the
send window (100 % = one core).

| gateway | packets/s (median of ${RUNS}) | gateway CPU |
|---|---:|---:|
${row('user space (default UDP path)', 'user space')}
${batched ? `${row('user space, node:dgram', 'user space, node:dgram')}\n` : ''}${row('kernel offload', 'kernel offload')}

**kernel offload / user space = ${ratio.toFixed(1)}×**${batched ? ` (and ${(kernel / dgram).toFixed(1)}× the node:dgram path)` : ''}; target ≥ 5×.

How to read it: the sender offers as much as it can in every mode. In user space the gateway
process is the bound: what it cannot read in time is dropped at its socket (and it gets only the
CPU share shown: on a busy machine, well under a core). With offload the
gateway process does nothing (about 1 % CPU: the REST API and timers) and every datagram the
sender managed to send arrived; the bound is the sender's core, which in this topology also
runs the whole kernel forwarding path (veth receive, the tc program, redirect, the sink's
socket) in softirq context. The offload rate is therefore a lower bound of the kernel path's
capacity, and on this 2-core machine, shared with other work (load averages below), both
figures move a lot with the load.

## Runs

| mode | sent | received | seconds | packets/s | gateway CPU | load average (1/5/15 min) |
|---|---:|---:|---:|---:|---:|---|
${runs.map((r) => `| ${r.mode} | ${r.sent} | ${r.received} | ${r.seconds.toFixed(2)} | ${Math.round(r.pps)} | ${Math.round(r.gwCpu * 100)} % | ${r.load} |`).join('\n')}
`;
  fs.writeFileSync(opt.out!, md);
  console.log(`wrote ${opt.out}`);
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
