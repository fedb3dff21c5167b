// Metrics, the admin listener and l7mp's Prometheus/Metric clusters, measured
// after real traffic through real sockets and socat echo peers.

import test, { type ExecutionContext } from 'ava';
import dgram from 'node:dgram';
import net from 'node:net';
import { Gauge } from 'prom-client';
import { handleApi } from '../../src/api/dispatch.js';
import { startGateway } from '../../src/app.js';
import { Gateway } from '../../src/core/gateway.js';
import { AdminListener } from '../../src/observe/probe-listener.js';
import { parseProbeListener } from '../../src/config/admin.js';
import { silentLogger } from '../../src/observe/log.js';
import { GatewayMetrics } from '../../src/observe/metrics.js';
import {
  api, controllerConfig, echo, freePort, nextMessage, randomPayload, tcpListening, tcpRoundTrip, udpClient, waitFor, type Peer,
} from './helpers.js';

// These tests are about UDP sessions in JavaScript (the batched path, the port
// quarantine, a session's links); compiled UDP listeners have native-udp-forwarder.test.ts.
process.env.L7MP_UDP_COMPILED = 'off';

interface Started {
  gw: Gateway;
  base: string;
  admin: string;
}

/** A gateway with the controller, `extra` and the admin listener on a free port, stopped at teardown. */
async function start(t: ExecutionContext, extra: Record<string, unknown>): Promise<Started> {
  const ctl = await freePort();
  const adminPort = await freePort();
  const cfg = controllerConfig(ctl, extra);
  cfg.admin = { log_level: 'silent', metrics: { address: '127.0.0.1', port: adminPort } };
  const gw = await startGateway({ config: cfg, logger: silentLogger() });
  t.teardown(() => gw.stop());
  return { gw, base: `http://127.0.0.1:${ctl}`, admin: `http://127.0.0.1:${adminPort}` };
}

async function peer(t: ExecutionContext, p: Promise<Peer>): Promise<Peer> {
  const x = await p;
  t.teardown(() => x.stop());
  return x;
}

async function client(t: ExecutionContext): Promise<dgram.Socket> {
  const s = await udpClient();
  t.teardown(() => new Promise<void>((r) => { try { s.close(() => r()); } catch { r(); } }));
  return s;
}

interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** Parse the text exposition (enough of it for our own metrics). */
function parse(text: string): Sample[] {
  const out: Sample[] = [];
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m) throw new Error(`unparsable exposition line: ${line}`);
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]!] = l[2]!;
    out.push({ name: m[1]!, labels, value: Number(m[3]) });
  }
  return out;
}

class Scrape {
  constructor(readonly text: string, readonly samples: Sample[]) {}

  /** Samples of `name` whose labels include `labels`. */
  all(name: string, labels: Record<string, string> = {}): Sample[] {
    return this.samples.filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v));
  }

  /** The one sample of `name` with `labels`; undefined when absent. */
  get(name: string, labels: Record<string, string> = {}): number | undefined {
    const found = this.all(name, labels);
    if (found.length > 1) throw new Error(`${name} ${JSON.stringify(labels)} matches ${found.length} samples`);
    return found[0]?.value;
  }
}

async function scrape(url: string): Promise<Scrape> {
  const r = await fetch(url);
  if (r.status !== 200) throw new Error(`GET ${url}: ${r.status}`);
  const text = await r.text();
  return new Scrape(text, parse(text));
}

function listener(name: string, protocol: string, port: number, route: Record<string, unknown>) {
  return { name, spec: { protocol, address: '127.0.0.1', port }, rules: [{ action: { route } }] };
}

function cluster(name: string, protocol: string, port: number) {
  return { name, spec: { protocol, port }, endpoints: [{ spec: { address: '127.0.0.1' } }] };
}

/** A TCP client that keeps the connection open and collects what it reads. */
function tcpOpen(port: number): Promise<{ sock: net.Socket; received: () => number; closed: () => boolean }> {
  return new Promise((resolve, reject) => {
    const sock = net.connect({ port, host: '127.0.0.1' });
    let n = 0;
    let closed = false;
    sock.on('data', (d: Buffer) => { n += d.length; });
    sock.on('close', () => { closed = true; });
    sock.once('error', reject);
    sock.once('connect', () => resolve({ sock, received: () => n, closed: () => closed }));
  });
}

