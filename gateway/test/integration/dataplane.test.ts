// Data-plane tests over real sockets: listener/cluster protocol pairs, session
// counters in the REST API, UDP server mode and idle timeout, transform
// chains, Sync rendezvous and deleting a live session.

import test, { type ExecutionContext } from 'ava';
import dgram from 'node:dgram';
import fs from 'node:fs';
import net from 'node:net';
import { pino } from 'pino';
import { LEVELS, type Logger } from '../../src/observe/log.js';
import {
  api, echo, freePort, nextMessage, peer, randomPayload, startGw, tcpRoundTrip, tmpPath, udpClient, unixRoundTrip, waitFor,
} from './helpers.js';

const MiB = 1024 * 1024;

async function client(t: ExecutionContext): Promise<dgram.Socket> {
  const s = await udpClient();
  t.teardown(() => new Promise<void>((r) => { try { s.close(() => r()); } catch { r(); } }));
  return s;
}

/** Live (and tracked) sessions of one listener. */
async function sessionsOf(gw: { base: string }, listener: string): Promise<any[]> {
  const r = await api(gw.base, 'GET', '/api/v1/sessions');
  if (r.status !== 200 || !Array.isArray(r.body)) throw new Error(`GET /api/v1/sessions: ${r.status} ${r.text}`);
  return r.body.filter((s: any) => s.source?.origin === listener);
}

function udpListener(name: string, port: number, destination: unknown, extra: Record<string, unknown> = {}, route: Record<string, unknown> = {}) {
  return {
    name,
    spec: { protocol: 'UDP', address: '127.0.0.1', port, ...extra },
    rules: [{ action: { route: { destination, ...route } } }],
  };
}

function tcpListener(name: string, port: number, destination: unknown, options?: Record<string, unknown>) {
  return {
    name,
    spec: { protocol: 'TCP', address: '127.0.0.1', port },
    rules: [{ action: { route: { destination } } }],
    ...(options ? { options } : {}),
  };
}

function cluster(name: string, protocol: string, port: number | undefined, address = '127.0.0.1') {
  return {
    name,
    spec: { protocol, ...(port !== undefined ? { port } : {}) },
    endpoints: [{ spec: { address } }],
  };
}

function send(sock: dgram.Socket, port: number, msg: Uint8Array): void {
  sock.send(msg, port, '127.0.0.1');
}

async function udpRoundTrip(sock: dgram.Socket, port: number, msg: Buffer, timeoutMs = 3000): Promise<Buffer> {
  const reply = nextMessage(sock, timeoutMs);
  send(sock, port, msg);
  return reply;
}

/** Resolves true if a datagram arrives within ms, false otherwise. */
function anyMessageWithin(sock: dgram.Socket, ms: number): Promise<boolean> {
  return nextMessage(sock, ms).then(() => true, () => false);
}

/** A TCP client that collects what it reads. */
class TcpClient {
  data = Buffer.alloc(0);
  ended = false;
  closed = false;
  private constructor(readonly sock: net.Socket) {
    sock.on('data', (d: Buffer) => { this.data = Buffer.concat([this.data, d]); });
    sock.on('end', () => { this.ended = true; });
    sock.on('close', () => { this.closed = true; });
    sock.on('error', () => { /* seen as close */ });
  }

  static connect(t: ExecutionContext, port: number, opts: { localAddress?: string } = {}): Promise<TcpClient> {
    return new Promise((resolve, reject) => {
      const sock = net.connect({ port, host: '127.0.0.1', ...opts });
      const c = new TcpClient(sock);
      t.teardown(() => { sock.destroy(); });
      sock.once('connect', () => resolve(c));
      sock.once('error', reject);
    });
  }

  /** Write and wait until `expect` bytes arrived in total since the last take(). */
  async exchange(payload: Buffer, expect = payload.length, timeoutMs = 5000): Promise<Buffer> {
    this.sock.write(payload);
    return this.take(expect, timeoutMs);
  }

