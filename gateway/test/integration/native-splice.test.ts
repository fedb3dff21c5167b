// The splice(2) fast path for bulk stream sessions (native/sockets/src/splice.cc,
// gateway/src/fastpath/splice.ts), over real sockets: bytes arrive exact and in
// order (SHA-256 of everything), the session dump says the kernel carried
// them, the counters equal the bytes sent, EOF passes through in each
// direction while the other keeps flowing, deleting the session over REST
// mid-transfer ends both sockets, and no fd is left behind.
//
// The handover point is lowered to 64 KiB (L7MP_SPLICE_AFTER, read when the
// gateway starts) so that every transfer here spends most of its bytes on the
// kernel path.
//
// These sessions would otherwise take the raw stream path from their first
// byte (fastpath/raw.ts, tested in stream-path.test.ts); this file is about
// the handover from net.Socket, so it turns that path off (read when the
// first gateway of this process starts).

import test, { type ExecutionContext } from 'ava';
import crypto from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import { spliceUnavailable } from '../../src/fastpath/splice.js';
import { api, freePort, startGw, tmpPath, waitFor } from './helpers.js';
import { needCapability } from './native-helpers.js';

process.env.L7MP_TCP_FASTPATH = 'off';

process.env.L7MP_SPLICE_AFTER = String(64 * 1024);

const MiB = 1024 * 1024;

function needSplice(t: ExecutionContext): boolean {
  return needCapability(t, spliceUnavailable());
}

const fdCount = (): number => fs.readdirSync('/proc/self/fd').length;
const sha = (b: Uint8Array): string => crypto.createHash('sha256').update(b).digest('hex');

/** Everything a socket reads until EOF, hashed as it comes. */
function readAll(s: net.Socket): Promise<{ bytes: number; hash: string }> {
  return new Promise((resolve, reject) => {
    const h = crypto.createHash('sha256');
    let bytes = 0;
    s.on('data', (d: Buffer) => { h.update(d); bytes += d.length; });
    s.once('end', () => resolve({ bytes, hash: h.digest('hex') }));
    s.once('error', reject);
  });
}

/** A promise with its resolve function, for what an upstream connection handler produces. */
function deferred<T>(): { promise: Promise<T>; resolve: (v: T | Promise<T>) => void } {
  let resolve!: (v: T | Promise<T>) => void;
  const promise = new Promise<T>((r) => { resolve = r; });
  return { promise, resolve };
}

function closed(s: net.Socket): Promise<void> {
  return new Promise((resolve) => { if (s.destroyed) resolve(); else s.once('close', () => resolve()); });
}

/** An upstream server whose per-connection behaviour the test supplies; closed at teardown. */
async function upstream(t: ExecutionContext, onConn: (s: net.Socket) => void): Promise<{ port: number; conns: net.Socket[] }> {
  const conns: net.Socket[] = [];
  const srv = net.createServer({ allowHalfOpen: true }, (s) => { conns.push(s); onConn(s); });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
  t.teardown(() => { for (const c of conns) c.destroy(); return new Promise<void>((r) => srv.close(() => r())); });
  return { port: (srv.address() as net.AddressInfo).port, conns };
}

async function tcpGateway(t: ExecutionContext, upPort: number): Promise<{ base: string; port: number }> {
  const port = await freePort();
  const { base } = await startGw(t, {
    clusters: [{ name: 'up', spec: { protocol: 'TCP', port: upPort }, endpoints: [{ spec: { address: '127.0.0.1' } }] }],
    listeners: [{ name: 'in', spec: { protocol: 'TCP', address: '127.0.0.1', port }, options: { track: 60 }, rules: [{ action: { route: { destination: 'up' } } }] }],
  });
  return { base, port };
}

function connect(port: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const c = net.connect({ host: '127.0.0.1', port, allowHalfOpen: true }, () => resolve(c));
    c.once('error', reject);
  });
}

async function sessions(base: string): Promise<any[]> {
  const r = await api(base, 'GET', '/api/v1/sessions');
  if (r.status !== 200 || !Array.isArray(r.body)) throw new Error(`GET /api/v1/sessions: ${r.status} ${r.text}`);
  return r.body.filter((s: any) => s.source?.origin === 'in');
}

/** The one session of listener "in", once it is over. */
function endedSession(base: string): Promise<any> {
  return waitFor(async () => {
    const l = await sessions(base);
    return l.length === 1 && l[0].status === 'DESTROYED' ? l[0] : undefined;
  }, 10_000, 'the session to end');
}

