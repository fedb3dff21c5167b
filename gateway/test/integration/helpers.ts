// Shared test plumbing: an in-process gateway on free ports, a REST client,
// real socat peers, and waiting for events with a deadline (never sleep-and-hope).

import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import dgram from 'node:dgram';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import fs from 'node:fs';
import { PortAllocator, portHeldBy, portHolders, udpBound as udpBoundInTables } from '../../../conformance/ports.js';
import { waitFor as suiteWaitFor } from '../../../conformance/util.js';
import { startGateway } from '../../src/app.js';
import type { Gateway } from '../../src/core/gateway.js';
import { silentLogger, type Logger } from '../../src/observe/log.js';

const ports = new PortAllocator();

/** A loopback port free for both TCP and UDP, below the ephemeral range, never handed out twice. */
export function freePort(): Promise<number> {
  return ports.next();
}

export function tmpPath(name: string): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'l7mp-test-'));
  return path.join(dir, name);
}

export { captureLogger } from '../capture-log.js';

export interface TestGateway {
  gw: Gateway;
  port: number;
  base: string;
  stop(): Promise<void>;
}

/** The controller listener first, then the listeners and other sections of `extra`. */
/** An in-process gateway with `cfg` as its static config (plus the controller), stopped at teardown. */
export async function startGw(t: { teardown(fn: () => unknown): void }, cfg: Record<string, unknown>, logger: Logger = silentLogger()): Promise<{ base: string; gw: Gateway }> {
  const port = await freePort();
  const gw = await startGateway({ config: controllerConfig(port, cfg), logger });
  t.teardown(() => gw.stop());
  return { base: `http://127.0.0.1:${port}`, gw };
}

/** Start a peer and stop it (and its fork children) at teardown. */
export async function peer(t: { teardown(fn: () => unknown): void }, p: Promise<Peer>): Promise<Peer> {
  const x = await p;
  t.teardown(() => x.stop());
  return x;
}

export function controllerConfig(port: number, extra: Record<string, unknown> = {}): Record<string, unknown> {
  const controller = {
    name: 'controller-listener',
    spec: { protocol: 'HTTP', address: '127.0.0.1', port },
    rules: [{ action: { route: { destination: { name: 'controller', spec: { protocol: 'L7mpController' } } } } }],
  };
  const workers = process.env.L7MP_TEST_WORKERS ? { workers: Number(process.env.L7MP_TEST_WORKERS) } : {};
  return {
    // No admin (metrics) listener: test gateways run side by side; metrics tests configure their own.
    // No REST rate limit either: tests call the API in bursts.
    // L7MP_TEST_WORKERS=N runs these gateways with N data-plane workers (docs/workers.md).
    admin: { log_level: 'silent', metrics: { enabled: false }, limits: { api_rate: 0 }, ...workers },
    ...extra,
    ...(extra.admin !== undefined ? { admin: { ...(extra.admin as Record<string, unknown>), ...workers } } : {}),
    listeners: [controller, ...((extra.listeners as unknown[] | undefined) ?? [])],
  };
}

export async function startTestGateway(extra: Record<string, unknown> = {}): Promise<TestGateway> {
  const port = await freePort();
  const gw = await startGateway({ config: controllerConfig(port, extra), logger: silentLogger() });
  return { gw, port, base: `http://127.0.0.1:${port}`, stop: () => gw.stop() };
}

export interface ApiResponse {
  status: number;
  text: string;
  body: any;
}

export async function api(base: string, method: string, urlPath: string, body?: unknown, contentType = 'application/json'): Promise<ApiResponse> {
  const init: RequestInit = { method, headers: {} };
  if (body !== undefined) {
    init.body = typeof body === 'string' ? body : JSON.stringify(body);
    (init.headers as Record<string, string>)['content-type'] = contentType;
  }
  const res = await fetch(base + urlPath, init).catch((err: Error & { cause?: unknown }) => { throw new Error(`${method} ${base}${urlPath}: ${err.message}: ${String(err.cause)}`); });
  const text = await res.text();
  let parsed: unknown;
  try { parsed = JSON.parse(text); } catch { parsed = undefined; }
  return { status: res.status, text, body: parsed };
}

