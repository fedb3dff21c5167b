// Plumbing for the edge tests: a real gateway child process (signals reach
// it as they reach production), real upstreams, and clients that report how
// a stream ended, not only what they read.

import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import WebSocket from 'ws';
import { controllerConfig, freePort, tcpListening, tmpPath, waitFor } from '../helpers.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../../..');
const bin = path.join(root, 'dist/gateway/src/main.js');

export interface ChildGateway {
  proc: ChildProcess;
  base: string;
  adminBase: string;
  output(): string;
  exited: Promise<number | null>;
  signal(sig: NodeJS.Signals): void;
  kill(): Promise<void>;
}

/** The gateway as users run it: `l7mp -c config.json`, REST on a free port, admin listener on another. */
export async function startChild(t: { teardown(fn: () => unknown): void }, cfg: Record<string, unknown>, admin: Record<string, unknown> = {}): Promise<ChildGateway> {
  const apiPort = await freePort();
  const adminPort = await freePort();
  const full = controllerConfig(apiPort, cfg);
  full.admin = { log_level: 'info', log_file: 'stdout', metrics: { address: '127.0.0.1', port: adminPort }, limits: { api_rate: 0 }, ...admin, ...(process.env.L7MP_TEST_WORKERS ? { workers: Number(process.env.L7MP_TEST_WORKERS) } : {}) };
  const file = tmpPath('gw.json');
  fs.writeFileSync(file, JSON.stringify(full));
  const proc = spawn(process.execPath, [bin, '-c', file], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  proc.stdout!.on('data', (d) => { out += String(d); });
  proc.stderr!.on('data', (d) => { out += String(d); });
  const exited = new Promise<number | null>((resolve) => proc.once('exit', (code) => resolve(code)));
  const gone = () => proc.exitCode !== null || proc.signalCode !== null;
  const kill = async () => {
    if (gone()) return;
    proc.kill('SIGKILL');
    await exited;
  };
  t.teardown(kill);
  await waitFor(async () => {
    if (gone()) throw new Error(`gateway exited: ${out}`);
    return (await tcpListening(apiPort)) && (await tcpListening(adminPort));
  }, 10_000, 'gateway child up');
  return {
    proc, base: `http://127.0.0.1:${apiPort}`, adminBase: `http://127.0.0.1:${adminPort}`,
    output: () => out, exited, signal: (sig) => proc.kill(sig), kill,
  };
}

export interface HttpOutcome {
  status: number | undefined;
  body: Buffer;
  /** The response ended cleanly (complete body); false: reset or truncated. */
  complete: boolean;
  error: string | undefined;
}

/** One HTTP request on its own connection, reporting how the response ended. */
export function httpRequest(url: string, opts: { method?: string; body?: Buffer | (() => AsyncIterable<Buffer>) } = {}): { outcome: Promise<HttpOutcome>; req: http.ClientRequest } {
  let req!: http.ClientRequest;
  const outcome = new Promise<HttpOutcome>((resolve) => {
    const parts: Buffer[] = [];
    let status: number | undefined;
    let done = false;
    const finish = (complete: boolean, error?: string) => {
      if (done) return;
      done = true;
      resolve({ status, body: Buffer.concat(parts), complete, error });
    };
    req = http.request(url, { method: opts.method ?? 'GET', agent: false }, (res) => {
      status = res.statusCode;
      res.on('data', (d: Buffer) => parts.push(d));
      res.on('end', () => finish(res.complete));
      res.on('aborted', () => finish(false, 'aborted'));
      res.on('error', (err) => finish(false, err.message));
      res.on('close', () => finish(res.complete, res.complete ? undefined : 'closed early'));
    });
    req.on('error', (err) => finish(false, err.message));
    const b = opts.body;
    if (b === undefined) req.end();
    else if (Buffer.isBuffer(b)) req.end(b);
    else {
      void (async () => {
        try {
          for await (const chunk of b()) {
            if (!req.write(chunk)) await new Promise((r) => req.once('drain', r));
          }
          req.end();
        } catch (err) {
          req.destroy(err as Error);
        }
      })();
    }
  });
  return { outcome, req };
}

/** An HTTP upstream that answers each request after `delayMs` with `body`; counts the requests it got. */
export async function slowHttpUpstream(t: { teardown(fn: () => unknown): void }, delayMs: number, body: string | ((req: http.IncomingMessage, received: Buffer) => string)): Promise<{ port: number; requests: () => number; server: http.Server }> {
  let n = 0;
  const server = http.createServer((req, res) => {
    n++;
    const parts: Buffer[] = [];
    req.on('data', (d: Buffer) => parts.push(d));
    req.on('end', () => {
      const text = typeof body === 'string' ? body : body(req, Buffer.concat(parts));
      const timer = setTimeout(() => res.end(text), delayMs);
      res.on('close', () => clearTimeout(timer));
    });
  });
  const port = await freePort();
  await new Promise<void>((r) => server.listen(port, '127.0.0.1', () => r()));
  t.teardown(() => { server.closeAllConnections(); server.close(); });
  return { port, requests: () => n, server };
}

/** A TCP echo upstream (node:net), closing every socket at teardown. */
export async function tcpEchoUpstream(t: { teardown(fn: () => unknown): void }): Promise<{ port: number; connections: () => number }> {
  const socks = new Set<net.Socket>();
  let n = 0;
  const server = net.createServer({ allowHalfOpen: true }, (s) => {
    n++;
    socks.add(s);
    s.on('close', () => socks.delete(s));
    s.on('error', () => undefined);
    s.pipe(s);
  });
  const port = await freePort();
  await new Promise<void>((r) => server.listen(port, '127.0.0.1', () => r()));
  t.teardown(() => { for (const s of socks) s.destroy(); server.close(); });
  return { port, connections: () => n };
}

export interface StreamEnd {
  /** 'end': a FIN after all data; 'reset': ECONNRESET/EPIPE; 'error': another error. */
  how: 'end' | 'reset' | 'error';
  error?: string;
}

/** A TCP client that records what it read and how the stream ended. */
export function tcpClient(port: number): Promise<{ sock: net.Socket; received: () => Buffer; ended: Promise<StreamEnd>; next: (n: number, timeoutMs?: number) => Promise<Buffer> }> {
  return new Promise((resolve, reject) => {
    const sock = net.connect({ port, host: '127.0.0.1', allowHalfOpen: true });
    const parts: Buffer[] = [];
    let total = 0;
    let settle!: (e: StreamEnd) => void;
    const ended = new Promise<StreamEnd>((r) => { settle = r; });
    sock.on('data', (d: Buffer) => { parts.push(d); total += d.length; });
    sock.on('end', () => settle({ how: 'end' }));
    sock.on('error', (err: NodeJS.ErrnoException) => settle({ how: err.code === 'ECONNRESET' || err.code === 'EPIPE' ? 'reset' : 'error', error: err.message }));
    sock.on('close', () => settle({ how: 'end' }));
    sock.once('error', reject);
    sock.once('connect', () => {
      sock.off('error', reject);
      resolve({
        sock,
        received: () => Buffer.concat(parts),
        ended,
        next: (n, timeoutMs = 3000) => waitFor(() => (total >= n ? Buffer.concat(parts) : undefined), timeoutMs, `${n} bytes`),
      });
    });
  });
}

/** Read one metric sample (name with labels as printed) from an exposition text. */
export function metricValue(text: string, sample: string): number | undefined {
  for (const line of text.split('\n')) {
    if (line.startsWith(sample + ' ')) return Number(line.slice(sample.length + 1));
  }
  return undefined;
}

/** One message to a WebSocket listener on its own connection, and the first message back. */
export function wsEcho(port: number, text: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`ws://127.0.0.1:${port}/`);
    ws.on('open', () => ws.send(text));
    ws.on('message', (m) => { ws.close(); resolve(String(m)); });
    ws.on('error', reject);
  });
}
