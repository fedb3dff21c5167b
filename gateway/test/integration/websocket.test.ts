// WebSocket listener (uWebSockets.js) and cluster (ws), and the seed README's
// standalone walkthrough driven exactly as written, with socat and a real
// WebSocket server.

import test from 'ava';
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import WebSocket, { WebSocketServer } from 'ws';
import {
  api, echo, freePort, nextMessage, startTestGateway, tcpListening, tmpPath, udpClient, waitFor,
} from './helpers.js';
import { assertMirrored, closed, nextWsMessage, openClient } from './ws-helpers.js';
import { loadUws } from '../../src/protocols/common/uws.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../..');
const bin = path.join(root, 'dist/gateway/src/main.js');
const yaml = 'text/x-yaml';

function wsServer(port: number, onMessage?: (ws: WebSocket, data: Buffer, isBinary: boolean) => void, opts: Record<string, unknown> = {}): Promise<WebSocketServer> {
  return new Promise((resolve, reject) => {
    const s = new WebSocketServer({ host: '127.0.0.1', port, ...opts });
    s.on('listening', () => resolve(s));
    s.on('error', reject);
    s.on('connection', (ws) => {
      ws.on('message', (data: Buffer, isBinary: boolean) => {
        if (onMessage) onMessage(ws, data, isBinary);
        else ws.send(data, { binary: isBinary });
      });
    });
  });
}

function closeServer(s: WebSocketServer): Promise<void> {
  for (const c of s.clients) c.terminate();
  return new Promise((r) => s.close(() => r()));
}

test('the uWebSockets.js loader names the build it loaded: @btc-vision on glibc >= 2.38, else @trufflesuite (Node 20)', (t) => {
  const l = loadUws();
  t.truthy(l.uws, l.failures.join('; '));
  const glibc = (process.report.getReport() as { header: { glibcVersionRuntime?: string } }).header.glibcVersionRuntime ?? '0.0';
  const [major, minor] = glibc.split('.').map(Number) as [number, number];
  if (major > 2 || (major === 2 && minor >= 38)) {
    t.is(l.loaded, '@btc-vision/uwebsockets.js');
  } else {
    t.is(l.loaded, '@trufflesuite/uws-js-unofficial');
    // The preferred build is installed and tried first; it fails on glibc, not
    // on finding the package (its `exports` hide package.json).
    const btc = l.failures.find((f) => f.startsWith('@btc-vision/uwebsockets.js'));
    t.regex(btc ?? '', /GLIBC_2\.38/);
  }
});