/** Poll until fn returns a truthy value; fail after timeoutMs (the conformance suite's wait, with defaults). */
export function waitFor<T>(fn: () => T | Promise<T>, timeoutMs = 5000, what = 'condition'): Promise<NonNullable<T>> {
  return suiteWaitFor(fn, timeoutMs, what);
}

export interface Peer {
  proc: ChildProcess;
  stop(): Promise<void>;
}

/**
 * Start socat with the given address pair and wait until `ready` holds. A
 * bind that finds its port taken is tried twice more, and the error then
 * names the holder: the port was free when it was handed out (PortAllocator),
 * so a holder is something that bound it since (seen once in CI, its
 * holder unknown).
 */
export async function socat(args: string[], ready: () => Promise<boolean> | boolean): Promise<Peer> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await socatOnce(args, ready);
    } catch (err) {
      const port = /EADDRINUSE|Address already in use/.test((err as Error).message) ? /:(\d+)[,}]/.exec(args.join(' '))?.[1] : undefined;
      if (port === undefined) throw err;
      const holders = await portHolders(Number(port), '127.0.0.1');
      if (attempt >= 3) throw new Error(`${(err as Error).message}; after ${attempt} attempts the port is held by: ${holders}`);
      await new Promise((r) => setTimeout(r, 200));
    }
  }
}

async function socatOnce(args: string[], ready: () => Promise<boolean> | boolean): Promise<Peer> {
  // Its own process group, so that stop() also ends the children `fork` makes.
  const proc = spawn('socat', args, { stdio: ['ignore', 'ignore', 'pipe'], detached: true });
  let stderr = '';
  proc.stderr!.on('data', (d) => { stderr += String(d); });
  let exited = false;
  proc.on('exit', () => { exited = true; });
  // A socat that exits before it is ready fails the start at once ('close': its stderr is complete then).
  const early = new Promise<never>((_, reject) => proc.once('close', () => reject(new Error(`socat ${args.join(' ')} exited: ${stderr}`))));
  early.catch(() => undefined); // after a start, the exit is stop()'s
  // Ready only once socat itself holds its port: the caller's check alone also
  // passes when another process holds it, while socat's bind is failing.
  const listen = /\b(TCP|UDP)[46]?-(?:LISTEN|RECVFROM|RECV):(\d+)/.exec(args.join(' '));
  const own = listen === null ? () => true : () => portHeldBy(proc.pid!, Number(listen[2]), listen[1] === 'TCP' ? 'tcp' : 'udp');
  try {
    await Promise.race([waitFor(async () => (await ready()) && own(), 5000, `socat ${args.join(' ')}`), early]);
  } catch (err) {
    try { process.kill(-proc.pid!, 'SIGKILL'); } catch { /* gone */ }
    throw err;
  }
  return {
    proc,
    stop: () => new Promise<void>((resolve) => {
      if (exited) return resolve();
      proc.once('exit', () => resolve());
      try { process.kill(-proc.pid!, 'SIGKILL'); } catch { proc.kill('SIGKILL'); }
    }),
  };
}

export function tcpListening(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const c = net.connect(port, '127.0.0.1');
    c.once('connect', () => { c.destroy(); resolve(true); });
    c.once('error', () => resolve(false));
  });
}

export function unixListening(p: string): Promise<boolean> {
  return new Promise((resolve) => {
    const c = net.connect(p);
    c.once('connect', () => { c.destroy(); resolve(true); });
    c.once('error', () => resolve(false));
  });
}

/** UDP port bound by someone (a bind attempt fails). */
/**
 * Whether a UDP socket is bound to `port`, read from the kernel's tables. Not
 * by binding a probe: a probe that falls between a peer's start and its bind
 * makes the peer's bind fail (EADDRINUSE, as conformance/ports.ts says).
 */
