// observe/paced.ts, and the metrics exposition behind it: however many
// scrapes come, collections run one at a time and at least minMs apart, and
// no scrape is answered with a collection older than itself.

import test from 'ava';
import { Gauge } from 'prom-client';
import { Paced } from '../../src/observe/paced.js';
import { EXPOSITION_MIN_MS, GatewayMetrics } from '../../src/observe/metrics.js';

test('callers while a run is in flight share it', async (t) => {
  let runs = 0;
  const p = new Paced(async () => { runs++; await new Promise((r) => setTimeout(r, 20)); return runs; }, 50);
  const all = await Promise.all(Array.from({ length: 20 }, () => p.get()));
  t.is(runs, 1);
  t.deepEqual([...new Set(all)], [1]);
});

test('a caller right after a run waits for the spacing, then gets a new run', async (t) => {
  const starts: number[] = [];
  const ends: number[] = [];
  const p = new Paced(async () => { starts.push(Date.now()); ends.push(Date.now()); return starts.length; }, 50);
  t.is(await p.get(), 1);
  t.is(await p.get(), 2);
  t.is(await p.get(), 3);
  t.true(starts[1]! - ends[0]! >= 49, `second run ${starts[1]! - ends[0]!} ms after the first`); // timers may round down by under 1 ms
  t.true(starts[2]! - ends[1]! >= 49);
});

test('a failed run is shared as a failure, and the next caller runs again', async (t) => {
  let runs = 0;
  const p = new Paced(async () => { runs++; if (runs === 1) throw new Error('boom'); return runs; }, 0);
  const [a, b] = await Promise.allSettled([p.get(), p.get()]);
  t.is(a.status, 'rejected');
  t.is(b.status, 'rejected');
  t.is(await p.get(), 2);
});

test('a burst of scrapes makes one collection; the next scrape after it waits EXPOSITION_MIN_MS and sees new values', async (t) => {
  const m = new GatewayMetrics({ defaultMetrics: false });
  let collects = 0;
  new Gauge({ name: 'probe_collects', help: 'h', registers: [m.registry], collect() { collects++; this.set(collects); } });
  const bodies = await Promise.all(Array.from({ length: 30 }, () => m.exposition()));
  t.is(collects, 1);
  t.true(bodies.every((b) => b.body.includes('probe_collects 1')));
  const t0 = Date.now();
  const next = await m.exposition();
  t.true(Date.now() - t0 >= EXPOSITION_MIN_MS / 2, "the scrape right after a collection waited for the spacing");
  t.is(collects, 2);
  t.true(next.body.includes('probe_collects 2'));
});
