// Route retry policies over real sockets: reconnecting a live session when its
// upstream dies and comes back, retrying the initial connect, and failing fast
// with retry_on: never.

import test, { type ExecutionContext } from 'ava';
import fs from 'node:fs';
import net from 'node:net';
import {
  api, echo, freePort, nextMessage, type Peer, peer, socat, startGw, tcpRoundTrip, tmpPath, udpClient, waitFor,
} from './helpers.js';

/** A TCP socket in LISTEN state on 127.0.0.1:port, read from /proc (connecting would use up a one-shot socat). */
function tcpListenSocket(port: number): boolean {
  const local = `0100007F:${port.toString(16).toUpperCase().padStart(4, '0')}`;
  return fs.readFileSync('/proc/net/tcp', 'utf8').split('\n').some((line) => {
    const f = line.trim().split(/\s+/);
    return f[1] === local && f[3] === '0A';
  });
}

/** A socat TCP echo that serves one connection and dies with it (no fork child survives a kill). */
function tcpEchoOnce(port: number): Promise<Peer> {
  return socat([`TCP-LISTEN:${port},bind=127.0.0.1,reuseaddr`, 'EXEC:cat'], async () => tcpListenSocket(port));
}

async function sessionsOf(gw: { base: string }, listener: string): Promise<any[]> {
  const r = await api(gw.base, 'GET', '/api/v1/sessions');
  if (r.status !== 200 || !Array.isArray(r.body)) throw new Error(`GET /api/v1/sessions: ${r.status} ${r.text}`);
  return r.body.filter((s: any) => s.source?.origin === listener);
}

function count(events: { event: string }[], name: string): number {
  return events.filter((e) => e.event === name).length;
}

function listener(name: string, protocol: 'TCP' | 'UDP', port: number, route: Record<string, unknown>, options?: Record<string, unknown>) {
  return {
    name,
    spec: { protocol, address: '127.0.0.1', port },
    rules: [{ action: { route } }],
    ...(options ? { options } : {}),
  };
}

