// Child processes for the benchmark runner: every process it starts is
// tracked and killed on every way out (normal end, error, signal, watchdog),
// and every wait has a deadline. Also reads a process tree's CPU time and
// resident memory from /proc, so forking peers (socat) are measured whole.

import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import dgram from 'node:dgram';
import fs from 'node:fs';
import net from 'node:net';
import { PortAllocator } from '../../conformance/ports.js';

export interface Proc {
  readonly child: ChildProcess;
  readonly what: string;
  /** Last few KiB of stderr, for error messages. */
  errText(): string;
  /** Everything printed on stdout so far (first 64 KiB). */
  outText(): string;
}

const live = new Set<ChildProcess>();

export function killAll(): void {
  for (const c of live) {
    try { c.kill('SIGKILL'); } catch { /* gone */ }
  }
  live.clear();
}

/** Install the exit hooks and a watchdog for the whole run. */
export function guard(totalMs: number, name: string): NodeJS.Timeout {
  process.on('exit', killAll);
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.on(sig, () => { killAll(); process.exit(130); });
  }
  process.on('uncaughtException', (err) => { process.stderr.write(`${name}: ${err.stack ?? err.message}\n`); killAll(); process.exit(1); });
  const t = setTimeout(() => {
    process.stderr.write(`${name}: gave up after ${Math.round(totalMs / 1000)} s\n`);
    killAll();
    process.exit(1);
  }, totalMs);
  t.unref();
  return t;
}

/**
 * Start cmd; with `cpus` (a taskset list such as "1" or "0-3") it runs pinned
 * to those CPUs (taskset execs it, so the pid is the command's own).
 */
export function start(cmd: string, args: string[], what: string, opts: { cwd?: string; stdin?: 'pipe' | 'ignore'; cpus?: string } = {}): Proc {
  if (opts.cpus) [cmd, args] = ['taskset', ['-c', opts.cpus, cmd, ...args]];
  const child = spawn(cmd, args, { stdio: [opts.stdin ?? 'ignore', 'pipe', 'pipe'], cwd: opts.cwd });
  live.add(child);
  child.on('exit', () => live.delete(child));
  child.on('error', () => live.delete(child));
  let err = '';
  child.stderr!.on('data', (d) => { if (err.length < 4000) err += String(d); });
  // Always read stdout (a full pipe would block the child) and keep it, so a
  // waiter that starts after a line arrived still finds it.
  let out = '';
  child.stdout!.on('data', (d) => { if (out.length < 65536) out += String(d); });
  return { child, what, errText: () => err.trim(), outText: () => out };
}

/**
 * Stop a child and everything it forked (socat's per-connection children
 * outlive their parent otherwise): SIGTERM, SIGKILL after graceMs.
 */
export function stop(p: Proc, graceMs = 2000): Promise<void> {
  const c = p.child;
  const descendants = c.pid !== undefined ? tree(c.pid).slice(1) : [];
  const killKids = () => {
    for (const pid of descendants) {
      try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ }
    }
  };
  return new Promise((resolve) => {
    if (c.exitCode !== null || c.signalCode !== null) { killKids(); return resolve(); }
    const t = setTimeout(() => c.kill('SIGKILL'), graceMs);
    c.once('exit', () => { clearTimeout(t); killKids(); resolve(); });
    c.kill('SIGTERM');
  });
}

/** Resolve with the first stdout line matching re (its match), or fail at the deadline or exit. */
export function waitLine(p: Proc, re: RegExp, timeoutMs: number): Promise<RegExpExecArray> {
  return new Promise((resolve, reject) => {
    const found = re.exec(p.outText());
    if (found) return resolve(found);
    // Listeners run in order: the one in start() has appended the chunk already.
    const onData = () => {
      const m = re.exec(p.outText());
      if (m) { done(); resolve(m); }
    };
    const onExit = (code: number | null) => { done(); reject(new Error(`${p.what} exited (${code}) before printing ${re}: ${p.errText()}`)); };
    const t = setTimeout(() => { done(); reject(new Error(`${p.what}: no ${re} after ${timeoutMs} ms: ${p.errText()}`)); }, timeoutMs);
    const done = () => { clearTimeout(t); p.child.stdout!.off('data', onData); p.child.off('close', onExit); };
    p.child.stdout!.on('data', onData);
    p.child.once('close', onExit);
  });
}

const ports = new PortAllocator();

/** A loopback port below the ephemeral range, never handed out twice (conformance/ports.ts). */
export function freePort(): Promise<number> {
  return ports.next();
}

/** A free port for both TCP and UDP (the gateway config may use either). */
export async function freeDualPort(): Promise<number> {
  for (let i = 0; i < 20; i++) {
    const port = await freePort();
    const ok = await new Promise<boolean>((resolve) => {
      const u = dgram.createSocket('udp4');
      u.once('error', () => { u.close(); resolve(false); });
      u.bind(port, '127.0.0.1', () => u.close(() => resolve(true)));
    });
    if (ok) return port;
  }
  throw new Error('no free port');
}

