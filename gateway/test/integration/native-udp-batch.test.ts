// The batched UDP path (recvmmsg/sendmmsg through the sockets addon): used for
// IPv4 session sockets when the addon is built, with the Channel semantics of
// the plain path (dataplane/retry/loadbalance tests run on it too).

import test, { type ExecutionContext } from 'ava';
import dgram from 'node:dgram';
import fs from 'node:fs';
import { BatchedUdpChannel, SharedUdpFlow } from '../../src/protocols/udp/batch.js';
import { UdpChannel } from '../../src/protocols/udp/channel.js';
import { NativeSocket } from '../../src/native/fdsocket.js';
import { socketsAddon } from '../../src/native/sockets.js';
import { api, echo, freePort, nextMessage, peer, startGw, udpBound, udpClient, waitFor } from './helpers.js';
import { needAddon } from './native-helpers.js';

// These tests are about UDP sessions in JavaScript (the batched path, the port
// quarantine, a session's links); compiled UDP listeners have native-udp-forwarder.test.ts.
process.env.L7MP_UDP_COMPILED = 'off';


/** A datagram echo in this process on a free port, closed with the test (socat's flow echo merges a burst: its PIPE is a byte stream). */
async function datagramEcho(t: ExecutionContext): Promise<number> {
  const port = await freePort();
  const sock = dgram.createSocket('udp4');
  sock.on('message', (m, r) => sock.send(m, r.port, r.address));
  await new Promise<void>((r) => sock.bind(port, '127.0.0.1', () => r()));
  t.teardown(() => sock.close());
  return port;
}

function udpRoute(port: number): unknown {
  return [{ action: { route: { destination: { name: 'up', spec: { protocol: 'UDP', port }, endpoints: [{ spec: { address: '127.0.0.1' } }] } } } }];
}

test('UDP sessions run on the batched path: the listener side is a flow of the shared socket, the cluster side a BatchedUdpChannel; a burst comes back whole and in order', async (t) => {
  if (!needAddon(t)) return;
  if (process.env.L7MP_UDP_BATCH === 'off') {
    // Told off explicitly: nothing to test here; under CI that is a mistake.
    if (process.env.CI === 'true') t.fail('L7MP_UDP_BATCH=off under CI=true: the batched path goes untested');
    else { t.log('skipped: L7MP_UDP_BATCH=off'); t.pass(); }
    return;
  }
  const up = await datagramEcho(t);
  const port = await freePort();
  const { gw } = await startGw(t, { listeners: [{ name: 'u', spec: { protocol: 'UDP', address: '127.0.0.1', port }, rules: udpRoute(up) }] });
  const c = await udpClient();
  t.teardown(() => c.close());
  // Establish the flow with one round trip (the socat flow peer forks on the first datagram).
  await waitFor(async () => {
    c.send('hello', port, '127.0.0.1');
    return nextMessage(c, 1000).catch(() => undefined);
  }, 8000, 'the first echo');
  const s = [...gw.sessions.values()][0]!;
  t.true(s.source.channel instanceof SharedUdpFlow, 'listener side');
  t.true(s.destination?.channel instanceof BatchedUdpChannel, 'cluster side');
  t.false(s.source.channel instanceof UdpChannel);
  const got: number[] = [];
  c.on('message', (m: Buffer) => got.push(m.readUInt32BE(0)));
  // Windows of 20, each waited for: a burst larger than the sockets' receive
  // buffers would measure loopback drops, not the channel.
  const N = 200;
  for (let w = 0; w < N; w += 20) {
    for (let i = w; i < w + 20; i++) {
      const b = Buffer.alloc(64 + (i % 7) * 100);
      b.writeUInt32BE(i, 0);
      c.send(b, port, '127.0.0.1');
    }
    await waitFor(() => got.length >= w + 20 || (got.length > 0 && got[got.length - 1]! >= w + 19), 5000, `window ${w / 20}`)
      .catch((e: Error) => { throw new Error(`${e.message}: ${got.length} of ${w + 20} back`); });
  }
  t.true(got.length >= N * 0.95, `${got.length} of ${N} back`);
  // Loopback under load may drop a few; what arrives is in order and never duplicated.
  t.true(got.every((x, i) => i === 0 || x > got[i - 1]!), `order: ${got.slice(0, 20).join(',')}`);
});

test('batched path: flows that start together are kept apart', async (t) => {
  if (!needAddon(t)) return;
  const up = await freePort();
  await peer(t, echo.udp(up));
  const port = await freePort();
  await startGw(t, { listeners: [{ name: 'u', spec: { protocol: 'UDP', address: '127.0.0.1', port }, rules: udpRoute(up) }] });
  const clients = await Promise.all(Array.from({ length: 8 }, () => udpClient()));
  t.teardown(() => { for (const c of clients) c.close(); });
  const inbox = clients.map(() => [] as string[]);
  clients.forEach((c, i) => c.on('message', (m: Buffer) => inbox[i]!.push(m.toString())));
  for (let round = 0; round < 5; round++) {
    clients.forEach((c, i) => c.send(`client-${i}-${round}`, port, '127.0.0.1'));
  }
  await waitFor(() => inbox.every((x) => x.length >= 3), 8000, 'echoes for every client');
  inbox.forEach((msgs, i) => {
    for (const m of msgs) t.true(m.startsWith(`client-${i}-`), `client ${i} got ${m}`);
  });
});

