// workers/metrics-ledger.ts on real prom-client registries: a dead worker's
// counters and histograms stay in the sum, its gauges and per-session series
// go, and its live sessions are counted as ended with an error.

import test from 'ava';
import { AggregatorRegistry, Counter, Gauge, Histogram, Registry } from 'prom-client';
import { WorkerMetricsLedger, ledgerPart, type MetricJson } from '../../src/workers/metrics-ledger.js';

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
