// The conformance suite's AF_PACKET framing (conformance/l2.ts): what the
// clients put in front of payloads and take off what comes back. The suite's
// AF_PACKET cells compare bare payloads, so a bug here would hide (or fake) a
// gateway bug: checked on its own, without a gateway or a veth pair.

import test from 'ava';
import { Inbox, type ClientSession } from '../../../conformance/clients.js';
import { ETH_HLEN, framedListener, TO_HOST, TO_PEER, unframe } from '../../../conformance/l2.js';
import type { ListenerPeer, SessionListenerPeer } from '../../../conformance/peers.js';
import { payload } from '../../../conformance/util.js';

test('unframe: one frame, either direction, loses exactly its header', (t) => {
  const p = payload(100, 3);
  t.true(unframe(Buffer.concat([TO_HOST, p])).equals(p));
  t.true(unframe(Buffer.concat([TO_PEER, p])).equals(p));
  // Not a header of ours (another ethertype): nothing is taken off.
  const other = Buffer.from(TO_HOST);
  other.writeUInt16BE(0x0800, 12);
  t.is(unframe(Buffer.concat([other, p])).length, ETH_HLEN + p.length);
});

test('unframe: frames merged by a byte stream on the way come back as their payloads in order', (t) => {
  const a = payload(1, 1);
  const b = payload(4000, 2);
  const c = payload(64, 3);
  const merged = Buffer.concat([TO_PEER, a, TO_HOST, b, TO_HOST, c]);
  t.true(unframe(merged).equals(Buffer.concat([a, b, c])));
});

/** A fake byte-stream listener: records what was sent, and lets the test push what "came back". */
function fakeListener(): { peer: SessionListenerPeer; sent: Buffer[]; inbox: () => Inbox } {
  const sent: Buffer[] = [];
  let box: Inbox | undefined;
  const peer: SessionListenerPeer = {
    mode: 'session',
    spec: () => ({}),
    maxMessage: Infinity,
    halfClose: true,
    hashKey: 'x',
    sources: [],
    representative: 'TCP',
    async open(): Promise<ClientSession> {
      box = new Inbox();
      return { inbox: box, send: (b) => { sent.push(b); }, close: async () => undefined };
    },
  };
  return { peer, sent, inbox: () => box! };
}

test('framedListener over a byte stream: headers out wherever the chunks are cut, lengths as sent', async (t) => {
  const f = fakeListener();
  const framed = framedListener(f.peer, 'byte') as ListenerPeer;
  t.is(framed.frameOverhead, ETH_HLEN);
  if (framed.mode !== 'session') return t.fail('not a session listener');
  const s = await framed.open({ host: '', port: 0 }, { id: 'x' });
  const msgs = [payload(1, 1), payload(100, 2), payload(5, 3)];
  for (const m of msgs) s.send(m);
  t.is(f.sent.length, 3);
  t.true(f.sent.every((x, i) => x.subarray(0, ETH_HLEN).equals(TO_PEER) && x.subarray(ETH_HLEN).equals(msgs[i]!)));
  // The echo of the stream (the echo peer swapped the outer MACs: TO_HOST), cut at awkward places.
  const stream = Buffer.concat(msgs.map((m) => Buffer.concat([TO_HOST, m])));
  for (const cut of [[3], [14, 15], [20, 21, 50, 129, 130]]) {
    const f2 = fakeListener();
    const fr = framedListener(f2.peer, 'byte');
    if (fr.mode !== 'session') return t.fail('not a session listener');
    const s2 = await fr.open({ host: '', port: 0 }, { id: 'x' });
    for (const m of msgs) s2.send(m);
    let at = 0;
    for (const c of [...cut, stream.length]) {
      s2.inbox.push(stream.subarray(at, c));
      at = c;
    }
    t.true(s2.inbox.concat().equals(Buffer.concat(msgs)), `cut at ${cut.join(',')}`);
  }
  // More than was sent is handed on as it is: the case sees it and fails.
  f.inbox().push(Buffer.concat([stream, Buffer.from('extra')]));
  t.is(s.inbox.concat().toString('latin1').slice(-5), 'extra');
});

test('framedListener over datagrams: a message limit smaller by the header', async (t) => {
  const f = fakeListener();
  const framed = framedListener({ ...f.peer, maxMessage: 65507 }, 'datagram');
  t.is(framed.maxMessage, 65507 - ETH_HLEN);
  if (framed.mode !== 'session') return t.fail('not a session listener');
  const s = await framed.open({ host: '', port: 0 }, { id: 'x' });
  const p = payload(300, 7);
  s.send(p);
  f.inbox().push(Buffer.concat([TO_HOST, p]));
  t.is(s.inbox.chunks.length, 1);
  t.true(s.inbox.chunks[0]!.equals(p));
});
