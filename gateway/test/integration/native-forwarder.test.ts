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
import { hangingPort, needCapability } from './native-helpers.js';

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
  const slow = await hangingPort(t, a);
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
  const after = await waitFor(() => { const n = fdCount(); return n <= before ? n : undefined; }, 5000, `descriptors back to ${before}`).catch(() => fdCount());
  t.true(after <= before, `descriptors: ${before} before, ${after} after`);
  t.like(stats(f), { live: 0, ended: 52 }, 'the 50 closed with the forwarder are counted as ended');
});

test('the admission cells it shares: a pair counts in the listener\'s and the gateway\'s live sessions and the descriptor estimate while it lives; a full cell hands the next connection over', async (t) => {
  const a = addon(t);
  if (a === undefined) return;
  const echo = await echoServer(t);
  const listenerLive = new Float64Array(1);
  // [live, max_sessions, descriptors sampled, sessions since the sample, descriptor ceiling]
  const global = Float64Array.from([0, 2, 10, 0, -1]);
  const { f, port, handoffs } = await forwarder(t, a, { max: 5, extra: { listenerLive, global } });
  f.targets([['127.0.0.1', echo.port]], 1);
  const c1 = await connect(port);
  await waitFor(() => stats(f).live === 1, 5000, 'the first pair');
  t.deepEqual([...listenerLive], [1]);
  t.deepEqual([...global], [1, 2, 10, 1, -1]);
  global[0] = 2; // the gateway's other sessions fill max_sessions
  const c2 = await connect(port);
  await waitFor(() => handoffs.length === 1, 5000, 'the handoff at max_sessions');
  global[0] = 1;
  global[4] = 12; // the budget: 10 sampled + 1 session x 2 descriptors = its ceiling
  const c3 = await connect(port);
  await waitFor(() => handoffs.length === 2, 5000, 'the handoff at the descriptor ceiling');
  global[4] = -1;
  listenerLive[0] = 5; // the listener's own cap
  const c4 = await connect(port);
  await waitFor(() => handoffs.length === 3, 5000, 'the handoff at the listener cap');
  listenerLive[0] = 1;
  t.like(stats(f), { live: 1, paired: 1, handedOff: 3 });
  c1.destroy();
  await waitFor(() => stats(f).live === 0, 5000, 'the pair to end');
  t.deepEqual([...listenerLive], [0]);
  t.deepEqual([...global], [0, 2, 10, 0, -1], 'given back at the end');
  for (const c of [c2, c3, c4]) c.destroy();
});

test('flow rate: a source past its burst is handed over with "flow_rate"', async (t) => {
  const a = addon(t);
  if (a === undefined) return;
  const echo = await echoServer(t);
  const { f, port, handoffs } = await forwarder(t, a, { extra: { flowRate: 0.001, flowBurst: 2, flowSources: 16 } });
  f.targets([['127.0.0.1', echo.port]], 1);
  const cs = [];
  for (let i = 0; i < 4; i++) cs.push(await connect(port));
  await waitFor(() => handoffs.length === 2, 5000, 'two handoffs');
  t.deepEqual(handoffs.map((h) => h.code), ['flow_rate', 'flow_rate']);
  t.is(stats(f).paired, 2);
  for (const c of cs) c.destroy();
});

