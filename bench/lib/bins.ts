// The benchmarks' C parts: echo servers, load generators and the C reference
// proxy, compiled into dist/bench/bin, and an echo server started on a free
// port.

import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { start, waitLine, type Proc } from './procs.js';

const UNITS: [string, string][] = [
  ['bench/echo/udp_echo.c', 'udp_echo'], ['bench/echo/tcp_echo.c', 'tcp_echo'],
  ['bench/load/udp_load.c', 'udp_load'], ['bench/load/tcp_load.c', 'tcp_load'],
  ['bench/cref/tcp_cref.c', 'tcp_cref'],
];

/** Compile every C part of `root` into root/dist/bench/bin; returns that directory. */
export function compileBins(root: string): string {
  const out = path.join(root, 'dist/bench/bin');
  fs.mkdirSync(out, { recursive: true });
  for (const [src, name] of UNITS) {
    const r = spawnSync('cc', ['-O2', '-Wall', '-o', path.join(out, name), path.join(root, src)], { encoding: 'utf8' });
    if (r.error) throw new Error(`no C compiler (${r.error.message}): run bench/setup.sh`);
    if (r.status !== 0) throw new Error(`cc ${src} failed:\n${r.stderr}`);
  }
  return out;
}

/** Start echo server `name` (udp_echo, tcp_echo) from `bin` on a free port, for `lifetime` seconds at most. */
export async function startEcho(bin: string, name: string, lifetime: number, cpus?: string): Promise<{ proc: Proc; port: number }> {
  const proc = start(path.join(bin, name), ['0', String(lifetime)], name, { cpus });
  const m = await waitLine(proc, /PORT (\d+)/, 5000);
  return { proc, port: Number(m[1]) };
}
