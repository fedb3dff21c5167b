// Upstream health over real sockets: active checks (TCP, HTTP, UDP with
// send/receive, WebSocket) for upstreams that die and come back, passive
// outlier ejection without active checks, the panic threshold, and what the
// REST API and the metrics show.

import test, { type ExecutionContext } from 'ava';
import dgram from 'node:dgram';
import http from 'node:http';
import net from 'node:net';
import { WebSocketServer, type WebSocket } from 'ws';
import { createBalancer } from '../../src/balancer/index.js';
import { HealthStats, UpstreamHealth, pickEndpoint } from '../../src/health/index.js';
import { GatewayMetrics } from '../../src/observe/metrics.js';
import { silentLogger } from '../../src/observe/log.js';
import { findProtocol } from '../../src/protocols/registry.js';
import { startTestDns } from './dns-server.js';
import { api, captureLogger as capture, freePort, startGw, tmpPath, udpClient, nextMessage, waitFor } from './helpers.js';

const INTERVAL = 200;
const UNHEALTHY = 2;
const HEALTHY = 2;
/** Slack for timers, jitter (±10 %), the probe timeout and the REST poll. */
const SLACK = 800;

interface Upstream {
  stop(): Promise<void>;
}

type Kind = 'TCP' | 'HTTP' | 'UDP' | 'WebSocket';

/** An upstream that says its id to every new connection, answers "ping" with "pong", and echoes the rest. */
function startUpstream(kind: Kind, host: string, port: number, id: string): Promise<Upstream> {
  return new Promise((resolve, reject) => {
    switch (kind) {
      case 'TCP': {
        const socks = new Set<net.Socket>();
        const srv = net.createServer((s) => {
          socks.add(s);
          s.on('close', () => socks.delete(s));
          s.on('error', () => undefined);
          s.write(id);
          s.on('data', (d) => s.write(d));
        });
        srv.once('error', reject);
        srv.listen(port, host, () => resolve({
          stop: () => new Promise((r) => { for (const s of socks) s.destroy(); srv.close(() => r()); }),
        }));
        return;
      }
      case 'HTTP': {
        const srv = http.createServer((req, res) => {
          if (req.url === '/healthz') res.end('ok');
          else res.end(id);
        });
        srv.once('error', reject);
        srv.listen(port, host, () => resolve({
          stop: () => new Promise((r) => { srv.closeAllConnections(); srv.close(() => r()); }),
        }));
        return;
      }
      case 'UDP': {
        const sock = dgram.createSocket('udp4');
        sock.on('message', (m, from) => {
          const answer = m.toString() === 'ping' ? 'pong' : id;
          sock.send(answer, from.port, from.address);
        });
        sock.once('error', reject);
        sock.bind(port, host, () => resolve({ stop: () => new Promise((r) => sock.close(() => r())) }));
        return;
      }
      case 'WebSocket': {
        const wss = new WebSocketServer({ host, port });
        wss.on('connection', (ws: WebSocket) => {
          ws.send(id);
          ws.on('message', (d) => ws.send(d as Buffer));
        });
        wss.once('error', reject);
        wss.once('listening', () => resolve({
          stop: () => new Promise((r) => { for (const c of wss.clients) c.terminate(); wss.close(() => r()); }),
        }));
      }
    }
  });
}

/** A client session through the gateway: who answered first, and a way to talk on. */
interface Client {
  readonly first: string;
  roundTrip(msg: string): Promise<string>;
  close(): void;
}

async function openClient(t: ExecutionContext, kind: Kind, port: number): Promise<Client> {
  const c = await connectClient(kind, port);
  t.teardown(() => c.close());
  return c;
}

