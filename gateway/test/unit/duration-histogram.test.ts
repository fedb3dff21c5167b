// observe/duration-histogram.ts against prom-client's own Histogram: the same
// observations give the same exposition text and the same JSON for the
// workers' merge, and removed series go.

import test from 'ava';
import { AggregatorRegistry, Histogram, Registry } from 'prom-client';
import { DurationHistogram } from '../../src/observe/duration-histogram.js';

const BOUNDS = [0.005, 0.01, 0.05, 0.1, 0.5, 1, 5];
const NAME = 'l7mp_session_duration_seconds';
// Values on, between and beyond the bounds, for three pairs (one with an empty cluster).
const OBSERVED: [string, string, number][] = [
  ['l1', 'c1', 0], ['l1', 'c1', 0.005], ['l1', 'c1', 0.0051], ['l1', 'c1', 0.7], ['l1', 'c1', 5], ['l1', 'c1', 12.5],
  ['l1', 'c2', 0.05], ['l2', '', 1], ['l2', '', 0.25],
];

function both(): { ours: Registry; theirs: Registry; h: DurationHistogram } {
  const ours = new Registry();
  const theirs = new Registry();
  const h = new DurationHistogram(NAME, 'help text', BOUNDS, [ours]);
  const p = new Histogram({ name: NAME, help: 'help text', labelNames: ['listener', 'cluster'], buckets: BOUNDS, registers: [theirs] });
  for (const [listener, cluster, v] of OBSERVED) {
    h.observe(h.seriesOf(listener, cluster), v);
    p.observe({ listener, cluster }, v);
  }
  return { ours, theirs, h };
}

test('the exposition is prom-client\'s, line for line', async (t) => {
  const { ours, theirs } = both();
  const text = await ours.metrics();
  t.is(text, await theirs.metrics());
  t.true(text.includes(`${NAME}_bucket{le="0.005",listener="l1",cluster="c1"} 2`), text);
  t.true(text.includes(`${NAME}_bucket{le="+Inf",listener="l1",cluster="c1"} 6`), text);
});

test('the workers\' merge sums it as it sums prom-client\'s histogram', async (t) => {
  const { ours, theirs } = both();
  const a = await AggregatorRegistry.aggregate([await ours.getMetricsAsJSON(), await ours.getMetricsAsJSON()]).metrics();
  const b = await AggregatorRegistry.aggregate([await theirs.getMetricsAsJSON(), await theirs.getMetricsAsJSON()]).metrics();
  t.is(a, b);
  t.true(a.includes(`${NAME}_count{listener="l1",cluster="c1"} 12`), a);
});

test('a listener\'s or a cluster\'s series can be removed; the others stay', async (t) => {
  const { ours, h } = both();
  t.deepEqual(h.pairs(), ['l1/c1', 'l1/c2', 'l2/']);
  h.removeCluster('c2');
  h.removeListener('l2');
  t.deepEqual(h.pairs(), ['l1/c1']);
  const text = await ours.metrics();
  t.false(text.includes('c2'));
  t.false(text.includes('l2'));
  t.true(text.includes(`${NAME}_count{listener="l1",cluster="c1"} 6`));
});