  async take(n: number, timeoutMs = 5000): Promise<Buffer> {
    await waitFor(() => this.data.length >= n, timeoutMs, `${n} bytes over TCP (have ${this.data.length})`);
    const out = this.data.subarray(0, n);
    this.data = this.data.subarray(n);
    return Buffer.from(out);
  }
}

function captureLogger(): { logger: Logger; lines: () => any[] } {
  const out: string[] = [];
  const logger = pino(
    { customLevels: LEVELS, useOnlyCustomLevels: true, level: 'warn' },
    { write: (s: string) => { out.push(s); } },
  ) as Logger;
  return { logger, lines: () => out.map((l) => JSON.parse(l)) };
}

// ---------------------------------------------------------------- protocol pairs

test('UDP listener -> UDP cluster: 1 B and 1400 B round-trip; session counters match', async (t) => {
  const echoPort = await freePort();
  await peer(t, echo.udpFlow(echoPort));
  const lport = await freePort();
  const gw = await startGw(t, {
    clusters: [cluster('udp-echo', 'UDP', echoPort)],
    listeners: [udpListener('udp-in', lport, 'udp-echo')],
  });
  const c = await client(t);
  const small = Buffer.from([0x5a]);
  const big = randomPayload(1400);
  t.deepEqual(await udpRoundTrip(c, lport, small), small);
  t.deepEqual(await udpRoundTrip(c, lport, big), big);

  const [s, ...rest] = await sessionsOf(gw, 'udp-in');
  t.is(rest.length, 0, 'one client socket, one session');
  t.truthy(s);
  t.is(s.status, 'CONNECTED');
  // A compiled listener's flow (udp/compiled.ts) is named with its id; a session in JavaScript would end in -0.
  t.is(s.name, `UDP:127.0.0.1:${c.address().port}-127.0.0.1:${lport}-c1`);
  t.is(s.metadata.UDP.src_port, c.address().port);
  t.is(s.destination.origin, 'udp-echo');
  t.deepEqual(s.counters, { ingress: { bytes: 1401, packets: 2 }, egress: { bytes: 1401, packets: 2 } });
});

test('TCP listener -> TCP cluster: 1 B, 1400 B and 1 MiB round-trip; tracked session counters match', async (t) => {
  const echoPort = await freePort();
  await peer(t, echo.tcp(echoPort));
  const lport = await freePort();
  const gw = await startGw(t, {
    clusters: [cluster('tcp-echo', 'TCP', echoPort)],
    listeners: [tcpListener('tcp-in', lport, 'tcp-echo', { track: 30 })],
  });
  const sizes = [1, 1400, MiB];
  for (const n of sizes) {
    const p = randomPayload(n);
    const r = await tcpRoundTrip(lport, p);
    t.is(r.length, n);
    t.true(r.equals(p), `${n} B byte-exact`);
  }
  // Ended sessions stay listable for options.track seconds.
  const list = await waitFor(async () => {
    const l = await sessionsOf(gw, 'tcp-in');
    return l.length === 3 && l.every((s) => s.status === 'DESTROYED') ? l : undefined;
  }, 5000, 'three ended, tracked sessions');
  const byBytes = new Map(list.map((s) => [s.counters.ingress.bytes, s]));
  t.deepEqual([...byBytes.keys()].sort((a, b) => a - b), sizes);
  for (const n of sizes) {
    const s = byBytes.get(n)!;
    t.is(s.counters.egress.bytes, n, `egress bytes of the ${n} B session`);
    t.true(s.counters.ingress.packets >= 1 && s.counters.ingress.packets <= n);
    t.true(s.counters.egress.packets >= 1 && s.counters.egress.packets <= n);
    t.is(s.destination.origin, 'tcp-echo');
    t.true(s.events.some((e: any) => e.event === 'CONNECT'));
    t.true(s.events.some((e: any) => e.event === 'DESTROY'));
  }
  t.deepEqual(byBytes.get(1)!.counters, { ingress: { bytes: 1, packets: 1 }, egress: { bytes: 1, packets: 1 } });
});