test('UDP and TCP traffic: bytes and packets per listener and cluster in both directions, sessions, durations', async (t) => {
  const udpEcho = await freePort();
  const tcpEcho = await freePort();
  await peer(t, echo.udp(udpEcho));
  await peer(t, echo.tcp(tcpEcho));
  const udpPort = await freePort();
  const tcpPort = await freePort();
  const g = await start(t, {
    clusters: [cluster('udp-echo', 'UDP', udpEcho), cluster('tcp-echo', 'TCP', tcpEcho)],
    listeners: [
      listener('udp-in', 'UDP', udpPort, { destination: 'udp-echo' }),
      listener('tcp-in', 'TCP', tcpPort, { destination: 'tcp-echo' }),
    ],
  });
  const metrics = `${g.admin}/metrics`;

  // Before any traffic the configured objects show zeros.
  let m = await scrape(metrics);
  t.is(m.get('l7mp_listener_bytes_total', { listener: 'udp-in', protocol: 'UDP', direction: 'rx' }), 0);
  t.is(m.get('l7mp_cluster_bytes_total', { cluster: 'tcp-echo', protocol: 'TCP', direction: 'tx' }), 0);
  t.truthy(m.all('process_cpu_user_seconds_total').length, 'default process metrics are collected');

  // UDP: five datagrams of different sizes, each echoed.
  const sizes = [1, 100, 1000, 1400, 7];
  const total = sizes.reduce((a, b) => a + b, 0);
  const sock = await client(t);
  for (const n of sizes) {
    const reply = nextMessage(sock);
    sock.send(randomPayload(n), udpPort, '127.0.0.1');
    t.is((await reply).length, n);
  }
  // TCP: one connection, 100 KiB each way, closed by the round trip.
  const payload = randomPayload(100 * 1024);
  const back = await tcpRoundTrip(tcpPort, payload);
  t.is(back.length, payload.length);
  // A compiled listener's session (fastpath/compiled.ts) is not in gw.sessions: wait for both kinds.
  await waitFor(() => [...g.gw.sessions.values()].every((s) => s.listener !== 'tcp-in') && g.gw.compiled.live() === 0, 5000, 'the TCP session to end');

  m = await scrape(metrics);
  const L = (listenerName: string, protocol: string, direction: string) => ({ listener: listenerName, protocol, direction });
  const C = (clusterName: string, protocol: string, direction: string) => ({ cluster: clusterName, protocol, direction });
  // UDP: live session, counted from its links at scrape time.
  t.is(m.get('l7mp_listener_bytes_total', L('udp-in', 'UDP', 'rx')), total);
  t.is(m.get('l7mp_listener_bytes_total', L('udp-in', 'UDP', 'tx')), total);
  t.is(m.get('l7mp_listener_packets_total', L('udp-in', 'UDP', 'rx')), sizes.length);
  t.is(m.get('l7mp_listener_packets_total', L('udp-in', 'UDP', 'tx')), sizes.length);
  t.is(m.get('l7mp_cluster_bytes_total', C('udp-echo', 'UDP', 'tx')), total);
  t.is(m.get('l7mp_cluster_bytes_total', C('udp-echo', 'UDP', 'rx')), total);
  t.is(m.get('l7mp_cluster_packets_total', C('udp-echo', 'UDP', 'tx')), sizes.length);
  t.is(m.get('l7mp_cluster_packets_total', C('udp-echo', 'UDP', 'rx')), sizes.length);
  t.is(m.get('l7mp_listener_sessions_active', { listener: 'udp-in' }), 1);
  t.is(m.get('l7mp_cluster_sessions_active', { cluster: 'udp-echo' }), 1);
  // TCP: ended session, counted from the totals folded in at its end.
  t.is(m.get('l7mp_listener_bytes_total', L('tcp-in', 'TCP', 'rx')), payload.length);
  t.is(m.get('l7mp_listener_bytes_total', L('tcp-in', 'TCP', 'tx')), payload.length);
  t.is(m.get('l7mp_cluster_bytes_total', C('tcp-echo', 'TCP', 'tx')), payload.length);
  t.is(m.get('l7mp_cluster_bytes_total', C('tcp-echo', 'TCP', 'rx')), payload.length);
  t.true(m.get('l7mp_listener_packets_total', L('tcp-in', 'TCP', 'rx'))! >= 1);
  t.true(m.get('l7mp_cluster_packets_total', C('tcp-echo', 'TCP', 'rx'))! >= 1);
  t.is(m.get('l7mp_listener_sessions_active', { listener: 'tcp-in' }), 0);
  t.is(m.get('l7mp_cluster_sessions_active', { cluster: 'tcp-echo' }), 0);
  for (const l of ['udp-in', 'tcp-in']) t.is(m.get('l7mp_listener_sessions_total', { listener: l }), 1, l);
  for (const c of ['udp-echo', 'tcp-echo']) t.is(m.get('l7mp_cluster_sessions_total', { cluster: c }), 1, c);
  // l7mp's names and labels.
  t.is(m.get('listener_requests_total', { listenerName: 'udp-in', protocol: 'UDP' }), 1);
  t.is(m.get('listener_requests_total', { listenerName: 'tcp-in', protocol: 'TCP' }), 1);
  t.is(m.get('cluster_requests_total', { clusterName: 'tcp-echo', protocol: 'TCP' }), 1);
  t.is(m.get('cluster_requests_total', { clusterName: 'udp-echo', protocol: 'UDP' }), 1);
  // Durations: the TCP session ended, the UDP one did not yet.
  t.is(m.get('l7mp_session_duration_seconds_count', { listener: 'tcp-in', cluster: 'tcp-echo' }), 1);
  t.is(m.get('l7mp_session_duration_seconds_count', { listener: 'udp-in' }), undefined);

  // End the UDP session: the counters do not move back, the session is folded in.
  const udpSession = [...g.gw.sessions.values()].find((s) => s.listener === 'udp-in')!;
  t.is((await api(g.base, 'DELETE', `/api/v1/sessions/${encodeURIComponent(udpSession.name)}`)).status, 200);
  m = await scrape(metrics);
  t.is(m.get('l7mp_listener_bytes_total', L('udp-in', 'UDP', 'rx')), total);
  t.is(m.get('l7mp_listener_bytes_total', L('udp-in', 'UDP', 'tx')), total);
  t.is(m.get('l7mp_cluster_bytes_total', C('udp-echo', 'UDP', 'rx')), total);
  t.is(m.get('l7mp_cluster_packets_total', C('udp-echo', 'UDP', 'tx')), sizes.length);
  t.is(m.get('l7mp_listener_sessions_active', { listener: 'udp-in' }), 0);
  t.is(m.get('l7mp_session_duration_seconds_count', { listener: 'udp-in', cluster: 'udp-echo' }), 1);

  // A second UDP flow adds to the totals.
  const sock2 = await client(t);
  const reply = nextMessage(sock2);
  sock2.send(randomPayload(50), udpPort, '127.0.0.1');
  await reply;
  m = await scrape(metrics);
  t.is(m.get('l7mp_listener_bytes_total', L('udp-in', 'UDP', 'rx')), total + 50);
  t.is(m.get('l7mp_cluster_bytes_total', C('udp-echo', 'UDP', 'rx')), total + 50);
  t.is(m.get('l7mp_listener_sessions_total', { listener: 'udp-in' }), 2);
});

