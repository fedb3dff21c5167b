// The fuzz drivers' parts (see fuzz-dataplane.test.ts): what an attack is,
// the attacks per protocol, and the healthy clients. A healthy client is the
// conformance suite's client for the protocol (conformance/peers.ts
// LISTENER_PEERS, the repo's one per-protocol client table) wherever that
// table has a session client for the listener under test; this file keeps
// its own only where the table has none: HTTP (the table's client is one
// curl request per session; here a session must stay open across the
// attacks) and JSONSocket over WebSocket (not a listener of the table). PIPE
// and AF_PACKET bring their own rigs (sequential runs; fuzz-packet.ts).

import type { ExecutionContext } from 'ava';
import { spawn } from 'node:child_process';
import dgram from 'node:dgram';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import net from 'node:net';
import fc from 'fast-check';
import WebSocket from 'ws';
import { LISTENER_PEERS } from '../../../conformance/peers.js';
import { waitFor } from './helpers.js';
import { nextWsMessage, openClient } from './ws-helpers.js';
import type { PacketRig } from './fuzz-packet.js';

export const IO_TIMEOUT_MS = 3_000;

export interface Where { port: number; path: string; packet?: PacketRig }

/** A healthy session: one echo round trip at a time. */
export interface Client {
  roundTrip(payload: Buffer): Promise<Buffer>;
  close(): void;
}

export type Attack = { kind: string; bytes: Uint8Array; cut: number; end: 'fin' | 'rst' | 'idle' };

export interface Variant {
  title: string;
  protocol: string;
  /** Stream protocols: the attacks' sessions must end (datagram flows end by idle timeout only). */
  sessionsEnd: boolean;
  spec(w: Where): Record<string, unknown>;
  open(w: Where): Promise<Client>;
  attacks: fc.Arbitrary<Attack>;
  attack(w: Where, a: Attack): Promise<void>;
  /** One shared session per listener (PIPE): attack, wait for the end, then probe with a fresh client. */
  sequential?: boolean;
  /** Per-test environment (AF_PACKET: the namespace and veth pair); undefined: the test was skipped (or failed under CI). */
  prepare?(t: ExecutionContext): Promise<Partial<Where> | undefined>;
}

// ---------------------------------------------------------------- plumbing

export function withTimeout<T>(p: Promise<T>, what: string, ms = IO_TIMEOUT_MS): Promise<T> {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`${what}: no answer within ${ms} ms`)), ms);
    p.then((v) => { clearTimeout(t); resolve(v); }, (e: unknown) => { clearTimeout(t); reject(e as Error); });
  });
}

export function udpSocket(): Promise<dgram.Socket> {
  const s = dgram.createSocket('udp4');
  s.on('error', () => { /* ICMP errors from a fuzzed peer are expected */ });
  return new Promise((resolve) => s.bind(0, '127.0.0.1', () => resolve(s)));
}

export function nextDatagram(s: dgram.Socket): Promise<Buffer> {
  return withTimeout(new Promise((resolve) => s.once('message', resolve)), 'UDP reply');
}

/** RST where the socket type has one (TCP); a Unix socket can only be closed. */
function reset(sock: net.Socket): void {
  try { sock.resetAndDestroy(); } catch { sock.destroy(); }
}

/** Write bytes on a fresh connection, then end it the way the attack says; resolves once it is gone. */
export function rawStream(connect: () => net.Socket, bytes: Uint8Array, end: Attack['end']): Promise<void> {
  return new Promise((resolve) => {
    const sock = connect();
    let finished = false;
    const done = () => { if (!finished) { finished = true; clearTimeout(timer); resolve(); } };
    // The gateway may answer (an error page, 400) and close, or keep waiting; we do not wait long.
    const timer = setTimeout(() => { reset(sock); done(); }, 300);
    sock.on('data', () => { /* discard */ });
    sock.on('error', done);
    sock.on('close', done);
    sock.on('connect', () => {
      if (bytes.length > 0) sock.write(bytes);
      if (end === 'rst') reset(sock);
      else if (end === 'fin') sock.end();
      // 'idle': leave it open until the timer resets it (a slowloris-like truncated request).
    });
  });
}