test('UnixDomainSocket listener -> UnixDomainSocket cluster: 1 B, 1400 B and 1 MiB round-trip', async (t) => {
  const upstream = tmpPath('echo.sock');
  await peer(t, echo.unix(upstream));
  const front = tmpPath('front.sock');
  await startGw(t, {
    listeners: [{
      name: 'unix-in',
      spec: { protocol: 'UnixDomainSocket', filename: front },
      rules: [{ action: { route: { destination: { name: 'unix-echo', spec: { protocol: 'UnixDomainSocket' }, endpoints: [{ spec: { address: upstream } }] } } } }],
    }],
  });
  for (const n of [1, 1400, MiB]) {
    const p = randomPayload(n);
    const r = await unixRoundTrip(front, p);
    t.is(r.length, n);
    t.true(r.equals(p), `${n} B byte-exact`);
  }
});

test('UDP listener -> TCP cluster: datagram bytes arrive in order; the downgrade is logged once', async (t) => {
  const echoPort = await freePort();
  await peer(t, echo.tcp(echoPort));
  const lport = await freePort();
  const cap = captureLogger();
  const gw = await startGw(t, {
    clusters: [cluster('tcp-echo', 'TCP', echoPort)],
    listeners: [udpListener('udp-in', lport, 'tcp-echo')],
  }, cap.logger);
  const c = await client(t);
  const parts: Buffer[] = [];
  c.on('message', (m) => parts.push(m));
  const msgs = [Buffer.from('abc'), Buffer.from('defg'), randomPayload(1400), Buffer.from('xyz')];
  const all = Buffer.concat(msgs);
  for (const m of msgs) send(c, lport, m);
  await waitFor(() => Buffer.concat(parts).length >= all.length, 5000, 'echoed bytes');
  t.true(Buffer.concat(parts).equals(all), 'bytes in order, nothing lost or duplicated');

  const [s] = await sessionsOf(gw, 'udp-in');
  t.is(s.counters.ingress.bytes, all.length);
  t.is(s.counters.ingress.packets, msgs.length);
  const warnings = cap.lines().filter((l) => l.level === LEVELS.warn && /byte-stream/.test(l.msg));
  t.is(warnings.length, 1, 'one downgrade warning per session');
  t.is(warnings[0].session, s.name);
});

test('TCP listener -> UDP cluster: bytes go out as datagrams and come back', async (t) => {
  const echoPort = await freePort();
  await peer(t, echo.udpFlow(echoPort));
  const lport = await freePort();
  const gw = await startGw(t, {
    clusters: [cluster('udp-echo', 'UDP', echoPort)],
    listeners: [tcpListener('tcp-in', lport, 'udp-echo')],
  });
  const c = await TcpClient.connect(t, lport);
  for (const n of [1, 1400, 20000]) {
    const p = randomPayload(n);
    t.true((await c.exchange(p)).equals(p), `${n} B`);
  }
  const [s] = await sessionsOf(gw, 'tcp-in');
  t.is(s.counters.ingress.bytes, 21401);
  t.is(s.counters.egress.bytes, 21401);
  c.sock.destroy();
  await waitFor(async () => (await sessionsOf(gw, 'tcp-in')).length === 0, 5000, 'session gone after the client closed (UDP has no half-close: after a linger)');
});

// ---------------------------------------------------------------- UDP listener modes