function upstream(protocol: 'TCP' | 'UDP', port: number) {
  return { name: 'up', spec: { protocol, port }, endpoints: [{ name: 'up-ep', spec: { address: '127.0.0.1' } }] };
}

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

  static connect(t: ExecutionContext, port: number): Promise<TcpClient> {
    return new Promise((resolve, reject) => {
      const sock = net.connect({ port, host: '127.0.0.1' });
      const c = new TcpClient(sock);
      t.teardown(() => { sock.destroy(); });
      sock.once('connect', () => resolve(c));
      sock.once('error', reject);
    });
  }

  async take(n: number, timeoutMs = 5000): Promise<Buffer> {
    await waitFor(() => this.data.length >= n, timeoutMs, `${n} bytes over TCP (have ${this.data.length})`);
    const out = this.data.subarray(0, n);
    this.data = this.data.subarray(n);
    return Buffer.from(out);
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

test('TCP retry_on always: the upstream dies and comes back; the session reconnects on the same client connection', async (t) => {
  const upPort = await freePort();
  const first = await peer(t, tcpEchoOnce(upPort));
  const lport = await freePort();
  const gw = await startGw(t, {
    clusters: [upstream('TCP', upPort)],
    listeners: [listener('tcp-in', 'TCP', lport, { destination: 'up', retry: { retry_on: 'always', num_retries: 5, timeout: 500 } })],
  });
  const c = await TcpClient.connect(t, lport);
  c.sock.write('one');
  t.is((await c.take(3)).toString(), 'one');
  const [before] = await sessionsOf(gw, 'tcp-in');
  t.is(count(before.events, 'CONNECT'), 1);

  await (async (p) => p.stop())(first);
  const [lost] = await waitFor(async () => {
    const l = await sessionsOf(gw, 'tcp-in');
    return l.length === 1 && count(l[0].events, 'DISCONNECT') >= 1 ? l : undefined;
  }, 3000, 'a DISCONNECT event');
  t.is(lost.name, before.name);
  t.is(lost.status, 'CONNECTED', 'the session lives on while the cluster is retried');
  await peer(t, tcpEchoOnce(upPort)); // well within 5 retries x 500 ms

  // Written while the upstream may still be reconnecting: held, then delivered.
  c.sock.write('two');
  t.is((await c.take(3, 6000)).toString(), 'two');
  t.false(c.ended || c.closed, 'the client connection survived');
  const [after] = await sessionsOf(gw, 'tcp-in');
  t.is(after.name, before.name);
  t.true(count(after.events, 'DISCONNECT') >= 1);
  t.true(count(after.events, 'CONNECT') >= 2, 'a second CONNECT after the reconnect');
  t.is(after.destination.status, 'READY');
  c.sock.write('three');
  t.is((await c.take(5)).toString(), 'three');
});

test('TCP retry_on always: a request/response that ends with EOF from both sides ends normally (no reconnect)', async (t) => {
  const upPort = await freePort();
  await peer(t, echo.tcp(upPort));
  const lport = await freePort();
  const logFile = tmpPath('ingress.log');
  const gw = await startGw(t, {
    clusters: [upstream('TCP', upPort)],
    listeners: [listener('tcp-in', 'TCP', lport, {
      destination: 'up',
      // A transform in the chain passes the client's EOF on; that is not a disconnect either.
      ingress: [{ spec: { protocol: 'Logger', log_file: logFile } }],
      retry: { retry_on: 'always', num_retries: 5, timeout: 500 },
    }, { track: 30 })],
  });
  const reply = await Promise.race([
    tcpRoundTrip(lport, Buffer.from('request')),
    sleep(4000).then(() => Buffer.from('TIMEOUT: the client never got EOF')),
  ]);
  t.is(reply.toString(), 'request');
  const [s] = await waitFor(async () => {
    const l = await sessionsOf(gw, 'tcp-in');
    return l.length === 1 && l[0].status === 'DESTROYED' ? l : undefined;
  }, 3000, 'the session ended');
  t.is(count(s.events, 'CONNECT'), 1, `no reconnect: ${s.events.map((e: any) => e.event).join(',')}`);
  t.is(count(s.events, 'ERROR'), 0);
});

test('TCP retry_on connect-failure: the upstream starts ~400 ms after the client connects; the session succeeds', async (t) => {
  const upPort = await freePort();
  const lport = await freePort();
  const gw = await startGw(t, {
    clusters: [upstream('TCP', upPort)],
    listeners: [listener('tcp-in', 'TCP', lport, { destination: 'up', retry: { retry_on: 'connect-failure', num_retries: 3, timeout: 300 } })],
  });
  const c = await TcpClient.connect(t, lport);
  const connected = Date.now();
  c.sock.write('early bird'); // held until the upstream is there
  await sleep(400);
  await peer(t, echo.tcp(upPort));
  t.is((await c.take(10, 3000)).toString(), 'early bird');
  t.true(Date.now() - connected >= 400);
  const [s] = await sessionsOf(gw, 'tcp-in');
  t.is(s.status, 'CONNECTED');
  t.is(count(s.events, 'CONNECT'), 1);
  t.is(count(s.events, 'ERROR'), 0);
  t.false(c.ended || c.closed);
});

test('TCP retry_on connect-failure: gives up after num_retries when the upstream never comes', async (t) => {
  const upPort = await freePort();
  const lport = await freePort();
  const gw = await startGw(t, {
    clusters: [upstream('TCP', upPort)],
    listeners: [listener('tcp-in', 'TCP', lport, { destination: 'up', retry: { retry_on: 'connect-failure', num_retries: 3, timeout: 300 } })],
  });
  const c = await TcpClient.connect(t, lport);
  const started = Date.now();
  await waitFor(() => c.ended || c.closed, 4000, 'the client connection closed');
  const took = Date.now() - started;
  t.true(took >= 800, `waited for the retries (3 x 300 ms) before giving up: ${took} ms`);
  t.true(took < 3000, `but not much longer: ${took} ms`);
  t.is(c.data.length, 0);
  await waitFor(async () => (await sessionsOf(gw, 'tcp-in')).length === 0, 2000, 'no session left');
});

test('TCP retry_on never: an unreachable upstream fails the session quickly and leaves none', async (t) => {
  const upPort = await freePort();
  const lport = await freePort();
  const gw = await startGw(t, {
    clusters: [upstream('TCP', upPort)],
    listeners: [listener('tcp-in', 'TCP', lport, { destination: 'up', retry: { retry_on: 'never', num_retries: 3, timeout: 300 } })],
  });
  const c = await TcpClient.connect(t, lport);
  const started = Date.now();
  c.sock.write('hello?');
  await waitFor(() => c.ended || c.closed, 2000, 'the client connection closed');
  const took = Date.now() - started;
  // Retrying would take at least 3 x 300 ms; the margin is for a loaded machine.
  t.true(took < 800, `one attempt, no retry delays: ${took} ms`);
  t.is(c.data.length, 0);
  await waitFor(async () => (await sessionsOf(gw, 'tcp-in')).length === 0, 2000, 'no session left');
  // And the upstream appearing later changes nothing for that client.
  await peer(t, echo.tcp(upPort));
  t.deepEqual(await sessionsOf(gw, 'tcp-in'), []);
});

test('UDP retry_on always: the upstream is killed and restarted on the same port; traffic resumes', async (t) => {
  const upPort = await freePort();
  const first = await peer(t, echo.udp(upPort));
  const lport = await freePort();
  const gw = await startGw(t, {
    clusters: [upstream('UDP', upPort)],
    listeners: [listener('udp-in', 'UDP', lport, { destination: 'up', retry: { retry_on: 'always', num_retries: 5, timeout: 500 } })],
  });
  const c = await udpClient();
  t.teardown(() => new Promise<void>((r) => c.close(() => r())));
  const ask = async (msg: string, timeoutMs: number): Promise<string | undefined> => {
    const reply = nextMessage(c, timeoutMs).then(String, () => undefined);
    c.send(msg, lport, '127.0.0.1');
    return reply;
  };
  t.is(await ask('before', 3000), 'before');
  const [before] = await sessionsOf(gw, 'udp-in');

  await (async (p) => p.stop())(first);
  // A datagram into the void: ICMP port unreachable fails the connected upstream socket.
  t.is(await ask('into the void', 300), undefined);
  await waitFor(async () => {
    const l = await sessionsOf(gw, 'udp-in');
    return l.length === 1 && count(l[0].events, 'DISCONNECT') >= 1;
  }, 3000, 'a DISCONNECT event');
  await peer(t, echo.udp(upPort));

  // UDP loses what was sent while the upstream was away: retry a bounded number of times.
  let got: string | undefined;
  for (let i = 0; i < 20 && got === undefined; i++) got = await ask(`after ${i}`, 250);
  t.truthy(got, 'traffic resumed');
  t.regex(got ?? '', /^after \d+$/);
  const list = await sessionsOf(gw, 'udp-in');
  t.is(list.length, 1, 'still the one session');
  t.is(list[0].name, before.name);
  t.is(list[0].status, 'CONNECTED');
  t.true(count(list[0].events, 'CONNECT') >= 2, 'reconnected');
  t.is(await ask('steady', 2000), 'steady');
});
