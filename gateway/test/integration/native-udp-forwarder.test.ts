// Compiled UDP listeners (protocols/udp/compiled.ts, native/sockets/src/
// udpfwd.cc): a server-mode UDP listener whose route does not look at the
// datagrams has its flows set up and carried by the addon. Real sockets, a
// real echo peer, the REST API and the metrics endpoint.

import test, { type ExecutionContext } from 'ava';
import dgram from 'node:dgram';
import { socketsAddon } from '../../src/native/sockets.js';
import { api, echo, freePort, nextMessage, peer, randomPayload, startGw, udpClient, waitFor } from './helpers.js';

const addon = socketsAddon();
const gated = addon?.UdpForwarder === undefined ? (process.env.CI === 'true' ? test : test.skip) : test;

async function client(t: ExecutionContext): Promise<dgram.Socket> {
  const s = await udpClient();
  t.teardown(() => new Promise<void>((r) => { try { s.close(() => r()); } catch { r(); } }));
  return s;
}

function config(port: number, echoPort: number, spec: Record<string, unknown> = {}, route: Record<string, unknown> = {}) {
  return {
    clusters: [{ name: 'udp-echo', spec: { protocol: 'UDP', port: echoPort }, endpoints: [{ spec: { address: '127.0.0.1' } }] }],
    listeners: [{ name: 'udp-in', spec: { protocol: 'UDP', address: '127.0.0.1', port, ...spec }, rules: [{ action: { route: { destination: 'udp-echo', ...route } } }] }],
  };
}

async function sessions(base: string): Promise<any[]> {
  const r = await api(base, 'GET', '/api/v1/sessions');
  if (r.status !== 200 || !Array.isArray(r.body)) throw new Error(`GET /api/v1/sessions: ${r.status} ${r.text}`);
  return r.body.filter((s: any) => s.source?.origin === 'udp-in');
}

/** Send every datagram, then collect as many replies. */
async function burst(sock: dgram.Socket, port: number, msgs: Buffer[]): Promise<Buffer[]> {
  const got: Buffer[] = [];
  const done = new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${got.length} of ${msgs.length} replies within 5 s`)), 5000);
    const on = (m: Buffer): void => {
      got.push(m);
      if (got.length === msgs.length) {
        clearTimeout(timer);
        sock.off('message', on);
        resolve();
      }
    };
    sock.on('message', on);
  });
  for (const m of msgs) sock.send(m, port, '127.0.0.1');
  await done;
  return got;
}

gated('a compiled UDP listener: flows in the addon, listed with their counters; a burst comes back whole; DELETE ends one, the other goes on', async (t) => {
  const echoPort = await freePort();
  await peer(t, echo.udp(echoPort));
  const port = await freePort();
  const g = await startGw(t, config(port, echoPort));
  const a = await client(t);
  const b = await client(t);
  const hello = nextMessage(a);
  a.send(Buffer.from([255]), port, '127.0.0.1');
  await hello;
  const msgs = Array.from({ length: 40 }, (_, i) => Buffer.concat([Buffer.from([i]), randomPayload(i * 30)]));
  const back = await burst(a, port, msgs);
  // The echo (socat UDP-RECVFROM,fork: a child per datagram) may reorder them; a pipe-backed one would merge them.
  const key = (m: Buffer): string => m.toString('hex');
  t.deepEqual(back.map(key).sort(), msgs.map(key).sort(), 'every datagram back, byte-exact');
  const one = nextMessage(b);
  b.send(Buffer.from('b'), port, '127.0.0.1');
  t.is((await one).toString(), 'b');

  // No session in JavaScript: both flows are the addon's.
  t.is([...g.gw.sessions.values()].filter((s) => s.listener === 'udp-in').length, 0);
  const list = await sessions(g.base);
  t.is(list.length, 2);
  const sa = list.find((s) => s.metadata.UDP.src_port === a.address().port);
  t.truthy(sa);
  t.regex(sa.name, new RegExp(`^UDP:127\\.0\\.0\\.1:${a.address().port}-127\\.0\\.0\\.1:${port}-c\\d+$`));
  t.is(sa.path, 'raw');
  t.is(sa.splice.compiled, true);
  t.is(sa.destination.origin, 'udp-echo');
  const bytes = msgs.reduce((n, m) => n + m.length, 1);
  t.deepEqual(sa.counters, { ingress: { bytes, packets: msgs.length + 1 }, egress: { bytes, packets: msgs.length + 1 } });

  // GET by name, then DELETE: the flow ends, b's goes on.
  const one1 = await api(g.base, 'GET', `/api/v1/sessions/${encodeURIComponent(sa.name)}`);
  t.is(one1.status, 200);
  const del = await api(g.base, 'DELETE', `/api/v1/sessions/${encodeURIComponent(sa.name)}`);
  t.true(del.status >= 200 && del.status < 300, `DELETE: ${del.status} ${del.text}`);
  await waitFor(async () => (await sessions(g.base)).length === 1, 5000, 'the deleted flow gone from the list');
  const again = nextMessage(b);
  b.send(Buffer.from('b2'), port, '127.0.0.1');
  t.is((await again).toString(), 'b2');

  // What drain and the metrics read: one live flow left.
  t.is(g.gw.compiled.live(), 1);
});

gated('a compiled UDP flow ends after its idle timeout; the end is counted, the listener serves the source again as a new flow', async (t) => {
  const echoPort = await freePort();
  await peer(t, echo.udp(echoPort));
  const port = await freePort();
  const g = await startGw(t, config(port, echoPort, { idle_timeout: 1 }));
  const a = await client(t);
  const r = nextMessage(a);
  a.send(Buffer.from('x'), port, '127.0.0.1');
  t.is((await r).toString(), 'x');
  const [first] = await sessions(g.base);
  t.is(first?.splice?.compiled, true);
  await waitFor(async () => (await sessions(g.base)).length === 0, 5000, 'the idle flow to end');
  t.is(g.gw.compiled.live(), 0);
  const r2 = nextMessage(a);
  a.send(Buffer.from('y'), port, '127.0.0.1');
  t.is((await r2).toString(), 'y');
  const [second] = await sessions(g.base);
  t.truthy(second);
  t.not(second.name, first.name, 'a new flow, with a name of its own');
});

gated('a UDP route with an ingress transform is not compiled: its flows are sessions in JavaScript', async (t) => {
  const echoPort = await freePort();
  await peer(t, echo.udp(echoPort));
  const port = await freePort();
  const g = await startGw(t, config(port, echoPort, {}, { ingress: [{ spec: { protocol: 'JSONEncap' } }], egress: [{ spec: { protocol: 'JSONDecap' } }] }));
  const a = await client(t);
  const r = nextMessage(a);
  a.send(Buffer.from('z'), port, '127.0.0.1');
  t.is((await r).toString(), 'z');
  const [s] = await sessions(g.base);
  t.truthy(s);
  t.is(s.splice?.compiled, undefined);
  t.is([...g.gw.sessions.values()].filter((x) => x.listener === 'udp-in').length, 1);
});

