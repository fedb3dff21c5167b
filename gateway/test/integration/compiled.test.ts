// Compiled listeners (gateway/src/fastpath/compiled.ts): which listeners the
// addon sets connections up for, and that the rest of the gateway sees those
// sessions as it sees any: the REST view (and options.track), the access log,
// metrics, admission's flow rate, weighted endpoints, a change of the
// configuration, listener deletes, and drain. Real gateway processes, real
// node:net peers. (stream-path*.test.ts run the byte-level cases: EOF,
// resets, retries, DELETE, 10,000 connections.)

import test, { type ExecutionContext } from 'ava';
import fs from 'node:fs';
import net from 'node:net';
import { api, freePort, tmpPath, waitFor } from './helpers.js';
import { metricValue, startChild, type ChildGateway } from './edge/edge-helpers.js';
import { connect, echoUpstream, type Watched } from './stream-path-helpers.js';
import { rawPathUnavailable } from '../../src/native/rawstream.js';
import { needCapability } from './native-helpers.js';

const it = test.serial;

function need(t: ExecutionContext): boolean {
  return needCapability(t, rawPathUnavailable());
}

interface Gw {
  child: ChildGateway;
  port: number;
  accessLog: string;
  sessions(listener?: string): Promise<any[]>;
  metric(sample: string): Promise<number | undefined>;
}

/** A gateway child with listener "in" (TCP, its `rules`) and cluster "up" (TCP endpoints on `upPort`). */
async function gateway(t: ExecutionContext, upPort: number, opts: { rules?: unknown[]; endpoints?: unknown[]; policy?: string; options?: Record<string, unknown>; admin?: Record<string, unknown> } = {}): Promise<Gw> {
  const port = await freePort();
  const accessLog = tmpPath('access.log');
  const child = await startChild(t, {
    clusters: [{
      name: 'up', spec: { protocol: 'TCP', port: upPort },
      ...(opts.policy !== undefined ? { loadbalancer: { policy: opts.policy } } : {}),
      endpoints: opts.endpoints ?? [{ name: 'ep0', spec: { address: '127.0.0.1' } }],
    }],
    listeners: [{
      name: 'in', spec: { protocol: 'TCP', address: '127.0.0.1', port },
      rules: opts.rules ?? [{ action: { route: { destination: 'up' } } }],
      ...(opts.options !== undefined ? { options: opts.options } : {}),
    }],
  }, { access_log_path: accessLog, ...opts.admin });
  return {
    child, port, accessLog,
    sessions: async (listener = 'in') => {
      const r = await api(child.base, 'GET', '/api/v1/sessions');
      return (r.body as any[]).filter((s) => s.source?.origin === listener);
    },
    metric: async (sample) => metricValue(await (await fetch(`${child.adminBase}/metrics`)).text(), sample),
  };
}

function logLines(gw: Gw): any[] {
  if (!fs.existsSync(gw.accessLog)) return [];
  return fs.readFileSync(gw.accessLog, 'utf8').split('\n').filter((l) => l !== '').map((l) => JSON.parse(l)).filter((l) => l.listener === 'in');
}

/** A connection that sends `msg` and waits for its echo. */
async function echoed(t: ExecutionContext, port: number, msg: string): Promise<Watched> {
  const c = await connect(t, { host: '127.0.0.1', port });
  c.sock.write(msg);
  t.is(String(await c.next(msg.length)), msg);
  return c;
}