function checkSpliced(t: ExecutionContext, s: any, sentIn: number, sentOut: number, kernelShare = 0.5): void {
  t.true(s.spliced, 'the kernel splice path took over');
  t.is(s.splice?.state, 'done');
  t.true(s.events.some((e: any) => e.event === 'SPLICE'));
  t.false(s.events.some((e: any) => e.event === 'ERROR'), JSON.stringify(s.events));
  // The counters hold every byte, the kernel's share included.
  t.is(s.counters.ingress.bytes, sentIn);
  t.is(s.counters.egress.bytes, sentOut);
  const k = s.splice.kernel;
  if (sentIn > MiB) t.true(k.ingress.bytes > sentIn * kernelShare && k.ingress.bytes <= sentIn, `kernel carried its share of ingress (${k.ingress.bytes})`);
  if (sentOut > MiB) t.true(k.egress.bytes > sentOut * kernelShare && k.egress.bytes <= sentOut, `kernel carried its share of egress (${k.egress.bytes})`);
}

test.serial('TCP -> TCP: 32 MiB echoed through the splice path arrive byte-exact; counters equal the bytes; no fd left', async (t) => {
  if (!needSplice(t)) return;
  const up = await upstream(t, (s) => s.pipe(s)); // echo; ends after the client's EOF
  const gw = await tcpGateway(t, up.port);
  const payload = crypto.randomBytes(32 * MiB);
  const fdsBefore = fdCount();
  const c = await connect(gw.port);
  const got = readAll(c);
  c.end(payload);
  const r = await got;
  t.is(r.bytes, payload.length);
  t.is(r.hash, sha(payload), 'echo byte-exact and in order');
  const s = await endedSession(gw.base);
  checkSpliced(t, s, payload.length, payload.length);
  c.destroy();
  await waitFor(() => fdCount() <= fdsBefore, 5000, `fds back to ${fdsBefore} (now ${fdCount()})`);
});

test.serial('UnixDomainSocket -> TCP: 8 MiB echoed through the splice path', async (t) => {
  if (!needSplice(t)) return;
  const up = await upstream(t, (s) => s.pipe(s));
  const front = tmpPath('splice.sock');
  const { base } = await startGw(t, {
    clusters: [{ name: 'up', spec: { protocol: 'TCP', port: up.port }, endpoints: [{ spec: { address: '127.0.0.1' } }] }],
    listeners: [{ name: 'in', spec: { protocol: 'UnixDomainSocket', filename: front }, options: { track: 60 }, rules: [{ action: { route: { destination: 'up' } } }] }],
  });
  const payload = crypto.randomBytes(8 * MiB);
  const c = net.connect({ path: front, allowHalfOpen: true });
  const got = readAll(c);
  c.end(payload);
  const r = await got;
  t.is(r.hash, sha(payload));
  checkSpliced(t, await endedSession(base), payload.length, payload.length);
});

test.serial('TCP -> UnixDomainSocket, congested before the handover point (256 KiB) by an upstream that pauses reading: byte-exact and in order', async (t) => {
  if (!needSplice(t)) return;
  // A Unix stream socket buffers a few hundred KiB (TCP on loopback: up to
  // tcp_rmem's 32 MiB), so a paused reader congests the flow quickly.
  const upstreamGot = deferred<{ bytes: number; hash: string }>();
  const upPath = tmpPath('up.sock');
  const srv = net.createServer({ allowHalfOpen: true }, (s) => {
    upstreamGot.resolve(readAll(s));
    s.pause(); // the gateway's writes back up, Node queues, reads pause
    setTimeout(() => s.resume(), 300);
    s.on('end', () => s.end());
  });
  await new Promise<void>((r) => srv.listen(upPath, () => r()));
  t.teardown(() => new Promise<void>((r) => srv.close(() => r())));
  const port = await freePort();
  // Hand over late, once the flow is congested.
  process.env.L7MP_SPLICE_AFTER = String(256 * 1024);
  const { base } = await startGw(t, {
    clusters: [{ name: 'up', spec: { protocol: 'UnixDomainSocket' }, endpoints: [{ spec: { address: upPath } }] }],
    listeners: [{ name: 'in', spec: { protocol: 'TCP', address: '127.0.0.1', port }, options: { track: 60 }, rules: [{ action: { route: { destination: 'up' } } }] }],
  }).finally(() => { process.env.L7MP_SPLICE_AFTER = String(64 * 1024); });
  const payload = crypto.randomBytes(24 * MiB);
  const c = await connect(port);
  const done = readAll(c);
  c.end(payload);
  t.is((await upstreamGot.promise).hash, sha(payload), 'byte-exact and in order');
  await done;
  const s = await endedSession(base);
  checkSpliced(t, s, payload.length, 0);
  t.log('handover:', JSON.stringify(s.events.find((e: any) => e.event === 'SPLICE')?.content));
});

