// JSONSocket over real UDP sockets: the listener's handshake and its error
// answers, routing on header fields, the cluster's header recipe (a gateway
// talking to itself), the cluster's response checks, the shipped client
// library and its CLI, and spec validation.

import test, { type ExecutionContext } from 'ava';
import { spawn } from 'node:child_process';
import dgram from 'node:dgram';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { pino } from 'pino';
import { startGateway } from '../../src/app.js';
import { LEVELS, silentLogger, type Logger } from '../../src/observe/log.js';
import { JSONSocketClient, JSONSocketError } from '../../src/tools/jsonsocket-client.js';
import { api, controllerConfig, echo, freePort, nextMessage, type Peer, udpBound, udpClient, waitFor } from './helpers.js';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const CLI = path.join(HERE, '../../src/tools/jsonsocket-client.js');

interface Gw {
  base: string;
}

/** An in-process gateway with the controller listener plus cfg (listeners are appended). */
async function startGw(t: ExecutionContext, cfg: Record<string, unknown>, logger: Logger = silentLogger()): Promise<Gw> {
  const port = await freePort();
  const base = controllerConfig(port);
  const config = {
    ...base,
    ...cfg,
    listeners: [...(base.listeners as unknown[]), ...((cfg.listeners as unknown[] | undefined) ?? [])],
  };
  const gw = await startGateway({ config, logger });
  t.teardown(() => gw.stop());
  return { base: `http://127.0.0.1:${port}` };
}

/** Log lines at warn and above, parsed. */
function captureLogger(): { logger: Logger; lines: () => any[] } {
  const out: string[] = [];
  const logger = pino(
    { customLevels: LEVELS, useOnlyCustomLevels: true, level: 'warn' },
    { write: (s: string) => { out.push(s); } },
  ) as Logger;
  return { logger, lines: () => out.map((l) => JSON.parse(l)) };
}

/** Child pids of a process (all threads), read from /proc. */
function childrenOf(pid: number): number[] {
  const out: number[] = [];
  try {
    for (const tid of fs.readdirSync(`/proc/${pid}/task`)) {
      try {
        out.push(...fs.readFileSync(`/proc/${pid}/task/${tid}/children`, 'utf8').split(' ').filter(Boolean).map(Number));
      } catch { /* thread gone */ }
    }
  } catch { /* process gone */ }
  return out;
}

/** A socat UDP echo; teardown kills its per-peer fork children too (UDP-LISTEN children never time out). */
async function udpEcho(t: ExecutionContext): Promise<number> {
  const port = await freePort();
  const p: Peer = await echo.udp(port);
  t.teardown(async () => {
    const kids = p.proc.pid !== undefined ? childrenOf(p.proc.pid) : [];
    for (const k of kids) {
      try { process.kill(k, 'SIGKILL'); } catch { /* gone */ }
    }
    await p.stop();
  });
  return port;
}

function udpCluster(name: string, port: number) {
  return { name, spec: { protocol: 'UDP', port }, endpoints: [{ spec: { address: '127.0.0.1' } }] };
}

function jsListener(name: string, port: number, rules: unknown, extra: Record<string, unknown> = {}, transportExtra: Record<string, unknown> = {}) {
  return {
    name,
    spec: { protocol: 'JSONSocket', transport: { protocol: 'UDP', address: '127.0.0.1', port, ...transportExtra }, ...extra },
    rules,
  };
}

function routeTo(destination: unknown, match?: unknown) {
  return { ...(match !== undefined ? { match } : {}), action: { route: { destination } } };
}

async function connect(t: ExecutionContext, port: number, header: Record<string, unknown> = {}, timeoutMs = 3000): Promise<JSONSocketClient> {
  const c = await JSONSocketClient.connect({ host: '127.0.0.1', port, header, timeoutMs });
  t.teardown(() => c.close());
  return c;
}

/** The next datagram the client receives, bounded. */
function nextClientMessage(c: JSONSocketClient, timeoutMs = 3000): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('no datagram from the JSONSocket server in time')), timeoutMs);
    c.onMessage((m) => {
      clearTimeout(timer);
      c.onMessage(() => undefined);
      resolve(m);
    });
  });
}

async function roundTrip(c: JSONSocketClient, payload: Buffer | string): Promise<Buffer> {
  const reply = nextClientMessage(c);
  c.send(payload);
  return reply;
}

