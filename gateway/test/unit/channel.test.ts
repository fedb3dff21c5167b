// BaseChannel's early queue, flow control and once-only close, without
// sockets: what every protocol's channel inherits. MAX_EARLY_QUEUE is 256.

import test from 'ava';
import { LoopChannel } from '../../src/dataplane/channel.js';
import { ProbeChannel, chunk, recorder } from './probe-channel.js';

const QUEUE = 256;
const range = (n: number): number[] => Array.from({ length: n }, (_, i) => i);

test('data and EOF that arrive before the sink is set are held and delivered in order once it is', (t) => {
  const ch = new ProbeChannel('byte');
  for (const i of range(5)) ch.push(chunk(i));
  ch.pushEnd();
  t.is(ch.held(), -1, 'an EOF is held behind the data');
  const sink = recorder();
  ch.setSink(sink);
  t.deepEqual(sink.got, range(5));
  t.is(sink.ends, 1, 'EOF after the data');
  t.is(ch.held(), 0, 'nothing left held');
  ch.push(chunk(9));
  t.deepEqual(sink.got, [...range(5), 9], 'later data goes straight through');
});

test('a paused channel holds data and EOF; resume delivers them in order and resumes the peer', (t) => {
  const ch = new ProbeChannel('byte');
  const sink = recorder();
  ch.setSink(sink);
  ch.pause();
  t.is(ch.pauses, 1);
  ch.pause();
  t.is(ch.pauses, 1, 'pause is idempotent');
  ch.push(chunk(1));
  ch.push(chunk(2));
  ch.pushEnd();
  t.deepEqual(sink.got, [], 'nothing delivered while paused');
  t.is(sink.ends, 0);
  ch.resume();
  t.deepEqual(sink.got, [1, 2]);
  t.is(sink.ends, 1);
  t.is(ch.resumes, 1);
  ch.resume();
  t.is(ch.resumes, 1, 'resume is idempotent');
});

test('a sink that pauses the channel mid-flush stops the flush; the rest waits for resume, in order', (t) => {
  const ch = new ProbeChannel('byte');
  for (const i of range(6)) ch.push(chunk(i));
  ch.pushEnd();
  const sink = recorder((_c, n) => { if (n === 2) ch.pause(); });
  ch.setSink(sink);
  t.deepEqual(sink.got, [0, 1]);
  t.is(sink.ends, 0, 'the EOF stays behind the held data');
  t.is(ch.held(), -1);
  ch.resume();
  t.deepEqual(sink.got, range(6));
  t.is(sink.ends, 1);
});

test('datagram overflow: past the early queue\'s bound, new datagrams are dropped and the peer is never paused', (t) => {
  const ch = new ProbeChannel('datagram');
  for (const i of range(QUEUE + 50)) ch.push(chunk(i));
  t.is(ch.pauses, 0, 'a datagram peer is not held back');
  t.is(ch.held(), QUEUE * 2, 'exactly the bound is held');
  const sink = recorder();
  ch.setSink(sink);
  t.deepEqual(sink.got, range(QUEUE), 'the first datagrams are kept, the later ones dropped');
});

test('byte-stream overflow: at the bound the peer is paused once, nothing is lost, and it resumes after the flush', (t) => {
  const ch = new ProbeChannel('byte');
  const n = QUEUE + 50;
  for (const i of range(n)) ch.push(chunk(i));
  t.is(ch.pauses, 1, 'the peer is held back once, not per chunk');
  t.is(ch.resumes, 0);
  const sink = recorder();
  ch.setSink(sink);
  t.deepEqual(sink.got, range(n), 'every byte arrives, in order');
  t.is(ch.resumes, 1, 'the peer is let go once the queue is empty');
});

test('byte-stream overflow while the session paused the channel: the peer stays paused until resume()', (t) => {
  const ch = new ProbeChannel('byte');
  const sink = recorder();
  ch.setSink(sink);
  ch.pause();
  for (const i of range(QUEUE + 1)) ch.push(chunk(i));
  ch.setSink(sink);
  t.deepEqual(sink.got, [], 'a new sink does not override the pause');
  t.is(ch.resumes, 0);
  ch.resume();
  t.deepEqual(sink.got, range(QUEUE + 1));
  t.true(ch.resumes >= 1, 'the peer is resumed');
});

test('splice handover: the held chunks are taken oldest first and leave the queue', (t) => {
  const ch = new ProbeChannel('byte');
  ch.push(Uint8Array.of(1, 2, 3));
  ch.push(Uint8Array.of(4));
  t.is(ch.held(), 4);
  t.deepEqual(ch.take().map((c) => [...c]), [[1, 2, 3], [4]]);
  t.is(ch.held(), 0);
  t.deepEqual(ch.take(), []);
});

test('close runs the subclass once and tells the close listener once, with the error', (t) => {
  const ch = new ProbeChannel('byte');
  const told: Array<Error | undefined> = [];
  ch.setCloseListener({ closed: (c, err) => { t.is(c, ch); told.push(err); } });
  const boom = new Error('boom');
  ch.close(boom);
  ch.close();
  ch.gone(new Error('later'));
  t.true(ch.closed);
  t.deepEqual(ch.closes, [boom], 'doClose once');
  t.deepEqual(told, [boom], 'the listener once, with the first error');
});

test('a close listener set after the channel closed is still told, once', (t) => {
  const ch = new ProbeChannel('byte');
  ch.gone(new Error('peer reset'));
  t.true(ch.closed, 'the resource going away closes the channel');
  const told: string[] = [];
  const l = { closed: (_c: unknown, err: Error | undefined) => { told.push(err?.message ?? 'none'); } };
  ch.setCloseListener(l);
  ch.setCloseListener(l);
  t.deepEqual(told, ['peer reset']);
});

test('a graceful close that fails while releasing reports that error to the listener', (t) => {
  const ch = new ProbeChannel('byte');
  ch.finishOnClose = false;
  const told: Array<Error | undefined> = [];
  ch.setCloseListener({ closed: (_c, err) => { told.push(err); } });
  ch.close();
  t.deepEqual(told, [], 'not told before the resource is gone');
  const flushErr = new Error('EPIPE while flushing');
  ch.gone(flushErr);
  t.deepEqual(told, [flushErr]);
});

test('drain is forwarded to the drain listener, and to nobody once it is cleared', (t) => {
  const ch = new ProbeChannel('byte');
  let drains = 0;
  ch.setDrainListener({ drain: () => { drains++; } });
  ch.drained();
  ch.setDrainListener(undefined);
  ch.drained();
  t.is(drains, 1);
});

test('LoopChannel: what one side sends the other reads, EOF crosses, and closing one closes both with the error', (t) => {
  const [a, b] = LoopChannel.pair('datagram');
  const atB = recorder();
  b.setSink(atB);
  a.send(chunk(7));
  a.end();
  a.end();
  t.deepEqual(atB.got, [7]);
  t.is(atB.ends, 1, 'EOF once');
  const told: Array<[string, string | undefined]> = [];
  for (const [name, ch] of [['a', a], ['b', b]] as const) ch.setCloseListener({ closed: (_c, err) => { told.push([name, err?.message]); } });
  a.close(new Error('cut'));
  t.true(a.closed && b.closed);
  t.deepEqual(told.sort(), [['a', 'cut'], ['b', 'cut']]);
  t.true(a.send(chunk(8)), 'send after close is a no-op, not a stall');
  t.deepEqual(atB.got, [7]);
});