export const bytesArb = fc.uint8Array({ minLength: 0, maxLength: 2048 });
const endArb = fc.constantFrom<Attack['end']>('fin', 'rst', 'idle');

export function truncated(kind: string, messages: readonly string[]): fc.Arbitrary<Attack> {
  return fc.tuple(fc.constantFrom(...messages), fc.nat(), endArb).map(([m, cut, end]) => {
    const b = Buffer.from(m, 'latin1');
    return { kind, bytes: new Uint8Array(b.subarray(0, cut % (b.length + 1))), cut: cut % (b.length + 1), end };
  });
}

export function garbage(kind: string): fc.Arbitrary<Attack> {
  return fc.tuple(bytesArb, endArb).map(([bytes, end]) => ({ kind, bytes, cut: bytes.length, end }));
}

/**
 * The conformance suite's client for `protocol` (conformance/peers.ts
 * LISTENER_PEERS) as the healthy session: one echo round trip at a time, the
 * echo counted in bytes so that datagram and byte-stream clients read alike.
 */
export async function peerClient(protocol: string, w: Where): Promise<Client> {
  const peer = LISTENER_PEERS[protocol];
  if (peer?.mode !== 'session') throw new Error(`${protocol}: conformance/peers.ts has no session client for it`);
  const c = await peer.open({ host: '127.0.0.1', port: w.port, path: w.path }, { id: 'fuzz-healthy', timeoutMs: IO_TIMEOUT_MS });
  let taken = 0;
  return {
    roundTrip: async (p) => {
      const from = taken;
      taken += p.length;
      c.send(p);
      await c.inbox.until(() => c.inbox.bytes >= from + p.length, IO_TIMEOUT_MS, `${protocol} echo`);
      return c.inbox.concat().subarray(from, from + p.length);
    },
    close: () => { void c.close(); },
  };
}

/** The conformance table's listener spec for `protocol`, on this run's port or path, with `extra` on top. */
export function peerSpec(protocol: string, extra: Record<string, unknown> = {}): (w: Where) => Record<string, unknown> {
  const peer = LISTENER_PEERS[protocol];
  if (peer === undefined) throw new Error(`${protocol}: not in conformance/peers.ts LISTENER_PEERS`);
  return (w) => ({ ...peer.spec({ address: '127.0.0.1', port: w.port, path: w.path }), ...extra });
}

// ------------------------------------------------------------------- HTTP

export const HTTP_REQUESTS = [
  'GET / HTTP/1.1\r\nHost: x\r\n\r\n',
  'POST /p?q=1 HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n0123456789',
  'POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nZZ\r\n',
  'POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!',
  'GET / HTTP/1.1\r\nHost: x\r\nX: ' + 'a'.repeat(70_000) + '\r\n\r\n',
  'GET /' + 'b'.repeat(10_000) + ' HTTP/1.1\r\n\r\n',
  'BREW /pot HTCPCP/1.0\r\n\r\n',
  'GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n',
];

/** An HTTP session that stays open: a chunked upload whose chunks the Echo cluster streams back. */
export function httpClient(port: number): Promise<Client> {
  return new Promise((resolve, reject) => {
    const sock = net.connect(port, '127.0.0.1');
    let seen = '';
    let want: { token: string; done: (b: Buffer) => void } | undefined;
    sock.on('data', (d: Buffer) => {
      seen += d.toString('latin1');
      if (want && seen.includes(want.token)) {
        const w = want;
        want = undefined;
        seen = seen.slice(seen.indexOf(w.token) + w.token.length);
        w.done(Buffer.from(w.token, 'latin1'));
      }
    });
    sock.once('error', reject);
    sock.once('connect', () => {
      sock.write('POST /healthy HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\n');
      resolve({
        roundTrip: (p) => withTimeout(new Promise<Buffer>((done) => {
          want = { token: p.toString('latin1'), done };
          sock.write(`${p.length.toString(16)}\r\n`);
          sock.write(p);
          sock.write('\r\n');
        }), 'HTTP streamed echo'),
        close: () => sock.destroy(),
      });
    });
  });
}

// -------------------------------------------------------------- WebSocket