async function rawSocket(t: ExecutionContext): Promise<dgram.Socket> {
  const s = await udpClient();
  t.teardown(() => new Promise<void>((r) => { try { s.close(() => r()); } catch { r(); } }));
  return s;
}

/** Send raw bytes as the first datagram and parse the JSON answer. */
async function rawHandshake(s: dgram.Socket, port: number, first: string | Buffer): Promise<any> {
  const reply = nextMessage(s, 3000);
  s.send(first, port, '127.0.0.1');
  return JSON.parse(String(await reply));
}

async function sessionsOf(gw: Gw, listener: string): Promise<any[]> {
  const r = await api(gw.base, 'GET', '/api/v1/sessions');
  if (r.status !== 200 || !Array.isArray(r.body)) throw new Error(`GET /api/v1/sessions: ${r.status} ${r.text}`);
  return r.body.filter((s: any) => s.source?.origin === listener);
}

/** A fresh, valid client is served end to end: the listener survived whatever came before. */
async function assertServes(t: ExecutionContext, port: number, header: Record<string, unknown> = {}): Promise<void> {
  const c = await connect(t, port, header);
  t.is(c.response.JSONSocketStatus, 200);
  t.is(String(await roundTrip(c, 'still serving')), 'still serving');
  await c.close();
}


// ------------------------------------------------------------------ listener

test('listener -> UDP echo: handshake 200, payloads round-trip, the header is session metadata', async (t) => {
  const echoPort = await udpEcho(t);
  const lport = await freePort();
  const gw = await startGw(t, {
    clusters: [udpCluster('udp-echo', echoPort)],
    listeners: [jsListener('js-in', lport, [routeTo('udp-echo')])],
  });
  const c = await connect(t, lport, { tenant: 'a', user: { id: 7, roles: ['x'] } });
  t.deepEqual(c.response, { JSONSocketVersion: 1, JSONSocketStatus: 200, JSONSocketMessage: 'OK' });
  t.is(String(await roundTrip(c, 'hello')), 'hello');
  const big = Buffer.alloc(1400, 0x5a);
  t.deepEqual(await roundTrip(c, big), big);

  const [s, ...rest] = await sessionsOf(gw, 'js-in');
  t.is(rest.length, 0);
  t.is(s.name, 'JSONSocket:js-in-0');
  t.is(s.status, 'CONNECTED');
  t.deepEqual(s.metadata.JSONSocket, { JSONSocketVersion: 1, tenant: 'a', user: { id: 7, roles: ['x'] } });
  t.is(s.metadata.UDP.src_port, c.localPort);
  t.is(s.metadata.UDP.dst_port, lport);
  t.is(s.metadata.IP.src_addr, '127.0.0.1');
  t.is(s.destination.origin, 'udp-echo');
  // The handshake itself is not payload: only the two datagrams went through.
  t.is(s.counters.ingress.packets, 2);
});

test('rules match header fields: tenant a goes to one upstream, everyone else to the fallback', async (t) => {
  const portA = await udpEcho(t);
  const portB = await udpEcho(t);
  const lport = await freePort();
  const gw = await startGw(t, {
    clusters: [udpCluster('upstream-a', portA), udpCluster('fallback', portB)],
    listeners: [jsListener('js-in', lport, [
      routeTo('upstream-a', { op: 'test', path: '/JSONSocket/tenant', value: 'a' }),
      routeTo('fallback'),
    ])],
  });
  const a = await connect(t, lport, { tenant: 'a' });
  const b = await connect(t, lport, { tenant: 'b' });
  const none = await connect(t, lport);
  for (const c of [a, b, none]) t.is(String(await roundTrip(c, `from ${c.localPort}`)), `from ${c.localPort}`);
  const byPort = new Map((await sessionsOf(gw, 'js-in')).map((s) => [s.metadata.UDP.src_port, s.destination.origin]));
  t.is(byPort.get(a.localPort), 'upstream-a');
  t.is(byPort.get(b.localPort), 'fallback');
  t.is(byPort.get(none.localPort), 'fallback');
});

// -------------------------------------------------------------- error paths

