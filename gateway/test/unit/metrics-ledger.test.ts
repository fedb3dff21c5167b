// workers/metrics-ledger.ts on real prom-client registries: a dead worker's
// counters and histograms stay in the sum, its gauges and per-session series
// go, and its live sessions are counted as ended with an error.

import test from 'ava';
import { AggregatorRegistry, Counter, Gauge, Histogram, Registry } from 'prom-client';
import { GatewayMetrics } from '../../src/observe/metrics.js';
import { WorkerMetricsLedger, ledgerKeeps, type MetricJson } from '../../src/workers/metrics-ledger.js';

/** A full collection filtered as the poll's answer is (the worker collects only these). */
const ledgerPart = (metrics: MetricJson[]): MetricJson[] => metrics.filter((m) => ledgerKeeps(String(m.type), m.name));

function worker(sessions: number, active: number) {
  const registry = new Registry();
  const registers = [registry];
  new Counter({ name: 'l7mp_listener_sessions_total', help: 'h', labelNames: ['listener'], registers }).inc({ listener: 'a' }, sessions);
  new Counter({ name: 'l7mp_sessions_ended_total', help: 'h', labelNames: ['reason'], registers }).inc({ reason: 'completed' }, sessions - active);
  new Gauge({ name: 'l7mp_listener_sessions_active', help: 'h', labelNames: ['listener'], registers }).set({ listener: 'a' }, active);
  new Counter({ name: 'session_byte_counter_total', help: 'h', labelNames: ['sessionName'], registers }).inc({ sessionName: 's1' }, 5);
  const h = new Histogram({ name: 'l7mp_session_duration_seconds', help: 'h', buckets: [1], registers });
  for (let i = 0; i < sessions - active; i++) h.observe(0.5);
  return registry;
}

async function exposed(lists: unknown[][]): Promise<string> {
  return AggregatorRegistry.aggregate(lists as MetricJson[][]).metrics();
}

const sample = (text: string, series: string): number | undefined => {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.split(' ')[1]);
};

test('a dead worker\'s counters stay, its gauges go, its live sessions end with an error', async (t) => {
  const ledger = new WorkerMetricsLedger();
  const w1 = await worker(10, 4).getMetricsAsJSON() as MetricJson[];
  ledger.record(1, ledgerPart(w1));
  t.is(ledger.died(1), 4);
  const restarted = await worker(3, 1).getMetricsAsJSON() as MetricJson[];
  const text = await exposed([restarted, ...ledger.bases()]);
  t.is(sample(text, 'l7mp_listener_sessions_total{listener="a"}'), 13);
  t.is(sample(text, 'l7mp_sessions_ended_total{reason="completed"}'), 8);
  t.is(sample(text, 'l7mp_sessions_ended_total{reason="error"}'), 4);
  t.is(sample(text, 'l7mp_session_duration_seconds_count'), 8);
  t.is(sample(text, 'l7mp_session_duration_seconds_bucket{le="1"}'), 8);
  t.is(sample(text, 'l7mp_listener_sessions_active{listener="a"}'), 1, 'only the live worker\'s sessions');
  t.is(sample(text, 'session_byte_counter_total{sessionName="s1"}'), 5, 'per-session series only from the live worker');

  // A second death of the slot adds to its base; a death without any copy adds nothing.
  ledger.record(1, restarted);
  t.is(ledger.died(1), 1);
  t.is(ledger.died(2), 0);
  const again = await exposed(ledger.bases());
  t.is(sample(again, 'l7mp_listener_sessions_total{listener="a"}'), 13);
  t.is(sample(again, 'l7mp_sessions_ended_total{reason="error"}'), 5);
  t.is(sample(again, 'l7mp_listener_sessions_active{listener="a"}'), undefined);
  t.is(ledger.bases().length, 2);
});

test('the poll\'s part holds the monotonic series and the active gauge only', async (t) => {
  const part = ledgerPart(await worker(2, 1).getMetricsAsJSON() as MetricJson[]).map((m) => m.name).sort();
  t.deepEqual(part, ['l7mp_listener_sessions_active', 'l7mp_listener_sessions_total', 'l7mp_session_duration_seconds', 'l7mp_sessions_ended_total']);
});

