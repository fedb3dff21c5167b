// The client peers that talk to the gateway's listeners: real sockets (UDP,
// TCP, Unix), the `ws` WebSocket client, our JSONSocket client library, and
// curl for HTTP. Each session-type client exposes the same Inbox, so that the
// cases do not care which protocol they drive.

import { spawn } from 'node:child_process';
import dgram from 'node:dgram';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import WebSocket from 'ws';
import { JSONSocketClient } from '../gateway/src/tools/jsonsocket-client.js';
import type { L2Link } from './driver.js';
import { clientPort } from './ports.js';
import { withTimeout } from './util.js';

/** What a client received: the chunks (one per datagram/message), EOF, close. */
export class Inbox {
  readonly chunks: Buffer[] = [];
  bytes = 0;
  ended = false;
  closed = false;
  error: Error | undefined;
  private readonly waiters = new Set<() => void>();

  push(b: Buffer): void {
    this.chunks.push(b);
    this.bytes += b.length;
    this.wake();
  }

  end(): void {
    this.ended = true;
    this.wake();
  }

  close(err?: Error): void {
    this.closed = true;
    this.error ??= err;
    this.wake();
  }

  private wake(): void {
    for (const w of [...this.waiters]) w();
  }

  concat(): Buffer {
    return Buffer.concat(this.chunks);
  }

  /** Resolve once `pred` holds; reject after `ms` with `what` and what arrived so far. */
  until(pred: () => boolean, ms: number, what: string): Promise<void> {
    if (pred()) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const check = () => {
        if (!pred()) return;
        clearTimeout(timer);
        this.waiters.delete(check);
        resolve();
      };
      const timer = setTimeout(() => {
        this.waiters.delete(check);
        reject(new Error(`${what}: not within ${ms} ms (received ${this.chunks.length} chunk(s), ${this.bytes} B${this.ended ? ', EOF' : ''}${this.closed ? ', closed' : ''}${this.error ? `, error: ${this.error.message}` : ''})`));
      }, ms);
      this.waiters.add(check);
    });
  }
}

export interface ClientSession {
  readonly inbox: Inbox;
  /** One message (datagram protocols) or a write (byte streams). */
  send(b: Buffer): void;
  /** Half-close: no more data from the client (byte streams only). */
  end?(): void;
  close(): Promise<void>;
}

export interface OpenOptions {
  /** Local address to send from (a 127/8 address). */
  readonly source?: string;
  /** A run-unique id the client carries where its protocol has a place for one (headers). */
  readonly id: string;
  readonly timeoutMs?: number;
}

export interface Target {
  readonly host: string;
  readonly port: number;
  /** Socket path for file-based listeners. */
  readonly path?: string;
  /** The veth pair of an AF_PACKET listener: the client sends from its far end. */
  readonly link?: L2Link;
}

const CONNECT_MS = 5000;

/** Bind to the next client port (conformance/ports.ts clientPort); a port in use is skipped. */
async function bindClientPort(bind: (port: number) => Promise<void>): Promise<number> {
  let last: unknown;
  for (let i = 0; i < 64; i++) {
    const p = clientPort();
    try {
      await withTimeout(bind(p), CONNECT_MS, `binding UDP client port ${p}`);
      return p;
    } catch (err) {
      last = err;
    }
  }
  throw new Error(`no free UDP client port after 64 tries: ${(last as Error | undefined)?.message ?? ''}`);
}

export async function udpClient(t: Target, o: OpenOptions): Promise<ClientSession> {
  let sock: dgram.Socket | undefined;
  const port = await bindClientPort((p) => new Promise<void>((resolve, reject) => {
    const s = dgram.createSocket('udp4');
    s.once('error', (err) => { try { s.close(); } catch { /* not open */ } reject(err); });
    s.bind({ port: p, address: o.source ?? '127.0.0.1', exclusive: true }, () => {
      s.removeAllListeners('error');
      sock = s;
      resolve();
    });
  }));
  const inbox = new Inbox();
  const s = sock!;
  s.on('message', (m) => inbox.push(m));
  s.on('error', (err) => inbox.close(err));
  s.on('close', () => inbox.close());
  await withTimeout(new Promise<void>((resolve) => s.connect(t.port, t.host, () => resolve())), CONNECT_MS, `UDP client socket (source port ${port})`);
  const sockRef = s;
  return {
    inbox,
    send: (b) => sockRef.send(b),
    close: () => new Promise<void>((r) => { try { sockRef.close(() => r()); } catch { r(); } }),
  };
}