async function connectClient(kind: Kind, port: number): Promise<Client> {
  if (kind === 'HTTP') {
    const res = await fetch(`http://127.0.0.1:${port}/who`);
    const first = await res.text();
    return { first, roundTrip: () => Promise.reject(new Error('HTTP has no long session')), close: () => undefined };
  }
  if (kind === 'UDP') {
    const sock = await udpClient();
    sock.connect(port, '127.0.0.1');
    await new Promise((r) => sock.once('connect', r));
    sock.send('who');
    const first = (await nextMessage(sock, 3000)).toString();
    return {
      first,
      roundTrip: async (msg) => { sock.send(msg); return (await nextMessage(sock, 3000)).toString(); },
      close: () => { try { sock.close(); } catch { /* closed */ } },
    };
  }
  // TCP and WebSocket clusters sit behind a TCP listener: bytes in, bytes out.
  const sock = net.connect({ port, host: '127.0.0.1' });
  let buf = '';
  sock.on('data', (d) => { buf += d.toString(); });
  sock.on('error', () => undefined);
  let closed = false;
  sock.on('close', () => { closed = true; });
  const take = async (n: number): Promise<string> => {
    await waitFor(() => buf.length >= n || closed, 3000, `${n} bytes`);
    if (buf.length < n) throw new Error(`closed by the gateway after ${buf.length} of ${n} bytes`);
    const out = buf.slice(0, n);
    buf = buf.slice(n);
    return out;
  };
  const first = await take(1);
  return {
    first,
    roundTrip: async (msg) => { sock.write(msg); return take(msg.length); },
    close: () => sock.destroy(),
  };
}

function listenerFor(kind: Kind, port: number, cluster: string): Record<string, unknown> {
  const protocol = kind === 'HTTP' ? 'HTTP' : kind === 'UDP' ? 'UDP' : 'TCP';
  return { name: 'in', spec: { protocol, address: '127.0.0.1', port }, rules: [{ action: { route: { destination: cluster } } }] };
}

function healthCheckFor(kind: Kind): Record<string, unknown> {
  const hc: Record<string, unknown> = { interval: INTERVAL, timeout: 150, unhealthy_threshold: UNHEALTHY, healthy_threshold: HEALTHY };
  if (kind === 'HTTP') hc.path = '/healthz';
  if (kind === 'UDP') Object.assign(hc, { send: 'ping', receive: 'pong' });
  return hc;
}

async function endpointHealth(base: string, cluster: string): Promise<Record<string, any>> {
  const r = await api(base, 'GET', `/api/v1/clusters/${cluster}?recursive=true`);
  if (r.status !== 200) throw new Error(`GET cluster: ${r.status} ${r.text}`);
  return Object.fromEntries((r.body.endpoints as any[]).map((e) => [e.name, e.status]));
}

/** The endpoints: two loopback addresses, so that both upstreams share the cluster's port. */
const HOST = { A: '127.0.0.2', B: '127.0.0.3' } as const;

async function sessionCount(base: string): Promise<number> {
  const r = await api(base, 'GET', '/api/v1/sessions');
  return (r.body as unknown[]).length;
}

/**
 * A (listed first, so Trivial prefers it) dies: within unhealthy_threshold ×
 * interval (+ one interval) it is marked unhealthy and new sessions go to B;
 * a long session on B is not disturbed. A comes back: within
 * healthy_threshold × interval (+ one) it is healthy and takes sessions again.
 */
async function deadAndBack(t: ExecutionContext, kind: Kind): Promise<void> {
  const [port, lp] = [await freePort(), await freePort()];
  let a = await startUpstream(kind, HOST.A, port, 'A');
  const b = await startUpstream(kind, HOST.B, port, 'B');
  t.teardown(() => a.stop());
  t.teardown(() => b.stop());
  const g = await startGw(t, {
    listeners: [listenerFor(kind, lp, 'up')],
    clusters: [{
      name: 'up', spec: { protocol: kind, port },
      endpoints: [{ name: 'A', spec: { address: HOST.A } }, { name: 'B', spec: { address: HOST.B } }],
      health_check: healthCheckFor(kind),
    }],
  });
  await waitFor(async () => (await endpointHealth(g.base, 'up')).A?.health === 'healthy', 3000, 'A healthy');
  t.is((await openClient(t, kind, lp)).first, 'A');

  await a.stop();
  const died = Date.now();
  await waitFor(async () => (await endpointHealth(g.base, 'up')).A?.health === 'unhealthy', 5000, 'A unhealthy');
  const tookDown = Date.now() - died;
  t.true(tookDown <= (UNHEALTHY + 1) * INTERVAL + SLACK, `marked unhealthy after ${tookDown} ms`);
  const st = (await endpointHealth(g.base, 'up')).A;
  t.truthy(st.last_check, 'the last check time is shown');
  t.truthy(st.reason, 'the last check reason is shown');

  // New sessions avoid A; one of them stays open through A's return.
  const long = await openClient(t, kind, lp);
  t.is(long.first, 'B');
  for (let i = 0; i < 5; i++) {
    const c = await openClient(t, kind, lp);
    t.is(c.first, 'B', `session ${i} while A is dead`);
    c.close();
  }
  const before = kind === 'HTTP' ? 0 : await sessionCount(g.base);

  a = await startUpstream(kind, HOST.A, port, 'A');
  const back = Date.now();
  await waitFor(async () => (await endpointHealth(g.base, 'up')).A?.health === 'healthy', 5000, 'A healthy again');
  const tookUp = Date.now() - back;
  t.true(tookUp <= (HEALTHY + 1) * INTERVAL + SLACK, `healthy again after ${tookUp} ms`);
  t.is((await openClient(t, kind, lp)).first, 'A', 'A takes new sessions again');

  if (kind !== 'HTTP') {
    // The long session on B saw nothing of it.
    t.is(await long.roundTrip('xyz'), kind === 'UDP' ? 'B' : 'xyz');
    t.true(await sessionCount(g.base) >= before, 'no session was taken out of the table');
  }
  long.close();
}