it('an unconditional route is compiled, a rule that matches on the connection is not; the views, the access log and the metrics agree', async (t) => {
  if (!need(t)) return;
  const up = await echoUpstream(t, 'TCP');
  const upPort = (up.addr as { port: number }).port;
  const gw = await gateway(t, upPort);
  const c = await echoed(t, gw.port, 'hello');
  const clientPort = c.sock.localPort!;
  const [s] = await gw.sessions();
  t.like(s, { path: 'raw', spliced: true, status: 'CONNECTED', splice: { compiled: true, state: 'active' }, destination: { origin: 'up', endpoint: { name: 'ep0' }, peer: `127.0.0.1:${upPort}` } });
  t.regex(s.name, new RegExp(`^TCP:127\\.0\\.0\\.1:${clientPort}-127\\.0\\.0\\.1:${gw.port}-c\\d+$`));
  t.deepEqual(s.metadata, { IP: { src_addr: '127.0.0.1', dst_addr: '127.0.0.1' }, TCP: { src_port: clientPort, dst_port: gw.port } });
  t.deepEqual(s.events.map((e: any) => e.event), ['INIT', 'LOOKUP SUCCESS', 'CONNECT']);
  t.like((await api(gw.child.base, 'GET', `/api/v1/sessions/${encodeURIComponent(s.name)}`)).body, { name: s.name, counters: { ingress: { bytes: 5 }, egress: { bytes: 5 } } });
  t.is(await gw.metric('l7mp_listener_sessions_active{listener="in",protocol="TCP"}'), 1);
  c.sock.end();
  await c.ended();
  await waitFor(async () => (await gw.sessions()).length === 0, 5000, 'the session gone');
  const [line] = await waitFor(() => { const l = logLines(gw); return l.length === 1 ? l : undefined; }, 5000, 'its access log line');
  t.like(line, { session: s.name, listener: 'in', destination: 'up', endpoint: 'ep0', peer: `127.0.0.1:${clientPort}`, ingress_bytes: 5, egress_bytes: 5, status: 'ok', reason: 'stage "in" closed' });
  t.is(await gw.metric('l7mp_listener_sessions_total{listener="in",protocol="TCP"}'), 1);
  t.is(await gw.metric('l7mp_cluster_sessions_total{cluster="up",protocol="TCP"}'), 1);
  t.is(await gw.metric('l7mp_listener_bytes_total{listener="in",protocol="TCP",direction="rx"}'), 5);
  t.is(await gw.metric('l7mp_cluster_bytes_total{cluster="up",protocol="TCP",direction="tx"}'), 5);
  t.is(await gw.metric('l7mp_session_duration_seconds_count{listener="in",cluster="up"}'), 1);
  t.is(await gw.metric('l7mp_listener_sessions_active{listener="in",protocol="TCP"}'), 0);

  // A rule in front that looks at the connection: decided in JavaScript from now on.
  const rl = (await api(gw.child.base, 'GET', '/api/v1/listeners/in')).body.rules;
  t.is(typeof rl, 'string');
  const add = await api(gw.child.base, 'POST', `/api/v1/rulelists/${encodeURIComponent(rl)}/rules/0`, { rule: { name: 'by-source', match: { op: 'test', path: '/IP/src_addr', value: '127.0.0.1' }, action: { route: { destination: 'up' } } } });
  t.is(add.status, 200, add.text);
  const c2 = await echoed(t, gw.port, 'again');
  const [s2] = await gw.sessions();
  t.is(s2.path, 'raw');
  t.is(s2.splice?.compiled, undefined, 'a rule with a match: not compiled');
  t.notRegex(s2.name, /-c\d+$/);
  c2.sock.destroy();
});

it('options.track keeps an ended compiled session listed, DESTROYED, with its end', async (t) => {
  if (!need(t)) return;
  const up = await echoUpstream(t, 'TCP');
  const gw = await gateway(t, (up.addr as { port: number }).port, { options: { track: 30 } });
  const c = await echoed(t, gw.port, 'tracked');
  const name = (await gw.sessions())[0].name;
  c.sock.end();
  await c.ended();
  const s = await waitFor(async () => (await gw.sessions()).find((x) => x.status === 'DESTROYED'), 5000, 'the ended session listed');
  t.is(s.name, name);
  t.like(s, { splice: { compiled: true, state: 'done' }, counters: { ingress: { bytes: 7 }, egress: { bytes: 7 } } });
  t.deepEqual(s.events.map((e: any) => e.event), ['INIT', 'LOOKUP SUCCESS', 'CONNECT', 'END', 'DESTROY']);
  t.like((await api(gw.child.base, 'GET', `/api/v1/sessions/${encodeURIComponent(name)}`)).body, { name, status: 'DESTROYED' });
  t.is((await api(gw.child.base, 'DELETE', `/api/v1/sessions/${encodeURIComponent(name)}`)).status, 404, 'an ended session cannot be deleted');
});

it('WeightedRandom endpoints get connections in proportion to their weights; weight 0 gets none', async (t) => {
  if (!need(t)) return;
  const up = await echoUpstream(t, 'TCP');
  const upPort = (up.addr as { port: number }).port;
  const gw = await gateway(t, upPort, {
    policy: 'WeightedRandom',
    endpoints: [
      { name: 'a', spec: { address: '127.0.0.1' }, weight: 3 },
      { name: 'b', spec: { address: '127.0.0.1' }, weight: 1 },
      { name: 'z', spec: { address: '127.0.0.1' }, weight: 0 },
    ],
  });
  const seen: Record<string, number> = {};
  for (let i = 0; i < 40; i++) {
    const c = await echoed(t, gw.port, 'w');
    const [s] = await gw.sessions();
    t.true(s.splice?.compiled);
    seen[s.destination.endpoint.name] = (seen[s.destination.endpoint.name] ?? 0) + 1;
    c.sock.end();
    await c.ended();
    await waitFor(async () => (await gw.sessions()).length === 0, 5000, 'the session gone');
  }
  t.deepEqual(seen, { a: 30, b: 10 }, 'a smooth weighted round robin: exact shares');
});