export function udpBound(port: number): Promise<boolean> {
  return Promise.resolve(udpBoundInTables(port));
}

/** Echo peers built from socat: the real thing, not a mock. */
export const echo = {
  tcp: (port: number) => socat([`TCP-LISTEN:${port},bind=127.0.0.1,reuseaddr,fork`, 'EXEC:cat'], () => tcpListening(port)),
  /** One child per datagram, answering its sender: boundaries kept, concurrent peers never mixed. */
  udp: (port: number) => socat(['-T', '2', '-b', '65536', `UDP-RECVFROM:${port},bind=127.0.0.1,reuseaddr,fork`, 'PIPE'], () => udpBound(port)),
  /**
   * One child per peer flow (UDP-LISTEN,fork): the child connects to its peer,
   * so a flow keeps its order, but two flows that start together may be mixed.
   */
  udpFlow: (port: number) => socat(['-b', '65536', `UDP-LISTEN:${port},bind=127.0.0.1,reuseaddr,fork`, 'PIPE'], () => udpBound(port)),
  unix: (p: string) => socat([`UNIX-LISTEN:${p},fork,unlink-early`, 'EXEC:cat'], () => unixListening(p)),
};

/** A UDP client socket bound to a free port on loopback. */
export async function udpClient(): Promise<dgram.Socket> {
  const s = dgram.createSocket('udp4');
  await new Promise<void>((r) => s.bind(0, '127.0.0.1', () => r()));
  return s;
}

export function nextMessage(sock: dgram.Socket, timeoutMs = 3000): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => { sock.off('message', on); reject(new Error('no UDP reply in time')); }, timeoutMs);
    const on = (m: Buffer) => { clearTimeout(t); resolve(m); };
    sock.once('message', on);
  });
}

/** Send over TCP, half-close, and collect everything until the peer closes. */
export function tcpRoundTrip(port: number, payload: Buffer, host = '127.0.0.1'): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const c = net.connect({ port, host, allowHalfOpen: true });
    const parts: Buffer[] = [];
    c.on('data', (d) => parts.push(d));
    c.on('end', () => { c.end(); resolve(Buffer.concat(parts)); });
    c.on('error', reject);
    c.on('connect', () => { c.end(payload); });
  });
}

export function unixRoundTrip(p: string, payload: Buffer): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const c = net.connect({ path: p, allowHalfOpen: true });
    const parts: Buffer[] = [];
    c.on('data', (d) => parts.push(d));
    c.on('end', () => { c.end(); resolve(Buffer.concat(parts)); });
    c.on('error', reject);
    c.on('connect', () => { c.end(payload); });
  });
}

export function randomPayload(n: number): Buffer {
  const b = Buffer.allocUnsafe(n);
  for (let i = 0; i < n; i++) b[i] = (i * 131 + 7) & 0xff;
  return b;
}


/**
 * spawnSync's result without blocking the test process's event loop: tests
 * of one file run concurrently, and a child waited for synchronously for
 * seconds stalls every other test's sockets and timers (a waitFor then
 * times out before the poll phase delivers what it waits for). `timeout`
 * ends the child with SIGTERM, as spawnSync's does.
 */
export function spawnAsync(cmd: string, args: string[], opts: { timeout: number; env?: SpawnOptions['env'] }): Promise<{ status: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const p = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], env: opts.env });
    let stdout = '';
    let stderr = '';
    p.stdout!.setEncoding('utf8').on('data', (d: string) => { stdout += d; });
    p.stderr!.setEncoding('utf8').on('data', (d: string) => { stderr += d; });
    const timer = setTimeout(() => p.kill('SIGTERM'), opts.timeout);
    p.on('error', (e) => { clearTimeout(timer); reject(e); });
    p.on('close', (status, signal) => { clearTimeout(timer); resolve({ status, signal, stdout, stderr }); });
  });
}
