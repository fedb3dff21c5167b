// Sync holds what a member sends while it is alone in its group and hands it
// to the first peer that joins (as l7mp does), within bounds.

import test, { type ExecutionContext } from 'ava';
import dgram from 'node:dgram';
import { Refusals } from '../../src/observe/refusals.js';
import { SyncCluster, SYNC_BUFFER } from '../../src/protocols/sync/index.js';
import type { SessionView } from '../../src/protocols/types.js';
import { api, captureLogger as capture, freePort, nextMessage, startGw, udpClient, waitFor } from './helpers.js';

async function client(t: ExecutionContext): Promise<dgram.Socket> {
  const s = await udpClient();
  t.teardown(() => new Promise<void>((r) => { try { s.close(() => r()); } catch { r(); } }));
  return s;
}

function bridgeListener(name: string, port: number) {
  return {
    name,
    spec: { protocol: 'UDP', address: '127.0.0.1', port },
    rules: [{ action: { rewrite: [{ path: '/labels/room', value: 'r1' }], route: { destination: 'sync' } } }],
  };
}

test('two UDP listeners bridged by Sync: the first datagram, sent before the peer joined, arrives', async (t) => {
  const [pa, pb] = [await freePort(), await freePort()];
  const gw = await startGw(t, {
    clusters: [{ name: 'sync', spec: { protocol: 'Sync', query: 'labels/room' } }],
    listeners: [bridgeListener('udp-a', pa), bridgeListener('udp-b', pb)],
  });
  const a = await client(t);
  const b = await client(t);
  a.send(Buffer.from('first, before b'), pa, '127.0.0.1');
  // a's session is in the group, alone, before b sends anything.
  await waitFor(async () => {
    const r = await api(gw.base, 'GET', '/api/v1/sessions');
    return Array.isArray(r.body) && r.body.some((s: any) => s.source?.origin === 'udp-a' && s.status === 'CONNECTED');
  }, 3000, "a's session to connect");
  const atB = nextMessage(b, 3000);
  const atA = nextMessage(a, 3000);
  b.send(Buffer.from('hello from b'), pb, '127.0.0.1');
  t.is((await atB).toString(), 'first, before b', 'the held datagram reaches the peer once it joins');
  t.is((await atA).toString(), 'hello from b');
  // And from then on both ways, each datagram once.
  const again = nextMessage(b, 3000);
  a.send(Buffer.from('second'), pa, '127.0.0.1');
  t.is((await again).toString(), 'second');
});


const session = (name: string): SessionView => ({ name, listener: 'l-in', metadata: { room: 'x' }, priv: {} });

test('Sync holds at most SYNC_BUFFER.messages per group; the rest is refused, counted and logged once', async (t) => {
  const { log, lines } = capture();
  const refusals = new Refusals(log);
  const sync = new SyncCluster('room', 'sync', refusals);
  const a = await sync.connect({ endpoint: undefined, session: session('a'), timeoutMs: 1000 });
  const extra = 5;
  for (let i = 0; i < SYNC_BUFFER.messages + extra; i++) a.send(Buffer.from(`m${i}`));
  t.is(refusals.total('sync_buffer'), extra);
  t.is(lines.filter((l) => l.reason === 'sync_buffer').length, 1, 'logged once, not per message');
  t.is(lines[0]!.listener, 'l-in');
  const b = await sync.connect({ endpoint: undefined, session: session('b'), timeoutMs: 1000 });
  const got: string[] = [];
  b.setSink({ data: (c) => got.push(Buffer.from(c).toString()), end: () => undefined });
  t.is(got.length, SYNC_BUFFER.messages);
  t.is(got[0], 'm0', 'the oldest are kept: a late peer needs the start of the conversation');
  t.is(got.at(-1), `m${SYNC_BUFFER.messages - 1}`);
  t.is(sync.buffered, 0, 'handed over, nothing held any more');
  a.close();
  b.close();
});

test('Sync bounds bytes per group and per cluster, and frees what a group held when its last member leaves', async (t) => {
  const refusals = new Refusals(capture().log);
  const sync = new SyncCluster('room', 'sync', refusals, { messages: 100, bytes: 1000, clusterBytes: 1200 });
  const inRoom = (name: string, room: string): SessionView => ({ name, metadata: { room }, priv: {} });
  const a = await sync.connect({ endpoint: undefined, session: inRoom('a', 'r1'), timeoutMs: 1000 });
  a.send(new Uint8Array(600));
  a.send(new Uint8Array(600)); // over the group's 1000 bytes
  t.is(refusals.total('sync_buffer'), 1);
  const c = await sync.connect({ endpoint: undefined, session: inRoom('c', 'r2'), timeoutMs: 1000 });
  c.send(new Uint8Array(800)); // 600 + 800 over the cluster's 1200
  t.is(refusals.total('sync_buffer'), 2);
  t.is(sync.buffered, 600);
  a.close();
  t.is(sync.buffered, 0, 'the group is gone with its last member, and so is what it held');
  c.send(new Uint8Array(800));
  t.is(sync.buffered, 800);
  c.close();
});