function tcpOpen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const c = net.connect(port, '127.0.0.1');
    c.once('connect', () => { c.destroy(); resolve(true); });
    c.once('error', () => resolve(false));
  });
}

/** One datagram through the path, echoed back within 300 ms? */
function udpEchoes(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = dgram.createSocket('udp4');
    const t = setTimeout(() => finish(false), 300);
    const finish = (ok: boolean) => { clearTimeout(t); try { s.close(); } catch { /* closed */ } resolve(ok); };
    s.once('message', () => finish(true));
    s.once('error', () => finish(false));
    s.send(Buffer.alloc(64), port, '127.0.0.1');
  });
}

/** Wait until the proxy answers on port (TCP: accepts; UDP: echoes a datagram). */
export async function waitReady(p: Proc, port: number, proto: 'tcp' | 'udp', timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (p.child.exitCode !== null) throw new Error(`${p.what} exited with ${p.child.exitCode}: ${p.errText()}`);
    if (proto === 'tcp' ? await tcpOpen(port) : await udpEchoes(port)) return;
    if (Date.now() > deadline) throw new Error(`${p.what} not ready on ${proto} port ${port} after ${timeoutMs} ms: ${p.errText()}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

// ---- /proc readings ----

const CLK_TCK = Number(spawnSync('getconf', ['CLK_TCK']).stdout?.toString().trim()) || 100;

function statFields(pid: number): string[] | undefined {
  try {
    const s = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return s.slice(s.lastIndexOf(')') + 2).split(' '); // f[0] is field 3 (state)
  } catch {
    return undefined;
  }
}

/** pid and all its live descendants. */
export function tree(pid: number): number[] {
  const out = [pid];
  for (let i = 0; i < out.length && out.length < 10_000; i++) {
    let kids: string;
    try {
      kids = fs.readFileSync(`/proc/${out[i]}/task/${out[i]}/children`, 'utf8');
    } catch {
      continue;
    }
    for (const k of kids.trim().split(/\s+/)) if (k) out.push(Number(k));
  }
  return out;
}

/**
 * CPU seconds of a process tree: every live member's own time, plus the root's
 * reaped children (a forking peer's finished children count too).
 */
export function treeCpu(pid: number | undefined): number {
  if (pid === undefined) return NaN;
  let ticks = 0;
  for (const p of tree(pid)) {
    const f = statFields(p);
    if (!f) continue;
    ticks += Number(f[11]) + Number(f[12]); // utime, stime
    if (p === pid) ticks += Number(f[13]) + Number(f[14]); // cutime, cstime
  }
  return ticks / CLK_TCK;
}

/** CPU seconds of each live member of a process tree (own time only), root first. */
export function treeCpuEach(pid: number | undefined): Map<number, number> {
  const out = new Map<number, number>();
  if (pid === undefined) return out;
  for (const p of tree(pid)) {
    const f = statFields(p);
    if (f) out.set(p, (Number(f[11]) + Number(f[12])) / CLK_TCK);
  }
  return out;
}

/** The whole machine's busy and total CPU time so far, seconds (/proc/stat, every CPU). */
export function machineCpu(): { busy: number; total: number } {
  try {
    const f = fs.readFileSync('/proc/stat', 'utf8').split('\n', 1)[0]!.trim().split(/\s+/).slice(1).map(Number);
    const total = f.slice(0, 8).reduce((x, y) => x + y, 0); // user..steal; guest is inside user
    const idle = f[3]! + f[4]!; // idle, iowait
    return { busy: (total - idle) / CLK_TCK, total: total / CLK_TCK };
  } catch {
    return { busy: NaN, total: NaN };
  }
}

/** Context switches of a process tree so far (voluntary, involuntary). */
export function treeSwitches(pid: number | undefined): { vol: number; invol: number } {
  let vol = 0;
  let invol = 0;
  if (pid === undefined) return { vol: NaN, invol: NaN };
  for (const p of tree(pid)) {
    try {
      const st = fs.readFileSync(`/proc/${p}/status`, 'utf8');
      vol += Number(/^voluntary_ctxt_switches:\s+(\d+)/m.exec(st)?.[1] ?? 0);
      invol += Number(/^nonvoluntary_ctxt_switches:\s+(\d+)/m.exec(st)?.[1] ?? 0);
    } catch { /* exited */ }
  }
  return { vol, invol };
}

/** Resident memory of a process tree, bytes. */
export function treeRss(pid: number | undefined): number {
  if (pid === undefined) return NaN;
  let kb = 0;
  for (const p of tree(pid)) {
    try {
      const m = /^VmRSS:\s+(\d+) kB/m.exec(fs.readFileSync(`/proc/${p}/status`, 'utf8'));
      if (m) kb += Number(m[1]);
    } catch { /* exited */ }
  }
  return kb * 1024;
}