test('connect failures and retries are counted per listener and per cluster', async (t) => {
  const dead = await freePort(); // nobody listens here
  const tcpPort = await freePort();
  const g = await start(t, {
    clusters: [cluster('dead', 'TCP', dead)],
    listeners: [listener('tcp-dead', 'TCP', tcpPort, {
      destination: 'dead',
      retry: { retry_on: 'connect-failure', num_retries: 2, timeout: 50 },
    })],
  });
  const c = await tcpOpen(tcpPort);
  t.teardown(() => c.sock.destroy());
  await waitFor(() => c.closed(), 5000, 'the gateway to give up');
  const m = await waitFor(async () => {
    const s = await scrape(`${g.admin}/metrics`);
    return s.get('l7mp_session_duration_seconds_count', { listener: 'tcp-dead' }) === 1 ? s : undefined;
  }, 5000, 'the failed session to be counted');
  // 1 + num_retries attempts, all failed; num_retries retries.
  t.is(m.get('l7mp_cluster_connect_failures_total', { cluster: 'dead', protocol: 'TCP' }), 3);
  t.is(m.get('l7mp_cluster_retries_total', { cluster: 'dead', protocol: 'TCP' }), 2);
  t.is(m.get('l7mp_listener_connect_failures_total', { listener: 'tcp-dead', protocol: 'TCP' }), 3);
  t.is(m.get('l7mp_listener_retries_total', { listener: 'tcp-dead', protocol: 'TCP' }), 2);
  t.is(m.get('l7mp_listener_sessions_total', { listener: 'tcp-dead' }), 1);
  t.is(m.get('cluster_requests_total', { clusterName: 'dead' }), undefined, 'a cluster that never connected has no requests');
});

