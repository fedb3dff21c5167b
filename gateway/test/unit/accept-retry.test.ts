import test from 'ava';
import { ACCEPT_LOG_EVERY_MS, AcceptRetry } from '../../src/native/accept-retry.js';
import { captureLogger as capture } from '../capture-log.js';

test('failing accepts pause and restart once, and are logged once per interval with the count', async (t) => {
  const { log, lines } = capture();
  let now = 5_000;
  let restarts = 0;
  let restarted: () => void = () => undefined;
  const r = new AcceptRetry(log, 'tcp-in', 'TCP', () => { restarts++; restarted(); }, () => now);
  // A process out of descriptors: every accept of a burst fails.
  for (let i = 0; i < 1000; i++) r.failure('EMFILE');
  t.is(lines.length, 1, 'one line for 1000 failures');
  t.is(lines[0]!.listener, 'tcp-in');
  t.is(lines[0]!.code, 'EMFILE');
  // The retry timer is unref'd (it must not hold a stopping gateway open): keep this process up meanwhile.
  const keep = setInterval(() => undefined, 1000);
  t.teardown(() => clearInterval(keep));
  await new Promise<void>((resolve) => { restarted = resolve; });
  t.is(restarts, 1, 'one restart after the pause, not one per failure');
  now += ACCEPT_LOG_EVERY_MS;
  r.failure('EMFILE');
  t.is(lines.length, 2, 'logged again after the interval');
  t.is(lines[1]!.failed_since_last_log, 1000, 'the 999 not logged and this one');
  r.cancel();
  await new Promise((resolve) => setTimeout(resolve, 300));
  t.is(restarts, 1, 'a cancelled retry (the listener stopped) does not watch the socket again');
});
