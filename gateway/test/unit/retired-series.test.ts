import test from 'ava';
import { RetiredSeries } from '../../src/observe/retired-series.js';

test('a name goes once it has been neither configured nor live for the retention; one that comes back starts over', (t) => {
  const r = new RetiredSeries(1000, 100);
  const kept = new Set(['a', 'b', 'c']);
  const names = new Set(['a', 'b', 'c']); // the names that have series: a retired one has none left
  const pick = (now: number) => {
    const out = r.pick('listener', names, (n) => kept.has(n), now);
    for (const n of out) names.delete(n);
    return out;
  };
  t.deepEqual(pick(0), []);
  kept.delete('a');
  kept.delete('b');
  t.deepEqual(pick(100), [], 'first seen gone: the retention starts');
  t.deepEqual(pick(1099), [], 'not before the retention is over');
  kept.add('b'); // created again (or a live session showed up)
  t.deepEqual(pick(1100), ['a']);
  kept.delete('b');
  t.deepEqual(pick(1200), [], 'b starts over');
  t.deepEqual(pick(2199), []);
  t.deepEqual(pick(2200), ['b']);
  t.deepEqual(pick(9000), [], 'c is configured');
  t.deepEqual(r.pick('cluster', ['a'], () => false, 9000), [], 'kinds are apart: a cluster named like a retired listener starts its own retention');
});

test('checks are due at most once per interval', (t) => {
  const r = new RetiredSeries(1000, 100);
  t.true(r.due(0));
  r.checked(0);
  t.false(r.due(99));
  t.true(r.due(100));
});