test('a reconnect after a disconnect is counted as a retry', async (t) => {
  const echoPort = await freePort();
  const first = await echo.tcp(echoPort);
  t.teardown(() => first.stop());
  const tcpPort = await freePort();
  const g = await start(t, {
    clusters: [cluster('flaky', 'TCP', echoPort)],
    listeners: [listener('tcp-flaky', 'TCP', tcpPort, {
      destination: 'flaky',
      retry: { retry_on: 'always', num_retries: 20, timeout: 100 },
    })],
  });
  const c = await tcpOpen(tcpPort);
  t.teardown(() => c.sock.destroy());
  c.sock.write('hello');
  await waitFor(() => c.received() === 5, 5000, 'the first echo');
  await first.stop(); // the upstream goes away: the stage disconnects and retries
  await waitFor(async () => {
    const s = await scrape(`${g.admin}/metrics`);
    return (s.get('l7mp_cluster_connect_failures_total', { cluster: 'flaky' }) ?? 0) >= 1;
  }, 5000, 'a failed reconnect attempt');
  await peer(t, echo.tcp(echoPort)); // back: the next attempt succeeds
  await waitFor(() => tcpListening(echoPort), 5000, 'the echo peer');
  const s = [...g.gw.sessions.values()].find((x) => x.listener === 'tcp-flaky')!;
  await waitFor(() => s.destination?.status === 'READY' && s.events.some((e) => e.message.includes('reconnected')), 5000, 'the reconnect');
  c.sock.write('again');
  await waitFor(() => c.received() === 10, 5000, 'the echo after the reconnect');
  const m = await scrape(`${g.admin}/metrics`);
  t.true(m.get('l7mp_cluster_retries_total', { cluster: 'flaky' })! >= 2, 'the failed attempt and the successful one are retries');
  t.is(m.get('cluster_requests_total', { clusterName: 'flaky' }), 1, 'reconnects are not new requests (as l7mp)');
  t.is(m.get('l7mp_cluster_sessions_total', { cluster: 'flaky' }), 1);
  t.is(m.get('l7mp_listener_bytes_total', { listener: 'tcp-flaky', direction: 'rx' }), 10);
  t.is(m.get('l7mp_listener_bytes_total', { listener: 'tcp-flaky', direction: 'tx' }), 10);
});

