import test from 'ava';
import { Refusals } from '../../src/observe/refusals.js';
import { captureLogger as capture } from '../capture-log.js';

test('a flood of refusals is counted in full and logged once per reason per interval', (t) => {
  const { log, lines } = capture();
  let now = 1_000;
  const r = new Refusals(log, 10_000, () => now);
  for (let i = 0; i < 5000; i++) r.refuse('flow_rate', 'udp-in', { source: `127.0.0.1:${i}` });
  r.refuse('header_depth', 'js-in');
  t.is(r.total('flow_rate'), 5000);
  t.is(r.total('header_depth'), 1);
  t.is(lines.filter((l) => l.reason === 'flow_rate').length, 1, 'one line for 5000 refusals');
  t.is(lines.filter((l) => l.reason === 'header_depth').length, 1, 'another reason has its own interval');
  now += 10_000;
  r.refuse('flow_rate', 'udp-in');
  const flow = lines.filter((l) => l.reason === 'flow_rate');
  t.is(flow.length, 2, 'logged again after the interval');
  t.is(flow[1]!.suppressed_since_last_log, 4999, 'the second line says how many were not logged');
  t.deepEqual([...r.rows()].map((x) => [x.reason, x.listener, x.count]), [['flow_rate', 'udp-in', 5001], ['header_depth', 'js-in', 1]]);
});

test('a deleted listener\'s counts can be forgotten; the others stay', (t) => {
  const { log } = capture();
  const r = new Refusals(log, 10_000, () => 0);
  r.refuse('flow_rate', 'gone');
  r.refuse('listener_sessions', 'gone');
  r.refuse('flow_rate', 'kept');
  r.refuse('body_size');
  t.deepEqual([...r.listeners()].sort(), ['gone', 'kept']);
  r.forget('gone');
  t.deepEqual([...r.rows()].map((x) => [x.reason, x.listener, x.count]), [['flow_rate', 'kept', 1], ['body_size', '', 1]]);
});