function streamSession(sock: net.Socket): ClientSession {
  const inbox = new Inbox();
  sock.on('data', (d: Buffer) => inbox.push(d));
  sock.on('end', () => inbox.end());
  sock.on('error', (err) => inbox.close(err));
  sock.on('close', () => inbox.close());
  return {
    inbox,
    send: (b) => { sock.write(b); },
    end: () => { sock.end(); },
    close: () => new Promise<void>((r) => {
      if (sock.destroyed) return r();
      sock.once('close', () => r());
      sock.destroy();
    }),
  };
}

function connectStream(opts: net.NetConnectOpts, what: string): Promise<net.Socket> {
  return withTimeout(new Promise<net.Socket>((resolve, reject) => {
    const sock = net.connect({ ...opts, allowHalfOpen: true } as net.NetConnectOpts);
    sock.once('connect', () => { sock.off('error', reject); resolve(sock); });
    sock.once('error', reject);
  }), CONNECT_MS, what);
}

export async function tcpClient(t: Target, o: OpenOptions): Promise<ClientSession> {
  const sock = await connectStream({ host: t.host, port: t.port, localAddress: o.source, noDelay: true } as net.NetConnectOpts, `TCP connect to ${t.host}:${t.port}`);
  return streamSession(sock);
}

export async function unixClient(t: Target, _o: OpenOptions): Promise<ClientSession> {
  if (t.path === undefined) throw new Error('Unix client needs a path');
  const sock = await connectStream({ path: t.path }, `Unix connect to ${t.path}`);
  return streamSession(sock);
}

export async function wsClient(t: Target, o: OpenOptions): Promise<ClientSession> {
  const inbox = new Inbox();
  const ws = new WebSocket(`ws://${t.host}:${t.port}/conformance`, {
    perMessageDeflate: false,
    handshakeTimeout: CONNECT_MS,
    maxPayload: 64 * 1024 * 1024,
    headers: { 'x-conformance-id': o.id },
    ...(o.source !== undefined ? { localAddress: o.source } : {}),
    localPort: clientPort(),
  });
  ws.on('message', (data: Buffer) => inbox.push(Buffer.from(data)));
  ws.on('close', () => inbox.close());
  await withTimeout(new Promise<void>((resolve, reject) => {
    ws.once('open', () => { ws.off('error', reject); resolve(); });
    ws.once('error', reject);
    ws.once('unexpected-response', (_req, res) => reject(new Error(`WebSocket upgrade refused with HTTP ${res.statusCode}`)));
  }), CONNECT_MS + 500, `WebSocket connect to ${t.host}:${t.port}`);
  ws.on('error', (err) => inbox.close(err));
  return {
    inbox,
    send: (b) => ws.send(b, { binary: true }),
    close: () => new Promise<void>((r) => {
      if (ws.readyState === WebSocket.CLOSED) return r();
      const timer = setTimeout(() => { ws.terminate(); r(); }, 2000);
      ws.once('close', () => { clearTimeout(timer); r(); });
      ws.close(1000);
    }),
  };
}

export async function jsonSocketClient(t: Target, o: OpenOptions): Promise<ClientSession> {
  const inbox = new Inbox();
  let c: JSONSocketClient | undefined;
  for (let attempt = 0; c === undefined; attempt++) {
    try {
      c = await JSONSocketClient.connect({
        host: t.host,
        port: t.port,
        header: { conformance: o.id },
        timeoutMs: o.timeoutMs ?? CONNECT_MS,
        ...(o.source !== undefined ? { localAddress: o.source } : {}),
        localPort: clientPort(),
      });
    } catch (err) {
      // Only a client port in use is worth another port.
      if (attempt >= 16 || !/EADDRINUSE/.test(String((err as Error).message) + String((err as NodeJS.ErrnoException).code))) throw err;
    }
  }
  c.onMessage((m) => inbox.push(m));
  c.onClose((err) => inbox.close(err));
  return { inbox, send: (b) => c.send(b), close: () => c.close() };
}