test('a garbage first datagram gets 400 and only that flow ends; the same peer can then retry', async (t) => {
  const echoPort = await udpEcho(t);
  const lport = await freePort();
  const { logger, lines } = captureLogger();
  const gw = await startGw(t, {
    clusters: [udpCluster('udp-echo', echoPort)],
    listeners: [jsListener('js-in', lport, [routeTo('udp-echo')])],
  }, logger);
  const s = await rawSocket(t);
  const r = await rawHandshake(s, lport, 'hello, not JSON');
  t.is(r.JSONSocketVersion, 1);
  t.is(r.JSONSocketStatus, 400);
  t.regex(r.JSONSocketMessage, /^Bad Request: the request header is not valid JSON/);
  t.deepEqual(await sessionsOf(gw, 'js-in'), []);
  t.true(lines().some((l) => l.msg === 'JSONSocket request header rejected, flow closed' && l.status === 400));

  // The same peer starts over with a valid header on a new flow.
  const ok = await rawHandshake(s, lport, JSON.stringify({ JSONSocketVersion: 1, again: true }));
  t.is(ok.JSONSocketStatus, 200);
  const reply = nextMessage(s, 3000);
  s.send('payload', lport, '127.0.0.1');
  t.is(String(await reply), 'payload');
  await assertServes(t, lport);
});

test('a JSON header without a usable JSONSocketVersion gets 400', async (t) => {
  const echoPort = await udpEcho(t);
  const lport = await freePort();
  const gw = await startGw(t, {
    clusters: [udpCluster('udp-echo', echoPort)],
    listeners: [jsListener('js-in', lport, [routeTo('udp-echo')])],
  });
  const cases: Array<[string, RegExp]> = [
    ['{"tenant":"a"}', /lacks a numeric JSONSocketVersion/],
    ['{"JSONSocketVersion":"1"}', /lacks a numeric JSONSocketVersion/],
    ['[1,2,3]', /not a JSON object/],
    ['42', /not a JSON object/],
    ['{"JSONSocketVersion":0.5}', /not an integer/],
  ];
  for (const [first, why] of cases) {
    const s = await rawSocket(t);
    const r = await rawHandshake(s, lport, first);
    t.is(r.JSONSocketStatus, 400, first);
    t.regex(r.JSONSocketMessage, /^Bad Request: /);
    t.regex(r.JSONSocketMessage, why);
  }
  t.deepEqual(await sessionsOf(gw, 'js-in'), []);
  await assertServes(t, lport);
});

test('JSONSocketVersion 2 gets 505 (and the client library reports it)', async (t) => {
  const echoPort = await udpEcho(t);
  const lport = await freePort();
  const gw = await startGw(t, {
    clusters: [udpCluster('udp-echo', echoPort)],
    listeners: [jsListener('js-in', lport, [routeTo('udp-echo')])],
  });
  const s = await rawSocket(t);
  const r = await rawHandshake(s, lport, '{"JSONSocketVersion":2}');
  t.is(r.JSONSocketStatus, 505);
  t.regex(r.JSONSocketMessage, /Version Not Supported/);
  const e = await t.throwsAsync(JSONSocketClient.connect({ host: '127.0.0.1', port: lport, header: { JSONSocketVersion: 2 }, timeoutMs: 3000 }));
  t.true(e instanceof JSONSocketError);
  t.is((e as JSONSocketError).code, 'REJECTED');
  t.is((e as JSONSocketError).status, 505);
  const neg = await rawHandshake(await rawSocket(t), lport, '{"JSONSocketVersion":-1}');
  t.is(neg.JSONSocketStatus, 505);
  t.deepEqual(await sessionsOf(gw, 'js-in'), []);
  await assertServes(t, lport);
});

test('no route: the error header carries 404 with the reason, and the session is gone', async (t) => {
  const echoPort = await udpEcho(t);
  const lport = await freePort();
  const gw = await startGw(t, {
    clusters: [udpCluster('udp-echo', echoPort)],
    listeners: [jsListener('js-in', lport, [routeTo('udp-echo', { op: 'test', path: '/JSONSocket/tenant', value: 'b' })])],
  });
  const e = await t.throwsAsync(JSONSocketClient.connect({ host: '127.0.0.1', port: lport, header: { tenant: 'a' }, timeoutMs: 3000 }));
  t.true(e instanceof JSONSocketError);
  const err = e as JSONSocketError;
  t.is(err.status, 404);
  t.is(err.response?.JSONSocketVersion, 1);
  t.regex(String(err.response?.JSONSocketMessage), /^Not Found: No route for session "JSONSocket:js-in-0"/);
  await waitFor(async () => (await sessionsOf(gw, 'js-in')).length === 0, 3000, 'the failed session removed');
  await assertServes(t, lport, { tenant: 'b' });
});

