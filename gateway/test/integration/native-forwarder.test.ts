// The addon's Forwarder (native/sockets/src/forward.cc): a stream listener
// whose connections are accepted, connected upstream and paired in C. Real
// sockets on loopback: bytes arrive exact both ways, EOF passes in each
// direction, what the forwarder does not take reaches the handoff callback
// with the client's socket and the reason (no target, no room, a refused
// connect, a connect that did not finish in time), a pair can be ended from
// JavaScript with FINs or RSTs, and nothing leaks a descriptor.
//
// Not yet a gateway path: docs/compiled-listeners.md says what the
// gateway needs around it (admission, metrics, the REST view, drain).

import test, { type ExecutionContext } from 'ava';
import crypto from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import { ENDED_RECORD, socketsAddon, type ForwarderHandle, type ForwarderOptions, type SocketsAddon } from '../../src/native/sockets.js';
import { streamListenSocket } from '../../src/protocols/common/reuseport.js';
import { freePort, waitFor } from './helpers.js';
import { needCapability } from './native-helpers.js';

type Addon = SocketsAddon & Required<Pick<SocketsAddon, 'Forwarder' | 'closeStream' | 'connectStream' | 'connectedNow'>>;

function addon(t: ExecutionContext): Addon | undefined {
  const a = socketsAddon();
  const ok = a !== undefined && typeof a.Forwarder === 'function';
  if (!needCapability(t, ok ? undefined : 'the sockets addon with Forwarder is not built')) return undefined;
  return a as Addon;
}

interface Handoff { fd: number; address: string | undefined; port: number | undefined; code: string | undefined }

/** A Forwarder on a fresh loopback port; handoffs are recorded (and their sockets closed unless keep). */
async function forwarder(t: ExecutionContext, a: Addon, opts: { max?: number; connectTimeoutMs?: number; keep?: boolean; extra?: Partial<ForwarderOptions> } = {}) {
  const port = await freePort();
  const handoffs: Handoff[] = [];
  const f: ForwarderHandle = new a.Forwarder(streamListenSocket('127.0.0.1', port, 64), (fd, address, p, code) => {
    handoffs.push({ fd, address, port: p, code });
    if (fd >= 0 && opts.keep !== true) a.closeStream(fd);
  }, () => {}, { max: opts.max ?? 1000, connectTimeoutMs: opts.connectTimeoutMs ?? 2000, ...opts.extra });
  t.teardown(() => f.close());
  f.start();
  return { f, port, handoffs };
}

function stats(f: ForwarderHandle) {
  const s = new Float64Array(10);
  f.stats(s);
  return { live: s[0], accepted: s[1], paired: s[2], handedOff: s[3], ended: s[4], failed: s[5], up: s[6], down: s[7], pending: s[8], connectFailed: s[9] };
}

/** An echo server that ends its side when the client's EOF comes (after echoing everything). */
async function echoServer(t: ExecutionContext): Promise<{ port: number; conns: net.Socket[] }> {
  const conns: net.Socket[] = [];
  const server = net.createServer({ allowHalfOpen: true }, (s) => {
    conns.push(s);
    s.on('error', () => {});
    s.pipe(s);
  });
  const port = await freePort();
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
  t.teardown(() => { for (const c of conns) c.destroy(); server.close(); });
  return { port, conns };
}

function connect(port: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ port, host: '127.0.0.1', allowHalfOpen: true }, () => resolve(s));
    s.once('error', reject);
  });
}

function readAll(s: net.Socket): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const parts: Buffer[] = [];
    s.on('data', (d: Buffer) => parts.push(d));
    s.once('end', () => resolve(Buffer.concat(parts)));
    s.once('error', reject);
  });
}

const fdCount = (): number => fs.readdirSync('/proc/self/fd').length;

test('a connection is paired in C: every byte echoed in order, EOF passed on both ways, counted, no handoff', async (t) => {
  const a = addon(t);
  if (a === undefined) return;
  const echo = await echoServer(t);
  const { f, port, handoffs } = await forwarder(t, a);
  f.targets([['127.0.0.1', echo.port]], 1);
  const payload = crypto.randomBytes(3 * 1024 * 1024 + 17); // past the copy buffer: the pipe takes over
  const c = await connect(port);
  const got = readAll(c);
  await waitFor(() => stats(f).live === 1, 5000, 'the pair');
  const [row] = f.list();
  t.is(row?.[3], '127.0.0.1');
  t.is(row?.[4], c.localPort!, 'the list names the client by its address and port');
  t.is(row?.[6], port, 'and the listener by its local port');
  c.end(payload);
  const echoed = await got;
  t.true(echoed.equals(payload), 'every byte came back, in order');
  await waitFor(() => stats(f).ended === 1, 5000, 'the pair to end');
  const s = stats(f);
  t.like(s, { live: 0, accepted: 1, paired: 1, handedOff: 0, ended: 1, failed: 0, up: payload.length, down: payload.length });
  t.deepEqual(handoffs, []);
});

