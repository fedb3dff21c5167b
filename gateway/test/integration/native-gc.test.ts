// The addon's wrappers (Splice, FdSocket) hold their JavaScript callbacks
// while they run, and those callbacks close over the objects that hold the
// wrappers. Once a wrapper is done it must let go, or the cycle runs through
// a GC root and every session it reaches stays in memory for good (the raw
// stream path held ~3 KiB per connection that way). These tests end real
// pairs and sockets, then collect, and ask whether what the callbacks
// reached is gone.

import test from 'ava';
import net from 'node:net';
import { socketsAddon } from '../../src/native/sockets.js';
import { rawAddon, rawPathUnavailable } from '../../src/native/rawstream.js';
import { allCollected } from './gc-helpers.js';
import { waitFor } from './helpers.js';
import { needAddon, needCapability } from './native-helpers.js';

/** A TCP server on loopback that keeps its accepted sockets, in order. */
async function server(t: { teardown(fn: () => void): void }): Promise<{ port: number; accepted: net.Socket[] }> {
  const accepted: net.Socket[] = [];
  const srv = net.createServer({ allowHalfOpen: true }, (s) => { s.on('error', () => undefined); accepted.push(s); });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  t.teardown(() => { for (const s of accepted) s.destroy(); srv.close(); });
  return { port: (srv.address() as net.AddressInfo).port, accepted };
}

test.serial('a Splice pair that ended lets go of its callback: the session object it closed over is collected', async (t) => {
  if (!needCapability(t, rawPathUnavailable())) return;
  const addon = rawAddon()!;
  const Splice = (addon as unknown as { Splice: new (a: unknown, b: unknown, done: (code?: string, side?: number) => void) => { start(): void; close(reset?: boolean): void } }).Splice;
  const srv = await server(t);
  const refs: WeakRef<object>[] = [];
  let ended = 0;
  const N = 50;
  for (let i = 0; i < N; i++) {
    const streams = [0, 1].map(() => new addon.RawStream(addon.connectStream('127.0.0.1', srv.port)));
    for (const s of streams) await new Promise<void>((resolve, reject) => s.waitConnect((code) => (code === undefined ? resolve() : reject(new Error(code)))));
    // What a session is to the pair: an object that holds the Splice and that its callback reaches.
    const session: { splice?: { start(): void; close(reset?: boolean): void }; ballast: number[] } = { ballast: new Array(1000).fill(i) };
    session.splice = new Splice(streams[0], streams[1], () => { ended++; session.ballast.length = 1000; });
    session.splice.start();
    refs.push(new WeakRef(session));
  }
  await waitFor(() => srv.accepted.length === 2 * N, 5000, 'every connection accepted');
  // Half of the pairs end by themselves (both peers close: the callback
  // runs), the other half are closed from JavaScript (no callback).
  for (let i = 0; i < N; i += 2) for (const s of srv.accepted.slice(2 * i, 2 * i + 2)) s.end();
  await waitFor(() => ended === N / 2, 5000, 'the pairs whose peers closed ended');
  for (let i = 1; i < N; i += 2) (refs[i]!.deref() as { splice: { close(): void } }).splice.close();
  await t.notThrowsAsync(allCollected(refs, 'sessions'));
});

test.serial('a closed FdSocket lets go of its callbacks: the object they closed over is collected', async (t) => {
  if (!needAddon(t)) return;
  const addon = socketsAddon()!;
  const c = addon.constants as Record<string, number>;
  const refs: WeakRef<object>[] = [];
  for (let i = 0; i < 50; i++) {
    const fd = addon.socket(c.AF_UNIX!, c.SOCK_DGRAM!, 0);
    const owner: { h?: { close(): void }; ballast: number[] } = { ballast: new Array(1000).fill(i) };
    owner.h = new addon.FdSocket(fd, 0, () => owner.ballast.length, () => owner.ballast.length, () => owner.ballast.length);
    owner.h.close();
    refs.push(new WeakRef(owner));
  }
  await t.notThrowsAsync(allCollected(refs, 'socket owners'));
});