// ------------------------------------------------------------------ curl

export interface HttpResult {
  status: number;
  body: Buffer;
}

export interface RequestOptions {
  readonly source?: string;
  readonly id: string;
  readonly timeoutMs?: number;
}

let curlSeq = 0;

function runCurl(args: string[], timeoutMs: number): Promise<{ code: number | null; stdout: Buffer; stderr: string }> {
  return new Promise((resolve) => {
    const p = spawn('curl', args, { stdio: ['ignore', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    let err = '';
    p.stdout.on('data', (d: Buffer) => out.push(d));
    p.stderr.on('data', (d: Buffer) => { err += d.toString(); });
    // --max-time bounds curl itself; this bounds a curl that hangs anyway.
    const timer = setTimeout(() => p.kill('SIGKILL'), timeoutMs + 2000);
    p.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout: Buffer.concat(out), stderr: err });
    });
    p.on('error', (e) => {
      clearTimeout(timer);
      resolve({ code: null, stdout: Buffer.alloc(0), stderr: e.message });
    });
  });
}

function curlCommon(o: RequestOptions, timeoutMs: number): string[] {
  return [
    '-sS', '--max-time', String(Math.ceil(timeoutMs / 1000)),
    '-H', 'Expect:', '-H', 'content-type: application/octet-stream', '-H', `x-conformance-id: ${o.id}`,
    ...(o.source !== undefined ? ['--interface', o.source] : []),
  ];
}

/** POST `body` with curl; the response status and body. */
export async function curlPost(t: Target, body: Buffer, o: RequestOptions): Promise<HttpResult> {
  const timeoutMs = o.timeoutMs ?? 10_000;
  const dir = os.tmpdir();
  const n = `${process.pid}-${curlSeq++}`;
  const inFile = path.join(dir, `l7c-req-${n}`);
  const outFile = path.join(dir, `l7c-res-${n}`);
  fs.writeFileSync(inFile, body);
  try {
    const r = await runCurl([...curlCommon(o, timeoutMs), '--data-binary', `@${inFile}`, '-o', outFile, '-w', '%{http_code}', `http://${t.host}:${t.port}/conformance`], timeoutMs);
    if (r.code !== 0) throw new Error(`curl exited ${r.code}: ${r.stderr.trim()}`);
    let got: Buffer;
    try { got = fs.readFileSync(outFile); } catch { got = Buffer.alloc(0); }
    return { status: Number(r.stdout.toString()), body: got };
  } finally {
    fs.rmSync(inFile, { force: true });
    fs.rmSync(outFile, { force: true });
  }
}

/**
 * `count` POSTs of the same short text body in one curl run (one keep-alive
 * connection, one gateway session per request). The body must not contain "|" or newlines.
 */
export async function curlPostMany(t: Target, count: number, body: string, o: RequestOptions): Promise<HttpResult[]> {
  const timeoutMs = o.timeoutMs ?? 20_000;
  const url = `http://${t.host}:${t.port}/conformance`;
  const r = await runCurl([...curlCommon(o, timeoutMs), '--data-binary', body, '-w', '|%{http_code}\n', ...Array.from({ length: count }, () => url)], timeoutMs);
  if (r.code !== 0) throw new Error(`curl exited ${r.code}: ${r.stderr.trim()}`);
  const lines = r.stdout.toString('latin1').split('\n').filter((l) => l !== '');
  return lines.map((l) => {
    const i = l.lastIndexOf('|');
    return { status: Number(l.slice(i + 1)), body: Buffer.from(l.slice(0, i), 'latin1') };
  });
}