test('REST calls are counted by operationId and status', async (t) => {
  const g = await start(t, {});
  t.is((await api(g.base, 'GET', '/api/v1/listeners')).status, 200);
  t.is((await api(g.base, 'GET', '/api/v1/listeners')).status, 200);
  t.is((await api(g.base, 'GET', '/api/v1/listeners/nope')).status, 404);
  t.is((await api(g.base, 'POST', '/api/v1/clusters', { cluster: { name: 'x', spec: { protocol: 'NoSuch' } } })).status, 400);
  t.is((await api(g.base, 'GET', '/api/v1/no/such/thing')).status, 404);
  const m = await scrape(`${g.admin}/metrics`);
  t.is(m.get('l7mp_rest_requests_total', { operationId: 'getListeners', status: '200' }), 2);
  t.is(m.get('l7mp_rest_requests_total', { operationId: 'getListener', status: '404' }), 1);
  t.is(m.get('l7mp_rest_requests_total', { operationId: 'addCluster', status: '400' }), 1);
  t.is(m.get('l7mp_rest_requests_total', { operationId: 'unknown', status: '404' }), 1);
  // The controller's own sessions count as listener requests, as in l7mp.
  t.is(m.get('listener_requests_total', { listenerName: 'controller-listener', protocol: 'HTTP' }), 5);
});

test('/live and /ready: ready only once the config is applied and while every listener is bound', async (t) => {
  // Assembled by hand so that the admin listener is up before the config.
  const metrics = new GatewayMetrics({ defaultMetrics: false });
  const gw = new Gateway({ log: silentLogger(), version: 'test', api: handleApi, observer: metrics });
  metrics.attach(gw);
  const adminPort = await freePort();
  const admin = new AdminListener(gw, parseProbeListener({ port: adminPort }));
  await admin.start();
  t.teardown(() => gw.stop());
  gw.onStop(() => admin.stop());
  const base = `http://127.0.0.1:${adminPort}`;

  let r = await api(base, 'GET', '/live');
  t.is(r.status, 200);
  r = await api(base, 'GET', '/ready');
  t.is(r.status, 503);
  t.false(r.body.ready);
  t.regex(r.body.reason, /configuration is not applied/);

  const tcpPort = await freePort();
  const udpPort = await freePort();
  await gw.applyConfig({
    clusters: [{ name: 'sink', spec: { protocol: 'Discard' } }],
    listeners: [listener('tcp-l', 'TCP', tcpPort, { destination: 'sink' }), listener('udp-l', 'UDP', udpPort, { destination: 'sink' })],
  }, true);
  r = await api(base, 'GET', '/ready');
  t.is(r.status, 200);
  t.deepEqual(r.body, { ready: true });

  // A listener that lost its socket makes the gateway unready, naming it.
  await gw.listeners.get('tcp-l')!.impl.stop();
  r = await api(base, 'GET', '/ready');
  t.is(r.status, 503);
  t.deepEqual(r.body.reasons, ['listener "tcp-l" is not bound']);
  t.is((await api(base, 'GET', '/live')).status, 200, 'live does not depend on readiness');

  // Deleting it from the configuration makes the gateway ready again.
  await gw.deleteListener('tcp-l', true);
  t.is((await api(base, 'GET', '/ready')).status, 200);

  // Everything else on the admin port is a 404 (or a 405 for a wrong method).
  t.is((await api(base, 'GET', '/nope')).status, 404);
  t.is((await api(base, 'POST', '/ready', {})).status, 405);

  // Stopping the gateway closes the admin listener.
  await gw.stop();
  await t.throwsAsync(() => fetch(`${base}/live`));
});

test('admin.metrics: custom path, disabled, invalid, and a taken port', async (t) => {
  const ctl = await freePort();
  const adminPort = await freePort();
  const cfg = (metrics: unknown) => ({ ...controllerConfig(ctl), admin: { log_level: 'silent', metrics } });

  let gw = await startGateway({ config: cfg({ port: adminPort, path: '/prom' }), logger: silentLogger() });
  t.teardown(() => gw.stop());
  const m = await scrape(`http://127.0.0.1:${adminPort}/prom`);
  t.is(m.get('l7mp_listener_sessions_total', { listener: 'controller-listener' }), undefined);
  t.is((await api(`http://127.0.0.1:${adminPort}`, 'GET', '/metrics')).status, 404);

  // The port is taken now: an explicitly configured admin listener must bind.
  const ctl2 = await freePort();
  await t.throwsAsync(
    () => startGateway({ config: { ...controllerConfig(ctl2), admin: { log_level: 'silent', metrics: { port: adminPort } } }, logger: silentLogger() }),
    { message: /admin listener .* cannot listen/ },
  );
  t.false(await tcpListening(ctl2), 'the failed gateway released its listeners');
  await gw.stop();

  for (const off of [{ enabled: false, port: adminPort }, { port: 0 }, false]) {
    gw = await startGateway({ config: cfg(off), logger: silentLogger() });
    t.false(await tcpListening(adminPort), JSON.stringify(off));
    await gw.stop();
  }

  await t.throwsAsync(() => startGateway({ config: cfg({ port: 'x' }), logger: silentLogger() }), { message: /admin\.metrics\.port/ });
  await t.throwsAsync(() => startGateway({ config: cfg({ path: '/ready' }), logger: silentLogger() }), { message: /admin\.metrics\.path/ });
  await t.throwsAsync(() => startGateway({ config: cfg({ prot: 1 }), logger: silentLogger() }), { message: /admin\.metrics\.prot/ });
});