test('an unreachable upstream answers 502 to the client instead of 200', async (t) => {
  const lport = await freePort();
  const deadPort = await freePort();
  await startGw(t, {
    clusters: [{ name: 'dead', spec: { protocol: 'JSONSocket', transport: { protocol: 'UDP', port: deadPort } }, endpoints: [{ spec: { address: '127.0.0.1' } }] }],
    listeners: [jsListener('js-in', lport, [{ action: { route: { destination: 'dead', retry: { retry_on: 'never', timeout: 500 } } } }])],
  });
  const e = await t.throwsAsync(JSONSocketClient.connect({ host: '127.0.0.1', port: lport, timeoutMs: 3000 }));
  t.is((e as JSONSocketError).status, 502);
  t.regex(String((e as JSONSocketError).response?.JSONSocketMessage), /Pipeline setup failed/);
});

test('silence: the handshake times out, the flow is closed with a log line, and no session remains', async (t) => {
  // Over UDP in server mode a flow only exists once its first datagram came,
  // so silence needs a transport that opens the flow first: a UDP transport
  // with both connect fields (singleton) is one, towards a peer that never speaks.
  const silent = await rawSocket(t);
  const echoPort = await udpEcho(t);
  const lport = await freePort();
  const serverPort = await freePort();
  const { logger, lines } = captureLogger();
  const gw = await startGw(t, {
    clusters: [udpCluster('udp-echo', echoPort)],
    listeners: [
      jsListener('js-silent', lport, [routeTo('udp-echo')], { handshake_timeout: 300 }, { connect: { address: '127.0.0.1', port: silent.address().port } }),
      jsListener('js-in', serverPort, [routeTo('udp-echo')]),
    ],
  }, logger);
  t.true(await udpBound(lport));
  const started = Date.now();
  const line = await waitFor(() => lines().find((l) => l.msg === 'JSONSocket handshake timed out: no request header, flow closed'), 5000, 'the handshake timeout log line');
  t.is(line.listener, 'js-silent');
  t.is(line.timeout_ms, 300);
  t.true(Date.now() - started < 3000);
  // The flow's socket is closed (the singleton transport owned the port) and nothing reached the router.
  await waitFor(async () => !(await udpBound(lport)), 3000, 'the timed-out flow closed');
  t.deepEqual(await sessionsOf(gw, 'js-silent'), []);
  await assertServes(t, serverPort);
});

// ------------------------------------------------------------------ cluster