const WS_UPGRADE = 'GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n';
export const WS_BAD_UPGRADES = [
  WS_UPGRADE,
  WS_UPGRADE.replace('Sec-WebSocket-Version: 13', 'Sec-WebSocket-Version: 99'),
  WS_UPGRADE.replace('dGhlIHNhbXBsZSBub25jZQ==', '!!'),
  WS_UPGRADE.replace('Upgrade: websocket\r\n', ''),
];

/** A valid upgrade followed by frames that are not: unmasked, reserved bits, lying lengths, bad opcodes. */
export function wsFrames(): fc.Arbitrary<Attack> {
  const frame = fc.oneof(
    bytesArb.map((b) => Buffer.from(b)),
    fc.constant(Buffer.from([0x81, 0x05, 0x68, 0x65, 0x6c, 0x6c, 0x6f])), // unmasked text
    fc.constant(Buffer.from([0xf1, 0x80, 0, 0, 0, 0])), // RSV bits set
    fc.constant(Buffer.from([0x83, 0x80, 0, 0, 0, 0])), // reserved opcode
    fc.constant(Buffer.from([0x82, 0xff, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 1, 2, 3, 4])), // 2^63 length
    fc.constant(Buffer.from([0x89, 0xfe, 0x01, 0x00, 1, 2, 3, 4])), // a 256-byte ping (control frames are <= 125)
    fc.constant(Buffer.from([0x88, 0x81, 1, 2, 3, 4, 0x55])), // close with a 1-byte payload
    fc.constant(Buffer.from([0x01, 0x81, 1, 2, 3, 4, 0x41, 0x81, 0x81, 1, 2, 3, 4, 0x41])), // text fragment, then a new text frame
  );
  return fc.tuple(fc.array(frame, { minLength: 1, maxLength: 3 }), endArb).map(([frames, end]) => {
    const b = Buffer.concat([Buffer.from(WS_UPGRADE, 'latin1'), ...frames]);
    return { kind: 'ws-frames', bytes: new Uint8Array(b), cut: b.length, end };
  });
}

// ------------------------------------------------------------- JSONSocket

const JSON_HEADER = '{"JSONSocketVersion":1,"tenant":"fuzz"}';

/** JSONSocket over WebSocket: the first message is the request header, the first answer its response header. */
export async function jsonSocketWsClient(port: number): Promise<Client> {
  const c = await openClient(`ws://127.0.0.1:${port}/`);
  const answer = nextWsMessage(c, IO_TIMEOUT_MS);
  c.send(JSON_HEADER);
  const hdr = JSON.parse((await answer).data.toString()) as { JSONSocketStatus?: number };
  if (hdr.JSONSocketStatus !== 200) throw new Error(`JSONSocket handshake answered ${JSON.stringify(hdr)}`);
  return {
    roundTrip: (p) => { const r = nextWsMessage(c, IO_TIMEOUT_MS).then((m) => m.data); c.send(p); return r; },
    close: () => c.terminate(),
  };
}

/** WebSocket messages from a fresh connection (the same packing as datagrams), then it closes. */
export async function sendWsMessages(port: number, a: Attack): Promise<void> {
  let c: WebSocket;
  try {
    c = await withTimeout(openClient(`ws://127.0.0.1:${port}/`), 'WebSocket open');
  } catch {
    return; // refused: nothing more to do here
  }
  c.on('error', () => { /* the gateway may close first */ });
  const b = Buffer.from(a.bytes);
  for (let off = 0; off < b.length;) {
    const n = b.readUInt32BE(off);
    c.send(b.subarray(off + 4, off + 4 + n));
    off += 4 + n;
  }
  await new Promise<void>((resolve) => {
    c.once('close', () => resolve());
    c.close(1000);
    setTimeout(() => { c.terminate(); resolve(); }, 500);
  });
}

export const jsonHeaders = fc.oneof(
  fc.constantFrom('', '{', '{"JSONSocketVersion":', 'null', '[]', '"x"', '{"JSONSocketVersion":"1"}', '{"JSONSocketVersion":1e400}', '{"JSONSocketVersion":1,"a":' + '['.repeat(5000)),
  fc.nat({ max: JSON_HEADER.length }).map((n) => JSON_HEADER.slice(0, n)),
  fc.jsonValue({ maxDepth: 3 }).map((v) => JSON.stringify({ JSONSocketVersion: 1, x: v })),
  fc.string({ maxLength: 200 }),
);

