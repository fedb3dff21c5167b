// Two builds of the gateway side by side: CPU per operation, alternating.
//
// A change that saves 3 % of a session's cost is below the noise of the peer
// comparison's medians (single runs on this shared 2-core machine differ by
// 5-10 %), but not below that of CPU per operation measured in alternating
// runs of the two builds. This builds the base revision in a git worktree
// (node_modules and the native addons are this tree's), then runs each
// workload against base and head in turn, pair after pair, the order
// swapped every pair, and reports each run's rate and the proxy's CPU per
// operation (from its CPU-seconds over the measured interval), with medians.
//
// Usage (after a build): node dist/bench/ab.js --base <rev> [--pairs 3]
//   [--only tcp-connrate,udp-sessions] [--warmup 1] [--duration 3] [--keep]
//   [--base-native]
// Workloads: the worker matrix's (bench/lib/matrix.ts) at one worker:
// udp-pingpong-flows, udp-sessions (8000 warm-up sessions), tcp-connrate,
// ws-rate. The base must build with this tree's node_modules and addons;
// with --base-native its addons are built from its own sources instead (for
// a change to the addons themselves).

import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { matrixWorkloads } from './lib/matrix.js';
import type { Env } from './lib/peers.js';
import { compileBins, startEcho } from './lib/bins.js';
import { guard, killAll, stop } from './lib/procs.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '../..');
const { values: a } = parseArgs({
  options: {
    base: { type: 'string' },
    pairs: { type: 'string', default: '3' },
    only: { type: 'string', default: 'tcp-connrate,udp-sessions' },
    warmup: { type: 'string', default: '1' },
    duration: { type: 'string', default: '3' },
    keep: { type: 'boolean', default: false },
    'base-native': { type: 'boolean', default: false },
    help: { type: 'boolean', short: 'h', default: false },
  },
});
if (a.help) {
  // The usage is this file's header, from "Usage" to the end of its comment.
  const src = fs.readFileSync(path.join(root, 'bench', 'ab.ts'), 'utf8').split('\n');
  const from = src.findIndex((l) => l.startsWith('// Usage'));
  const to = src.findIndex((l, i) => i > from && !l.startsWith('//'));
  process.stdout.write(`${src.slice(from, to).map((l) => l.replace(/^\/\/ ?/, '')).join('\n')}\n`);
  process.exit(0);
}

function run(cmd: string, args: string[], cwd: string): string {
  const r = spawnSync(cmd, args, { cwd, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')}: ${r.error?.message ?? r.stderr.trim()}`);
  return r.stdout.trim();
}

/** The base revision built in a worktree, with this tree's dependencies and native addons (or its own, `native`). */
function buildBase(rev: string, native: boolean): string {
  const sha = run('git', ['rev-parse', '--verify', `${rev}^{commit}`], root);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'l7mp-ab-'));
  run('git', ['worktree', 'add', '--detach', dir, sha], root);
  fs.symlinkSync(path.join(root, 'node_modules'), path.join(dir, 'node_modules'));
  if (native) {
    run(process.execPath, [path.join(dir, 'scripts/build-native.mjs')], dir);
  } else {
    for (const addon of ['sockets', 'bpf']) {
      const from = path.join(root, 'native', addon, 'build');
      if (fs.existsSync(from)) fs.cpSync(from, path.join(dir, 'native', addon, 'build'), { recursive: true });
    }
  }
  run(process.execPath, [path.join(root, 'node_modules/typescript/bin/tsc'), '-p', 'tsconfig.json'], dir);
  return dir;
}

function median(xs: number[]): number {
  const s = [...xs].sort((x, y) => x - y);
  const m = s.length >> 1;
  return s.length % 2 === 1 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

async function main(): Promise<void> {
  if (a.base === undefined) throw new Error('--base <rev> is required');
  const pairs = Math.max(1, Number(a.pairs));
  const params = { warmup: Number(a.warmup), duration: Number(a.duration), idleSessions: 0, maxNewSessions: 8000 };
  const ids = a.only.split(',');
  const workloads = matrixWorkloads([1], 16).filter((w) => ids.includes(w.id));
  if (workloads.length !== ids.length) throw new Error(`--only takes ${matrixWorkloads([1], 16).map((w) => w.id).join(', ')}`);
  guard(pairs * workloads.length * 2 * (params.warmup + params.duration + 40) * 1000 + 300_000, 'ab');

  const bin = compileBins(root);
  process.stdout.write(`building ${a.base} in a worktree...\n`);
  const base = buildBase(a.base, a['base-native'] === true);
  const builds = [{ name: `base ${a.base}`, root: base }, { name: 'head (this tree)', root }];
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'l7mp-ab-run-'));
  const lifetime = pairs * workloads.length * 2 * 60 + 120;
  const u = await startEcho(bin, 'udp_echo', lifetime);
  const t = await startEcho(bin, 'tcp_echo', lifetime);
  try {
    for (const w of workloads) {
      const target = w.targets.find((x) => x.peer === 'gateway')!;
      const rows: Record<string, { rate: number[]; us: number[] }> = {};
      for (const b of builds) rows[b.name] = { rate: [], us: [] };
      for (let i = 0; i < pairs; i++) {
        for (const b of i % 2 === 0 ? builds : [...builds].reverse()) {
          // Load generators and echo servers are this tree's; only the gateway comes from b.root.
          const env: Env = { root, gatewayRoot: b.root, tmp, udpEcho: u.port, tcpEcho: t.port, lifetime: 300 };
          const s = await w.run(target, env, params);
          const us = s.proxyCpu > 0 && s.value > 0 ? (s.proxyCpu * 1e6) / s.value : NaN;
          rows[b.name]!.rate.push(s.value);
          rows[b.name]!.us.push(us);
          process.stdout.write(`${w.id} pair ${i + 1} ${b.name}: ${Math.round(s.value).toLocaleString('en-US')} ${w.unit}, proxy CPU ${Math.round(s.proxyCpu * 100)} %, ${us.toFixed(1)} CPU-µs per operation\n`);
        }
      }
      const [rb, rh] = builds.map((b) => rows[b.name]!);
      process.stdout.write(`${w.id}: median ${Math.round(median(rb!.rate)).toLocaleString('en-US')} -> ${Math.round(median(rh!.rate)).toLocaleString('en-US')} ${w.unit} (${(median(rh!.rate) / median(rb!.rate)).toFixed(3)}x), `
        + `${median(rb!.us).toFixed(1)} -> ${median(rh!.us).toFixed(1)} CPU-µs per operation (${(median(rh!.us) / median(rb!.us)).toFixed(3)}x)\n\n`);
    }
  } finally {
    await stop(u.proc);
    await stop(t.proc);
    if (!a.keep) {
      spawnSync('git', ['worktree', 'remove', '--force', base], { cwd: root });
      fs.rmSync(base, { recursive: true, force: true });
    }
  }
}

main().then(() => process.exit(0), (err: Error) => {
  process.stderr.write(`ab: ${err.message}\n`);
  killAll();
  process.exit(1);
});
