// Compiled UDP listeners (protocols/udp/compiled.ts, native/sockets/src/
// udpfwd.cc): a server-mode UDP listener whose route does not look at the
// datagrams has its flows set up and carried by the addon. Real sockets, a
// real echo peer, the REST API and the metrics endpoint.

import test, { type ExecutionContext } from 'ava';
import dgram from 'node:dgram';
import { socketsAddon } from '../../src/native/sockets.js';
import fs from 'node:fs';
import { api, echo, freePort, nextMessage, peer, randomPayload, startGw, tmpPath, udpClient, waitFor } from './helpers.js';
import { metricValue, startChild, type ChildGateway } from './edge/edge-helpers.js';
import { needCapability } from './native-helpers.js';

const missing = socketsAddon()?.UdpForwarder === undefined ? 'the sockets addon (with its UdpForwarder) is not built' : undefined;

/** Every test runs on the addon's UdpForwarder: without it, a skip here and a failure in CI. */
function need(t: ExecutionContext): boolean {
  return needCapability(t, missing);
}

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

test('a compiled UDP listener: flows in the addon, listed with their counters; a burst comes back whole; DELETE ends one, the other goes on', async (t) => {
  if (!need(t)) return;
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

test('a compiled UDP flow ends after its idle timeout; the end is counted, the listener serves the source again as a new flow', async (t) => {
  if (!need(t)) return;
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

test('a UDP route with an ingress transform is not compiled: its flows are sessions in JavaScript', async (t) => {
  if (!need(t)) return;
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


// ------------------------------------------------------------ in a child process

interface Child {
  child: ChildGateway;
  port: number;
  accessLog: string;
  metric(sample: string): Promise<number | undefined>;
}

async function childGateway(t: ExecutionContext, echoPort: number, admin: Record<string, unknown> = {}, spec: Record<string, unknown> = {}): Promise<Child> {
  const port = await freePort();
  const accessLog = tmpPath('access.log');
  const child = await startChild(t, config(port, echoPort, spec), { access_log_path: accessLog, ...admin });
  return { child, port, accessLog, metric: async (sample) => metricValue(await (await fetch(`${child.adminBase}/metrics`)).text(), sample) };
}

async function echoed(sock: dgram.Socket, port: number, text: string): Promise<void> {
  const r = nextMessage(sock);
  sock.send(Buffer.from(text), port, '127.0.0.1');
  if ((await r).toString() !== text) throw new Error(`echo of ${text}`);
}

function accessLines(c: Child): any[] {
  if (!fs.existsSync(c.accessLog)) return [];
  return fs.readFileSync(c.accessLog, 'utf8').split('\n').filter((l) => l !== '').map((l) => JSON.parse(l)).filter((l) => l.listener === 'udp-in');
}

test.serial('metrics and the access log count a compiled flow as any session: started, bytes and packets, ended by DELETE and by the idle timeout', async (t) => {
  if (!need(t)) return;
  const echoPort = await freePort();
  await peer(t, echo.udp(echoPort));
  const g = await childGateway(t, echoPort, {}, { idle_timeout: 1 });
  const a = await client(t);
  const b = await client(t);
  await echoed(a, g.port, 'abc');
  await echoed(a, g.port, 'de');
  await echoed(b, g.port, 'f');
  t.is(await g.metric('l7mp_listener_sessions_active{listener="udp-in",protocol="UDP"}'), 2);
  t.is(await g.metric('l7mp_listener_bytes_total{listener="udp-in",protocol="UDP",direction="rx"}'), 6);
  t.is(await g.metric('l7mp_cluster_packets_total{cluster="udp-echo",protocol="UDP",direction="tx"}'), 3);
  const r = await api(g.child.base, 'GET', '/api/v1/sessions');
  const sa = (r.body as any[]).find((s) => s.metadata?.UDP?.src_port === a.address().port);
  t.is((await api(g.child.base, 'DELETE', `/api/v1/sessions/${encodeURIComponent(sa.name)}`)).status, 200);
  // b's flow idles out after 1 s.
  const lines = await waitFor(() => { const l = accessLines(g); return l.length === 2 ? l : undefined; }, 8000, 'two access log lines');
  const la = lines.find((l) => l.session === sa.name);
  t.like(la, { destination: 'udp-echo', peer: `127.0.0.1:${a.address().port}`, ingress_bytes: 5, ingress_packets: 2, egress_bytes: 5, status: 'ok', reason: 'Session removed from the API' });
  t.like(lines.find((l) => l.session !== sa.name), { peer: `127.0.0.1:${b.address().port}`, ingress_bytes: 1, reason: 'UDP session idle timeout' });
  t.is(await g.metric('l7mp_listener_sessions_total{listener="udp-in",protocol="UDP"}'), 2);
  t.is(await g.metric('l7mp_listener_sessions_active{listener="udp-in",protocol="UDP"}'), 0);
  t.is(await g.metric('l7mp_sessions_ended_total{reason="deleted"}'), 1);
  t.is(await g.metric('l7mp_session_duration_seconds_count{listener="udp-in",cluster="udp-echo"}'), 2);
  t.is(await g.metric('l7mp_listener_bytes_total{listener="udp-in",protocol="UDP",direction="tx"}'), 6, 'the ended flows\' bytes stay counted');
});

test.serial('flow_rate: new flows of a source over its rate are refused by the addon, counted and logged once; its admitted flows go on', async (t) => {
  if (!need(t)) return;
  const echoPort = await freePort();
  await peer(t, echo.udp(echoPort));
  const g = await childGateway(t, echoPort, { limits: { api_rate: 0, flow_rate: 1, flow_burst: 2 } });
  const socks = await Promise.all([1, 2, 3, 4, 5].map(() => client(t)));
  await echoed(socks[0]!, g.port, 'one');
  await echoed(socks[1]!, g.port, 'two');
  for (const s of socks.slice(2)) s.send(Buffer.from('over'), g.port, '127.0.0.1');
  await waitFor(async () => (await g.metric('l7mp_refusals_total{reason="flow_rate",listener="udp-in"}')) === 3, 5000, 'three refusals counted');
  t.is(g.child.output().split('\n').filter((l) => l.includes('"flow_rate"') && l.includes('refused')).length, 1, 'logged once for the interval');
  await echoed(socks[0]!, g.port, 'still');
  const live = (await api(g.child.base, 'GET', '/api/v1/sessions')).body.filter((s: any) => s.source?.origin === 'udp-in');
  t.is(live.length, 2);
  t.true(live.every((s: any) => s.splice?.compiled === true));
});

test.serial('at the listener\'s session cap a quiet flow is evicted for a new one (early drop), counted as flow_evicted', async (t) => {
  if (!need(t)) return;
  const echoPort = await freePort();
  await peer(t, echo.udp(echoPort));
  const g = await childGateway(t, echoPort, { limits: { api_rate: 0, listener_max_sessions: 2 } });
  const [a, b, c] = await Promise.all([client(t), client(t), client(t)]);
  await echoed(a!, g.port, 'a');
  await echoed(b!, g.port, 'b');
  await new Promise((r) => setTimeout(r, 700)); // older than the 500 ms an evictable flow must have been quiet
  await echoed(c!, g.port, 'c');
  const live = (await api(g.child.base, 'GET', '/api/v1/sessions')).body.filter((s: any) => s.source?.origin === 'udp-in');
  t.is(live.length, 2);
  t.true(live.some((s: any) => s.metadata.UDP.src_port === c!.address().port), 'the newcomer got a flow');
  t.true(live.every((s: any) => s.splice?.compiled === true), 'in the addon');
  t.is(await g.metric('l7mp_refusals_total{reason="flow_evicted",listener="udp-in"}'), 1);
});

test.serial('a listener deleted without ?recursive keeps its compiled flows and its port until they end, and opens no new ones', async (t) => {
  if (!need(t)) return;
  const echoPort = await freePort();
  await peer(t, echo.udp(echoPort));
  const g = await childGateway(t, echoPort, { drain_timeout: 3000 }, { idle_timeout: 2 });
  const a = await client(t);
  await echoed(a, g.port, 'before');
  const [flow] = (await api(g.child.base, 'GET', '/api/v1/sessions')).body.filter((s: any) => s.source?.origin === 'udp-in');
  t.is(flow?.splice?.compiled, true, 'the flow is the addon\'s');
  t.is((await api(g.child.base, 'DELETE', '/api/v1/listeners/udp-in')).status, 200);
  await echoed(a, g.port, 'after');
  const b = await client(t);
  const none = nextMessage(b, 500).then(() => 'answered', () => 'silent');
  b.send(Buffer.from('new'), g.port, '127.0.0.1');
  t.is(await none, 'silent', 'no new flows once the listener is gone');
  // The flow idles out (2 s); then the port is free.
  await waitFor(async () => (await api(g.child.base, 'GET', '/api/v1/sessions')).body.every((s: any) => s.source?.origin !== 'udp-in'), 8000, 'the flow ended');
  await waitFor(() => new Promise<boolean>((resolve) => {
    const probe = dgram.createSocket('udp4');
    probe.once('error', () => { probe.close(); resolve(false); });
    probe.bind(g.port, '127.0.0.1', () => probe.close(() => resolve(true)));
  }), 5000, 'the port released');
});