for (const kind of ['TCP', 'HTTP', 'UDP', 'WebSocket'] as const) {
  test.serial(`active ${kind} check: a dead endpoint gets no new session within unhealthy_threshold × interval and takes sessions again once healthy`, (t) => deadAndBack(t, kind));
}

// ------------------------------------------------------------ outlier ejection

function tcpCluster(name: string, port: number, hosts: string[], extra: Record<string, unknown>): Record<string, unknown> {
  return {
    name, spec: { protocol: 'TCP', port },
    endpoints: hosts.map((h, i) => ({ name: `${name}-${'ABC'[i]}`, spec: { address: h } })),
    ...extra,
  };
}

function tcpListener(name: string, port: number, cluster: string): Record<string, unknown> {
  return {
    name, spec: { protocol: 'TCP', address: '127.0.0.1', port },
    rules: [{ action: { route: { destination: cluster, retry: { retry_on: 'connect-failure', num_retries: 2, timeout: 0 } } } }],
  };
}

const LOUD_ADMIN = { log_level: 'info', metrics: { enabled: false }, limits: { api_rate: 0 } };

test.serial('outlier ejection without active checks: a refusing endpoint is ejected after consecutive_failures and comes back after the ejection time', async (t) => {
  const [port, lp] = [await freePort(), await freePort()];
  const b = await startUpstream('TCP', HOST.B, port, 'B');
  t.teardown(() => b.stop());
  const { log, lines } = capture();
  const g = await startGw(t, {
    admin: LOUD_ADMIN,
    listeners: [tcpListener('in', lp, 'c')],
    clusters: [tcpCluster('c', port, [HOST.A, HOST.B], {
      outlier_detection: { consecutive_failures: 3, base_ejection_time: 400, max_ejection_percent: 50 },
    })],
  }, log);
  const attempts = (): number => lines.filter((l) => l.msg === 'connect attempt failed').length;
  const failures = (): number => g.gw.healthStats.ejections;
  // A refuses: every session retries onto B; the third failure ejects A.
  for (let i = 0; i < 3; i++) {
    t.is((await openClient(t, 'TCP', lp)).first, 'B');
    const h = (await endpointHealth(g.base, 'c'))['c-A'];
    t.is(h.health, i < 2 ? 'unknown' : 'ejected', `after ${i + 1} refused connects`);
  }
  t.is(failures(), 1);
  t.regex((await endpointHealth(g.base, 'c'))['c-A'].reason, /ejected for 400 ms/);
  t.is(attempts(), 3);
  // While ejected, A is not even tried: no failed connect attempt.
  for (let i = 0; i < 3; i++) t.is((await openClient(t, 'TCP', lp)).first, 'B');
  t.is(attempts(), 3, 'A was skipped while ejected');

  // Back after the ejection time; the second ejection lasts twice as long.
  await waitFor(async () => (await endpointHealth(g.base, 'c'))['c-A'].health !== 'ejected', 2000, 'A back');
  for (let i = 0; i < 3; i++) await openClient(t, 'TCP', lp);
  const h = (await endpointHealth(g.base, 'c'))['c-A'];
  t.is(h.health, 'ejected');
  t.regex(h.reason, /ejected for 800 ms/);
  t.is(h.ejections, 2);
  // Each state change was logged once, not each failure.
  const changes = lines.filter((l) => l.msg === 'endpoint health changed' && l.endpoint === 'c-A').map((l) => `${l.from}>${l.to}`);
  t.deepEqual(changes, ['unknown>ejected', 'ejected>unknown', 'unknown>ejected']);
});

