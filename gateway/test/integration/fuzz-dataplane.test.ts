// Data-plane fuzzing (fast-check, fixed seed, bounded time): random
// datagrams, garbage bytes, truncated handshakes and abrupt resets against a
// listener of every protocol in the registry that can listen, each routed to
// an Echo cluster. Throughout, a healthy session on the same listener keeps
// echoing, stays listed in GET /api/v1/sessions, and the API answers; the
// sessions the attacks opened on stream protocols end. So bad input ends
// only the session it arrived on, never the listener or the process.
//
// Protocols come from gateway/src/protocols/registry.ts: a new listener
// protocol fails the "every protocol has a driver" test until a driver for
// it is added here. Clients are real sockets: Node's for UDP, TCP, Unix
// streams, HTTP and WebSocket (raw bytes for the attacks, `ws` for the
// healthy client), socat for UNIX/dgram and UNIX/seqpacket (Node has
// neither), FIFOs for PIPE (whose writers share one session, so its runs
// are sequential), python3 packet sockets for AF_PACKET (inside a network
// namespace the test creates, on the far end of a veth pair whose other end
// the listener is bound to; root only: skipped with the reason elsewhere,
// failed under CI=true). On a failure fast-check prints the seed and the
// attacks; replay with FUZZ_SEED=<seed>.

import test, { type ExecutionContext } from 'ava';
import { spawn } from 'node:child_process';
import dgram from 'node:dgram';
import fs from 'node:fs';
import net from 'node:net';
import fc from 'fast-check';
import WebSocket from 'ws';
import { PROTOCOLS } from '../../src/protocols/registry.js';
import { api, freePort, startGw, tmpPath, waitFor } from './helpers.js';
import { needAddon } from './native-helpers.js';
import { ETHERTYPE, frame, makeVeth, nsPython, type Veth } from './veth.js';
import { createRequire } from 'node:module';
import { sctpUdpClient } from '../../../conformance/sctp-client.js';
import { nextWsMessage, openClient } from './ws-helpers.js';

const SEED = Number(process.env.FUZZ_SEED ?? 20261128);
const RUNS = 40;
/** Per variant; the whole file stays well under a minute on a small machine. */
const TIME_LIMIT_MS = 3_000;
const IO_TIMEOUT_MS = 3_000;

interface Where { port: number; path: string; packet?: PacketRig }

/** A healthy session: one echo round trip at a time. */
interface Client {
  roundTrip(payload: Buffer): Promise<Buffer>;
  close(): void;
}

type Attack = { kind: string; bytes: Uint8Array; cut: number; end: 'fin' | 'rst' | 'idle' };

interface Variant {
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
  /** For socat-driven protocols: the healthy client's socat address. */
  clientAddress?(w: Where): string;
  /** Per-test environment (AF_PACKET: the namespace and veth pair); undefined: the test was skipped (or failed under CI). */
  prepare?(t: ExecutionContext): Promise<Partial<Where> | undefined>;
}

// ---------------------------------------------------------------- plumbing

function withTimeout<T>(p: Promise<T>, what: string, ms = IO_TIMEOUT_MS): Promise<T> {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`${what}: no answer within ${ms} ms`)), ms);
    p.then((v) => { clearTimeout(t); resolve(v); }, (e: unknown) => { clearTimeout(t); reject(e as Error); });
  });
}

function udpSocket(): Promise<dgram.Socket> {
  const s = dgram.createSocket('udp4');
  s.on('error', () => { /* ICMP errors from a fuzzed peer are expected */ });
  return new Promise((resolve) => s.bind(0, '127.0.0.1', () => resolve(s)));
}

function nextDatagram(s: dgram.Socket): Promise<Buffer> {
  return withTimeout(new Promise((resolve) => s.once('message', resolve)), 'UDP reply');
}

function udpClient(port: number): Promise<Client> {
  return udpSocket().then((s) => ({
    roundTrip: (p) => { const r = nextDatagram(s); s.send(p, port, '127.0.0.1'); return r; },
    close: () => s.close(),
  }));
}

/** A byte-stream client on a connected socket: collects until the echo is complete. */
function streamClient(connect: () => net.Socket): Promise<Client> {
  return new Promise((resolve, reject) => {
    const sock = connect();
    let buf = Buffer.alloc(0);
    let want: { n: number; done: (b: Buffer) => void } | undefined;
    sock.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      if (want && buf.length >= want.n) {
        const out = buf.subarray(0, want.n);
        buf = buf.subarray(want.n);
        const w = want;
        want = undefined;
        w.done(out);
      }
    });
    sock.once('error', reject);
    sock.once('connect', () => resolve({
      roundTrip: (p) => withTimeout(new Promise<Buffer>((done) => { want = { n: p.length, done }; sock.write(p); }), 'stream echo'),
      close: () => sock.destroy(),
    }));
  });
}