test('a gateway talking to itself: UDP -> JSONSocket cluster -> JSONSocket listener -> UDP echo; header entries arrive as metadata', async (t) => {
  const echoPort = await udpEcho(t);
  const jsPort = await freePort();
  const udpPort = await freePort();
  const udpPort2 = await freePort();
  const gw = await startGw(t, {
    clusters: [
      udpCluster('udp-echo', echoPort),
      {
        name: 'js-out',
        spec: {
          protocol: 'JSONSocket',
          transport: { protocol: 'UDP', port: jsPort },
          header: [
            { set: { key: 'tenant', value: 'a' } },
            { set: { key: '/labels/zone', value: { name: 'eu', n: 1 } } },
            { path: { from: '/UDP/src_port', to: '/client/port' } },
            { path: { from: '/IP', to: '/client/ip' } },
            { path: { from: '/no/such/path', to: '/missing' } },
            { set: { key: 'JSONSocketVersion', value: 99 } },
          ],
        },
        endpoints: [{ spec: { address: '127.0.0.1' } }],
      },
      {
        name: 'js-out-root',
        // A bare path copies a metadata object to the header root.
        spec: { protocol: 'JSONSocket', transport_spec: { protocol: 'UDP', port: jsPort }, header: [{ path: '/labels' }, { set: { key: 'extra', value: true } }] },
        endpoints: [{ spec: { address: '127.0.0.1' } }],
      },
    ],
    listeners: [
      jsListener('js-in', jsPort, [routeTo('udp-echo', { op: 'test', path: '/JSONSocket/tenant', value: 'a' })]),
      { name: 'udp-in', spec: { protocol: 'UDP', address: '127.0.0.1', port: udpPort }, rules: [routeTo('js-out')] },
      {
        name: 'udp-in-2',
        spec: { protocol: 'UDP', address: '127.0.0.1', port: udpPort2 },
        rules: [{ action: { rewrite: [{ path: '/labels', value: { tenant: 'a', x: 1 } }], route: { destination: 'js-out-root' } } }],
      },
    ],
  });
  const c = await rawSocket(t);
  let reply = nextMessage(c, 5000);
  c.send('ping', udpPort, '127.0.0.1');
  t.is(String(await reply), 'ping');

  const [inner] = await sessionsOf(gw, 'js-in');
  t.deepEqual(inner.metadata.JSONSocket, {
    JSONSocketVersion: 1,
    tenant: 'a',
    labels: { zone: { name: 'eu', n: 1 } },
    client: { port: c.address().port, ip: { src_addr: '127.0.0.1', dst_addr: '127.0.0.1' } },
  });
  const [outer] = await sessionsOf(gw, 'udp-in');
  t.is(outer.destination.origin, 'js-out');
  t.is(outer.status, 'CONNECTED');

  reply = nextMessage(c, 5000);
  c.send('ping', udpPort2, '127.0.0.1');
  t.is(String(await reply), 'ping');
  const second = (await sessionsOf(gw, 'js-in')).find((s) => s.metadata.JSONSocket.extra === true);
  t.deepEqual(second?.metadata.JSONSocket, { JSONSocketVersion: 1, tenant: 'a', x: 1, extra: true });
});

test('the JSONSocket cluster fails the connect on an answer without JSONSocketStatus and on a non-2xx status', async (t) => {
  // A plain UDP echo answers the request header with itself: JSONSocketVersion but no status.
  const echoPort = await udpEcho(t);
  const jsPort = await freePort();
  const udpPort = await freePort();
  const udpPort2 = await freePort();
  const js = (name: string, port: number) => ({
    name, spec: { protocol: 'JSONSocket', transport: { protocol: 'UDP', port } }, endpoints: [{ spec: { address: '127.0.0.1' } }],
  });
  const udpIn = (name: string, port: number, dest: string) => ({
    name, spec: { protocol: 'UDP', address: '127.0.0.1', port }, options: { track: 30 },
    rules: [{ action: { route: { destination: dest, retry: { retry_on: 'never', timeout: 1000 } } } }],
  });
  const gw = await startGw(t, {
    clusters: [js('js-to-echo', echoPort), js('js-to-gw', jsPort), udpCluster('udp-echo', echoPort)],
    listeners: [
      udpIn('udp-in', udpPort, 'js-to-echo'),
      udpIn('udp-in-2', udpPort2, 'js-to-gw'),
      jsListener('js-in', jsPort, [routeTo('udp-echo', { op: 'test', path: '/JSONSocket/tenant', value: 'nobody' })]),
    ],
  });
  const c = await rawSocket(t);
  c.send('x', udpPort, '127.0.0.1');
  const failed = await waitFor(async () => (await sessionsOf(gw, 'udp-in')).find((s) => s.status === 'DESTROYED'), 5000, 'the failed session');
  const error = failed.events.find((e: any) => e.event === 'ERROR');
  t.regex(error.message, /JSONSocket handshake with 127\.0\.0\.1:\d+ failed: the response header lacks a numeric JSONSocketStatus/);

  c.send('x', udpPort2, '127.0.0.1');
  const failed2 = await waitFor(async () => (await sessionsOf(gw, 'udp-in-2')).find((s) => s.status === 'DESTROYED'), 5000, 'the second failed session');
  t.regex(failed2.events.find((e: any) => e.event === 'ERROR').message, /answered status 404: Not Found: No route/);
});

// ------------------------------------------------------------- client library