test.serial('max_ejection_percent: no more than that share of a cluster is ejected (one always may be)', async (t) => {
  const [port, lp] = [await freePort(), await freePort()];
  const c = await startUpstream('TCP', '127.0.0.4', port, 'C');
  t.teardown(() => c.stop());
  const g = await startGw(t, {
    listeners: [tcpListener('in', lp, 'c')],
    clusters: [tcpCluster('c', port, [HOST.A, HOST.B, '127.0.0.4'], {
      outlier_detection: { consecutive_failures: 1, base_ejection_time: 10_000, max_ejection_percent: 34 },
    })],
  });
  // A fails and is ejected (1 of 3 = 33 %); B fails too but a second ejection would make 67 %.
  for (let i = 0; i < 3; i++) t.is((await openClient(t, 'TCP', lp)).first, 'C');
  const h = await endpointHealth(g.base, 'c');
  t.is(h['c-A'].health, 'ejected');
  t.is(h['c-B'].health, 'unknown');
  t.is(g.gw.healthStats.ejections, 1);
});

test.serial('panic threshold: with too few usable endpoints every endpoint takes sessions; panic_threshold 0 turns it off', async (t) => {
  const [port, lp, lp0] = [await freePort(), await freePort(), await freePort()];
  const c = await startUpstream('TCP', '127.0.0.4', port, 'C');
  t.teardown(() => c.stop());
  const outlier = { consecutive_failures: 1, base_ejection_time: 30_000, max_ejection_percent: 100 };
  const g = await startGw(t, {
    listeners: [tcpListener('in', lp, 'p50'), tcpListener('in0', lp0, 'p0')],
    clusters: [
      tcpCluster('p50', port, [HOST.A, HOST.B, '127.0.0.4'], { outlier_detection: outlier }),
      tcpCluster('p0', port, [HOST.A, HOST.B, '127.0.0.4'], { outlier_detection: outlier, loadbalancer: { policy: 'Trivial', panic_threshold: 0 } }),
    ],
  });
  // A and B refuse: both are ejected in each cluster, C answers.
  for (const l of [lp, lp0]) {
    t.is((await openClient(t, 'TCP', l)).first, 'C');
    t.is((await openClient(t, 'TCP', l)).first, 'C');
  }
  for (const name of ['p50', 'p0']) {
    const h = await endpointHealth(g.base, name);
    t.is(h[`${name}-A`].health, 'ejected', name);
    t.is(h[`${name}-B`].health, 'ejected', name);
  }
  // A comes back, still ejected. 1 of 3 usable is below 50 %: panic, Trivial takes A again.
  const a = await startUpstream('TCP', HOST.A, port, 'A');
  t.teardown(() => a.stop());
  t.is((await openClient(t, 'TCP', lp)).first, 'A', 'panic: health ignored');
  t.is((await openClient(t, 'TCP', lp0)).first, 'C', 'panic_threshold 0: ejected endpoints stay avoided');
});

test.serial('every endpoint dead: sessions still try them all, and the first to return takes sessions before its ejection ends', async (t) => {
  const [port, lp] = [await freePort(), await freePort()];
  const g = await startGw(t, {
    listeners: [tcpListener('in', lp, 'c')],
    clusters: [tcpCluster('c', port, [HOST.A, HOST.B], {
      outlier_detection: { consecutive_failures: 1, base_ejection_time: 30_000, max_ejection_percent: 100 },
    })],
  });
  await t.throwsAsync(connectClient('TCP', lp));
  const h = await endpointHealth(g.base, 'c');
  t.is(h['c-A'].health, 'ejected');
  t.is(h['c-B'].health, 'ejected');
  const b = await startUpstream('TCP', HOST.B, port, 'B');
  t.teardown(() => b.stop());
  t.is((await openClient(t, 'TCP', lp)).first, 'B');
});