test('UDP server mode: two client sockets get two sessions and their own replies', async (t) => {
  const echoPort = await freePort();
  await peer(t, echo.udp(echoPort));
  const lport = await freePort();
  const gw = await startGw(t, {
    clusters: [cluster('udp-echo', 'UDP', echoPort)],
    listeners: [udpListener('udp-in', lport, 'udp-echo')],
  });
  const a = await client(t);
  const b = await client(t);
  const gotA: string[] = [];
  const gotB: string[] = [];
  a.on('message', (m) => gotA.push(m.toString()));
  b.on('message', (m) => gotB.push(m.toString()));
  for (let i = 0; i < 3; i++) {
    send(a, lport, Buffer.from(`A${i}`));
    send(b, lport, Buffer.from(`B${i}`));
  }
  await waitFor(() => gotA.length === 3 && gotB.length === 3, 5000, 'three replies each');
  t.deepEqual(gotA.sort(), ['A0', 'A1', 'A2']);
  t.deepEqual(gotB.sort(), ['B0', 'B1', 'B2']);
  const list = await sessionsOf(gw, 'udp-in');
  t.is(list.length, 2);
  t.not(list[0].name, list[1].name);
  t.deepEqual(list.map((s) => s.metadata.UDP.src_port).sort(), [a.address().port, b.address().port].sort());
  for (const s of list) t.deepEqual(s.counters.ingress, { bytes: 6, packets: 3 });
});

test('UDP half-connected listener (connect.port) rejects other peers', async (t) => {
  const echoPort = await freePort();
  await peer(t, echo.udpFlow(echoPort));
  const lport = await freePort();
  const allowed = await client(t);
  const other = await client(t);
  const gw = await startGw(t, {
    clusters: [cluster('udp-echo', 'UDP', echoPort)],
    listeners: [udpListener('udp-in', lport, 'udp-echo', { connect: { port: allowed.address().port } })],
  });
  const wait = anyMessageWithin(other, 500);
  send(other, lport, Buffer.from('let me in'));
  t.false(await wait, 'no reply to a peer outside connect{}');
  t.deepEqual(await sessionsOf(gw, 'udp-in'), [], 'no session for it');

  const m = Buffer.from('hello');
  t.deepEqual(await udpRoundTrip(allowed, lport, m), m);
  const list = await sessionsOf(gw, 'udp-in');
  t.is(list.length, 1);
  t.is(list[0].metadata.UDP.src_port, allowed.address().port);
});

test('UDP idle timeout: a silent session ends, an active one stays', async (t) => {
  const echoPort = await freePort();
  await peer(t, echo.udpFlow(echoPort));
  const lport = await freePort();
  const gw = await startGw(t, {
    clusters: [cluster('udp-echo', 'UDP', echoPort)],
    listeners: [udpListener('udp-in', lport, 'udp-echo', { idle_timeout: 1 })],
  });
  const c = await client(t);
  // Traffic every 300 ms for ~1.8 s keeps the session alive past its 1 s timeout.
  let name: string | undefined;
  for (let i = 0; i < 6; i++) {
    const m = Buffer.from(`ping ${i}`);
    t.deepEqual(await udpRoundTrip(c, lport, m), m);
    const list = await sessionsOf(gw, 'udp-in');
    t.is(list.length, 1);
    name ??= list[0].name;
    t.is(list[0].name, name, 'the same session all along');
    await new Promise((r) => setTimeout(r, 300));
  }
  const silentSince = Date.now();
  await waitFor(async () => (await sessionsOf(gw, 'udp-in')).length === 0, 5000, 'idle session removed');
  const took = Date.now() - silentSince;
  t.true(took >= 600, `not removed before the timeout (${took} ms)`);
  // The next datagram opens a new session.
  const m = Buffer.from('again');
  t.deepEqual(await udpRoundTrip(c, lport, m), m);
  const list = await sessionsOf(gw, 'udp-in');
  t.is(list.length, 1);
  t.not(list[0].name, name);
});

// ---------------------------------------------------------------- chains and virtual clusters

