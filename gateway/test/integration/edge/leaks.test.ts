// Memory is bounded over time, not only per live session: once a session has
// ended, nothing of it may stay reachable, whichever protocol carried it and
// whichever path it took (the raw stream path, net.Socket, uWS, the node
// HTTP engine, WebSocket, batched UDP). A session kept by a stray reference
// is a leak that only shows after days at the edge; here it shows after 60
// sessions: each kind's sessions are watched with WeakRefs from the
// onSessionStart hook and must all be collected once the gateway lists none.

import test from 'ava';
import dgram from 'node:dgram';
import type { Session } from '../../../src/dataplane/session.js';
import { allCollected } from '../gc-helpers.js';
import { api, freePort, nextMessage, startGw, tcpRoundTrip, tmpPath, udpClient, unixRoundTrip, waitFor } from '../helpers.js';
import { httpRequest, slowHttpUpstream, tcpEchoUpstream, wsEcho } from './edge-helpers.js';

const N = 60;

/** A match every loopback client passes: the rule looks at the connection, so the listener is not compiled. */
const BY_SOURCE = { op: 'test', path: '/IP/src_addr', value: '127.0.0.1' };

function listener(name: string, spec: Record<string, unknown>, destination: unknown, route: Record<string, unknown> = {}) {
  return { name, spec: { address: '127.0.0.1', ...spec }, rules: [{ action: { route: { destination, ...route } } }] };
}

async function udpEcho(port: number, text: string): Promise<string> {
  const s = await udpClient();
  try {
    const reply = nextMessage(s);
    s.send(text, port, '127.0.0.1');
    return String(await reply);
  } finally {
    s.close();
  }
}

/** One request on its own connection (edge-helpers httpRequest), its body. */
async function httpGet(port: number, path: string): Promise<string> {
  return (await httpRequest(`http://127.0.0.1:${port}${path}`).outcome).body.toString();
}

test('sessions that ended leave nothing reachable, on every path', async (t) => {
  t.timeout(60_000);
  const tcpUp = await tcpEchoUpstream(t);
  const httpUp = await slowHttpUpstream(t, 0, (req) => `answer ${req.url}`);
  const udpUp = dgram.createSocket('udp4');
  udpUp.on('message', (m, r) => udpUp.send(m, r.port, r.address));
  await new Promise<void>((r) => udpUp.bind(0, '127.0.0.1', () => r()));
  t.teardown(() => udpUp.close());
  const p = { tcp: await freePort(), tcpCompiled: await freePort(), tcpJs: await freePort(), http: await freePort(), httpNode: await freePort(), ws: await freePort(), wsJs: await freePort(), udp: await freePort(), udpCompiled: await freePort() };
  const uds = tmpPath('leaks.sock');
  const tcpCluster = { name: 'tcp-echo', spec: { protocol: 'TCP', port: tcpUp.port }, endpoints: [{ spec: { address: '127.0.0.1' } }] };
  const httpCluster = { name: 'http-up', spec: { protocol: 'HTTP', port: httpUp.port }, endpoints: [{ spec: { address: '127.0.0.1' } }] };
  const udpCluster = { name: 'udp-echo', spec: { protocol: 'UDP', port: (udpUp.address()).port }, endpoints: [{ spec: { address: '127.0.0.1' } }] };
  const { gw } = await startGw(t, {
    clusters: [tcpCluster, httpCluster, udpCluster],
    listeners: [
      // A rule that looks at the connection keeps the raw path's sessions
      // decided in JavaScript (Session objects to watch); tcp-compiled is a
      // compiled listener (fastpath/compiled.ts), whose sessions make none.
      { name: 'tcp-raw', spec: { protocol: 'TCP', address: '127.0.0.1', port: p.tcp }, rules: [{ match: BY_SOURCE, action: { route: { destination: 'tcp-echo' } } }] },
      listener('tcp-compiled', { protocol: 'TCP', port: p.tcpCompiled }, 'tcp-echo'),
      // A retry policy that relinks keeps the session on net.Socket.
      listener('tcp-js', { protocol: 'TCP', port: p.tcpJs }, 'tcp-echo', { retry: { retry_on: 'disconnect', num_retries: 1, timeout: 500 } }),
      { name: 'uds', spec: { protocol: 'UnixDomainSocket', filename: uds }, rules: [{ match: { op: 'test', path: '/UNIX/filename', value: uds }, action: { route: { destination: 'tcp-echo' } } }] },
      listener('http-uws', { protocol: 'HTTP', port: p.http }, 'http-up'),
      listener('http-node', { protocol: 'HTTP', port: p.httpNode, engine: 'node' }, 'http-up'),
      listener('ws', { protocol: 'WebSocket', port: p.ws }, 'tcp-echo'),
      listener('ws-js', { protocol: 'WebSocket', port: p.wsJs, engine: 'ws' }, 'udp-echo'),
      // As tcp-raw: a rule that looks at the flow keeps its sessions in JavaScript; udp-compiled's are the addon's.
      { name: 'udp', spec: { protocol: 'UDP', address: '127.0.0.1', port: p.udp, idle_timeout: 1 }, rules: [{ match: BY_SOURCE, action: { route: { destination: 'udp-echo' } } }] },
      listener('udp-compiled', { protocol: 'UDP', port: p.udpCompiled, idle_timeout: 1 }, 'udp-echo'),
    ],
  });
  const refs = new Map<string, WeakRef<object>[]>();
  // Sessions that took the raw stream path, by listener: each path is really exercised.
  const raw = new Map<string, number>();
  gw.hooks.add({
    onSessionStart(s: Session) {
      let l = refs.get(s.listener);
      if (l === undefined) refs.set(s.listener, (l = []));
      l.push(new WeakRef(s));
      if (s.source.channel !== undefined) l.push(new WeakRef(s.source.channel));
    },
    onSessionEnd(s: Session) {
      if (s.splice?.path === 'raw') raw.set(s.listener, (raw.get(s.listener) ?? 0) + 1);
    },
  });
  for (let i = 0; i < N; i++) {
    const m = Buffer.from(`m${i}`);
    t.is(String(await tcpRoundTrip(p.tcp, m)), `m${i}`);
    t.is(String(await tcpRoundTrip(p.tcpJs, m)), `m${i}`);
    t.is(String(await tcpRoundTrip(p.tcpCompiled, m)), `m${i}`);
    t.is(String(await unixRoundTrip(uds, m)), `m${i}`);
    t.is(await httpGet(p.http, `/u${i}`), `answer /u${i}`);
    t.is(await httpGet(p.httpNode, `/n${i}`), `answer /n${i}`);
    t.is(await wsEcho(p.ws, `w${i}`), `w${i}`);
    t.is(await wsEcho(p.wsJs, `j${i}`), `j${i}`);
    t.is(await udpEcho(p.udp, `d${i}`), `d${i}`);
    t.is(await udpEcho(p.udpCompiled, `c${i}`), `c${i}`);
  }
  // UDP flows end at their idle timeout (1 s); the rest as their clients close.
  await waitFor(() => [...gw.sessions.values()].every((s) => s.status === 'DESTROYED') || undefined, 10_000, 'every session over');
  await waitFor(() => gw.sessions.size === 0 || undefined, 10_000, 'no session listed');
  t.deepEqual([...refs.keys()].sort(), ['http-node', 'http-uws', 'tcp-js', 'tcp-raw', 'udp', 'uds', 'ws', 'ws-js']);
  for (const [name, l] of refs) {
    t.true(l.length >= N, `${name}: ${l.length} references`);
    await t.notThrowsAsync(allCollected(l, `${name} sessions and channels`), name);
  }
  t.is(raw.get('tcp-raw'), N, 'the tcp-raw sessions took the raw stream path');
  t.is(raw.get('uds'), N, 'the uds sessions took the raw stream path');
  t.is(raw.get('tcp-js') ?? 0, 0, 'the tcp-js sessions stayed on net.Socket');
  // The compiled listener's N sessions made no Session, and none is live in the addon.
  await waitFor(() => gw.compiled.live() === 0 || undefined, 10_000, 'no compiled session live');
  t.false(refs.has('tcp-compiled'), 'no Session object for a compiled listener');
  t.false(refs.has('udp-compiled'), 'no Session object for a compiled UDP listener');
});