test.serial('outlier ejection counts HTTP 5xx from an HTTP cluster and resets before the first byte from a TCP cluster', async (t) => {
  const [hp, tp, hl, tl] = [await freePort(), await freePort(), await freePort(), await freePort()];
  const failing = http.createServer((_req, res) => { res.statusCode = 503; res.end('down'); });
  await new Promise<void>((r) => failing.listen(hp, HOST.A, r));
  t.teardown(() => { failing.closeAllConnections(); failing.close(); });
  const hb = await startUpstream('HTTP', HOST.B, hp, 'B');
  t.teardown(() => hb.stop());
  // A TCP endpoint that accepts and resets every connection (after the session is set up) before sending a byte.
  const resetting = net.createServer((s) => { s.on('error', () => undefined); setTimeout(() => s.resetAndDestroy(), 100); });
  await new Promise<void>((r) => resetting.listen(tp, HOST.A, r));
  t.teardown(() => resetting.close());
  const tb = await startUpstream('TCP', HOST.B, tp, 'B');
  t.teardown(() => tb.stop());
  const outlier = { consecutive_failures: 2, base_ejection_time: 30_000, max_ejection_percent: 50 };
  const g = await startGw(t, {
    listeners: [listenerFor('HTTP', hl, 'h'), { ...listenerFor('TCP', tl, 't'), name: 'tin' }],
    clusters: [
      { name: 'h', spec: { protocol: 'HTTP', port: hp }, endpoints: [{ name: 'h-A', spec: { address: HOST.A } }, { name: 'h-B', spec: { address: HOST.B } }], outlier_detection: outlier },
      tcpCluster('t', tp, [HOST.A, HOST.B], { outlier_detection: outlier }),
    ],
  });
  for (let i = 0; i < 2; i++) {
    const res = await fetch(`http://127.0.0.1:${hl}/x`);
    t.is(res.status, 503);
    await res.text();
  }
  await waitFor(async () => (await endpointHealth(g.base, 'h'))['h-A'].health === 'ejected', 2000, 'h-A ejected');
  t.regex((await endpointHealth(g.base, 'h'))['h-A'].reason, /HTTP 503/);
  t.is((await openClient(t, 'HTTP', hl)).first, 'B');

  for (let i = 0; i < 2; i++) await t.throwsAsync(connectClient('TCP', tl));
  await waitFor(async () => (await endpointHealth(g.base, 't'))['t-A'].health === 'ejected', 2000, 't-A ejected');
  t.regex((await endpointHealth(g.base, 't'))['t-A'].reason, /reset before the first byte/);
  t.is((await openClient(t, 'TCP', tl)).first, 'B');

  // What the metrics show.
  const m = new GatewayMetrics({ defaultMetrics: false });
  m.attach(g.gw);
  const text = await m.registry.metrics();
  t.regex(text, /l7mp_outlier_ejections_total 2/);
  t.regex(text, /l7mp_endpoint_healthy\{cluster="h",endpoint="h-A"\} 0/);
  t.regex(text, /l7mp_endpoint_healthy\{cluster="h",endpoint="h-B"\} 1/);
});

test('ConsistentHash: an ejected endpoint moves only its own keys, to the next endpoint on the ring, and they return with it', (t) => {
  const eps = Array.from({ length: 10 }, (_, i) => ({ name: `e${i}`, address: `10.0.0.${i}`, weight: 1 }));
  const balancer = createBalancer({ policy: 'ConsistentHash', key: 'k' });
  balancer.update(eps);
  const health = UpstreamHealth.parse(
    { outlier_detection: { consecutive_failures: 1, base_ejection_time: 60_000 } }, 'c', 'c', findProtocol('TCP')!, new HealthStats(), silentLogger(),
  )!;
  t.teardown(() => health.close());
  health.update(eps);
  const none = new Set<string>();
  const keys = Array.from({ length: 20_000 }, (_, i) => ({ k: `key-${i}` }));
  const before = keys.map((m) => pickEndpoint<typeof eps[0]>(balancer, health, m, none)!.name);
  health.state.failure('e3', 'test');
  t.is(health.state.state('e3'), 'ejected');
  const during = keys.map((m) => pickEndpoint<typeof eps[0]>(balancer, health, m, none)!.name);
  let moved = 0;
  for (let i = 0; i < keys.length; i++) {
    if (before[i] === during[i]) continue;
    moved++;
    t.is(before[i], 'e3', 'only keys of the ejected endpoint move');
  }
  t.false(during.includes('e3'));
  const share = moved / keys.length;
  t.true(share > 0.05 && share < 0.15, `moved ${(share * 100).toFixed(1)} % of the keys (1/10 expected)`);
  // Its keys return when it does.
  health.state.checked('e3', true, 'ok'); // no active check configured: ignored
  health.update([]);
  health.update(eps);
  const after = keys.map((m) => pickEndpoint<typeof eps[0]>(balancer, health, m, none)!.name);
  t.deepEqual(after, before);
});