test('Logger in the ingress chain: traffic unchanged, one JSON line per ingress chunk, none for egress', async (t) => {
  const echoPort = await freePort();
  await peer(t, echo.udpFlow(echoPort));
  const lport = await freePort();
  const logFile = tmpPath('ingress.log');
  const gw = await startGw(t, {
    clusters: [cluster('udp-echo', 'UDP', echoPort)],
    listeners: [udpListener('udp-in', lport, 'udp-echo', {}, {
      ingress: [{ spec: { protocol: 'Logger', log_file: logFile, log_prefix: 'IN' } }],
    })],
  });
  const c = await client(t);
  const msgs = ['first', 'second', 'third'].map((s) => Buffer.from(s));
  for (const m of msgs) t.deepEqual(await udpRoundTrip(c, lport, m), m);

  const [s] = await sessionsOf(gw, 'udp-in');
  t.is(s.ingress.length, 1);
  const read = () => fs.readFileSync(logFile, 'utf8').split('\n').filter((l) => l !== '').map((l) => JSON.parse(l));
  await waitFor(() => read().length >= 3, 3000, 'three log lines');
  // Replies have all arrived; give the egress path a moment to (wrongly) log anything.
  await new Promise((r) => setTimeout(r, 150));
  const lines = read();
  t.is(lines.length, 3);
  lines.forEach((l, i) => {
    t.is(l.session, s.name);
    t.is(l.direction, 'ingress');
    t.is(l.prefix, 'IN');
    t.is(l.bytes, msgs[i]!.length);
    t.is(l.data, msgs[i]!.toString());
  });
});

test('Echo cluster as destination: replies equal requests', async (t) => {
  const lport = await freePort();
  const gw = await startGw(t, { listeners: [udpListener('udp-in', lport, { name: 'echo', spec: { protocol: 'Echo' } })] });
  const c = await client(t);
  for (const n of [1, 1400, 9000]) {
    const m = randomPayload(n);
    t.deepEqual(await udpRoundTrip(c, lport, m), m);
  }
  const [s] = await sessionsOf(gw, 'udp-in');
  t.deepEqual(s.counters, { ingress: { bytes: 10401, packets: 3 }, egress: { bytes: 10401, packets: 3 } });
});

test('Discard cluster as destination: no reply', async (t) => {
  const lport = await freePort();
  const gw = await startGw(t, { listeners: [udpListener('udp-in', lport, { name: 'discard', spec: { protocol: 'Discard' } })] });
  const c = await client(t);
  const wait = anyMessageWithin(c, 500);
  send(c, lport, Buffer.from('into the void'));
  send(c, lport, Buffer.from('and again'));
  t.false(await wait);
  const [s] = await waitFor(async () => {
    const l = await sessionsOf(gw, 'udp-in');
    return l.length === 1 && l[0].counters.ingress.packets === 2 ? l : undefined;
  }, 3000, 'the discard session saw both datagrams');
  t.deepEqual(s.counters, { ingress: { bytes: 22, packets: 2 }, egress: { bytes: 0, packets: 0 } });
});

test('JSONEncap in ingress and JSONDecap in egress around a UDP echo: payload back byte-exact', async (t) => {
  const echoPort = await freePort();
  await peer(t, echo.udpFlow(echoPort));
  const lport = await freePort();
  await startGw(t, {
    clusters: [cluster('udp-echo', 'UDP', echoPort)],
    listeners: [udpListener('udp-in', lport, 'udp-echo', {}, {
      ingress: [{ spec: { protocol: 'JSONEncap' } }],
      egress: [{ spec: { protocol: 'JSONDecap' } }],
    })],
  });
  const c = await client(t);
  const all = Buffer.alloc(256);
  for (let i = 0; i < 256; i++) all[i] = i;
  for (const m of [Buffer.from([0]), all, randomPayload(1400)]) t.deepEqual(await udpRoundTrip(c, lport, m), m);
});

