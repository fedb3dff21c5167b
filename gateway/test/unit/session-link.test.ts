// Session.link() and relink() without sockets: the links carry data both
// ways, count it, carry backpressure, and a reconnected stage is spliced in
// by pointing two links at its new channel (what the retry path relies on).

import test from 'ava';
import { Session, Stage, type SessionOwner } from '../../src/dataplane/session.js';
import type { Channel } from '../../src/dataplane/channel.js';
import { ProbeChannel, chunk, seq } from './probe-channel.js';

interface Calls { closed: Array<[Stage, string | undefined]>; ended: Stage[] }

function owner(): SessionOwner & Calls {
  const calls: Calls = { closed: [], ended: [] };
  return {
    ...calls,
    stageClosed: (_s, stage, err) => { calls.closed.push([stage, err?.message]); },
    stageEnded: (_s, stage) => { calls.ended.push(stage); },
  };
}

/** source -> [ingress...] -> destination, and back through [egress...]. */
function session(opts: { ingress?: Channel[]; egress?: Channel[] } = {}) {
  const src = new ProbeChannel('byte', 'client');
  const dst = new ProbeChannel('byte', 'server');
  const own = owner();
  const s = new Session('s1', 'listener', {}, src, {}, own);
  s.setStages(Object.assign(new Stage('destination', 'cluster'), { channel: dst }),
    (opts.ingress ?? []).map((ch, i) => Object.assign(new Stage('ingress', `in${i}`), { channel: ch })),
    (opts.egress ?? []).map((ch, i) => Object.assign(new Stage('egress', `eg${i}`), { channel: ch })));
  s.link();
  return { s, src, dst, own };
}

const seqs = (ch: ProbeChannel): number[] => ch.sent.map(seq);

test('link(): data flows source -> destination and back, and each direction is counted', (t) => {
  const { s, src, dst } = session();
  t.deepEqual(s.stages().map((x) => x.status), ['READY', 'READY']);
  src.push(chunk(1));
  src.push(Uint8Array.of(0, 2, 99));
  dst.push(chunk(3));
  t.deepEqual(dst.sent.map((c) => c.byteLength), [2, 3]);
  t.deepEqual(seqs(src), [3]);
  t.deepEqual(s.counters(), { ingress: { bytes: 5, packets: 2 }, egress: { bytes: 2, packets: 1 } });
});

test('link(): data that arrived before the session linked is delivered, in order', (t) => {
  const src = new ProbeChannel('byte', 'client');
  src.push(chunk(1));
  src.push(chunk(2));
  const s = new Session('s1', 'listener', {}, src, {}, owner());
  const dst = new ProbeChannel('byte', 'server');
  s.setStages(Object.assign(new Stage('destination', 'cluster'), { channel: dst }), [], []);
  s.link();
  t.deepEqual(seqs(dst), [1, 2]);
});

test('link(): transforms sit in order on each chain', (t) => {
  const inT = new ProbeChannel('byte', 'in-transform');
  const egT = new ProbeChannel('byte', 'eg-transform');
  const { s, src, dst } = session({ ingress: [inT], egress: [egT] });
  src.push(chunk(1));
  t.deepEqual(seqs(inT), [1], 'the source feeds the ingress transform');
  t.deepEqual(dst.sent, []);
  inT.push(chunk(2));
  t.deepEqual(seqs(dst), [2], 'the ingress transform feeds the destination');
  dst.push(chunk(3));
  t.deepEqual(seqs(egT), [3], 'the destination feeds the egress transform');
  egT.push(chunk(4));
  t.deepEqual(seqs(src), [4], 'the egress transform feeds the source');
  t.is(s.links.length, 4);
});

test('backpressure: a full receiver pauses the sender; its drain resumes it', (t) => {
  const { src, dst } = session();
  dst.accept = false;
  src.push(chunk(1));
  t.is(src.pauses, 1, 'the sender is paused when send() says stop');
  src.push(chunk(2));
  t.deepEqual(seqs(dst), [1], 'a paused sender holds what it reads');
  dst.accept = true;
  dst.drained();
  t.is(src.resumes, 1);
  t.deepEqual(seqs(dst), [1, 2], 'the held chunk follows on resume');
});

test('EOF of a stage and the source\'s close are reported to the owner with that stage', (t) => {
  const { s, src, dst, own } = session();
  dst.pushEnd();
  t.deepEqual(own.ended, [s.destination!]);
  src.gone(new Error('reset'));
  t.deepEqual(own.closed, [[s.source, 'reset']]);
});

test('relink(): the new destination gets the traffic both ways, the old one none, and counters go on', (t) => {
  const { s, src, dst, own } = session();
  src.push(chunk(1));
  const dst2 = new ProbeChannel('byte', 'server-2');
  dst2.push(chunk(50)); // the new connection spoke first
  s.relink(s.destination!, dst2);
  t.is(s.destination!.channel, dst2);
  t.is(s.destination!.status, 'READY');
  t.deepEqual(seqs(src), [50], 'what the new channel read before relink reaches the source');
  src.push(chunk(2));
  t.deepEqual(seqs(dst), [1], 'the old channel gets nothing more');
  t.deepEqual(seqs(dst2), [2]);
  dst2.push(chunk(51));
  t.deepEqual(seqs(src), [50, 51]);
  t.deepEqual(s.counters(), { ingress: { bytes: 4, packets: 2 }, egress: { bytes: 4, packets: 2 } });
  dst2.gone(new Error('second reset'));
  t.deepEqual(own.closed, [[s.destination!, 'second reset']], 'the new channel reports to the session');
});

test('relink(): the sender paused for the retry is resumed, and the new channel\'s backpressure reaches it', (t) => {
  const { s, src } = session();
  src.pause(); // what the retry path does while it reconnects
  src.push(chunk(1));
  const dst2 = new ProbeChannel('byte', 'server-2');
  dst2.accept = false;
  s.relink(s.destination!, dst2);
  t.deepEqual(seqs(dst2), [1], 'held data is delivered to the new channel');
  t.true(src.pauses >= 2, 'and its "stop" pauses the sender again');
  src.push(chunk(2));
  t.deepEqual(seqs(dst2), [1]);
  dst2.accept = true;
  dst2.drained();
  t.deepEqual(seqs(dst2), [1, 2], 'the new channel\'s drain resumes the sender');
});

test('relink() of a transform in the middle of a chain keeps its neighbours', (t) => {
  const inT = new ProbeChannel('byte', 'in-transform');
  const { s, src, dst } = session({ ingress: [inT] });
  const inT2 = new ProbeChannel('byte', 'in-transform-2');
  s.relink(s.ingress[0]!, inT2);
  src.push(chunk(1));
  t.deepEqual(seqs(inT2), [1]);
  t.deepEqual(inT.sent, []);
  inT2.push(chunk(2));
  t.deepEqual(seqs(dst), [2]);
  dst.push(chunk(3));
  t.deepEqual(seqs(src), [3], 'the other chain is untouched');
});
