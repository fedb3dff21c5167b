// A worker's death in the metrics (docs/workers.md "Faults in the metrics"):
// two workers hold live TCP sessions, one is SIGKILLed. No summed counter may
// go down, the dead worker's live sessions count as ended with an error, the
// active gauges keep only the survivor's sessions, and after the restart the
// counters still never went down.

import test from 'ava';
import net from 'node:net';
import { startGateway } from '../../src/app.js';
import { api, echo, freePort, peer, tmpPath, unixRoundTrip, waitFor } from './helpers.js';
import { openEchoed, ready, workerPids, workersConfig } from './workers-helpers.js';

interface SessionDump { name: string; worker?: number }

/** The counters' names in an exposition (`# TYPE x counter`; some gauges end in _total too). */
const counterNames = new Set<string>();

/** Every sample of an exposition: `name{labels}` -> value. */
async function scrape(port: number): Promise<Map<string, number>> {
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    const ty = /^# TYPE (\S+) counter$/.exec(line);
    if (ty) counterNames.add(ty[1]!);
    const m = /^([a-zA-Z_:][\w:]*(?:\{.*\})?) (\S+)$/.exec(line);
    if (m) out.set(m[1]!, Number(m[2]));
  }
  return out;
}

/** Counters that must never go down (per-session series vanish with their session, by design). */
const counters = (m: Map<string, number>) => [...m].filter(([k]) => counterNames.has(k.replace(/\{.*$/, '')) && !k.startsWith('session_'));

function notBelow(t: { true(v: boolean, msg?: string): void }, before: Map<string, number>, after: Map<string, number>, when: string): void {
  const down = counters(before).filter(([k, v]) => (after.get(k) ?? 0) < v).map(([k, v]) => `${k}: ${v} -> ${after.get(k)}`);
  t.true(down.length === 0, `${when}, counters went down:\n${down.join('\n')}`);
}

test('a dead worker\'s counters and live sessions stay in the summed metrics', async (t) => {
  const [api1, probes, tcpIn, tcpEcho] = await Promise.all([freePort(), freePort(), freePort(), freePort()]);
  await peer(t, echo.tcp(tcpEcho));
  const gw = await startGateway({
    config: workersConfig(2, api1, probes, {
      listeners: [{ name: 'tcp-in', spec: { protocol: 'TCP', address: '127.0.0.1', port: tcpIn }, rules: [{ action: { route: { destination: 'tcp-echo' } } }] }],
      clusters: [{ name: 'tcp-echo', spec: { protocol: 'TCP', port: tcpEcho }, endpoints: [{ spec: { address: '127.0.0.1' } }] }],
    }),
  });
  t.teardown(() => gw.stop());
  const base = `http://127.0.0.1:${api1}`;

  // Some sessions that completed (so the counters are not all zero) and 20 that stay open.
  for (let i = 0; i < 10; i++) (await openEchoed(tcpIn, t)).destroy();
  const conns: net.Socket[] = [];
  for (let i = 0; i < 20; i++) conns.push((await openEchoed(tcpIn, t)).on('error', () => undefined));
  const closed = new Set<net.Socket>();
  for (const c of conns) c.on('close', () => closed.add(c));
  const sessions = (await api(base, 'GET', '/api/v1/sessions')).body as SessionDump[];
  const workerOf = (c: net.Socket) => sessions.find((x) => x.name.includes(`TCP:127.0.0.1:${c.localPort}-`))?.worker;
  const onW1 = conns.filter((c) => workerOf(c) === 1);
  const onW2 = conns.filter((c) => workerOf(c) === 2);
  t.is(onW1.length + onW2.length, conns.length);
  t.true(onW1.length > 0 && onW2.length > 0, 'sessions on both workers');

  const active = 'l7mp_listener_sessions_active{listener="tcp-in",protocol="TCP"}';
  const clusterActive = 'l7mp_cluster_sessions_active{cluster="tcp-echo",protocol="TCP"}';
  const endedError = 'l7mp_sessions_ended_total{reason="error"}';
  // The completed sessions have been counted once their ends reached the workers.
  await waitFor(async () => (await scrape(probes)).get(active) === 20, 5000, 'the closed sessions ended');
  const before = await scrape(probes);
  t.is(before.get(clusterActive), 20);
  t.true((before.get('l7mp_listener_sessions_total{listener="tcp-in",protocol="TCP"}') ?? 0) >= 30);

  // A hung worker (stopped) does not answer the scrape: its last copy stands in, so nothing goes down.
  const pid = workerPids(gw)[0]!;
  process.kill(pid, 'SIGSTOP');
  let hung: Map<string, number>;
  try {
    hung = await scrape(probes);
    // One session's lookup asks only the worker its name names: a session of
    // worker 2 is answered at once, without waiting out the hung worker 1
    // (2 s); a session of worker 1 gets an error that names it.
    const onTwo = sessions.find((x) => x.worker === 2)!;
    const t0 = Date.now();
    const got = await api(base, 'GET', `/api/v1/sessions/${encodeURIComponent(onTwo.name)}`);
    const ms = Date.now() - t0;
    t.is(got.status, 200, got.text);
    t.is((got.body as SessionDump).name, onTwo.name);
    t.true(ms < 2000, `a worker 2 session was looked up in ${ms} ms while worker 1 was stopped`);
    const onOne = sessions.find((x) => x.worker === 1)!;
    const stuck = await api(base, 'GET', `/api/v1/sessions/${encodeURIComponent(onOne.name)}`);
    t.is(stuck.status, 500, stuck.text);
    t.regex(stuck.text, /worker 1 did not answer/);
  } finally {
    process.kill(pid, 'SIGCONT');
  }
  notBelow(t, before, hung, 'while worker 1 was stopped');
  t.is(hung.get(active), 20);

  process.kill(pid, 'SIGKILL');
  await waitFor(() => onW1.every((c) => closed.has(c)), 5000, 'worker 1\'s connections end');
  await waitFor(async () => (await ready(probes)) === 503, 5000, '/ready 503 after the kill');
  const dead = await scrape(probes);
  notBelow(t, before, dead, 'after the kill');
  t.is(dead.get(endedError), (before.get(endedError) ?? 0) + onW1.length, 'the dead worker\'s live sessions ended with an error');
  t.is(dead.get(active), onW2.length, 'the listener gauge keeps only the surviving worker\'s sessions');
  t.is(dead.get(clusterActive), onW2.length, 'the cluster gauge keeps only the surviving worker\'s sessions');

  await waitFor(async () => (await ready(probes)) === 200, 15000, '/ready 200 after the restart');
  for (let i = 0; i < 10; i++) await openEchoed(tcpIn, t);
  const restarted = await scrape(probes);
  notBelow(t, before, restarted, 'after the restart');
  notBelow(t, dead, restarted, 'after the restart');
  t.is(restarted.get(endedError), dead.get(endedError));
  t.is(restarted.get(active), onW2.length + 10);
});

test('what a dead worker counted for a listener goes from the sums once the listener is deleted and no live worker shows it', async (t) => {
  const [api1, probes, tcpEcho] = await Promise.all([freePort(), freePort(), freePort()]);
  await peer(t, echo.tcp(tcpEcho));
  const sock = tmpPath('faults-one.sock');
  const gw = await startGateway({
    config: workersConfig(2, api1, probes, {
      // A Unix listener runs on worker 1 only: worker 2 never counts it.
      listeners: [{ name: 'one', spec: { protocol: 'UnixDomainSocket', filename: sock }, rules: [{ action: { route: { destination: 'tcp-echo' } } }] }],
      clusters: [{ name: 'tcp-echo', spec: { protocol: 'TCP', port: tcpEcho }, endpoints: [{ spec: { address: '127.0.0.1' } }] }],
    }),
  });
  t.teardown(() => gw.stop());
  for (let i = 0; i < 5; i++) t.is(String(await unixRoundTrip(sock, Buffer.from(`m${i}`))), `m${i}`);
  const series = 'l7mp_listener_sessions_total{listener="one",protocol="UnixDomainSocket"}';
  await waitFor(async () => (await scrape(probes)).get(series) === 5 || undefined, 5000, 'the 5 sessions counted');
  // That scrape recorded worker 1's copy: its counts live on in its slot's base when it dies.
  process.kill(workerPids(gw)[0]!, 'SIGKILL');
  await waitFor(async () => (await ready(probes)) === 200 || undefined, 15_000, 'worker 1 back');
  t.is((await scrape(probes)).get(series), 5, 'the dead worker\'s count stays while the listener exists');
  t.is((await api(`http://127.0.0.1:${api1}`, 'DELETE', '/api/v1/listeners/one')).status, 200);
  // The next poll (every 2 s) retires it: no live worker shows the name.
  await waitFor(async () => !(await scrape(probes)).has(series) || undefined, 8000, 'the deleted listener\'s series to leave the sums');
  t.is((await scrape(probes)).get('l7mp_cluster_sessions_total{cluster="tcp-echo",protocol="TCP"}'), 5, 'the cluster, which still exists, keeps the dead worker\'s count');
});
