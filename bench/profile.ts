// Profiles the gateway under one benchmark workload: runs the same load as
// `npm run bench` against a gateway started with `node --cpu-prof`, then
// prints where its time went (self and inclusive) and where the .cpuprofile
// is, for a flame graph in Chrome DevTools or speedscope.
//
// Usage (after a build): node dist/bench/profile.js --workload tcp-pingpong
//   [--duration 5] [--warmup 1] [--top 25] [--dir DIR]
// Workloads: the ids of bench/lib/workloads.ts (udp-pingpong, udp-sessions,
// tcp-pingpong, tcp-bulk, tcp-connrate, ws-rate; ws-rate-ws for engine ws).

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { rank } from './lib/cpuprofile.js';
import { compileBins, startEcho } from './lib/bins.js';
import { guard, killAll, stop } from './lib/procs.js';
import type { Env } from './lib/peers.js';
import { WORKLOADS } from './lib/workloads.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '../..');
const { values: a } = parseArgs({
  options: {
    workload: { type: 'string', default: 'tcp-pingpong' },
    duration: { type: 'string', default: '5' },
    warmup: { type: 'string', default: '1' },
    top: { type: 'string', default: '25' },
    dir: { type: 'string' },
  },
});

async function main(): Promise<void> {
  const engineWs = a.workload === 'ws-rate-ws';
  const w = WORKLOADS.find((x) => x.id === (engineWs ? 'ws-rate' : a.workload));
  if (!w || w.id === 'udp-idle-memory') throw new Error(`--workload must be one of ${WORKLOADS.filter((x) => x.id !== 'udp-idle-memory').map((x) => x.id).join(', ')}, ws-rate-ws`);
  const target = w.targets.find((t) => t.key === (engineWs ? 'gateway-ws' : 'gateway'))!;
  const out = path.resolve(a.dir ?? fs.mkdtempSync(path.join(os.tmpdir(), 'l7mp-prof-')));
  fs.mkdirSync(out, { recursive: true });
  const warmup = Number(a.warmup);
  const duration = Number(a.duration);
  guard((warmup + duration + 90) * 1000, 'profile');
  const bin = compileBins(root);
  const u = await startEcho(bin, 'udp_echo', 300);
  const t = await startEcho(bin, 'tcp_echo', 300);
  const env: Env = { root, tmp: out, udpEcho: u.port, tcpEcho: t.port, lifetime: 300, gatewayNodeArgs: ['--cpu-prof', `--cpu-prof-dir=${out}`],
    // Sessions still open at the stop (udp-sessions leaves thousands) would hold the drain past stop()'s 2 s grace: no profile.
    gatewayAdmin: { drain_timeout: 0 } };
  const before = new Set(fs.readdirSync(out));
  const s = await w.run(target, env, { warmup, duration, idleSessions: 0, maxNewSessions: 6000 });
  await stop(u.proc);
  await stop(t.proc);
  process.stdout.write(`${w.id} through the gateway${engineWs ? ' (engine ws)' : ''}: ${Math.round(s.value).toLocaleString('en-US')} ${w.unit}, gateway CPU ${Math.round(s.proxyCpu * 100)} %\n`);
  const file = fs.readdirSync(out).find((f) => f.endsWith('.cpuprofile') && !before.has(f));
  if (!file) throw new Error(`no .cpuprofile in ${out} (did the gateway exit cleanly on SIGTERM?)`);
  const r = rank(path.join(out, file), Number(a.top));
  const pct = (x: number) => `${(x * 100).toFixed(1).padStart(5)} %`;
  process.stdout.write(`\nprofile: ${path.join(out, file)} (${r.seconds.toFixed(1)} s, start-up included)\n\nself time:\n`);
  for (const x of r.self) process.stdout.write(`${pct(x.share)}  ${x.name}\n`);
  process.stdout.write('\ninclusive time:\n');
  for (const x of r.inclusive) process.stdout.write(`${pct(x.share)}  ${x.name}\n`);
}

main().then(() => process.exit(0), (err: Error) => {
  process.stderr.write(`profile: ${err.message}\n`);
  killAll();
  process.exit(1);
});