test('the Prometheus cluster behind an HTTP listener answers the exposition (l7mp ingress chart layout)', async (t) => {
  const promPort = await freePort();
  const tcpPort = await freePort();
  const g = await start(t, {
    listeners: [
      {
        name: 'prometheus_listener',
        spec: { protocol: 'HTTP', address: '127.0.0.1', port: promPort },
        rules: [{
          match: { op: 'starts', path: '/HTTP/url/path', value: '/metrics' },
          action: { route: { destination: { name: 'prometheus-cluster', spec: { protocol: 'Prometheus' } } } },
        }],
      },
      listener('tcp-prom', 'TCP', tcpPort, { destination: 'prometheus-cluster' }),
    ],
  });
  const r = await fetch(`http://127.0.0.1:${promPort}/metrics`);
  t.is(r.status, 200);
  t.regex(r.headers.get('content-type') ?? '', /^text\/plain; version=0\.0\.4/);
  const m = new Scrape('', parse(await r.text()));
  t.is(m.get('listener_requests_total', { listenerName: 'prometheus_listener', protocol: 'HTTP' }), 1, 'the scrape itself is a request');
  t.is(m.get('cluster_requests_total', { clusterName: 'prometheus-cluster', protocol: 'Prometheus' }), 1);
  t.true(m.all('process_resident_memory_bytes').length === 1);
  // The session ends after the answer.
  await waitFor(() => ![...g.gw.sessions.values()].some((s) => s.listener === 'prometheus_listener'), 5000, 'the scrape session to end');
  // Other paths match no rule.
  t.is((await fetch(`http://127.0.0.1:${promPort}/other`)).status, 404);

  // Any request on any listener gets the exposition, then the session ends.
  const text = (await tcpRoundTrip(tcpPort, Buffer.from('GET\n'))).toString();
  t.regex(text, /^# HELP /m);
  t.regex(text, /listener_requests_total\{listenerName="tcp-prom",protocol="TCP"\} 1/);
});

test('the Metric cluster counts the bytes and packets of its sessions; a session\'s series go when it ends', async (t) => {
  const echoPort = await freePort();
  await peer(t, echo.tcp(echoPort));
  const tcpPort = await freePort();
  const g = await start(t, {
    clusters: [cluster('echo', 'TCP', echoPort)],
    listeners: [listener('metered', 'TCP', tcpPort, {
      destination: 'echo',
      ingress: [{ name: 'meter-in', spec: { protocol: 'Metric' } }],
      egress: [{ name: 'meter-out', spec: { protocol: 'Metric', byteCounterName: 'ignored_bytes', packetCounterName: 'ignored_packets' } }],
    })],
  });
  const c1 = await tcpOpen(tcpPort);
  const c2 = await tcpOpen(tcpPort);
  t.teardown(() => { c1.sock.destroy(); c2.sock.destroy(); });
  c1.sock.write(randomPayload(3000));
  c2.sock.write(randomPayload(10));
  await waitFor(() => c1.received() === 3000 && c2.received() === 10, 5000, 'the echoes');
  const names = [...g.gw.sessions.values()].filter((s) => s.listener === 'metered').map((s) => s.name);
  t.is(names.length, 2);
  const [s1, s2] = names.map((n) => g.gw.sessions.get(n)!).sort((a, b) => (a.counters().ingress.bytes > b.counters().ingress.bytes ? -1 : 1));

  let m = await scrape(`${g.admin}/metrics`);
  t.is(m.get('session_byte_counter_total', { sessionName: s1!.name, clusterName: 'meter-in' }), 3000);
  t.is(m.get('session_byte_counter_total', { sessionName: s1!.name, clusterName: 'meter-out' }), 3000);
  t.is(m.get('session_byte_counter_total', { sessionName: s2!.name, clusterName: 'meter-in' }), 10);
  t.true(m.get('session_packet_counter_total', { sessionName: s1!.name, clusterName: 'meter-in' })! >= 1);
  t.is(m.get('session_packet_counter_total', { sessionName: s2!.name, clusterName: 'meter-out' }), 1);
  t.is(m.all('session_byte_counter_total').length, 4);
  // The transform clusters have their own per-cluster counters too.
  t.is(m.get('l7mp_cluster_bytes_total', { cluster: 'meter-in', direction: 'rx' }), 3010);
  t.is(m.get('l7mp_cluster_sessions_active', { cluster: 'meter-out', protocol: 'Metric' }), 2);

  // The first session ends: its series disappear, the other's stay.
  c1.sock.end();
  await waitFor(() => !g.gw.sessions.has(s1!.name), 5000, 'the first session to end');
  m = await scrape(`${g.admin}/metrics`);
  t.deepEqual(m.all('session_byte_counter_total', { sessionName: s1!.name }), []);
  t.deepEqual(m.all('session_packet_counter_total', { sessionName: s1!.name }), []);
  t.is(m.get('session_byte_counter_total', { sessionName: s2!.name, clusterName: 'meter-in' }), 10);
  // ...while the per-cluster totals keep what it counted.
  t.is(m.get('l7mp_cluster_bytes_total', { cluster: 'meter-in', direction: 'rx' }), 3010);

  c2.sock.end();
  await waitFor(() => !g.gw.sessions.has(s2!.name), 5000, 'the second session to end');
  m = await scrape(`${g.admin}/metrics`);
  t.deepEqual(m.all('session_byte_counter_total'), []);
});

test('Metric cluster spec: counter names must be Prometheus names', async (t) => {
  const g = await start(t, {});
  const r = await api(g.base, 'POST', '/api/v1/clusters', { cluster: { name: 'm', spec: { protocol: 'Metric', byteCounterName: '1bad' } } });
  t.is(r.status, 400);
  t.regex(r.body.content ?? r.body.message, /byteCounterName/);
  t.is((await api(g.base, 'POST', '/api/v1/clusters', { cluster: { name: 'm', spec: { protocol: 'Metric' } } })).status, 200);
  t.is((await api(g.base, 'POST', '/api/v1/clusters', { cluster: { name: 'p', spec: { protocol: 'Prometheus' } } })).status, 200);
});

test('the series of a deleted listener and cluster stay while a session lives and for the retention after, then go; configured ones stay', async (t) => {
  const RETAIN_MS = 1000;
  const metrics = new GatewayMetrics({ defaultMetrics: false, retiredSeriesMs: RETAIN_MS, retireCheckMs: 0 });
  const gw = new Gateway({ log: silentLogger(), version: 'test', api: handleApi, observer: metrics });
  metrics.attach(gw);
  t.teardown(() => gw.stop());
  const echoPort = await freePort();
  await peer(t, echo.tcp(echoPort));
  const gonePort = await freePort();
  const keptPort = await freePort();
  await gw.applyConfig({
    clusters: [cluster('gone-echo', 'TCP', echoPort), cluster('kept-echo', 'TCP', echoPort)],
    listeners: [listener('gone-in', 'TCP', gonePort, { destination: 'gone-echo' }), listener('kept-in', 'TCP', keptPort, { destination: 'kept-echo' })],
  }, true);
  const read = async () => { const text = (await gw.exposition()).body; return new Scrape(text, parse(text)); };
  const has = (m: Scrape, name: string) => m.text.includes(`"${name}"`);

  t.is((await tcpRoundTrip(gonePort, Buffer.from('x'))).toString(), 'x');
  t.is((await tcpRoundTrip(keptPort, Buffer.from('y'))).toString(), 'y');
  const open = await tcpOpen(gonePort); // lives on after its listener is deleted
  t.teardown(() => open.sock.destroy());
  await waitFor(() => [...gw.sessions.values()].filter((s) => s.status === 'CONNECTED').length === 1, 5000, 'the open session to connect');
  await gw.deleteListener('gone-in', false);
  await gw.deleteCluster('gone-echo', false).catch(() => undefined); // in use by the live session: it may stay configured until it ends

  // Past the retention, the live session still keeps them.
  await new Promise((r) => setTimeout(r, RETAIN_MS + 200));
  let m = await read();
  t.is(m.get('listener_requests_total', { listenerName: 'gone-in', protocol: 'TCP' }), 2);
  t.is(m.get('l7mp_cluster_sessions_total', { cluster: 'gone-echo', protocol: 'TCP' }), 2);

  // It ends: the series stay for the retention (one scrape at least sees the final counts), then go.
  open.sock.end();
  await waitFor(() => gw.sessions.size === 0, 5000, 'the session to end');
  await gw.deleteCluster('gone-echo', false).catch(() => undefined);
  t.false(gw.clusters.has('gone-echo'), 'the cluster is gone from the configuration');
  const ended = Date.now();
  m = await read();
  t.is(m.get('l7mp_listener_sessions_total', { listener: 'gone-in', protocol: 'TCP' }), 2, 'the final count is shown');
  t.true(m.get('l7mp_listener_bytes_total', { listener: 'gone-in', protocol: 'TCP', direction: 'rx' })! >= 1);
  // Half the retention later they are still there (the retention starts at the session's end, before `ended`).
  await new Promise((r) => setTimeout(r, RETAIN_MS / 2 - (Date.now() - ended)));
  m = await read();
  t.true(has(m, 'gone-in') && has(m, 'gone-echo'), 'still shown within the retention');
  m = await waitFor(async () => { const x = await read(); return has(x, 'gone-in') || has(x, 'gone-echo') ? undefined : x; }, 10_000, 'the deleted objects\' series to go');
  t.is(m.all('l7mp_session_duration_seconds_count', { listener: 'gone-in' }).length, 0);
  // Nor do the hooks keep rows for them (REST churn through new names must not grow memory).
  const kept = metrics.tracked;
  t.deepEqual([kept.listeners.sort(), kept.clusters.sort(), kept.durationPairs.sort()], [['kept-in'], ['kept-echo'], ['kept-in/kept-echo']]);

  // The configured ones keep theirs.
  t.is(m.get('listener_requests_total', { listenerName: 'kept-in', protocol: 'TCP' }), 1);
  t.is(m.get('l7mp_cluster_sessions_total', { cluster: 'kept-echo', protocol: 'TCP' }), 1);
  t.is(m.get('l7mp_session_duration_seconds_count', { listener: 'kept-in', cluster: 'kept-echo' }), 1);

  // A name created again counts from zero.
  await gw.addListener(listener('gone-in', 'TCP', gonePort, { destination: 'kept-echo' }));
  t.is((await tcpRoundTrip(gonePort, Buffer.from('z'))).toString(), 'z');
  m = await read();
  t.is(m.get('listener_requests_total', { listenerName: 'gone-in', protocol: 'TCP' }), 1);
});

test('attaching the metrics to a gateway runs one collection at once, before any traffic', async (t) => {
  // The first collection in a process invalidates optimized code of the session path (observe/metrics.ts, attach).
  const metrics = new GatewayMetrics({ defaultMetrics: false });
  let collects = 0;
  new Gauge({ name: 'probe_first_collection', help: 'h', registers: [metrics.registry], collect() { collects++; } });
  const gw = new Gateway({ log: silentLogger(), version: 'test', api: handleApi, observer: metrics });
  t.teardown(() => gw.stop());
  t.is(collects, 0);
  metrics.attach(gw);
  t.is(collects, 1, 'attach() collected every metric once');
  await metrics.exposition();
  t.is(collects, 2);
});