test('shared listener socket: a second listener on the port is refused; a session outlives its listener deleted without recursive, and the port is free once it ends', async (t) => {
  if (!needAddon(t)) return;
  const up = await freePort();
  await peer(t, echo.udp(up));
  const port = await freePort();
  const { base, gw } = await startGw(t, { listeners: [{ name: 'u', spec: { protocol: 'UDP', address: '127.0.0.1', port }, rules: udpRoute(up) }] });
  const dup = await api(base, 'POST', '/api/v1/listeners', { listener: { name: 'u2', spec: { protocol: 'UDP', address: '127.0.0.1', port }, rules: [{ action: { route: { destination: 'up' } } }] } });
  t.is(dup.status, 409);
  t.regex(JSON.stringify(dup.body), /address already in use/);
  const c = await udpClient();
  t.teardown(() => c.close());
  await waitFor(async () => {
    c.send('one', port, '127.0.0.1');
    return nextMessage(c, 1000).catch(() => undefined);
  }, 8000, 'the first echo');
  t.is((await api(base, 'DELETE', '/api/v1/listeners/u')).status, 200);
  c.send('two', port, '127.0.0.1');
  t.is((await nextMessage(c, 3000)).toString(), 'two', 'the session still runs on the deleted listener\'s socket');
  // A new peer gets no session: the listener is gone.
  const other = await udpClient();
  t.teardown(() => other.close());
  other.send('nobody', port, '127.0.0.1');
  await t.throwsAsync(nextMessage(other, 500));
  t.true(await udpBound(port), 'the port is still held by the session');
  const name = [...gw.sessions.keys()].find((k) => k.startsWith('UDP:'))!;
  t.is((await api(base, 'DELETE', `/api/v1/sessions/${encodeURIComponent(name)}`)).status, 200);
  await waitFor(async () => !(await udpBound(port)), 3000, 'the port released after the last session ended');
});

/** The far end of a forwarder: a plain socket that collects what it is sent, and a native socket connected to it. */
async function forwardedTo(t: ExecutionContext, collect: (m: Buffer) => void): Promise<NativeSocket> {
  const addon = socketsAddon()!;
  const sink = await udpClient();
  t.teardown(() => sink.close());
  sink.on('message', collect);
  const outFd = addon.socket(addon.constants.AF_INET, addon.constants.SOCK_DGRAM, 0);
  addon.connectInet(outFd, '127.0.0.1', sink.address().port);
  const out = new NativeSocket(addon, outFd, 'data', { message() {}, error: (code) => t.fail(`out: ${code}`) });
  t.teardown(() => out.close());
  return out;
}

test('a received batch is forwarded while it is handed out: the first datagram leaves before the second is processed, and the whole batch leaves in order', async (t) => {
  if (!needAddon(t)) return;
  const addon = socketsAddon()!;
  const { AF_INET, SOCK_DGRAM } = addon.constants;
  const got: number[] = [];
  const out = await forwardedTo(t, (m) => got.push(m.readUInt32BE(0)));
  // The forwarder: every datagram read goes straight to `out`; what `out`
  // still holds when the next one is handed out is recorded.
  const seen: { slot: number; held: number }[] = [];
  const inFd = addon.socket(AF_INET, SOCK_DGRAM, 0);
  addon.bindInet(inFd, '127.0.0.1', 0, false);
  const inPort = addon.localAddress(inFd).port!;
  const forwarder = new NativeSocket(addon, inFd, 'data', {
    message(msg, slot) {
      seen.push({ slot, held: out.queued });
      out.send(msg);
    },
    error: (code) => t.fail(`in: ${code}`),
  });
  t.teardown(() => forwarder.close());
  // Queue 16 datagrams before reading starts, so that one recvmmsg takes them all.
  const N = 16;
  const client = await udpClient();
  t.teardown(() => client.close());
  await Promise.all(Array.from({ length: N }, (_, i) => {
    const b = Buffer.alloc(64);
    b.writeUInt32BE(i, 0);
    return new Promise<void>((resolve, reject) => client.send(b, inPort, '127.0.0.1', (err) => (err ? reject(err) : resolve())));
  }));
  forwarder.readStart();
  await waitFor(() => got.length >= N, 5000, `${N} datagrams at the sink`);
  t.deepEqual(got, Array.from({ length: N }, (_, i) => i), 'all of them, in order');
  t.is(Math.max(...seen.map((s) => s.slot)), N - 1, `one batch of ${N} (slots: ${seen.map((s) => s.slot).join(',')})`);
  // Held back until the batch was done, datagram i would find i others waiting.
  t.is(seen[1]!.held, 0, 'the first datagram left before the second was handed out');
  t.true(seen.every((s) => s.slot === 0 || s.held < s.slot), `held per slot: ${seen.map((s) => s.held).join(',')}`);
});