test('client library: a silent server times out, nobody listening is a socket error, bad answers are rejected', async (t) => {
  const silent = await rawSocket(t);
  const started = Date.now();
  let e = await t.throwsAsync(JSONSocketClient.connect({ host: '127.0.0.1', port: silent.address().port, timeoutMs: 200 }));
  t.is((e as JSONSocketError).code, 'TIMEOUT');
  const took = Date.now() - started;
  t.true(took >= 190 && took < 2000, `took ${took} ms`);

  const unbound = await freePort();
  e = await t.throwsAsync(JSONSocketClient.connect({ host: '127.0.0.1', port: unbound, timeoutMs: 2000 }));
  t.true(['SOCKET', 'TIMEOUT'].includes((e as JSONSocketError).code), (e as JSONSocketError).code);

  // A fake server answering each request header with the next canned reply.
  const fake = await rawSocket(t);
  const replies = ['garbage', '{"JSONSocketVersion":1}', '{"JSONSocketVersion":1,"JSONSocketStatus":403,"JSONSocketMessage":"Forbidden: go away"}', '{"JSONSocketVersion":1,"JSONSocketStatus":204}'];
  const headers: any[] = [];
  fake.on('message', (m, rinfo) => {
    headers.push(JSON.parse(String(m)));
    fake.send(replies.shift() ?? '', rinfo.port, rinfo.address);
  });
  const fport = fake.address().port;
  e = await t.throwsAsync(JSONSocketClient.connect({ host: '127.0.0.1', port: fport, timeoutMs: 2000 }));
  t.is((e as JSONSocketError).code, 'BAD_RESPONSE');
  t.regex((e as Error).message, /not valid JSON/);
  e = await t.throwsAsync(JSONSocketClient.connect({ host: '127.0.0.1', port: fport, timeoutMs: 2000 }));
  t.is((e as JSONSocketError).code, 'BAD_RESPONSE');
  t.regex((e as Error).message, /lacks a numeric JSONSocketStatus/);
  e = await t.throwsAsync(JSONSocketClient.connect({ host: '127.0.0.1', port: fport, timeoutMs: 2000 }));
  t.is((e as JSONSocketError).code, 'REJECTED');
  t.is((e as JSONSocketError).status, 403);
  t.regex((e as Error).message, /Forbidden: go away/);
  const ok = await connect(t, fport, { k: 'v' }, 2000);
  t.is(ok.response.JSONSocketStatus, 204);
  t.deepEqual(headers[3], { JSONSocketVersion: 1, k: 'v' });
});

function runCli(args: string[], stdin: string, timeoutMs = 10_000): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, [CLI, ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d) => { stdout += String(d); });
    p.stderr.on('data', (d) => { stderr += String(d); });
    const timer = setTimeout(() => { p.kill('SIGKILL'); reject(new Error(`CLI did not exit in ${timeoutMs} ms: ${stderr}`)); }, timeoutMs);
    p.on('exit', (code) => { clearTimeout(timer); resolve({ code, stdout, stderr }); });
    p.stdin.end(stdin);
  });
}

/**
 * An in-process UDP echo that answers each datagram with exactly that
 * datagram. (socat's PIPE is a byte pipe: datagrams sent back to back can come
 * back merged, which matters when the CLI sends all stdin lines at once.)
 */
async function datagramEcho(t: ExecutionContext): Promise<number> {
  const s = await rawSocket(t);
  s.on('message', (m, rinfo) => s.send(m, rinfo.port, rinfo.address));
  return s.address().port;
}

test('CLI: stdin lines go out as datagrams and come back as lines; a refused handshake exits 1 with status and message', async (t) => {
  const echoPort = await datagramEcho(t);
  const lport = await freePort();
  const gw = await startGw(t, {
    clusters: [udpCluster('udp-echo', echoPort)],
    listeners: [jsListener('js-in', lport, [routeTo('udp-echo', { op: 'test', path: '/JSONSocket/tenant', value: 'a' })])],
  });
  const ok = await runCli(['127.0.0.1', String(lport), '--header', '{"tenant":"a"}', '--linger', '500'], 'one\ntwo\n');
  t.is(ok.code, 0, ok.stderr);
  t.is(ok.stdout, 'one\ntwo\n');
  t.regex(ok.stderr, /connected: .*"JSONSocketStatus":200/);
  t.is((await sessionsOf(gw, 'js-in')).length, 1);

  const refused = await runCli(['127.0.0.1', String(lport), '--header', '{"tenant":"b"}'], '');
  t.is(refused.code, 1);
  t.regex(refused.stderr, /handshake failed: status 404: Not Found: No route/);

  const usage = await runCli(['127.0.0.1'], '');
  t.is(usage.code, 2);
  t.regex(usage.stderr, /usage: jsonsocket-client HOST PORT/);
});