test('no target, or no room, hands the client over untried; a refused connect hands it over with the code', async (t) => {
  const a = addon(t);
  if (a === undefined) return;
  const echo = await echoServer(t);
  const { f, port, handoffs } = await forwarder(t, a, { max: 1 });
  const c1 = await connect(port);
  await waitFor(() => handoffs.length === 1, 5000, 'the handoff without a target');
  t.like(handoffs[0], { address: '127.0.0.1', port: c1.localPort, code: undefined });
  t.true(handoffs[0]!.fd >= 0);
  c1.destroy();

  f.targets([['127.0.0.1', echo.port]], 1);
  const c2 = await connect(port);
  await waitFor(() => stats(f).live === 1, 5000, 'the first pair');
  const c3 = await connect(port);
  await waitFor(() => handoffs.length === 2, 5000, 'the handoff past max');
  t.like(handoffs[1], { port: c3.localPort, code: undefined });

  c2.destroy();
  c3.destroy();
  await waitFor(() => stats(f).live === 0, 5000, 'the pair to end');
  const dead = await freePort(); // nothing listens there
  f.targets([['127.0.0.1', dead]], 2);
  const c4 = await connect(port);
  await waitFor(() => handoffs.length === 3, 5000, 'the handoff after a refused connect');
  t.like(handoffs[2], { port: c4.localPort, code: 'ECONNREFUSED' });
  t.like(stats(f), { accepted: 4, paired: 1, handedOff: 3, connectFailed: 1 });
  c4.destroy();
});

test('a connect that does not finish in time hands the client over with ETIMEDOUT', async (t) => {
  const a = addon(t);
  if (a === undefined) return;
  // A listening socket nobody accepts from: once its queue (backlog 1) is full, SYNs are dropped.
  const slow = await freePort();
  const lfd = streamListenSocket('127.0.0.1', slow, 1);
  t.teardown(() => a.close(lfd));
  const fill: number[] = [];
  t.teardown(() => { for (const fd of fill) a.closeStream(fd); });
  for (let i = 0; i < 8; i++) {
    const fd = a.connectStream('127.0.0.1', slow);
    fill.push(fd);
    if (a.connectedNow(fd) === undefined) break;
  }
  const { f, port, handoffs } = await forwarder(t, a, { connectTimeoutMs: 200 });
  f.targets([['127.0.0.1', slow]], 1);
  const c = await connect(port);
  await waitFor(() => stats(f).pending === 1, 5000, 'the connect in progress');
  const started = Date.now();
  await waitFor(() => handoffs.length === 1, 5000, 'the handoff after the timeout');
  t.like(handoffs[0], { port: c.localPort, code: 'ETIMEDOUT' });
  t.true(Date.now() - started < 2000);
  t.like(stats(f), { pending: 0, paired: 0, connectFailed: 1 });
  c.destroy();
});

test('closePair ends one pair: with FINs the client reads EOF, with reset it gets ECONNRESET; close() leaves no descriptor', async (t) => {
  const a = addon(t);
  if (a === undefined) return;
  const echo = await echoServer(t);
  const before = fdCount();
  const { f, port } = await forwarder(t, a);
  f.targets([['127.0.0.1', echo.port]], 1);
  const c1 = await connect(port);
  const c2 = await connect(port);
  await waitFor(() => stats(f).live === 2, 5000, 'two pairs');
  const idOf = (c: net.Socket) => f.list().find((r) => r[4] === c.localPort)![0];
  const ended = readAll(c1);
  t.true(f.closePair(idOf(c1)));
  t.is((await ended).length, 0, 'a clean EOF');
  const reset = new Promise<string | undefined>((resolve) => {
    c2.once('error', (e: NodeJS.ErrnoException) => resolve(e.code));
    c2.once('end', () => resolve('EOF'));
  });
  c2.resume();
  t.true(f.closePair(idOf(c2), true));
  t.is(await reset, 'ECONNRESET');
  t.false(f.closePair(12345));
  t.like(stats(f), { live: 0, ended: 2 });
  // Many more, left open, then closed with the forwarder.
  const many = await Promise.all(Array.from({ length: 50 }, () => connect(port)));
  await waitFor(() => stats(f).live === 50, 5000, '50 pairs');
  f.close();
  await Promise.all(many.map((c) => new Promise<void>((resolve) => { c.once('close', () => resolve()); c.once('end', () => c.destroy()); c.on('error', () => {}); c.resume(); })));
  for (const c of echo.conns) c.destroy();
  await waitFor(() => fdCount() <= before, 5000, `descriptors back to ${before}`);
  t.pass();
});