test('bad health settings are refused with the field named, and change nothing', async (t) => {
  const g = await startGw(t, {});
  const bad: Array<[Record<string, unknown>, RegExp]> = [
    [{ health_check: { interval: 10 } }, /health_check\.interval/],
    [{ health_check: { interval: 1000, timeout: 2000 } }, /health_check\.timeout/],
    [{ health_check: { expect: ['299-200'] } }, /health_check\.expect\[0\]/],
    [{ health_check: { send: 'hex:abc' } }, /health_check\.send/],
    [{ health_check: { receive: 'pong' } }, /health_check\.receive/],
    [{ outlier_detection: { consecutive_failures: 0 } }, /outlier_detection\.consecutive_failures/],
    [{ outlier_detection: { max_ejection_percent: 101 } }, /outlier_detection\.max_ejection_percent/],
    [{ loadbalancer: { policy: 'Trivial', panic_threshold: -1 } }, /panic_threshold/],
  ];
  for (const [extra, field] of bad) {
    const r = await api(g.base, 'POST', '/api/v1/clusters', {
      cluster: { name: 'bad', spec: { protocol: 'TCP', port: 9 }, endpoints: [{ spec: { address: '127.0.0.1' } }], ...extra },
    });
    t.is(r.status, 400, JSON.stringify(extra));
    t.regex(r.text, field);
  }
  t.is((await api(g.base, 'GET', '/api/v1/clusters/bad')).status, 404);
  t.is(g.gw.endpoints.size, 0);
  // A good one dumps its settings back.
  const hc = { interval: 1000, timeout: 200, unhealthy_threshold: 3, healthy_threshold: 2, path: '/', expect: ['200-399'], send: 'hex:00ff', receive: 'ok' };
  const od = { consecutive_failures: 5, base_ejection_time: 30000, max_ejection_time: 300000, max_ejection_percent: 10 };
  const r = await api(g.base, 'POST', '/api/v1/clusters', {
    cluster: { name: 'good', spec: { protocol: 'TCP', port: 9 }, endpoints: [{ name: 'g1', spec: { address: '127.0.0.1' } }], health_check: hc, outlier_detection: od },
  });
  t.is(r.status, 200, r.text);
  const d = await api(g.base, 'GET', '/api/v1/clusters/good');
  t.deepEqual(d.body.health_check, hc);
  t.deepEqual(d.body.outlier_detection, od);
  const e = await api(g.base, 'GET', '/api/v1/endpoints/g1');
  t.truthy(e.body.status?.health);
});

test.serial('DNS: an endpoint given by name is re-resolved on its TTL, every address is used, a failed resolution keeps the last good answer and is logged once', async (t) => {
  const dnsServer = await startTestDns();
  t.teardown(() => dnsServer.close());
  dnsServer.records.set('backend.test', [HOST.A]);
  const [port, lp] = [await freePort(), await freePort()];
  const a = await startUpstream('TCP', HOST.A, port, 'A');
  const b = await startUpstream('TCP', HOST.B, port, 'B');
  t.teardown(() => a.stop());
  t.teardown(() => b.stop());
  const { log, lines } = capture();
  const g = await startGw(t, {
    admin: LOUD_ADMIN,
    listeners: [tcpListener('in', lp, 'named')],
    clusters: [{
      name: 'named', spec: { protocol: 'TCP', port },
      endpoints: [{ name: 'by-name', spec: { address: 'backend.test' } }],
      dns: { servers: [`127.0.0.1:${dnsServer.port}`], interval: 2000 },
    }],
  }, log);
  const addresses = async (): Promise<string[]> => (await endpointHealth(g.base, 'named'))['by-name'].addresses;
  await waitFor(async () => (await addresses())?.[0] === HOST.A, 3000, 'first answer');
  t.is((await openClient(t, 'TCP', lp)).first, 'A');

  // The name moves: the TTL (1 s) brings the new address.
  dnsServer.records.set('backend.test', [HOST.B]);
  await waitFor(async () => (await addresses())?.[0] === HOST.B, 4000, 'the new answer');
  t.is((await openClient(t, 'TCP', lp)).first, 'B');

  // Two addresses: both take sessions.
  dnsServer.records.set('backend.test', [HOST.A, HOST.B]);
  await waitFor(async () => (await addresses())?.length === 2, 4000, 'two addresses');
  const seen = new Set<string>();
  for (let i = 0; i < 4; i++) seen.add((await openClient(t, 'TCP', lp)).first);
  t.deepEqual([...seen].sort(), ['A', 'B']);

  // The resolver fails: the last good answer stays, the failure is logged once.
  dnsServer.failing = true;
  const q = dnsServer.queries;
  await waitFor(() => dnsServer.queries >= q + 4, 15_000, 'two failed refreshes');
  t.deepEqual(await addresses(), [HOST.A, HOST.B]);
  t.is(lines.filter((l) => l.msg === 'endpoint name did not resolve; keeping the last good answer').length, 1);
  const c = await openClient(t, 'TCP', lp);
  t.true(['A', 'B'].includes(c.first));
});