test('small batches read from several sockets in one poll phase leave together: what they send to one socket waits for the turn\'s flush', async (t) => {
  if (!needAddon(t)) return;
  const addon = socketsAddon()!;
  const { AF_INET, SOCK_DGRAM } = addon.constants;
  const got: string[] = [];
  const out = await forwardedTo(t, (m) => got.push(m.toString()));
  // Two forwarders (as two upstream sockets of UDP sessions answering through the
  // listener's one socket): what `out` holds when each hands its datagram on.
  const held: number[] = [];
  const client = await udpClient();
  t.teardown(() => client.close());
  const forwarders = ['a', 'b'].map((tag) => {
    const fd = addon.socket(AF_INET, SOCK_DGRAM, 0);
    addon.bindInet(fd, '127.0.0.1', 0, false);
    const port = addon.localAddress(fd).port!;
    const f = new NativeSocket(addon, fd, 'data', {
      message(msg) {
        held.push(out.queued);
        out.send(msg);
      },
      error: (code) => t.fail(`${tag}: ${code}`),
    });
    t.teardown(() => f.close());
    return { f, port, tag };
  });
  // Both readable before either is watched, so that one epoll wait reports both.
  for (const { port, tag } of forwarders) {
    await new Promise<void>((resolve, reject) => client.send(tag, port, '127.0.0.1', (err) => (err ? reject(err) : resolve())));
  }
  for (const { f } of forwarders) f.readStart();
  await waitFor(() => got.length >= 2, 5000, 'both datagrams at the sink');
  t.deepEqual([...got].sort(), ['a', 'b']);
  // Flushed at the end of each batch, the second would find nothing held.
  t.deepEqual(held, [0, 1], 'the first batch\'s datagram was still queued when the second batch was handed out');
});

test.serial('200 UDP sessions on the batched path, deleted through the API, give back every UDP descriptor; new sessions after them reuse the addon\'s socket numbers and still echo', async (t) => {
  if (!needAddon(t)) return;
  const up = await datagramEcho(t);
  const port = await freePort();
  const { base, gw } = await startGw(t, { listeners: [{ name: 'u', spec: { protocol: 'UDP', address: '127.0.0.1', port }, rules: udpRoute(up) }] });
  // This process's UDP sockets (the gateway runs in it): its descriptors
  // whose socket inode /proc/net/udp lists. HTTP connections of the API
  // calls come and go on their own and are not counted; serial, so that no
  // other test of this file opens UDP sockets meanwhile.
  const udpFds = () => {
    const inodes = new Set(fs.readFileSync('/proc/net/udp', 'utf8').split('\n').slice(1).map((l) => l.trim().split(/\s+/)[9]).filter(Boolean));
    let n = 0;
    for (const f of fs.readdirSync('/proc/self/fd')) {
      try {
        const m = /^socket:\[(\d+)\]$/.exec(fs.readlinkSync(`/proc/self/fd/${f}`));
        if (m !== null && inodes.has(m[1]!)) n++;
      } catch { /* closed meanwhile */ }
    }
    return n;
  };
  const roundTrip = async (n: number) => {
    const clients = await Promise.all(Array.from({ length: n }, () => udpClient()));
    await Promise.all(clients.map((c, i) => waitFor(async () => {
      c.send(`s${i}`, port, '127.0.0.1');
      return nextMessage(c, 1000).catch(() => undefined);
    }, 8000, `echo ${i}`)));
    await Promise.all(clients.map((c) => new Promise<void>((r) => c.close(() => r()))));
  };
  const deleteAll = async () => {
    for (const s of [...gw.sessions.values()]) t.is((await api(base, 'DELETE', `/api/v1/sessions/${encodeURIComponent(s.name)}`)).status, 200);
    await waitFor(() => gw.sessions.size === 0, 5000, 'every session gone');
  };
  await roundTrip(1); // the first session makes what the listener and the addon keep for good
  await deleteAll();
  const before = udpFds();
  const N = 200;
  await roundTrip(N);
  t.is(gw.sessions.size, N, 'one session per client');
  t.is(udpFds(), before + N, 'an upstream socket each while open');
  await deleteAll();
  t.is(udpFds(), before, 'every upstream socket closed with its session');
  // The freed numbers serve new sockets: they read, send and close as the first ones did.
  await roundTrip(20);
  t.is(gw.sessions.size, 20);
  t.is(udpFds(), before + 20);
  await deleteAll();
  t.is(udpFds(), before);
});