// Serial: this test and the next open many sockets, which would upset the
// descriptor counts of the tests that run concurrently (closePair's).
test.serial('flow rate: the source table keeps the most recently seen sources, so a source dropped from it starts with a full bucket again', async (t) => {
  const a = addon(t);
  if (a === undefined) return;
  const echo = await echoServer(t);
  const { f, port, handoffs } = await forwarder(t, a, { extra: { flowRate: 0.001, flowBurst: 1, flowSources: 2 } });
  f.targets([['127.0.0.1', echo.port]], 1);
  const from = (host: string) => new Promise<net.Socket>((resolve, reject) => {
    const s = net.connect({ port, host: '127.0.0.1', localAddress: host }, () => resolve(s));
    s.once('error', reject);
  });
  const cs: net.Socket[] = [];
  t.teardown(() => { for (const c of cs) c.destroy(); });
  const paired = async (n: number, handed: number) => {
    await waitFor(() => stats(f).paired === n && handoffs.length === handed, 5000, `${n} paired and ${handed} handed over`);
  };
  cs.push(await from('127.0.0.2'));
  await paired(1, 0);
  cs.push(await from('127.0.0.2')); // its one token is spent
  await paired(1, 1);
  t.is(handoffs[0].code, 'flow_rate');
  cs.push(await from('127.0.0.3'));
  await paired(2, 1);
  cs.push(await from('127.0.0.4')); // a third source: 127.0.0.2, seen least recently, leaves the table
  await paired(3, 1);
  cs.push(await from('127.0.0.2'));
  await paired(4, 1);
  cs.push(await from('127.0.0.4')); // still in the table, its token spent
  await paired(4, 2);
  t.deepEqual(handoffs.map((h) => h.code), ['flow_rate', 'flow_rate']);
});

test.serial('a queue of connections longer than one accept batch (64) is taken whole: the rest run on later loop turns, with no new edge needed', async (t) => {
  const a = addon(t);
  if (a === undefined) return;
  const echo = await echoServer(t);
  const port = await freePort();
  const handoffs: number[] = [];
  const f: ForwarderHandle = new a.Forwarder(streamListenSocket('127.0.0.1', port, 256), (fd) => {
    handoffs.push(fd);
    if (fd >= 0) a.closeStream(fd);
  }, () => {}, { max: 1000, connectTimeoutMs: 2000 });
  t.teardown(() => f.close());
  f.targets([['127.0.0.1', echo.port]], 1);
  // 130 connections wait in the listener's queue (the kernel completes them)
  // before the Forwarder watches it: one edge, then two full batches and 2.
  const cs = await Promise.all(Array.from({ length: 130 }, () => connect(port)));
  t.teardown(() => { for (const c of cs) c.destroy(); });
  t.is(stats(f).accepted, 0);
  f.start();
  await waitFor(() => stats(f).paired === 130, 10000, 'all 130 queued connections paired');
  t.like(stats(f), { accepted: 130, handedOff: 0 });
  t.deepEqual(handoffs, []);
});

test('takeEnded: one record per ended pair (counts, kind, target, error side); in detail mode the addresses too', async (t) => {
  const a = addon(t);
  if (a === undefined) return;
  const echo = await echoServer(t);
  const { f, port } = await forwarder(t, a);
  f.targets([['127.0.0.1', echo.port]], 7);
  f.setDetail(true);
  const c = await connect(port);
  const cport = c.localPort!;
  const got = readAll(c);
  c.end('abc');
  await got;
  await waitFor(() => stats(f).ended === 1, 5000, 'the pair to end');
  const c2 = await connect(port);
  await waitFor(() => stats(f).live === 1, 5000, 'the second pair');
  t.true(f.closePair(f.list()[0]![0], true, 4));
  const out = new Float64Array(4 * ENDED_RECORD);
  const detail: ([string, number, string, number] | undefined)[] = [];
  t.is(f.takeEnded(out, detail), 2);
  const rec = (i: number) => [...out.subarray(i * ENDED_RECORD, (i + 1) * ENDED_RECORD)];
  const [id, gen, started, duration, b0, r0, b1, r1, err, kind, target, side] = rec(0);
  t.deepEqual([gen, b0, b1, err, kind, target, side], [7, 3, 3, 0, 0, 0, -1]);
  t.true(id! >= 1 && r0! >= 1 && r1! >= 1 && duration! >= 0 && Math.abs(started! - Date.now()) < 10_000);
  t.is(rec(1)[9], 4, 'closed with kind 4 (shutdown)');
  t.deepEqual(detail[0], ['127.0.0.1', cport, '127.0.0.1', port]);
  t.is(f.takeEnded(out), 0, 'taken once');
  c2.destroy();
});