test('a worker collects for the poll only what the ledger keeps: the same series as the full set filtered, and no gauge is collected', async (t) => {
  const m = new GatewayMetrics(); // with prom-client's process metrics, process_open_fds among them
  let gaugeCollects = 0;
  new Gauge({ name: 'probe_gauge', help: 'h', registers: [m.registry], collect() { gaugeCollects++; } });
  const full = await m.metricsJson();
  t.is(gaugeCollects, 1);
  t.true(full.some((x) => x.name === 'process_open_fds'));
  const polled = await m.metricsJson(ledgerKeeps);
  t.is(gaugeCollects, 1, 'the poll ran no gauge\'s collect()');
  const names = (l: MetricJson[]) => l.map((x) => x.name).sort();
  t.deepEqual(names(polled), names(ledgerPart(full)));
  t.true(polled.some((x) => x.name === 'l7mp_listener_sessions_active'));
  t.false(polled.some((x) => x.name === 'process_open_fds' || x.name === 'session_byte_counter_total'));
  // The l7mp series themselves (no traffic here: their values do not move between the two collections).
  const l7mp = (l: MetricJson[]) => l.filter((x) => x.name.startsWith('l7mp_')).map((x) => [x.name, x.type, x.values]);
  t.deepEqual(l7mp(polled), l7mp(ledgerPart(full)));
});

test('a base drops the series of a deleted listener or cluster once no live worker shows the name; others stay', async (t) => {
  const registry = new Registry();
  const registers = [registry];
  const listeners = new Counter({ name: 'l7mp_listener_sessions_total', help: 'h', labelNames: ['listener'], registers });
  const clusters = new Counter({ name: 'cluster_requests_total', help: 'h', labelNames: ['clusterName'], registers });
  const durations = new Histogram({ name: 'l7mp_session_duration_seconds', help: 'h', labelNames: ['listener', 'cluster'], buckets: [1], registers });
  for (const l of ['kept', 'gone', 'shown']) listeners.inc({ listener: l }, 2);
  clusters.inc({ clusterName: 'gone-c' }, 3);
  clusters.inc({ clusterName: 'kept-c' }, 3);
  durations.observe({ listener: 'kept', cluster: 'gone-c' }, 0.5);
  const ledger = new WorkerMetricsLedger();
  ledger.record(1, await registry.getMetricsAsJSON() as MetricJson[]);
  ledger.died(1);
  // The live worker 2 still shows "shown" (deleted, within its retention).
  const live = new Registry();
  new Counter({ name: 'l7mp_listener_sessions_total', help: 'h', labelNames: ['listener'], registers: [live] }).inc({ listener: 'shown' }, 1);
  ledger.record(2, await live.getMetricsAsJSON() as MetricJson[]);
  const existing = new Set(['listener\0kept', 'cluster\0kept-c']);
  const dropped = ledger.retire((kind, name) => existing.has(`${kind}\0${name}`));
  const text = await exposed(ledger.bases());
  t.is(sample(text, 'l7mp_listener_sessions_total{listener="kept"}'), 2);
  t.is(sample(text, 'l7mp_listener_sessions_total{listener="shown"}'), 2, 'a deleted name a live worker still shows stays');
  t.is(sample(text, 'l7mp_listener_sessions_total{listener="gone"}'), undefined);
  t.is(sample(text, 'cluster_requests_total{clusterName="gone-c"}'), undefined);
  t.is(sample(text, 'cluster_requests_total{clusterName="kept-c"}'), 3);
  t.false(text.includes('cluster="gone-c"'), 'a histogram row with a deleted cluster goes, though its listener lives');
  t.is(sample(text, 'l7mp_sessions_ended_total{reason="error"}'), 0, 'series without a listener or cluster stay');
  // gone, gone-c, and the histogram's bucket rows (le=1, +Inf), sum and count of the gone-c row.
  t.is(dropped, 2 + 4);
  // Once the live worker no longer shows it either, it goes too.
  ledger.record(2, []);
  t.is(ledger.retire((kind, name) => existing.has(`${kind}\0${name}`)), 1);
  t.is(sample(await exposed(ledger.bases()), 'l7mp_listener_sessions_total{listener="shown"}'), undefined);
});