test('seed README walkthrough: socat -> UDP listener with Logger and retry -> ws-cluster -> WebSocket server', async (t) => {
  // The README's ports, as written: UDP 15000 from source port 15001, WebSocket server on 16000.
  const ctl = await freePort();
  const cfg = tmpPath('controller.yaml');
  fs.writeFileSync(cfg, `admin:\n  log_level: info\n  log_file: stderr\nlisteners:\n  - name: controller-listener\n    spec: { protocol: HTTP, port: ${ctl} }\n    rules:\n      - action:\n          route:\n            cluster:\n              spec: { protocol: L7mpController }\n`);
  const gw = spawn(process.execPath, [bin, '-c', cfg, '-l', 'info'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  gw.stdout!.on('data', (d) => { stdout += String(d); });
  t.teardown(() => { gw.kill('SIGKILL'); });
  await waitFor(() => tcpListening(ctl), 10_000, 'controller');
  const base = `http://127.0.0.1:${ctl}`;

  const received: Buffer[] = [];
  const server = await wsServer(16000, (ws, data) => {
    received.push(data);
    ws.send(Buffer.concat([Buffer.from('reply:'), data]));
  });
  t.teardown(() => closeServer(server));

  let r = await api(base, 'POST', '/api/v1/clusters', `cluster:
  name: ws-cluster
  spec: { protocol: "WebSocket", port: 16000 }
  endpoints:
    - spec: { address:  "127.0.0.1" }
`, yaml);
  t.is(r.status, 200, r.text);
  r = await api(base, 'POST', '/api/v1/listeners', `listener:
  name: udp-listener
  spec: { protocol: UDP, port: 15000, connect: {port: 15001} }
  rules:
    - action:
        route:
          destination: ws-cluster
          ingress:
            - spec: { protocol: Logger }
          retry: {retry_on: always, num_retries: 3, timeout: 2000}
`, yaml);
  t.is(r.status, 200, r.text);

  const sc: ChildProcess = spawn('socat', ['-', 'udp:localhost:15000,sourceport=15001'], { stdio: ['pipe', 'pipe', 'pipe'] });
  let scOut = '';
  sc.stdout!.on('data', (d) => { scOut += String(d); });
  t.teardown(() => { sc.kill('SIGKILL'); });
  sc.stdin!.write('hello l7mp\n');
  await waitFor(() => received.length >= 1, 5000, 'message at the WebSocket server');
  t.is(received[0]!.toString(), 'hello l7mp\n', 'arrives verbatim');
  await waitFor(() => scOut.includes('reply:hello l7mp'), 5000, 'reply at socat');
  sc.stdin!.write('second line\n');
  await waitFor(() => received.length >= 2 && scOut.includes('reply:second line'), 5000, 'second round trip');

  // The Logger saw the ingress direction only.
  const logLines = () => stdout.split('\n').filter(Boolean).map((l) => JSON.parse(l) as { direction: string; data: string; session: string });
  await waitFor(() => logLines().length >= 2, 5000, 'Logger lines');
  t.deepEqual(logLines().map((l) => [l.direction, l.data]), [['ingress', 'hello l7mp\n'], ['ingress', 'second line\n']]);
  t.false(stdout.includes('reply:'), 'nothing logged in the egress direction');

  // The session shows up, and can be deleted.
  r = await api(base, 'GET', '/api/v1/sessions');
  const udp = r.body.find((s: { source: { origin: string } }) => s.source.origin === 'udp-listener');
  t.truthy(udp, JSON.stringify(r.body));
  t.regex(udp.name, /^UDP:127\.0\.0\.1:15001-0\.0\.0\.0:15000-\d+$/);
  t.is(udp.destination.origin, 'ws-cluster');
  t.is(udp.ingress[0].origin, 'udp-listener-RuleList-1-Rule-1-Route-1-ingress-Cluster-0');
  t.is(udp.counters.ingress.bytes, 'hello l7mp\n'.length + 'second line\n'.length);
  t.is(logLines()[0]!.session, udp.name);
  r = await api(base, 'DELETE', `/api/v1/sessions/${encodeURIComponent(udp.name)}`);
  t.is(r.status, 200);
  await waitFor(async () => !(await api(base, 'GET', '/api/v1/sessions')).body.some((s: { name: string }) => s.name === udp.name), 5000, 'session gone');
  await waitFor(() => [...server.clients].length === 0, 5000, 'upstream WebSocket closed');

  // Recursive deletes clean up everything implicit.
  t.is((await api(base, 'DELETE', '/api/v1/listeners/udp-listener?recursive=true')).status, 200);
  t.is((await api(base, 'DELETE', '/api/v1/clusters/ws-cluster?recursive=true')).status, 200);
  r = await api(base, 'GET', '/api/v1/config');
  t.deepEqual(r.body.listeners.map((l: { name: string }) => l.name), ['controller-listener']);
  t.deepEqual(r.body.clusters.length, 1);
  t.deepEqual(r.body.rules.length, 1);
  t.deepEqual(r.body.routes.length, 1);
  t.deepEqual(r.body.endpoints, []);
});

async function gatewayWith(t: { teardown(fn: () => unknown): void }, extra: Record<string, unknown>) {
  const g = await startTestGateway(extra);
  t.teardown(() => g.stop());
  return g;
}

test('WebSocket listener -> UDP cluster: one message per datagram, text and binary frames mirrored', async (t) => {
  const [wsPort, up] = [await freePort(), await freePort()];
  const peer = await echo.udp(up);
  t.teardown(() => peer.stop());
  await gatewayWith(t, {
    listeners: [{ name: 'ws', spec: { protocol: 'WebSocket', port: wsPort, address: '127.0.0.1' }, rules: [{ action: { route: { destination: 'udp' } } }] }],
    clusters: [{ name: 'udp', spec: { protocol: 'UDP', port: up }, endpoints: [{ spec: { address: '127.0.0.1' } }] }],
  });
  const c = await openClient(`ws://127.0.0.1:${wsPort}/`);
  t.teardown(() => c.terminate());
  await assertMirrored(t, c);
});

test('UDP listener -> WebSocket cluster -> WebSocket server keeps datagram boundaries', async (t) => {
  const [udpIn, wsUp] = [await freePort(), await freePort()];
  const server = await wsServer(wsUp);
  t.teardown(() => closeServer(server));
  await gatewayWith(t, {
    listeners: [{ name: 'u', spec: { protocol: 'UDP', port: udpIn, address: '127.0.0.1' }, rules: [{ action: { route: { destination: 'w' } } }] }],
    clusters: [{ name: 'w', spec: { protocol: 'WebSocket', port: wsUp, path: '/media' }, endpoints: [{ spec: { address: '127.0.0.1' } }] }],
  });
  let path = '';
  server.on('connection', (_ws, req) => { path = req.url ?? ''; });
  const u = await udpClient();
  t.teardown(() => u.close());
  for (const m of ['a', 'bb', 'ccc']) {
    u.send(m, udpIn, '127.0.0.1');
    t.is((await nextMessage(u)).toString(), m);
  }
  t.is(path, '/media');
});

test('TCP and Unix-socket listeners <-> WebSocket, both directions', async (t) => {
  const [tcpIn, wsIn, wsUp, tcpUp] = [await freePort(), await freePort(), await freePort(), await freePort()];
  const sock = tmpPath('ws.sock');
  const server = await wsServer(wsUp);
  t.teardown(() => closeServer(server));
  const tcpPeer = await echo.tcp(tcpUp);
  t.teardown(() => tcpPeer.stop());
  await gatewayWith(t, {
    listeners: [
      { name: 't', spec: { protocol: 'TCP', port: tcpIn, address: '127.0.0.1' }, rules: [{ action: { route: { destination: 'w' } } }] },
      { name: 'x', spec: { protocol: 'UnixDomainSocket', filename: sock }, rules: [{ action: { route: { destination: 'w' } } }] },
      { name: 'ws', spec: { protocol: 'WebSocket', port: wsIn, address: '127.0.0.1' }, rules: [{ action: { route: { destination: 'tcp' } } }] },
    ],
    clusters: [
      { name: 'w', spec: { protocol: 'WebSocket', port: wsUp }, endpoints: [{ spec: { address: '127.0.0.1' } }] },
      { name: 'tcp', spec: { protocol: 'TCP', port: tcpUp }, endpoints: [{ spec: { address: '127.0.0.1' } }] },
    ],
  });
  const net = await import('node:net');
  for (const opts of [{ port: tcpIn, host: '127.0.0.1' }, { path: sock }]) {
    const c = net.connect(opts as import('node:net').NetConnectOpts);
    t.teardown(() => c.destroy());
    let got = '';
    c.on('data', (d) => { got += String(d); });
    c.write('over a byte stream');
    await waitFor(() => got === 'over a byte stream', 5000, `echo via WebSocket for ${JSON.stringify(opts)}`);
  }
  const ws = await openClient(`ws://127.0.0.1:${wsIn}/`);
  t.teardown(() => ws.terminate());
  ws.send(Buffer.from('ws to tcp'));
  let acc = '';
  while (acc.length < 'ws to tcp'.length) acc += (await nextWsMessage(ws)).data.toString();
  t.is(acc, 'ws to tcp');
});

test('subprotocol negotiation, path matching, and close codes as session end reasons', async (t) => {
  const [wsIn, wsUp] = [await freePort(), await freePort()];
  let upstreamProtocol = '';
  const server = await wsServer(wsUp, (ws, data) => {
    if (data.toString() === 'close-4001') ws.close(4001, 'upstream says bye');
    else ws.send(data);
  }, { handleProtocols: (set: Set<string>) => { upstreamProtocol = [...set][0] ?? ''; return [...set][0] ?? false; } });
  t.teardown(() => closeServer(server));
  const g = await gatewayWith(t, {
    listeners: [{ name: 'ws', spec: { protocol: 'WebSocket', port: wsIn, address: '127.0.0.1', path: '/chat', subprotocols: ['chat.v2', 'chat.v1'] }, options: { track: 30 }, rules: [{ action: { route: { destination: 'w' } } }] }],
    clusters: [{ name: 'w', spec: { protocol: 'WebSocket', port: wsUp }, endpoints: [{ spec: { address: '127.0.0.1' } }] }],
  });
  await t.throwsAsync(openClient(`ws://127.0.0.1:${wsIn}/other`), { message: /HTTP 404/ });
  await t.throwsAsync(openClient(`ws://127.0.0.1:${wsIn}/chat`, ['chat.v9']), { message: /HTTP 400/ });
  const c = await openClient(`ws://127.0.0.1:${wsIn}/chat`, ['chat.v1', 'chat.v2']);
  t.is(c.protocol, 'chat.v1', 'first offered protocol the listener allows');
  c.send('ping');
  t.is((await nextWsMessage(c)).data.toString(), 'ping');
  t.is(upstreamProtocol, 'chat.v1', 'the subprotocol is offered upstream');
  c.send('close-4001');
  const cl = await closed(c);
  t.is(cl.code, 4001, 'the upstream close code reaches the client');
  const sessions = (await api(g.base, 'GET', '/api/v1/sessions')).body as Array<{ source: { origin: string }; events: Array<{ event: string; message: string }> }>;
  const s = sessions.find((x) => x.source.origin === 'ws');
  t.truthy(s);
  t.true(s!.events.some((e) => /code 4001: upstream says bye/.test(e.message)), JSON.stringify(s!.events));
});

test('bad input on a WebSocket listener ends one session and the gateway stays up', async (t) => {
  const [wsIn, wsUp] = [await freePort(), await freePort()];
  const server = await wsServer(wsUp);
  t.teardown(() => closeServer(server));
  const g = await gatewayWith(t, {
    listeners: [{ name: 'ws', spec: { protocol: 'WebSocket', port: wsIn, address: '127.0.0.1', max_message_size: 1024 }, rules: [{ action: { route: { destination: 'w' } } }] }],
    clusters: [{ name: 'w', spec: { protocol: 'WebSocket', port: wsUp }, endpoints: [{ spec: { address: '127.0.0.1' } }] }],
  });
  // A plain HTTP request gets 426 and creates no session.
  // (node:http, since fetch refuses a response that carries the Upgrade header RFC 7231 asks for)
  const http = await import('node:http');
  const status = await new Promise<number>((resolve, reject) => {
    http.get(`http://127.0.0.1:${wsIn}/`, (res) => { res.resume(); resolve(res.statusCode ?? 0); }).on('error', reject);
  });
  t.is(status, 426);
  // An oversized frame closes that connection with 1009 (message too big).
  const big = await openClient(`ws://127.0.0.1:${wsIn}/`);
  const other = await openClient(`ws://127.0.0.1:${wsIn}/`);
  t.teardown(() => { big.terminate(); other.terminate(); });
  big.send(Buffer.alloc(4096));
  const cl = await closed(big);
  t.true(cl.code === 1009 || cl.code === 1006, `close code ${cl.code}`);
  // The other session still works, and the API answers.
  other.send('still here');
  t.is((await nextWsMessage(other)).data.toString(), 'still here');
  t.is((await api(g.base, 'GET', '/api/v1/config')).status, 200);
});

test('WebSocket cluster retries on connect failure and load-balances over endpoints', async (t) => {
  const [udpIn, wsUp] = [await freePort(), await freePort()];
  // Endpoint 127.0.0.2 has nothing listening; 127.0.0.1 answers.
  const server = await wsServer(wsUp);
  t.teardown(() => closeServer(server));
  await gatewayWith(t, {
    listeners: [{ name: 'u', spec: { protocol: 'UDP', port: udpIn, address: '127.0.0.1' }, rules: [{ action: { route: { destination: 'w', retry: { retry_on: 'connect-failure', num_retries: 2, timeout: 300 } } } }] }],
    clusters: [{ name: 'w', spec: { protocol: 'WebSocket', port: wsUp }, endpoints: [{ spec: { address: '127.0.0.2' } }, { spec: { address: '127.0.0.1' } }] }],
  });
  const u = await udpClient();
  t.teardown(() => u.close());
  u.send('via the second endpoint', udpIn, '127.0.0.1');
  t.is((await nextMessage(u, 5000)).toString(), 'via the second endpoint');
});