it('flow_rate: a source over its rate is refused, counted and logged once, while the admitted connection keeps working', async (t) => {
  if (!need(t)) return;
  const up = await echoUpstream(t, 'TCP');
  const gw = await gateway(t, (up.addr as { port: number }).port, { admin: { limits: { api_rate: 0, flow_rate: 1, flow_burst: 2 } } });
  const a = await echoed(t, gw.port, 'one');
  const b = await echoed(t, gw.port, 'two');
  const refused = await Promise.all([1, 2, 3].map(async () => {
    const c = await connect(t, { host: '127.0.0.1', port: gw.port });
    return c.ended(3000);
  }));
  t.true(refused.every((how) => how === 'end' || how === 'ECONNRESET'), refused.join(','));
  t.is(await gw.metric('l7mp_refusals_total{reason="flow_rate",listener="in"}'), 3);
  t.is(gw.child.output().split('\n').filter((l) => l.includes('"flow_rate"') && l.includes('refused')).length, 1, 'logged once for the interval');
  a.sock.write('still');
  t.is(String(await a.next(3 + 5)), 'onestill');
  const live = await gw.sessions();
  t.is(live.length, 2);
  t.true(live.every((x) => x.splice?.compiled === true), 'the admitted ones are compiled: the refusals were the addon\'s');
  a.sock.destroy();
  b.sock.destroy();
});

it('a listener deleted without ?recursive keeps its compiled sessions; with it, they are cut', async (t) => {
  if (!need(t)) return;
  const up = await echoUpstream(t, 'TCP');
  const upPort = (up.addr as { port: number }).port;
  const gw = await gateway(t, upPort);
  const c = await echoed(t, gw.port, 'before');
  t.is((await api(gw.child.base, 'DELETE', '/api/v1/listeners/in')).status, 200);
  await waitFor(async () => !(await new Promise<boolean>((resolve) => {
    const p = net.connect({ port: gw.port, host: '127.0.0.1' }, () => { p.destroy(); resolve(true); });
    p.on('error', () => resolve(false));
  })), 5000, 'the port closed');
  c.sock.write('after');
  t.is(String(await c.next(6 + 5)), 'beforeafter', 'the session goes on');
  t.like((await gw.sessions())[0], { splice: { compiled: true } });
  // Added again, then deleted with ?recursive: its live sessions are cut.
  const again = await api(gw.child.base, 'POST', '/api/v1/listeners', { listener: { name: 'in2', spec: { protocol: 'TCP', address: '127.0.0.1', port: await freePort() }, rules: [{ action: { route: { destination: 'up' } } }] } });
  t.is(again.status, 200, again.text);
  const port2 = (await api(gw.child.base, 'GET', '/api/v1/listeners/in2')).body.spec.port;
  const c2 = await echoed(t, port2, 'two');
  t.is((await api(gw.child.base, 'DELETE', '/api/v1/listeners/in2?recursive=true')).status, 200);
  t.is(await c2.ended(3000), 'ECONNRESET', 'cut with a reset');
  t.is((await gw.sessions('in2')).length, 0);
  c.sock.end();
  t.is(await c.ended(3000), 'end');
});

it('SIGTERM drains: a live compiled session that ends in time is drained, one that does not is cut at the drain timeout', async (t) => {
  if (!need(t)) return;
  const up = await echoUpstream(t, 'TCP');
  const gw = await gateway(t, (up.addr as { port: number }).port, { admin: { drain_timeout: 1500 } });
  const quick = await echoed(t, gw.port, 'quick');
  const slow = await echoed(t, gw.port, 'slow');
  t.true((await gw.sessions()).every((x) => x.splice?.compiled === true), 'both compiled');
  gw.child.signal('SIGTERM');
  await new Promise((r) => setTimeout(r, 200));
  quick.sock.end();
  t.is(await quick.ended(3000), 'end', 'drained: a clean end');
  t.is(await slow.ended(5000), 'ECONNRESET', 'cut at the timeout');
  t.is(await gw.child.exited, 0);
  t.regex(gw.child.output(), /drain done: 1 sessions drained, 1 cut/);
});