/** Datagram attacks from fresh sockets: a bad header, or a good one and then garbage, then the socket goes away. */
export function datagramAttacks(kind: string, first: fc.Arbitrary<string | Uint8Array>): fc.Arbitrary<Attack> {
  return fc.tuple(first, fc.array(bytesArb, { maxLength: 4 }), fc.boolean()).map(([h, rest, huge]) => {
    const parts = [Buffer.from(h), ...rest.map((b) => Buffer.from(b))];
    if (huge) parts.push(Buffer.alloc(65_507, 0x5a)); // the largest UDP payload on IPv4
    // Length-prefixed so one Uint8Array carries them (fast-check prints it on failure).
    const packed = Buffer.concat(parts.flatMap((p) => { const l = Buffer.alloc(4); l.writeUInt32BE(p.length); return [l, p]; }));
    return { kind, bytes: new Uint8Array(packed), cut: parts.length, end: 'fin' as const };
  });
}

export async function sendDatagrams(port: number, a: Attack): Promise<void> {
  const s = await udpSocket();
  const b = Buffer.from(a.bytes);
  const sent: Promise<void>[] = [];
  for (let off = 0; off < b.length;) {
    const n = b.readUInt32BE(off);
    const msg = b.subarray(off + 4, off + 4 + n);
    off += 4 + n;
    sent.push(new Promise((r) => s.send(msg, port, '127.0.0.1', () => r())));
  }
  await Promise.all(sent);
  s.close(); // replies then hit a closed port: ICMP unreachable for the gateway's socket
}

// ------------------------------------------- SCTP over UDP encapsulation

const crc32c = (createRequire(createRequire(import.meta.url).resolve('sctp'))('polycrc') as { crc32c: (b: Uint8Array) => number }).crc32c;

/**
 * SCTP-shaped packets (common header + one chunk, mostly INIT with vtag 0, so
 * that they pass the listener's first checks and reach the SCTP stack): a
 * random source port, chunk type, flags, length field and body.
 */
export const sctpPacketArb = fc.tuple(fc.integer({ min: 1, max: 65535 }), fc.constantFrom(1, 1, 1, 0, 2, 3, 6, 10, 11, 14, 0x80, 0xc0), fc.nat({ max: 255 }), fc.uint8Array({ maxLength: 96 }), fc.boolean())
  .map(([src, type, flags, body, goodLen]) => {
    const b = Buffer.alloc(16 + body.length);
    b.writeUInt16BE(src, 0);
    b[12] = type;
    b[13] = flags;
    b.writeUInt16BE(goodLen ? 4 + body.length : (body.length * 7 + 1) & 0xffff, 14);
    Buffer.from(body).copy(b, 16);
    return new Uint8Array(b);
  });

/** sendDatagrams for SCTP: each packet of 12+ bytes gets the listener's port and, mostly, a valid CRC32c. */
export async function sendSctpPackets(port: number, a: Attack): Promise<void> {
  const b = Buffer.from(a.bytes);
  const out: Buffer[] = [];
  for (let off = 0; off < b.length;) {
    const n = b.readUInt32BE(off);
    const msg = Buffer.from(b.subarray(off + 4, off + 4 + n));
    off += 4 + n;
    if (msg.length >= 12) {
      msg.writeUInt16BE(port, 2);
      msg.writeUInt32LE(0, 8);
      // One in eight keeps a wrong checksum (dropped before the stack).
      if (msg[4]! % 8 !== 0) msg.writeUInt32LE(crc32c(msg) >>> 0, 8);
    }
    out.push(msg);
  }
  return sendDatagrams(port, { ...a, bytes: new Uint8Array(Buffer.concat(out.flatMap((m) => { const l = Buffer.alloc(4); l.writeUInt32BE(m.length); return [l, m]; }))) });
}

// ------------------------------------------------- Unix datagram protocols