/** RST where the socket type has one (TCP); a Unix socket can only be closed. */
function reset(sock: net.Socket): void {
  try { sock.resetAndDestroy(); } catch { sock.destroy(); }
}

/** Write bytes on a fresh connection, then end it the way the attack says; resolves once it is gone. */
function rawStream(connect: () => net.Socket, bytes: Uint8Array, end: Attack['end']): Promise<void> {
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

const bytesArb = fc.uint8Array({ minLength: 0, maxLength: 2048 });
const endArb = fc.constantFrom<Attack['end']>('fin', 'rst', 'idle');

function truncated(kind: string, messages: readonly string[]): fc.Arbitrary<Attack> {
  return fc.tuple(fc.constantFrom(...messages), fc.nat(), endArb).map(([m, cut, end]) => {
    const b = Buffer.from(m, 'latin1');
    return { kind, bytes: new Uint8Array(b.subarray(0, cut % (b.length + 1))), cut: cut % (b.length + 1), end };
  });
}

function garbage(kind: string): fc.Arbitrary<Attack> {
  return fc.tuple(bytesArb, endArb).map(([bytes, end]) => ({ kind, bytes, cut: bytes.length, end }));
}

// ------------------------------------------------------------------- HTTP

const HTTP_REQUESTS = [
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
function httpClient(port: number): Promise<Client> {
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
const WS_BAD_UPGRADES = [
  WS_UPGRADE,
  WS_UPGRADE.replace('Sec-WebSocket-Version: 13', 'Sec-WebSocket-Version: 99'),
  WS_UPGRADE.replace('dGhlIHNhbXBsZSBub25jZQ==', '!!'),
  WS_UPGRADE.replace('Upgrade: websocket\r\n', ''),
];

/** A valid upgrade followed by frames that are not: unmasked, reserved bits, lying lengths, bad opcodes. */
function wsFrames(): fc.Arbitrary<Attack> {
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

function wsClient(port: number): Promise<Client> {
  return openClient(`ws://127.0.0.1:${port}/`).then((c: WebSocket) => ({
    roundTrip: (p) => { const r = nextWsMessage(c, IO_TIMEOUT_MS).then((m) => m.data); c.send(p); return r; },
    close: () => c.terminate(),
  }));
}

// ------------------------------------------------------------- JSONSocket

const JSON_HEADER = '{"JSONSocketVersion":1,"tenant":"fuzz"}';

/** JSONSocket over UDP: the first datagram is the request header, the answer its response header. */
async function jsonSocketUdpClient(port: number): Promise<Client> {
  const s = await udpSocket();
  const answer = nextDatagram(s);
  s.send(JSON_HEADER, port, '127.0.0.1');
  const hdr = JSON.parse((await answer).toString()) as { JSONSocketStatus?: number };
  if (hdr.JSONSocketStatus !== 200) throw new Error(`JSONSocket handshake answered ${JSON.stringify(hdr)}`);
  return { roundTrip: (p) => { const r = nextDatagram(s); s.send(p, port, '127.0.0.1'); return r; }, close: () => s.close() };
}

/** JSONSocket over WebSocket: the first message is the request header, the first answer its response header. */
async function jsonSocketWsClient(port: number): Promise<Client> {
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
async function sendWsMessages(port: number, a: Attack): Promise<void> {
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

const jsonHeaders = fc.oneof(
  fc.constantFrom('', '{', '{"JSONSocketVersion":', 'null', '[]', '"x"', '{"JSONSocketVersion":"1"}', '{"JSONSocketVersion":1e400}', '{"JSONSocketVersion":1,"a":' + '['.repeat(5000)),
  fc.nat({ max: JSON_HEADER.length }).map((n) => JSON_HEADER.slice(0, n)),
  fc.jsonValue({ maxDepth: 3 }).map((v) => JSON.stringify({ JSONSocketVersion: 1, x: v })),
  fc.string({ maxLength: 200 }),
);

/** Datagram attacks from fresh sockets: a bad header, or a good one and then garbage, then the socket goes away. */
function datagramAttacks(kind: string, first: fc.Arbitrary<string | Uint8Array>): fc.Arbitrary<Attack> {
  return fc.tuple(first, fc.array(bytesArb, { maxLength: 4 }), fc.boolean()).map(([h, rest, huge]) => {
    const parts = [Buffer.from(h), ...rest.map((b) => Buffer.from(b))];
    if (huge) parts.push(Buffer.alloc(65_507, 0x5a)); // the largest UDP payload on IPv4
    // Length-prefixed so one Uint8Array carries them (fast-check prints it on failure).
    const packed = Buffer.concat(parts.flatMap((p) => { const l = Buffer.alloc(4); l.writeUInt32BE(p.length); return [l, p]; }));
    return { kind, bytes: new Uint8Array(packed), cut: parts.length, end: 'fin' as const };
  });
}

async function sendDatagrams(port: number, a: Attack): Promise<void> {
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
const sctpPacketArb = fc.tuple(fc.integer({ min: 1, max: 65535 }), fc.constantFrom(1, 1, 1, 0, 2, 3, 6, 10, 11, 14, 0x80, 0xc0), fc.nat({ max: 255 }), fc.uint8Array({ maxLength: 96 }), fc.boolean())
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
async function sendSctpPackets(port: number, a: Attack): Promise<void> {
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

async function sctpClient(port: number): Promise<Client> {
  const c = await sctpUdpClient({ host: '127.0.0.1', port });
  return {
    roundTrip: async (p) => {
      const before = c.inbox.chunks.length;
      c.send(p);
      await c.inbox.until(() => c.inbox.chunks.length > before, IO_TIMEOUT_MS, 'SCTP echo');
      return c.inbox.chunks[before]!;
    },
    close: () => { void c.abort(); },
  };
}

// ------------------------------------------------- Unix datagram protocols

// Node has no Unix datagram or seqpacket sockets; socat is the real peer.

/** A long-running socat between its stdin/stdout and the listener: one write is one message. */
function socatClient(t: ExecutionContext, address: string): Promise<Client> {
  const proc = spawn('socat', ['-b', '65536', 'STDIO', address], { stdio: ['pipe', 'pipe', 'pipe'] });
  t.teardown(() => { proc.kill('SIGKILL'); });
  let err = '';
  proc.stderr.on('data', (d: Buffer) => { err += d.toString(); });
  let buf = Buffer.alloc(0);
  let want: { n: number; done: (b: Buffer) => void } | undefined;
  proc.stdout.on('data', (d: Buffer) => {
    buf = Buffer.concat([buf, d]);
    if (want && buf.length >= want.n) {
      const out = buf.subarray(0, want.n);
      buf = buf.subarray(want.n);
      const w = want;
      want = undefined;
      w.done(out);
    }
  });
  return Promise.resolve({
    roundTrip: (p) => withTimeout(new Promise<Buffer>((done) => { want = { n: p.length, done }; proc.stdin.write(p); }), `socat ${address} echo${err ? ` (${err.trim()})` : ''}`),
    close: () => { proc.kill('SIGKILL'); },
  });
}

/** One short-lived socat: the attack's bytes as one message, then EOF (a seqpacket connection closes). */
function socatOnce(address: string, bytes: Uint8Array): Promise<void> {
  return new Promise((resolve) => {
    const proc = spawn('socat', ['-u', '-b', '65536', 'STDIN', address], { stdio: ['pipe', 'ignore', 'ignore'] });
    const timer = setTimeout(() => proc.kill('SIGKILL'), 2_000);
    proc.once('exit', () => { clearTimeout(timer); resolve(); });
    proc.once('error', () => { clearTimeout(timer); resolve(); });
    proc.stdin.on('error', () => { /* socat may be gone already */ });
    proc.stdin.end(Buffer.from(bytes));
  });
}

function unixMessageVariant(protocol: string, sessionsEnd: boolean, address: (w: Where, client: boolean) => string): Variant {
  return {
    title: protocol,
    protocol,
    sessionsEnd,
    spec: (w) => ({ protocol, filename: w.path }),
    open: () => { throw new Error('replaced per test (needs the test context)'); },
    attacks: fc.uint8Array({ minLength: 1, maxLength: 4096 }).map((bytes) => ({ kind: 'message', bytes, cut: bytes.length, end: 'fin' as const })),
    attack: (w, a) => socatOnce(address(w, false), a.bytes),
    clientAddress: (w) => address(w, true),
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

async function pipeRoundTrip(w: Where, payload: Buffer): Promise<Buffer> {
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

async function pipeAttack(w: Where, a: Attack): Promise<void> {
  const tx = await fifoWriter(w.path);
  if (a.bytes.length > 0) await new Promise<void>((r) => tx.write(a.bytes, () => r()));
  if (a.end === 'idle') await new Promise((r) => setTimeout(r, 100)); // a writer that lingers
  tx.destroy();
}

// -------------------------------------------------------------- AF_PACKET

// The listener is bound to the host end of a veth pair; the far end is in a
// namespace the test creates. Two python3 processes there: the healthy
// client (a packet socket of the listener's ethertype: sends a frame, waits
// for the echoed copy among everything echoed) and the injector (a packet
// socket of protocol 0, which receives nothing and sends any frame as is).
// The attacks' destination MAC is a unicast address nobody has, so the
// host's own stack ignores what arrives on its end (packet sockets still get
// it); their ethertypes are the listener's or not (kernel-filtered for the
// 0x88B5 listener, read and echoed by the ETH_P_ALL one). Runts shorter than
// an Ethernet header and frames above the MTU are refused by the sending
// kernel (EINVAL, EMSGSIZE): the injector counts and ignores that.

const PACKET_MTU = 9000;
const ATTACK_DST = Buffer.from('020000fe00fe', 'hex');
const ATTACK_SRC = Buffer.from('020000fe00fd', 'hex');

interface PacketRig {
  veth: Veth;
  /** Send one frame from the far end (resolves once sent, or refused by the kernel). */
  inject(f: Buffer): Promise<void>;
  refused(): number;
  /** Attack frames of the listener's ethertype that the Echo cluster sent back (so the gateway read them). */
  echoed: number;
  /** python3 in the namespace, killed at the test's teardown. */
  python(script: string): ReturnType<typeof pyLines>;
}

/** python3 in the namespace, talking hex lines on stdin/stdout. */
function pyLines(t: ExecutionContext, v: Veth, script: string): { write(line: string): void; onLine(fn: (l: string) => void): () => void; ready: Promise<void>; kill(): void } {
  const p = nsPython(t, v, script);
  const handlers = new Set<(l: string) => void>();
  let buf = '';
  let err = '';
  let readyFn: () => void = () => undefined;
  let failFn: (e: Error) => void = () => undefined;
  const ready = new Promise<void>((resolve, reject) => { readyFn = resolve; failFn = reject; });
  p.stderr!.on('data', (d: Buffer) => { err += d.toString(); });
  p.stdout!.on('data', (d: Buffer) => {
    buf += d.toString();
    let i: number;
    while ((i = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, i);
      buf = buf.slice(i + 1);
      if (line === 'READY') readyFn();
      else for (const h of [...handlers]) h(line);
    }
  });
  p.once('exit', (code) => failFn(new Error(`python3 in ${v.ns} exited (${code}): ${err.trim()}`)));
  return {
    write: (line) => { p.stdin!.write(`${line}\n`); },
    onLine: (fn) => { handlers.add(fn); return () => handlers.delete(fn); },
    ready: withTimeout(ready, `python3 in ${v.ns} to start`, 10_000),
    kill: () => { p.kill('SIGKILL'); },
  };
}

const PY_HEALTHY = (v: Veth) => `
import os, select, socket, sys
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(${ETHERTYPE}))
s.bind((${JSON.stringify(v.far)}, ${ETHERTYPE}))
print("READY")
buf = b""
while True:
    r, _, _ = select.select([0, s], [], [])
    if s in r:
        data, addr = s.recvfrom(65535)
        if addr[2] != socket.PACKET_OUTGOING:
            sys.stdout.write(data.hex() + "\\n")
    if 0 in r:
        d = os.read(0, 65536)
        if not d:
            break
        buf += d
        while b"\\n" in buf:
            line, buf = buf.split(b"\\n", 1)
            s.send(bytes.fromhex(line.decode()))
`;

const PY_INJECTOR = (v: Veth) => `
import socket, sys
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
s.bind((${JSON.stringify(v.far)}, 0))
print("READY")
for line in sys.stdin:
    try:
        s.send(bytes.fromhex(line.strip()))
        print("ok")
    except OSError as e:
        print("err", e.errno)
`;

async function packetPrepare(t: ExecutionContext): Promise<Partial<Where> | undefined> {
  if (!needAddon(t)) return undefined;
  const veth = makeVeth(t, { mtu: PACKET_MTU });
  if (veth === undefined) return undefined;
  const py = pyLines(t, veth, PY_INJECTOR(veth));
  await py.ready;
  // One frame at a time: each send is acknowledged ("ok" or "err <errno>").
  let queue = Promise.resolve();
  let refused = 0;
  const inject = (f: Buffer): Promise<void> => {
    const next = queue.then(() => withTimeout(new Promise<void>((resolve) => {
      const off = py.onLine((l) => { off(); if (l !== 'ok') refused++; resolve(); });
      py.write(f.length === 0 ? '' : f.toString('hex'));
    }), 'the frame injector'));
    queue = next.catch(() => undefined);
    return next;
  };
  return { packet: { veth, inject, refused: () => refused, echoed: 0, python: (script) => pyLines(t, veth, script) } };
}

async function packetClient(w: Where): Promise<Client> {
  const rig = w.packet!;
  const py = rig.python(PY_HEALTHY(rig.veth));
  await py.ready;
  const attackDst = ATTACK_DST.toString('hex');
  py.onLine((l) => { if (l.startsWith(attackDst)) rig.echoed++; });
  const roundTrip = (payload: Buffer, ms = IO_TIMEOUT_MS): Promise<Buffer> => {
    const hex = frame(payload).toString('hex');
    let off: () => void = () => undefined;
    return withTimeout(new Promise<Buffer>((resolve) => {
      // Everything of the type is echoed (the attacks too): wait for this frame's copy.
      off = py.onLine((l) => { if (l === hex) { off(); resolve(Buffer.from(l, 'hex').subarray(14)); } });
      py.write(hex);
    }), 'AF_PACKET echo', ms).finally(() => off());
  };
  // The veth's carrier may come up after the listener binds: repeat a first frame until it is echoed.
  await waitFor(() => roundTrip(Buffer.from('warm-up'), 500).catch(() => undefined), 10_000, 'a first AF_PACKET echo');
  return { roundTrip: (p) => roundTrip(p), close: () => py.kill() };
}

function header(ethertype: number): Buffer {
  const b = Buffer.alloc(14);
  ATTACK_DST.copy(b, 0);
  ATTACK_SRC.copy(b, 6);
  b.writeUInt16BE(ethertype, 12);
  return b;
}

const frameAttack = (kind: string) => (b: Buffer): Attack => ({ kind, bytes: new Uint8Array(b), cut: b.length, end: 'fin' });
const wrongTypes = fc.oneof(
  fc.constantFrom(0x0800, 0x86dd, 0x0806, 0x8100, 0x88a8, 0x8847, 0x0000, 0x05dc, 0x0600, 0xffff, ETHERTYPE + 1),
  fc.integer({ min: 0, max: 0xffff }).filter((e) => e !== ETHERTYPE),
);

function packetAttacks(): fc.Arbitrary<Attack> {
  return fc.oneof(
    // Shorter than an Ethernet header (the sending kernel refuses most of these).
    fc.uint8Array({ maxLength: 13 }).map((b) => frameAttack('runt')(Buffer.from(b))),
    // A header and less than the 60-byte Ethernet minimum (veth does not pad).
    fc.uint8Array({ maxLength: 45 }).map((b) => frameAttack('short')(Buffer.concat([header(ETHERTYPE), b]))),
    // A frame like the healthy client's, cut anywhere.
    fc.tuple(fc.uint8Array({ minLength: 1, maxLength: 1500 }), fc.nat()).map(([b, cut]) => {
      const f = Buffer.concat([header(ETHERTYPE), b]);
      return frameAttack('truncated')(f.subarray(0, cut % (f.length + 1)));
    }),
    fc.tuple(wrongTypes, fc.uint8Array({ maxLength: 1500 })).map(([e, b]) => frameAttack('wrong-ethertype')(Buffer.concat([header(e), b]))),
    // Above 1500 up to the veth MTU, and beyond it (refused by the sender).
    fc.tuple(fc.constantFrom(ETHERTYPE, 0x0800, 0x86dd), fc.integer({ min: 1501, max: PACKET_MTU + 64 }), fc.integer({ min: 0, max: 255 }))
      .map(([e, n, fill]) => frameAttack('oversized')(Buffer.concat([header(e), Buffer.alloc(n, fill)]))),
    // Random bytes after the destination MAC (kept unicast to nobody, for the host's sake).
    fc.uint8Array({ minLength: 0, maxLength: 2048 }).map((b) => frameAttack('random')(Buffer.concat([ATTACK_DST, Buffer.from(b)]))),
  );
}

function packetVariant(title: string, ethertype: number): Variant {
  return {
    title,
    protocol: 'AF_PACKET',
    sessionsEnd: false, // one singleton session for the listener
    prepare: packetPrepare,
    spec: (w) => ({ protocol: 'AF_PACKET', interface: w.packet!.veth.host, ethertype }),
    open: packetClient,
    attacks: packetAttacks(),
    attack: (w, a) => w.packet!.inject(Buffer.from(a.bytes)),
  };
}

// ------------------------------------------------------------------ drivers

function streamVariant(protocol: string, connect: (w: Where) => () => net.Socket, spec: (w: Where) => Record<string, unknown>): Variant {
  return {
    title: protocol,
    protocol,
    sessionsEnd: true,
    spec,
    open: (w) => streamClient(connect(w)),
    attacks: fc.oneof(garbage('garbage'), fc.constant<Attack>({ kind: 'connect-reset', bytes: new Uint8Array(), cut: 0, end: 'rst' })),
    attack: (w, a) => rawStream(connect(w), a.bytes, a.end),
  };
}

const tcpConnect = (w: Where) => () => net.connect(w.port, '127.0.0.1');

/** Listener protocol name -> its variants (engines, transports). */
const DRIVERS: Record<string, Variant[]> = {
  UDP: [{
    title: 'UDP',
    protocol: 'UDP',
    sessionsEnd: false,
    spec: (w) => ({ protocol: 'UDP', address: '127.0.0.1', port: w.port }),
    open: (w) => udpClient(w.port),
    attacks: datagramAttacks('datagrams', fc.uint8Array({ maxLength: 1500 })),
    attack: (w, a) => sendDatagrams(w.port, a),
  }],
  TCP: [streamVariant('TCP', tcpConnect, (w) => ({ protocol: 'TCP', address: '127.0.0.1', port: w.port }))],
  UnixDomainSocket: [streamVariant('UnixDomainSocket', (w) => () => net.connect(w.path), (w) => ({ protocol: 'UnixDomainSocket', filename: w.path }))],
  HTTP: [{
    title: 'HTTP',
    protocol: 'HTTP',
    sessionsEnd: true,
    spec: (w) => ({ protocol: 'HTTP', address: '127.0.0.1', port: w.port }),
    open: (w) => httpClient(w.port),
    attacks: fc.oneof(truncated('truncated-request', HTTP_REQUESTS), garbage('garbage')),
    attack: (w, a) => rawStream(tcpConnect(w), a.bytes, a.end),
  }],
  WebSocket: (['uws', 'ws'] as const).map((engine): Variant => ({
    title: `WebSocket (engine ${engine})`,
    protocol: 'WebSocket',
    sessionsEnd: true,
    spec: (w) => ({ protocol: 'WebSocket', address: '127.0.0.1', port: w.port, ...(engine === 'ws' ? { engine } : {}) }),
    open: (w) => wsClient(w.port),
    attacks: fc.oneof(truncated('truncated-upgrade', WS_BAD_UPGRADES), wsFrames(), garbage('garbage')),
    attack: (w, a) => rawStream(tcpConnect(w), a.bytes, a.end),
  })),
  // A healthy sender binds its own path (replies need an address); attackers send unbound, one-way.
  'UNIX/dgram': [unixMessageVariant('UNIX/dgram', false, (w, client) => `UNIX-SENDTO:${w.path}${client ? `,bind=${w.path}.client` : ''}`)],
  // Its attacked sessions are not checked to end here: see the known-failing test below.
  'UNIX/seqpacket': [unixMessageVariant('UNIX/seqpacket', false, (w) => `UNIX-CONNECT:${w.path},type=5`)],
  SCTP: [{
    title: 'SCTP over UDP',
    protocol: 'SCTP',
    sessionsEnd: false,
    spec: (w) => ({ protocol: 'SCTP', encapsulation: 'udp', address: '127.0.0.1', port: w.port }),
    open: (w) => sctpClient(w.port),
    attacks: datagramAttacks('sctp-packets', sctpPacketArb),
    attack: (w, a) => sendSctpPackets(w.port, a),
  }],
  PIPE: [{
    title: 'PIPE',
    protocol: 'PIPE',
    sessionsEnd: true,
    sequential: true,
    spec: (w) => ({ protocol: 'PIPE', filename: w.path, reply_filename: `${w.path}.reply` }),
    open: () => { throw new Error('PIPE runs are sequential: see fuzzSequential'); },
    attacks: garbage('garbage'),
    attack: pipeAttack,
  }],
  JSONSocket: [{
    title: 'JSONSocket over UDP',
    protocol: 'JSONSocket',
    sessionsEnd: false,
    spec: (w) => ({ protocol: 'JSONSocket', transport: { protocol: 'UDP', address: '127.0.0.1', port: w.port }, handshake_timeout: 500 }),
    open: (w) => jsonSocketUdpClient(w.port),
    attacks: datagramAttacks('json-header', jsonHeaders),
    attack: (w, a) => sendDatagrams(w.port, a),
  }, {
    title: 'JSONSocket over WebSocket',
    protocol: 'JSONSocket',
    sessionsEnd: true,
    spec: (w) => ({ protocol: 'JSONSocket', transport: { protocol: 'WebSocket', address: '127.0.0.1', port: w.port }, handshake_timeout: 500 }),
    open: (w) => jsonSocketWsClient(w.port),
    attacks: fc.oneof(datagramAttacks('json-header', jsonHeaders), truncated('truncated-upgrade', WS_BAD_UPGRADES), wsFrames()),
    attack: (w, a) => (a.kind === 'json-header' ? sendWsMessages(w.port, a) : rawStream(tcpConnect(w), a.bytes, a.end)),
  }],
  AF_PACKET: [
    packetVariant('AF_PACKET (ethertype 0x88B5)', ETHERTYPE),
    packetVariant('AF_PACKET (ETH_P_ALL)', 3),
  ],
};

const LISTENER_PROTOCOLS = PROTOCOLS.filter((p) => p.listener !== undefined && p.unavailable === undefined).map((p) => p.name);

test('every listener protocol in the registry has a fuzz driver', (t) => {
  const missing = LISTENER_PROTOCOLS.filter((p) => !DRIVERS[p]);
  t.deepEqual(missing, [], `add a driver to fuzz-dataplane.test.ts for: ${missing.join(', ')}`);
  t.true(LISTENER_PROTOCOLS.length >= 6, LISTENER_PROTOCOLS.join(', '));
});

// --------------------------------------------------------------------- runs

interface SessionDump { name: string; status?: string; source?: { origin?: string } }

async function listenerSessions(base: string, listener: string): Promise<SessionDump[]> {
  const r = await api(base, 'GET', '/api/v1/sessions');
  if (r.status !== 200) throw new Error(`GET /api/v1/sessions answered ${r.status}: ${r.text}`);
  return (r.body as SessionDump[]).filter((s) => s.source?.origin === listener);
}

/** The sequential harness (PIPE): after every attack its session ends, and a fresh client gets an echo. */
async function fuzzSequential(t: ExecutionContext, v: Variant): Promise<void> {
  const w: Where = { port: 0, path: tmpPath('fuzz.fifo') };
  const { base } = await startGw(t, {
    listeners: [{ name: 'fuzzed', spec: v.spec(w), rules: [{ action: { route: { destination: { name: 'echo', spec: { protocol: 'Echo' } } } } }] }],
  });
  let seq = 0;
  const quiet = () => waitFor(async () => (await listenerSessions(base, 'fuzzed')).length === 0, 10_000, `${v.title}: the attacked session to end`);
  const probe = async () => {
    await quiet();
    const payload = Buffer.from(`healthy-${++seq}-${'#'.repeat(seq % 50)}`);
    const back = await pipeRoundTrip(w, payload);
    if (!back.equals(payload)) throw new Error(`a fresh client got ${JSON.stringify(back.toString())} for ${JSON.stringify(payload.toString())}`);
  };
  await probe();
  let attacks = 0;
  const started = Date.now();
  const deadline = started + TIME_LIMIT_MS;
  await fc.assert(
    fc.asyncProperty(v.attacks, async (a) => {
      if (Date.now() > deadline) return;
      await v.attack(w, a);
      attacks++;
      await probe();
    }),
    { seed: SEED, numRuns: RUNS, endOnFailure: true, includeErrorInReport: true },
  );
  await quiet();
  t.is((await api(base, 'GET', '/api/v1/config')).status, 200);
  t.log(`seed ${SEED}: ${attacks} attacks in ${Date.now() - started} ms`);
  t.true(attacks >= 10, `too few attacks in the time budget (${attacks})`);
}

async function fuzz(t: ExecutionContext, v: Variant): Promise<void> {
  if (v.sequential) return fuzzSequential(t, v);
  const extra = v.prepare ? await v.prepare(t) : {};
  if (extra === undefined) return; // skipped, with the reason logged (or failed under CI=true)
  const w: Where = { port: await freePort(), path: tmpPath('fuzz.sock'), ...extra };
  const { base } = await startGw(t, {
    listeners: [{ name: 'fuzzed', spec: v.spec(w), rules: [{ action: { route: { destination: { name: 'echo', spec: { protocol: 'Echo' } } } } }] }],
  });
  const healthy = v.clientAddress ? await socatClient(t, v.clientAddress(w)) : await v.open(w);
  t.teardown(() => healthy.close());
  let seq = 0;
  const probe = async () => {
    const payload = Buffer.from(`healthy-${++seq}-${'#'.repeat(seq % 50)}`);
    const back = await healthy.roundTrip(payload);
    if (!back.equals(payload)) throw new Error(`the healthy session echoed ${JSON.stringify(back.toString())} for ${JSON.stringify(payload.toString())}`);
  };
  await probe();
  const before = await listenerSessions(base, 'fuzzed');
  if (before.length !== 1) throw new Error(`expected the healthy session alone, got ${JSON.stringify(before.map((s) => s.name))}`);
  const healthyName = before[0]!.name;

  let attacks = 0;
  const started = Date.now();
  const deadline = started + TIME_LIMIT_MS;
  await fc.assert(
    fc.asyncProperty(fc.array(v.attacks, { minLength: 1, maxLength: 4 }), async (batch) => {
      // Out of time: the remaining runs pass without doing anything. (fast-check's own
      // time limit abandons a run mid-flight, whose late echo would then confuse the next probe.)
      if (Date.now() > deadline) return;
      // The attacks run together, the healthy session talks meanwhile.
      await Promise.all([...batch.map((a) => v.attack(w, a)), probe()]);
      attacks += batch.length;
      await probe();
      const now = await listenerSessions(base, 'fuzzed');
      const h = now.find((s) => s.name === healthyName);
      if (!h) throw new Error(`the healthy session ${healthyName} is gone; sessions: ${JSON.stringify(now.map((s) => s.name))}`);
    }),
    { seed: SEED, numRuns: RUNS, endOnFailure: true, includeErrorInReport: true },
  );
  if (v.sessionsEnd) {
    // The attacked sessions end; the healthy one stays.
    let left: SessionDump[] = [];
    try {
      await waitFor(async () => {
        left = await listenerSessions(base, 'fuzzed');
        return left.length === 1 && left[0]!.name === healthyName;
      }, 10_000, `${v.title}: only the healthy session left`);
    } catch (err) {
      const others = left.filter((s) => s.name !== healthyName);
      throw new Error(`${(err as Error).message}; ${others.length} attacked sessions did not end, e.g. ${JSON.stringify(others.slice(0, 2))}`);
    }
  }
  await probe();
  t.is((await api(base, 'GET', '/api/v1/config')).status, 200);
  t.log(`seed ${SEED}: ${attacks} attacks in ${Date.now() - started} ms${w.packet ? ` (${w.packet.refused()} frames refused by the sending kernel, ${w.packet.echoed} echoed back)` : ''}`);
  t.true(attacks >= 10, `too few attacks in the time budget (${attacks})`);
  if (w.packet) t.true(w.packet.echoed > 0, 'no attack frame reached the AF_PACKET listener (none was echoed back)');
}

for (const [protocol, variants] of Object.entries(DRIVERS)) {
  for (const v of variants) {
    test.serial(`${v.title}: random input and truncated handshakes end only their own session`, async (t) => {
      t.true(LISTENER_PROTOCOLS.includes(protocol), `${protocol} is not a listener protocol of the registry any more`);
      await fuzz(t, v);
    });
  }
}

// Found by this fuzzer (2026-11-28): a UNIX/seqpacket session whose client
// sends a message and closes stayed CONNECTED (the listener's channel saw
// EOF and passed end() on, but the socket was never closed once both halves
// had ended). Fixed in native/channel.ts (closeIfDone).
test('UNIX/seqpacket: a session ends when its client closes', async (t) => {
  t.true(LISTENER_PROTOCOLS.includes('UNIX/seqpacket'));
  const w: Where = { port: 0, path: tmpPath('seqpacket.sock') };
  const { base } = await startGw(t, {
    listeners: [{ name: 'fuzzed', spec: { protocol: 'UNIX/seqpacket', filename: w.path }, rules: [{ action: { route: { destination: { spec: { protocol: 'Discard' } } } } }] }],
  });
  for (let i = 0; i < 5; i++) await socatOnce(`UNIX-CONNECT:${w.path},type=5`, Buffer.from(`message ${i}`));
  await waitFor(async () => (await listenerSessions(base, 'fuzzed')).length === 0, 3_000, 'the closed sessions to end');
  t.deepEqual(await listenerSessions(base, 'fuzzed'), [], 'no session outlives its closed client');
});
