// WebSocket message-rate load generator: N connections, W messages in flight
// on each (closed loop: every echo sends the next message), fixed-size binary
// messages carrying their send time, counted for a fixed time after a
// warm-up. Prints one JSON line with messages/s and round-trip percentiles.
//
// The client speaks the WebSocket wire format over a plain TCP socket with
// pre-built frames instead of using a client library: on a 2-core machine
// the load generator shares the CPU with the server under test, and a
// library's per-message cost (masking, events, option objects) would be
// measured as much as the server. Every echo arriving in one TCP read is
// answered with one write. Frames use a zero masking key, which is valid
// (the key must be present, its value is the client's business) and costs
// every server the same unmasking work.
//
// Usage: node dist/bench/ws-load.js --url ws://127.0.0.1:PORT/ [--connections 8]
//   [--window 16] [--size 64] [--warmup 1] [--duration 5] [--max-messages N]
//   [--timeout 30]
// While running it prints "MEASURE" when the measured interval starts, so a
// supervisor can sample CPU time over exactly that interval.

import net from 'node:net';
import crypto from 'node:crypto';
import { parseArgs } from 'node:util';
import { performance } from 'node:perf_hooks';

const { values: a } = parseArgs({
  options: {
    url: { type: 'string' },
    connections: { type: 'string', default: '8' },
    window: { type: 'string', default: '16' },
    size: { type: 'string', default: '64' },
    warmup: { type: 'string', default: '1' },
    duration: { type: 'string', default: '5' },
    'max-messages': { type: 'string', default: '50000000' },
    timeout: { type: 'string', default: '30' },
  },
});

const url = new URL(a.url ?? 'ws://127.0.0.1:8080/');
const CONNECTIONS = Number(a.connections);
const WINDOW = Number(a.window);
const SIZE = Number(a.size);
const WARMUP_MS = Number(a.warmup) * 1000;
const DURATION_MS = Number(a.duration) * 1000;
const MAX_MESSAGES = Number(a['max-messages']);
const TIMEOUT_MS = Number(a.timeout) * 1000;
if (!(SIZE >= 8 && SIZE <= 65535)) throw new Error('--size must be 8..65535 (the payload carries an 8-byte timestamp)');
if (!(CONNECTIONS >= 1 && WINDOW >= 1 && DURATION_MS > 0 && WARMUP_MS >= 0)) throw new Error('bad arguments');

// Hard bound, whatever happens.
setTimeout(() => {
  process.stdout.write(`${JSON.stringify({ error: `no result after ${TIMEOUT_MS} ms` })}\n`);
  process.exit(2);
}, TIMEOUT_MS);

/** One client frame: FIN+binary, MASK bit, length, zero masking key, payload. */
const HDR = SIZE < 126 ? 6 : 8;
const FRAME = HDR + SIZE;
const template = Buffer.alloc(FRAME, 0x5a);
template[0] = 0x82;
if (SIZE < 126) {
  template[1] = 0x80 | SIZE;
  template.fill(0, 2, 6);
} else {
  template[1] = 0x80 | 126;
  template.writeUInt16BE(SIZE, 2);
  template.fill(0, 4, 8);
}

/** Round-trip histogram: 10 µs buckets up to 1 s, the last one catches the rest. */
const BUCKET_US = 10;
const hist = new Uint32Array(100_001);
let latSumUs = 0;

type Phase = 'connecting' | 'warmup' | 'measure' | 'drain';
let phase: Phase = 'connecting';
let measured = 0;
let sizeErrors = 0;
const errors: string[] = [];

function buildFrames(k: number, now: number): Buffer {
  const out = Buffer.allocUnsafe(k * FRAME);
  for (let i = 0; i < k; i++) {
    const off = i * FRAME;
    template.copy(out, off);
    out.writeDoubleLE(now, off + HDR);
  }
  return out;
}

class Conn {
  sent = 0;
  received = 0;
  private pending: Buffer | undefined;
  private open = false;

  constructor(readonly sock: net.Socket) {}