test('listeners and clusters created and deleted over REST leave nothing reachable', async (t) => {
  t.timeout(60_000);
  const tcpUp = await tcpEchoUpstream(t);
  const { base, gw } = await startGw(t, {});
  const refs = new Map<string, WeakRef<object>[]>();
  const kinds: Array<[string, Record<string, unknown>]> = [
    ['TCP', { protocol: 'TCP' }],
    ['UDP', { protocol: 'UDP' }],
    ['HTTP', { protocol: 'HTTP' }],
    ['HTTP-node', { protocol: 'HTTP', engine: 'node' }],
    ['WebSocket', { protocol: 'WebSocket' }],
  ];
  for (let i = 0; i < 12; i++) {
    for (const [kind, spec] of kinds) {
      const port = await freePort();
      const name = `churn-${kind}-${i}`;
      const cluster = `up-${kind}-${i}`;
      const add = await api(base, 'POST', '/api/v1/listeners', { listener: { name, spec: { ...spec, address: '127.0.0.1', port }, rules: [{ action: { route: { destination: { name: cluster, spec: { protocol: 'TCP', port: tcpUp.port }, endpoints: [{ spec: { address: '127.0.0.1' } }] } } } }] } });
      t.is(add.status, 200, `${name}: ${add.text}`);
      // A session through the raw TCP listener, so that its acceptor has run.
      if (kind === 'TCP') t.is(String(await tcpRoundTrip(port, Buffer.from(name))), name);
      if (!refs.has(kind)) refs.set(kind, []);
      refs.get(kind)!.push(new WeakRef(gw.listeners.get(name)!), new WeakRef(gw.listeners.get(name)!.impl), new WeakRef(gw.clusters.get(cluster)!));
      t.is((await api(base, 'DELETE', `/api/v1/listeners/${name}?recursive=true`)).status, 200);
      // The recursive delete takes the inline cluster along; delete it otherwise.
      if (gw.clusters.has(cluster)) t.is((await api(base, 'DELETE', `/api/v1/clusters/${cluster}`)).status, 200);
      t.false(gw.listeners.has(name) || gw.clusters.has(cluster), `${name} and ${cluster} are gone`);
    }
  }
  await waitFor(() => gw.sessions.size === 0 || undefined, 10_000, 'no session listed');
  for (const [kind, l] of refs) await t.notThrowsAsync(allCollected(l, `deleted ${kind} listeners, their implementations and clusters`), kind);
});