test('Trivial and WeightedRandom pick only usable endpoints; a retry avoids the endpoint it failed on', (t) => {
  const eps = [{ name: 'e0', address: '10.0.0.1', weight: 1 }, { name: 'e1', address: '10.0.0.2', weight: 3 }, { name: 'e2', address: '10.0.0.3', weight: 1 }];
  const health = UpstreamHealth.parse(
    { outlier_detection: { consecutive_failures: 1, max_ejection_percent: 50 } }, 'c', 'c', findProtocol('TCP')!, new HealthStats(), silentLogger(),
  )!;
  t.teardown(() => health.close());
  health.update(eps);
  health.state.failure('e1', 'test');
  const none = new Set<string>();
  for (const policy of ['Trivial', 'WeightedRandom']) {
    const balancer = createBalancer({ policy });
    balancer.update(eps);
    const seen = new Set<string>();
    for (let i = 0; i < 500; i++) seen.add(pickEndpoint<typeof eps[0]>(balancer, health, {}, none)!.name);
    t.false(seen.has('e1'), `${policy} never picks the ejected endpoint`);
    // A retry after failing on e0 goes to e2, the one usable endpoint left.
    for (let i = 0; i < 50; i++) t.is(pickEndpoint<typeof eps[0]>(balancer, health, {}, new Set(['e0']))!.name, 'e2', policy);
    // Failed on every usable one: the unhealthy one is still better than none.
    t.is(pickEndpoint<typeof eps[0]>(balancer, health, {}, new Set(['e0', 'e2']))!.name, 'e1', policy);
  }
});

test.serial('active UnixDomainSocket check: a socket path with nobody listening turns unhealthy, and healthy once served again', async (t) => {
  const sockPath = tmpPath('up.sock');
  const serve = (): Promise<net.Server> => new Promise((r) => { const s = net.createServer((c) => c.end('U')); s.listen(sockPath, () => r(s)); });
  let srv = await serve();
  t.teardown(() => srv.close());
  const g = await startGw(t, {
    clusters: [{
      name: 'ux', spec: { protocol: 'UnixDomainSocket' },
      endpoints: [{ name: 'ux-0', spec: { address: sockPath } }],
      health_check: { interval: INTERVAL, timeout: 150, unhealthy_threshold: UNHEALTHY, healthy_threshold: HEALTHY },
    }],
  });
  await waitFor(async () => (await endpointHealth(g.base, 'ux'))['ux-0'].health === 'healthy', 3000, 'healthy');
  await new Promise((r) => srv.close(r));
  await waitFor(async () => (await endpointHealth(g.base, 'ux'))['ux-0'].health === 'unhealthy', (UNHEALTHY + 1) * INTERVAL + SLACK, 'unhealthy');
  srv = await serve();
  await waitFor(async () => (await endpointHealth(g.base, 'ux'))['ux-0'].health === 'healthy', (HEALTHY + 1) * INTERVAL + SLACK, 'healthy again');
  t.is((await endpointHealth(g.base, 'ux'))['ux-0'].health, 'healthy', 'stays healthy while the socket serves');
});
