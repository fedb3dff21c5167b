// The WebSocket listener on the `ws` engine (spec.engine: ws): the same
// behaviour as the uWebSockets.js listener, checked with real peers.

import test from 'ava';
import http from 'node:http';
import { api, echo, freePort, startTestGateway, waitFor } from './helpers.js';
import { assertMirrored, closed, nextWsMessage, openClient } from './ws-helpers.js';

async function wsEngineToUdpEcho(t: { teardown(fn: () => unknown): void }, spec: Record<string, unknown> = {}) {
  const [wsPort, up] = [await freePort(), await freePort()];
  const peer = await echo.udp(up);
  t.teardown(() => peer.stop());
  const g = await startTestGateway({
    listeners: [{ name: 'ws', spec: { protocol: 'WebSocket', engine: 'ws', port: wsPort, address: '127.0.0.1', ...spec }, rules: [{ action: { route: { destination: 'udp' } } }] }],
    clusters: [{ name: 'udp', spec: { protocol: 'UDP', port: up }, endpoints: [{ spec: { address: '127.0.0.1' } }] }],
  });
  t.teardown(() => g.stop());
  return { g, wsPort };
}

test('ws engine: WebSocket listener -> UDP echo, one message per datagram, binary and text mirrored', async (t) => {
  const { g, wsPort } = await wsEngineToUdpEcho(t);
  const c = await openClient(`ws://127.0.0.1:${wsPort}/some/path?x=1`);
  t.teardown(() => c.terminate());
  await assertMirrored(t, c);

  // Session name and metadata as the uWS listener gives them.
  const sessions = (await api(g.base, 'GET', '/api/v1/sessions')).body as Array<{ name: string; source: { origin: string }; metadata: any }>;
  const s = sessions.find((x) => x.source.origin === 'ws');
  t.truthy(s, JSON.stringify(sessions));
  t.regex(s!.name, new RegExp(`^WS:127\\.0\\.0\\.1-127\\.0\\.0\\.1:${wsPort}-\\d+$`));
  t.is(s!.metadata.HTTP.url.path, '/some/path');
  t.is(s!.metadata.HTTP.url.query, 'x=1');
  t.is(s!.metadata.HTTP.method, 'GET');
  t.is(s!.metadata.IP.src_addr, '127.0.0.1');
  t.is(s!.metadata.TCP.dst_port, wsPort);
});

test('ws engine: frame mode text sends text frames whatever came in', async (t) => {
  const { wsPort } = await wsEngineToUdpEcho(t, { frame: 'text' });
  const c = await openClient(`ws://127.0.0.1:${wsPort}/`);
  t.teardown(() => c.terminate());
  c.send(Buffer.from('abc'), { binary: true });
  const back = await nextWsMessage(c);
  t.is(back.data.toString(), 'abc');
  t.false(back.isBinary);
});

test('ws engine: plain HTTP gets 426, path and subprotocol checks refuse upgrades', async (t) => {
  const { wsPort } = await wsEngineToUdpEcho(t, { path: '/chat', subprotocols: ['chat.v2', 'chat.v1'] });
  // node:http, since fetch refuses a response that carries the Upgrade header RFC 7231 asks for.
  const res = await new Promise<{ status: number; upgrade: string | undefined }>((resolve, reject) => {
    http.get(`http://127.0.0.1:${wsPort}/chat`, (r) => { r.resume(); resolve({ status: r.statusCode ?? 0, upgrade: r.headers.upgrade }); }).on('error', reject);
  });
  t.is(res.status, 426);
  t.is(res.upgrade, 'websocket');
  await t.throwsAsync(openClient(`ws://127.0.0.1:${wsPort}/other`), { message: /HTTP 404/ });
  await t.throwsAsync(openClient(`ws://127.0.0.1:${wsPort}/chat`, ['chat.v9']), { message: /HTTP 400/ });
  const c = await openClient(`ws://127.0.0.1:${wsPort}/chat`, ['chat.v1', 'chat.v2']);
  t.teardown(() => c.terminate());
  t.is(c.protocol, 'chat.v1', 'first offered protocol the listener allows');
  c.send('ping');
  t.is((await nextWsMessage(c)).data.toString(), 'ping');
});

test('ws engine: an oversized message closes that connection with 1009, others keep working', async (t) => {
  const { wsPort } = await wsEngineToUdpEcho(t, { max_message_size: 1024 });
  const big = await openClient(`ws://127.0.0.1:${wsPort}/`);
  const other = await openClient(`ws://127.0.0.1:${wsPort}/`);
  t.teardown(() => { big.terminate(); other.terminate(); });
  big.send(Buffer.alloc(4096));
  const cl = await closed(big);
  t.true(cl.code === 1009 || cl.code === 1006, `close code ${cl.code}`);
  other.send('still here');
  t.is((await nextWsMessage(other)).data.toString(), 'still here');
});

test('ws engine: deleting the listener closes its connections with 1001 and frees the port', async (t) => {
  const { g, wsPort } = await wsEngineToUdpEcho(t);
  const c = await openClient(`ws://127.0.0.1:${wsPort}/`);
  t.teardown(() => c.terminate());
  const done = closed(c);
  t.is((await api(g.base, 'DELETE', '/api/v1/listeners/ws')).status, 200);
  t.is((await done).code, 1001);
  await waitFor(() => new Promise<boolean>((resolve) => {
    const s = http.createServer();
    s.once('error', () => resolve(false));
    s.listen(wsPort, '127.0.0.1', () => s.close(() => resolve(true)));
  }), 5000, 'port free again');
  t.true(await new Promise<boolean>((resolve) => {
    const s = http.createServer();
    s.once('error', () => resolve(false));
    s.listen(wsPort, '127.0.0.1', () => s.close(() => resolve(true)));
  }), 'the listener port can be bound again');
});

test('an unknown WebSocket engine is refused naming the field', async (t) => {
  const g = await startTestGateway();
  t.teardown(() => g.stop());
  const port = await freePort();
  const r = await api(g.base, 'POST', '/api/v1/listeners', { listener: { name: 'bad', spec: { protocol: 'WebSocket', port, engine: 'nginx' }, rules: [] } });
  t.is(r.status, 400, r.text);
  t.regex(r.text, /engine/);
});