test.serial('half-close client -> upstream: the upstream sees EOF after 4 MiB, then answers 4 MiB over the open direction', async (t) => {
  if (!needSplice(t)) return;
  const request = crypto.randomBytes(4 * MiB);
  const response = crypto.randomBytes(4 * MiB);
  const upstreamGot = deferred<{ bytes: number; hash: string }>();
  const up = await upstream(t, (s) => {
    const got = readAll(s);
    upstreamGot.resolve(got);
    void got.then(() => s.end(response)); // answer only after the client's EOF
  });
  const gw = await tcpGateway(t, up.port);
  const c = await connect(gw.port);
  const got = readAll(c);
  c.end(request);
  const r = await got;
  t.is((await upstreamGot.promise).hash, sha(request), 'request byte-exact, then EOF');
  t.is(r.hash, sha(response), 'response byte-exact after the half-close');
  checkSpliced(t, await endedSession(gw.base), request.length, response.length);
});

test.serial('half-close upstream -> client: the client sees EOF after 4 MiB, then sends 4 MiB over the open direction', async (t) => {
  if (!needSplice(t)) return;
  const down = crypto.randomBytes(4 * MiB);
  const later = crypto.randomBytes(4 * MiB);
  const upstreamGot = deferred<{ bytes: number; hash: string }>();
  const up = await upstream(t, (s) => {
    upstreamGot.resolve(readAll(s));
    s.end(down); // the upstream is done talking at once
  });
  const gw = await tcpGateway(t, up.port);
  const c = await connect(gw.port);
  const r = await readAll(c);
  t.is(r.hash, sha(down), 'download byte-exact, then EOF');
  c.end(later); // the client's direction is still open
  t.is((await upstreamGot.promise).hash, sha(later), 'upload byte-exact after the half-close');
  checkSpliced(t, await endedSession(gw.base), later.length, down.length);
});

test.serial('REST delete of a spliced session mid-transfer ends both sockets; no fd left', async (t) => {
  if (!needSplice(t)) return;
  let upSock: net.Socket | undefined;
  // A sink that answers EOF with EOF; the delete resets it (a cut is never a clean end).
  const up = await upstream(t, (s) => { upSock = s; s.on('error', () => undefined); s.resume(); s.on('end', () => s.end()); });
  const gw = await tcpGateway(t, up.port);
  const fdsBefore = fdCount();
  const c = await connect(gw.port);
  c.on('error', () => undefined); // a reset is an acceptable way to learn of the delete
  const chunk = crypto.randomBytes(MiB);
  let sent = 0;
  const deadline = Date.now() + 20_000;
  // Bounded writer: at most 2 GiB or 20 s, with backpressure.
  const pump = (): void => {
    while (!c.destroyed && sent < 2048 * MiB && Date.now() < deadline) {
      sent += chunk.length;
      if (!c.write(chunk)) { c.once('drain', pump); return; }
    }
  };
  pump();
  const live = await waitFor(async () => {
    const l = await sessions(gw.base);
    return l.length === 1 && l[0].splice?.state === 'active' && l[0].splice.kernel.ingress.bytes > 0 ? l[0] : undefined;
  }, 10_000, 'the session on the splice path');
  t.true(live.spliced);
  const d = await api(gw.base, 'DELETE', `/api/v1/sessions/${encodeURIComponent(live.name)}`);
  t.is(d.status, 200, d.text);
  await Promise.race([
    Promise.all([closed(c), waitFor(() => upSock, 5000, 'upstream socket').then(closed)]),
    new Promise((_, reject) => setTimeout(() => reject(new Error('both sockets did not close within 5 s of the delete')), 5000)),
  ]);
  t.true(Date.now() < deadline, 'ended by the delete, not by the writer bound');
  const s = await endedSession(gw.base);
  t.is(s.splice.state, 'closed');
  t.true(s.counters.ingress.bytes > live.counters.ingress.bytes, 'counters kept growing on the kernel path');
  t.true(s.counters.ingress.bytes <= sent);
  await waitFor(() => fdCount() <= fdsBefore, 5000, `fds back to ${fdsBefore} (now ${fdCount()})`);
});