// --------------------------------------------------------------- validation

test('spec validation: byte and in-process transports, a missing transport and bad header entries are 400s naming the field', async (t) => {
  const gw = await startGw(t, {});
  const port = await freePort();
  const listener = (spec: unknown) => api(gw.base, 'POST', '/api/v1/listeners', { listener: { name: 'l', spec, rules: [routeTo({ name: 'echo-c', spec: { protocol: 'Echo' } })] } });
  const cluster = (spec: unknown) => api(gw.base, 'POST', '/api/v1/clusters', { cluster: { name: 'c', spec, endpoints: [{ spec: { address: '127.0.0.1' } }] } });

  let r = await listener({ protocol: 'JSONSocket', transport: { protocol: 'TCP', port } });
  t.is(r.status, 400);
  t.is(r.body.field, 'listener.spec.transport.protocol');
  t.regex(r.body.content, /byte stream/);
  r = await listener({ protocol: 'JSONSocket', transport_spec: { protocol: 'TCP', port } });
  t.is(r.body.field, 'listener.spec.transport_spec.protocol');
  r = await listener({ protocol: 'JSONSocket' });
  t.is(r.status, 400);
  t.is(r.body.field, 'listener.spec.transport');
  r = await listener({ protocol: 'JSONSocket', transport: { protocol: 'UDP' } });
  t.is(r.status, 400);
  t.is(r.body.field, 'listener.spec.transport.port');
  r = await listener({ protocol: 'JSONSocket', transport: { protocol: 'JSONSocket', transport: { protocol: 'UDP', port } } });
  t.is(r.status, 400);
  t.is(r.body.field, 'listener.spec.transport.protocol');
  r = await listener({ protocol: 'JSONSocket', handshake_timeout: -1, transport: { protocol: 'UDP', port } });
  t.is(r.body.field, 'listener.spec.handshake_timeout');

  r = await cluster({ protocol: 'JSONSocket', transport: { protocol: 'Echo' } });
  t.is(r.status, 400);
  t.is(r.body.field, 'cluster.spec.transport.protocol');
  r = await cluster({ protocol: 'JSONSocket', transport: { protocol: 'TCP', port } });
  t.is(r.body.field, 'cluster.spec.transport.protocol');
  r = await cluster({ protocol: 'JSONSocket', transport: { protocol: 'UDP', port }, header: { set: {} } });
  t.is(r.body.field, 'cluster.spec.header');
  r = await cluster({ protocol: 'JSONSocket', transport: { protocol: 'UDP', port }, header: [{ set: { key: 'a', value: 1 } }, { bogus: 1 }] });
  t.is(r.body.field, 'cluster.spec.header[1]');
  r = await cluster({ protocol: 'JSONSocket', transport: { protocol: 'UDP', port }, header: [{ set: { key: 'a' } }] });
  t.is(r.body.field, 'cluster.spec.header[0].set');
  r = await cluster({ protocol: 'JSONSocket', transport: { protocol: 'UDP', port }, header: [{ path: { to: '/a' } }] });
  t.is(r.status, 400);
  t.regex(r.body.field, /^cluster\.spec\.header\[0\]\.path/); // the OpenAPI schema or the protocol, whichever sees it first
  r = await cluster({ protocol: 'JSONSocket', transport: { protocol: 'UDP', port }, header: [{ set: { key: '/__proto__/x', value: 1 } }] });
  t.is(r.status, 400);
  r = await api(gw.base, 'POST', '/api/v1/clusters', { cluster: { name: 'c', spec: { protocol: 'JSONSocket', transport: { protocol: 'UDP', port } }, endpoints: [{ spec: { address: 'bad host!' } }] } });
  t.is(r.status, 400);
  t.is(r.body.field, 'cluster.endpoints[0].spec.address');

  // Nothing of the rejected calls stuck; a valid pair is accepted.
  r = await cluster({ protocol: 'JSONSocket', transport: { protocol: 'UDP', port }, header: [{ path: '/IP' }] });
  t.is(r.status, 200, r.text);
  r = await listener({ protocol: 'JSONSocket', transport: { protocol: 'UDP', address: '127.0.0.1', port } });
  t.is(r.status, 200, r.text);
});
