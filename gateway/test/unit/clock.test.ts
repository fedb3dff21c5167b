// The data plane's clock (dataplane/clock.ts): small integers a field holds
// inline, convertible to wall-clock time; a session's `started` reads it.

import test from 'ava';
import { CLOCK_EPOCH, clockNow, clockSince } from '../../src/dataplane/clock.js';
import { Session, type SessionOwner } from '../../src/dataplane/session.js';
import { ProbeChannel } from './probe-channel.js';

test('clockNow() is a small integer of ms, and CLOCK_EPOCH + clockNow() is the wall clock', (t) => {
  const before = Date.now();
  const now = clockNow();
  const after = Date.now();
  t.true(Number.isInteger(now) && now >= 0 && now < 2 ** 30, String(now));
  t.true(CLOCK_EPOCH + now >= before && CLOCK_EPOCH + now <= after, `${CLOCK_EPOCH + now} within [${before}, ${after}]`);
});

test('a session\'s started is the wall-clock time of its creation', (t) => {
  const owner: SessionOwner = { stageClosed() {}, stageEnded() {} };
  const before = Date.now();
  const s = new Session('s1', 'listener', {}, new ProbeChannel('byte', 'client'), {}, owner);
  const after = Date.now();
  t.true(s.started >= before && s.started <= after, `${s.started} within [${before}, ${after}]`);
  t.is(s.toJSON().started, new Date(s.started).toISOString());
});

test('clockSince(t0) is the ms since an earlier reading, as a small integer', (t) => {
  const t0 = clockNow();
  const d = clockSince(t0 - 500);
  const elapsed = clockNow() - t0;
  t.true(Number.isInteger(d) && d >= 500 && d <= 500 + elapsed, `${d} within [500, ${500 + elapsed}]`);
});