test('JSONEncap alone: the upstream sees {metadata, payload(base64)}', async (t) => {
  const echoPort = await freePort();
  await peer(t, echo.udpFlow(echoPort));
  const lport = await freePort();
  const gw = await startGw(t, {
    clusters: [cluster('udp-echo', 'UDP', echoPort)],
    listeners: [udpListener('udp-in', lport, 'udp-echo', {}, { ingress: [{ spec: { protocol: 'JSONEncap' } }] })],
  });
  const c = await client(t);
  const m = randomPayload(100);
  const reply = JSON.parse((await udpRoundTrip(c, lport, m)).toString('utf8'));
  t.true(Buffer.from(reply.payload, 'base64').equals(m));
  const [s] = await sessionsOf(gw, 'udp-in');
  t.is(reply.metadata.name, s.name);
  t.deepEqual(reply.metadata.UDP, { src_port: c.address().port, dst_port: lport });
  t.is(reply.metadata.IP.src_addr, '127.0.0.1');
});

test('Sync cluster: two TCP sessions with the same label exchange their traffic', async (t) => {
  const lport = await freePort();
  const gw = await startGw(t, {
    listeners: [{
      name: 'tcp-in',
      spec: { protocol: 'TCP', address: '127.0.0.1', port: lport },
      rules: [{
        action: {
          rewrite: [{ path: '/labels/room', value: 'r1' }],
          route: { destination: { name: 'sync', spec: { protocol: 'Sync', query: 'labels/room' } } },
        },
      }],
    }],
  });
  const a = await TcpClient.connect(t, lport);
  const b = await TcpClient.connect(t, lport);
  const list = await waitFor(async () => {
    const l = await sessionsOf(gw, 'tcp-in');
    return l.length === 2 && l.every((s) => s.status === 'CONNECTED') ? l : undefined;
  }, 3000, 'both sessions connected');
  for (const s of list) t.deepEqual(s.metadata.labels, { room: 'r1' });

  a.sock.write('hello from a');
  t.is((await b.take(12)).toString(), 'hello from a');
  b.sock.write('hi a, this is b');
  t.is((await a.take(15)).toString(), 'hi a, this is b');
  // Nobody hears themselves.
  await new Promise((r) => setTimeout(r, 100));
  t.is(a.data.length, 0);
  t.is(b.data.length, 0);
});

test('DELETE /api/v1/sessions/{name} closes both ends', async (t) => {
  // A Node echo server as upstream, so that the test sees its side close too.
  let upstreamClosed = false;
  const conns = new Set<net.Socket>();
  const server = net.createServer((s) => {
    conns.add(s);
    s.on('data', (d) => s.write(d));
    s.on('close', () => { upstreamClosed = true; });
    s.on('error', () => undefined);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  t.teardown(() => new Promise<void>((r) => { server.close(() => r()); for (const s of conns) s.destroy(); }));
  const upPort = (server.address() as net.AddressInfo).port;
  const lport = await freePort();
  const gw = await startGw(t, {
    clusters: [cluster('tcp-up', 'TCP', upPort)],
    listeners: [tcpListener('tcp-in', lport, 'tcp-up')],
  });
  const c = await TcpClient.connect(t, lport);
  t.is((await c.exchange(Buffer.from('ping'))).toString(), 'ping');
  const [s] = await sessionsOf(gw, 'tcp-in');
  t.is(s.status, 'CONNECTED');

  const del = await api(gw.base, 'DELETE', `/api/v1/sessions/${encodeURIComponent(s.name)}`);
  t.is(del.status, 200, del.text);
  await waitFor(() => c.ended || c.closed, 3000, 'client connection ended');
  await waitFor(() => upstreamClosed, 3000, 'upstream connection closed');
  await waitFor(async () => (await sessionsOf(gw, 'tcp-in')).length === 0, 3000, 'session gone');
  const again = await api(gw.base, 'DELETE', `/api/v1/sessions/${encodeURIComponent(s.name)}`);
  t.is(again.status, 404);
});
