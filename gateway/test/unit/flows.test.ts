// Early drop in a UDP flow table (protocols/common/flows.ts), without sockets:
// which flow goes, how far one eviction looks, and the coarse clock it reads.

import test from 'ava';
import { CLOCK_MS, EVICT_MIN_IDLE_MS, EVICT_SCAN, flowClock, pickEvictable, startFlowClock, type EvictableFlow } from '../../src/protocols/common/flows.js';

interface F extends EvictableFlow { id: number }
const flow = (id: number, lastActive: number, replied: boolean): F =>
  ({ id, lastActive, replied, closed: false, close() { (this as { closed: boolean }).closed = true; } });
const isF = (v: unknown): v is F => typeof v === 'object' && v !== null && 'lastActive' in v;
const NOW = 100_000;
const IDLE = NOW - EVICT_MIN_IDLE_MS;

test('early drop picks an idle flow that never got a reply, else the longest idle; busy flows move back, ended ones go', (t) => {
  const now = NOW;
  const m = new Map<number, F | Uint8Array[]>();
  m.set(0, { ...flow(0, 0, true), closed: true });
  m.set(1, flow(1, now, true)); // busy
  m.set(2, flow(2, now - EVICT_MIN_IDLE_MS - 100, true)); // idle, replied
  m.set(3, flow(3, now - EVICT_MIN_IDLE_MS - 900, true)); // idle longer, replied
  m.set(4, []); // a flow still being set up
  t.is((pickEvictable(m, isF, now) as F).id, 3, 'the longest idle');
  t.false(m.has(0), 'the ended flow was deleted');
  t.deepEqual([...m.keys()], [2, 3, 1, 4], 'busy and pending entries moved to the back');
  m.set(5, flow(5, now - EVICT_MIN_IDLE_MS, false)); // idle, never answered
  t.is((pickEvictable(m, isF, now) as F).id, 5, 'never answered goes first');
  const busy = new Map<number, F>();
  for (let i = 0; i < EVICT_SCAN * 2; i++) busy.set(i, flow(i, now, true));
  t.is(pickEvictable(busy, isF, now), undefined, 'nothing idle: no eviction');
  t.is([...busy.keys()][0], EVICT_SCAN, 'the scanned window moved to the back');
});

test('a flow silent for exactly the minimum counts as idle; one millisecond less does not', (t) => {
  t.is(pickEvictable(new Map([[1, flow(1, IDLE + 1, true)]]), isF, NOW), undefined);
  t.is(pickEvictable(new Map([[1, flow(1, IDLE, true)]]), isF, NOW)?.id, 1);
});

test('an unanswered idle flow wins over an older answered one ahead of it in the table', (t) => {
  const m = new Map([[1, flow(1, 0, true)], [2, flow(2, IDLE, false)], [3, flow(3, 0, false)]]);
  t.is(pickEvictable(m, isF, NOW)?.id, 2, 'the first unanswered one seen');
  t.deepEqual([...m.keys()], [1, 2, 3], 'idle flows keep their place');
});

test('one eviction looks at EVICT_SCAN entries at most; the next one looks past them', (t) => {
  const m = new Map<number, F>();
  for (let i = 0; i < EVICT_SCAN; i++) m.set(i, flow(i, NOW, true));
  m.set(EVICT_SCAN, flow(EVICT_SCAN, 0, true));
  t.is(pickEvictable(m, isF, NOW), undefined, 'the idle flow sits past the window');
  t.is([...m.keys()][0], EVICT_SCAN, 'the busy window went to the back');
  t.is(pickEvictable(m, isF, NOW)?.id, EVICT_SCAN, 'so the next eviction finds it');
  t.is(m.size, EVICT_SCAN + 1, 'nothing was lost from the table');
});

test('ended flows cost no scan slot: a head of ended flows is cleared and the idle flow behind it found', (t) => {
  const m = new Map<number, F>();
  for (let i = 0; i < EVICT_SCAN * 3; i++) m.set(i, { ...flow(i, 0, true), closed: true });
  m.set(-1, flow(-1, 0, true));
  t.is(pickEvictable(m, isF, NOW)?.id, -1);
  t.deepEqual([...m.keys()], [-1], 'every ended flow seen was deleted');
});

test('the picked flow is left in the table for its listener to close', (t) => {
  const m = new Map([[1, flow(1, 0, false)]]);
  const f = pickEvictable(m, isF, NOW)!;
  t.is(f.id, 1);
  t.false(f.closed);
  t.true(m.has(1));
});

test('pickEvictable reads the flow clock by default, and the clock ticks once started', async (t) => {
  startFlowClock();
  startFlowClock();
  const m = new Map([[1, flow(1, flowClock.now, true)]]);
  t.is(pickEvictable(m, isF), undefined, 'just active: busy by the flow clock');
  const start = flowClock.now;
  const deadline = Date.now() + 20 * CLOCK_MS;
  while (flowClock.now === start && Date.now() < deadline) await new Promise((r) => setTimeout(r, CLOCK_MS / 2));
  t.true(flowClock.now > start, 'the clock moved on its own');
  t.true(Number.isInteger(flowClock.now) && flowClock.now < 2 ** 30, 'a small integer: a flow holds it without a heap number');
});