  handshake(): Promise<void> {
    return new Promise((resolve, reject) => {
      const key = crypto.randomBytes(16).toString('base64');
      const sock = this.sock;
      let head = Buffer.alloc(0);
      const t = setTimeout(() => fail(new Error('handshake timed out')), 5000);
      const fail = (err: Error) => { clearTimeout(t); sock.destroy(); reject(err); };
      const onData = (d: Buffer) => {
        head = Buffer.concat([head, d]);
        const end = head.indexOf('\r\n\r\n');
        if (end < 0) {
          if (head.length > 16384) fail(new Error('handshake answer too long'));
          return;
        }
        const status = head.subarray(0, head.indexOf('\r\n')).toString();
        if (!/^HTTP\/1\.1 101 /.test(status)) return fail(new Error(`upgrade refused: ${status}`));
        clearTimeout(t);
        sock.off('data', onData);
        sock.off('error', fail);
        this.open = true;
        sock.on('data', (chunk: Buffer) => this.onData(chunk));
        sock.on('error', (err) => errors.push(`connection error: ${err.message}`));
        sock.on('close', () => { if (this.open) { this.open = false; if (phase !== 'drain') errors.push('connection closed by the server'); } });
        const rest = head.subarray(end + 4);
        if (rest.length > 0) this.onData(rest);
        resolve();
      };
      sock.on('data', onData);
      sock.once('error', fail);
      sock.write(`GET ${url.pathname}${url.search} HTTP/1.1\r\nHost: ${url.host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
        `Sec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n\r\n`);
    });
  }

  start(now: number): void {
    this.sent += WINDOW;
    this.sock.write(buildFrames(WINDOW, now));
  }

  private onData(chunk: Buffer): void {
    let buf = chunk;
    if (this.pending !== undefined) {
      buf = Buffer.concat([this.pending, chunk]);
      this.pending = undefined;
    }
    const now = performance.now();
    const counting = phase === 'measure';
    const sending = phase === 'warmup' || phase === 'measure';
    let replies = 0;
    let off = 0;
    const n = buf.length;
    while (n - off >= 2) {
      const b0 = buf[off]!;
      let len = buf[off + 1]! & 0x7f;
      let hdr = 2;
      if (len === 126) {
        if (n - off < 4) break;
        len = buf.readUInt16BE(off + 2);
        hdr = 4;
      } else if (len === 127) {
        if (n - off < 10) break;
        len = Number(buf.readBigUInt64BE(off + 2));
        hdr = 10;
      }
      if (n - off < hdr + len) break;
      const opcode = b0 & 0x0f;
      const p = off + hdr;
      off = p + len;
      if (opcode === 2 || opcode === 1) {
        this.received++;
        if (len !== SIZE) { sizeErrors++; continue; }
        if (counting) {
          measured++;
          const us = (now - buf.readDoubleLE(p)) * 1000;
          latSumUs += us;
          const b = Math.floor(us / BUCKET_US);
          hist[b < hist.length - 1 ? b : hist.length - 1]!++;
        }
        if (sending) replies++;
      } else if (opcode === 8) {
        errors.push(`server closed the connection${len >= 2 ? ` with code ${buf.readUInt16BE(p)}` : ''}`);
        this.open = false;
      } else if (opcode === 9) {
        // Ping: answer with a (masked, zero-key) pong carrying the same data, if short.
        if (len < 126) {
          const pong = Buffer.alloc(6 + len);
          pong[0] = 0x8a;
          pong[1] = 0x80 | len;
          buf.copy(pong, 6, p, p + len);
          this.sock.write(pong);
        }
      }
    }
    if (off < n) this.pending = buf.subarray(off);
    if (replies > 0) {
      this.sent += replies;
      this.sock.write(buildFrames(replies, now));
    }
    if (counting && measured >= MAX_MESSAGES) stop();
  }
}

function connect(): Promise<Conn> {
  return new Promise((resolve, reject) => {
    const sock = net.connect({ host: url.hostname, port: Number(url.port || 80), noDelay: true });
    sock.once('error', reject);
    sock.once('connect', () => {
      sock.off('error', reject);
      const c = new Conn(sock);
      c.handshake().then(() => resolve(c), reject);
    });
  });
}

const conns: Conn[] = [];
let measureStart = 0;
let measureEnd = 0;
let cpuStart: NodeJS.CpuUsage | undefined;
let cpuUsed: NodeJS.CpuUsage | undefined;
let stopTimer: NodeJS.Timeout | undefined;

function percentile(q: number): number {
  let total = 0;
  for (let i = 0; i < hist.length; i++) total += hist[i]!;
  if (total === 0) return NaN;
  const want = Math.ceil(total * q);
  let acc = 0;
  for (let i = 0; i < hist.length; i++) {
    acc += hist[i]!;
    if (acc >= want) return (i + 0.5) * BUCKET_US;
  }
  return NaN;
}

function stop(): void {
  if (phase !== 'measure') return;
  measureEnd = performance.now();
  cpuUsed = process.cpuUsage(cpuStart);
  phase = 'drain';
  if (stopTimer) clearTimeout(stopTimer);
  // Wait briefly for what is in flight, so lost messages show as lost.
  const drainUntil = Date.now() + 500;
  const poll = setInterval(() => {
    const outstanding = conns.reduce((s, c) => s + c.sent - c.received, 0);
    if (outstanding === 0 || Date.now() > drainUntil) {
      clearInterval(poll);
      report(outstanding);
    }
  }, 20);
}

function report(lost: number): void {
  const seconds = (measureEnd - measureStart) / 1000;
  const cpu = cpuUsed ? (cpuUsed.user + cpuUsed.system) / 1e6 / seconds : NaN;
  const result = {
    url: url.href,
    connections: CONNECTIONS,
    window: WINDOW,
    size: SIZE,
    seconds: Number(seconds.toFixed(3)),
    messages: measured,
    rate: Math.round(measured / seconds),
    p50_us: Math.round(percentile(0.5)),
    p99_us: Math.round(percentile(0.99)),
    mean_us: measured ? Math.round(latSumUs / measured) : NaN,
    lost,
    size_errors: sizeErrors,
    load_cpu: Number(cpu.toFixed(3)),
    errors: [...new Set(errors)].slice(0, 5),
  };
  process.stdout.write(`${JSON.stringify(result)}\n`);
  for (const c of conns) c.sock.destroy();
  process.exit(0);
}

async function main(): Promise<void> {
  for (let i = 0; i < CONNECTIONS; i++) conns.push(await connect());
  phase = 'warmup';
  const now = performance.now();
  for (const c of conns) c.start(now);
  setTimeout(() => {
    phase = 'measure';
    measureStart = performance.now();
    cpuStart = process.cpuUsage();
    process.stdout.write('MEASURE\n');
    stopTimer = setTimeout(stop, DURATION_MS);
  }, WARMUP_MS);
}

main().catch((err: Error) => {
  process.stdout.write(`${JSON.stringify({ error: err.message })}\n`);
  process.exit(1);
});