// Node has no Unix datagram or seqpacket sockets: socat sends the attacks
// (the healthy client is the conformance suite's, on the native addon).

/** One short-lived socat: the attack's bytes as one message, then EOF (a seqpacket connection closes). */
export function socatOnce(address: string, bytes: Uint8Array): Promise<void> {
  return new Promise((resolve) => {
    const proc = spawn('socat', ['-u', '-b', '65536', 'STDIN', address], { stdio: ['pipe', 'ignore', 'ignore'] });
    const timer = setTimeout(() => proc.kill('SIGKILL'), 2_000);
    proc.once('exit', () => { clearTimeout(timer); resolve(); });
    proc.once('error', () => { clearTimeout(timer); resolve(); });
    proc.stdin.on('error', () => { /* socat may be gone already */ });
    proc.stdin.end(Buffer.from(bytes));
  });
}

export function unixMessageVariant(protocol: string, attackAddress: (w: Where) => string): Variant {
  return {
    title: protocol,
    protocol,
    sessionsEnd: false,
    spec: peerSpec(protocol),
    open: (w) => peerClient(protocol, w),
    attacks: fc.uint8Array({ minLength: 1, maxLength: 4096 }).map((bytes) => ({ kind: 'message', bytes, cut: bytes.length, end: 'fin' as const })),
    attack: (w, a) => socatOnce(attackAddress(w), a.bytes),
  };
}

// ------------------------------------------------------------------- PIPE

// A FIFO has no connections: writers that overlap share one session. So a
// PIPE listener cannot hold a healthy session beside an attacked one; its
// runs are sequential instead (attack, the attacked session ends, then a
// fresh writer gets a full echo through the reply FIFO).

const { O_RDONLY, O_WRONLY, O_NONBLOCK } = fs.constants;

/** The FIFO's writing end, once the listener reads it (it re-opens between sessions). */
async function fifoWriter(p: string): Promise<net.Socket> {
  const { fd } = await waitFor(() => {
    try {
      return { fd: fs.openSync(p, O_WRONLY | O_NONBLOCK) };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENXIO') return undefined; // nobody reads yet
      throw err;
    }
  }, IO_TIMEOUT_MS, `a reader on ${p}`);
  const s = new net.Socket({ fd, readable: false, writable: true });
  s.on('error', () => { /* EPIPE once the listener dropped the session */ });
  return s;
}

export async function pipeRoundTrip(w: Where, payload: Buffer): Promise<Buffer> {
  const rx = new net.Socket({ fd: fs.openSync(`${w.path}.reply`, O_RDONLY | O_NONBLOCK), readable: true, writable: false });
  const tx = await fifoWriter(w.path);
  try {
    return await withTimeout(new Promise<Buffer>((resolve) => {
      let buf = Buffer.alloc(0);
      rx.on('data', (d: Buffer) => {
        buf = Buffer.concat([buf, d]);
        if (buf.length >= payload.length) resolve(buf);
      });
      tx.write(payload);
    }), 'PIPE echo');
  } finally {
    tx.destroy();
    rx.destroy();
  }
}

export async function pipeAttack(w: Where, a: Attack): Promise<void> {
  const tx = await fifoWriter(w.path);
  if (a.bytes.length > 0) await new Promise<void>((r) => tx.write(a.bytes, () => r()));
  if (a.end === 'idle') await new Promise((r) => setTimeout(r, 100)); // a writer that lingers
  tx.destroy();
}

// ------------------------------------------------------------- variants

/** A byte stream: garbage and connect-and-reset attacks; the attacked sessions end. */
export function streamVariant(protocol: string, connect: (w: Where) => () => net.Socket): Variant {
  return {
    title: protocol,
    protocol,
    sessionsEnd: true,
    spec: peerSpec(protocol),
    open: (w) => peerClient(protocol, w),
    attacks: fc.oneof(garbage('garbage'), fc.constant<Attack>({ kind: 'connect-reset', bytes: new Uint8Array(), cut: 0, end: 'rst' })),
    attack: (w, a) => rawStream(connect(w), a.bytes, a.end),
  };
}

export const tcpConnect = (w: Where) => () => net.connect(w.port, '127.0.0.1');
