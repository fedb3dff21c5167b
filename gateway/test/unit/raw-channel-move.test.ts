// RawStreamChannel's move to Node (protocols/stream/raw-channel.ts), with
// fake addon handles (no socket: what is tested is the queue, and a real
// RawStream cannot be made to fail its release). Channels that get a sink
// and are not paired in the same turn move in one microtask per turn; a move
// that fails ends that channel with its error and neither the others of the
// batch nor later channels are stuck.

import test from 'ava';
import type { RawStreamHandle } from '../../src/native/sockets.js';
import { RawStreamChannel } from '../../src/protocols/stream/raw-channel.js';

function fakeHandle(err: string, log: string[]): RawStreamHandle {
  return {
    fd: -1,
    connectedNow: () => true,
    waitConnect: () => {},
    release: () => {
      log.push(err);
      throw new Error(err);
    },
    close: () => { log.push(`close ${err}`); },
  };
}

const sink = { data: () => {}, end: () => {} };
const turn = () => new Promise<void>((r) => setImmediate(r));

test('mock handles: a failed move closes that channel with its error; the rest of the batch and later channels still move', async (t) => {
  const log: string[] = [];
  const closed: string[] = [];
  const chans = ['a', 'b'].map((n) => {
    const ch = new RawStreamChannel(fakeHandle(n, log), n);
    ch.setCloseListener({ closed: (_c, err) => closed.push(`${n}: ${err?.message}`) });
    return ch;
  });
  for (const ch of chans) ch.setSink(sink);
  t.deepEqual(log, [], 'nothing moves inside the turn that set the sink');
  await turn();
  t.deepEqual(log, ['a', 'b'], 'both moves were tried, the second after the first failed');
  t.deepEqual(closed, ['a: a', 'b: b']);
  t.true(chans.every((c) => c.closed));

  const later = new RawStreamChannel(fakeHandle('c', log), 'c');
  later.setSink(sink);
  await turn();
  t.deepEqual(log.slice(2), ['c'], 'a channel queued after a failed batch still gets its move');
});

test('mock handles: a channel paired or closed before the microtask does not move', async (t) => {
  const log: string[] = [];
  const ch = new RawStreamChannel(fakeHandle('x', log), 'x');
  ch.setSink(sink);
  ch.close();
  await turn();
  t.deepEqual(log, ['close x'], 'closed: the handle is closed, never released');
});
