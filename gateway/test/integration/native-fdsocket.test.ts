// The addon's FdSocket in the reactor's edge-triggered epoll set: an edge
// comes once, so what it said must not be lost while nobody reads, a read
// that stops at its budget must go on by itself, and a wait for writable
// must end when the peer makes room. Real sockets (Unix datagram, UDP on
// loopback), no mocks.

import test from 'ava';
import dgram from 'node:dgram';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { NativeSocket, type NativeSocketHandler } from '../../src/native/fdsocket.js';
import { socketsAddon, type SocketsAddon } from '../../src/native/sockets.js';
import { spawnAsync, waitFor } from './helpers.js';
import { needAddon } from './native-helpers.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../..');

function collector(): NativeSocketHandler & { got: string[]; errors: string[]; drains: number } {
  const h = {
    got: [] as string[],
    errors: [] as string[],
    drains: 0,
    message(msg: Buffer) { h.got.push(msg.toString()); },
    error(code: string) { h.errors.push(code); },
    drained() { h.drains++; },
  };
  return h;
}

/** Two loop turns: any edge the reactor has for us is dispatched by then. */
const turns = () => new Promise<void>((r) => setImmediate(() => setImmediate(r)));

/** A Unix datagram receiver (not reading yet) and a sender connected to it, each with a collecting handler. */
function unixPair(addon: SocketsAddon) {
  const c = addon.constants as Record<string, number>;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'l7mp-fdsock-'));
  const rx = addon.socket(c.AF_UNIX!, c.SOCK_DGRAM!, 0);
  addon.bindUnix(rx, path.join(dir, 'rx.sock'));
  const tx = addon.socket(c.AF_UNIX!, c.SOCK_DGRAM!, 0);
  addon.connectUnix(tx, path.join(dir, 'rx.sock'));
  const hr = collector();
  const hs = collector();
  const r = new NativeSocket(addon, rx, 'data', hr);
  const s = new NativeSocket(addon, tx, 'data', hs);
  return {
    r, s, hr, hs,
    close() {
      r.close();
      s.close();
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** A UDP socket on 127.0.0.1 with a deep receive queue, not reading yet. */
function udpReceiver(addon: SocketsAddon) {
  const c = addon.constants as Record<string, number>;
  const fd = addon.socket(c.AF_INET!, c.SOCK_DGRAM!, 0);
  addon.bindInet(fd, '127.0.0.1', 0, false);
  addon.setBuffers(fd, 4 << 20, 1 << 16);
  const port = addon.localAddress(fd).port!;
  const h = collector();
  return { port, h, sock: new NativeSocket(addon, fd, 'data', h) };
}

/** Loopback UDP is queued at the receiver by the time send's callback runs. */
async function sendAll(tx: dgram.Socket, port: number, msgs: string[]): Promise<void> {
  for (const m of msgs) await new Promise<void>((res, rej) => tx.send(m, port, '127.0.0.1', (e) => (e ? rej(e) : res())));
}

test('datagrams that arrive while reading is stopped are read at readStart, with nothing else arriving after', async (t) => {
  if (!needAddon(t)) return;
  const { r, s, hr: h, close } = unixPair(socketsAddon()!);
  try {
    r.readStart();
    for (const m of ['a', 'b']) s.send(Buffer.from(m));
    s.flush(); // a Unix datagram is in the receiver's queue when send returns
    await waitFor(() => h.got.length === 2, 5000, 'the first two datagrams');
    r.readStop();
    for (const m of ['c', 'd', 'e']) s.send(Buffer.from(m));
    s.flush();
    await turns();
    t.deepEqual(h.got, ['a', 'b'], 'nothing is read while stopped');
    r.readStart(); // the edge for c, d, e came while stopped and will not come again
    await waitFor(() => h.got.length === 5, 5000, 'the datagrams queued while stopped');
    t.deepEqual(h.got, ['a', 'b', 'c', 'd', 'e']);
    t.deepEqual(h.errors, []);
  } finally {
    close();
  }
});

test('a queue longer than one event\'s read budget (8 reads of 64) is read to the end without another datagram arriving', async (t) => {
  if (!needAddon(t)) return;
  const { port, h, sock: r } = udpReceiver(socketsAddon()!);
  const tx = dgram.createSocket('udp4');
  const N = 1500;
  try {
    await sendAll(tx, port, Array.from({ length: N }, (_, i) => String(i)));
    r.readStart();
    await waitFor(() => h.got.length === N, 5000, `all ${N} datagrams (got ${h.got.length})`);
    t.true(h.got.every((m, i) => m === String(i)), 'in order');
  } finally {
    r.close();
    tx.close();
  }
});

test('a socket with a deep queue does not starve another: a datagram on a second socket is read while the first\'s backlog is still being read', async (t) => {
  if (!needAddon(t)) return;
  const addon = socketsAddon()!;
  const busy = udpReceiver(addon);
  const quiet = udpReceiver(addon);
  const order: string[] = [];
  busy.h.message = (m) => { order.push(`busy:${m.toString()}`); };
  quiet.h.message = (m) => { order.push(`quiet:${m.toString()}`); };
  const tx = dgram.createSocket('udp4');
  const N = 3000;
  try {
    await sendAll(tx, busy.port, Array.from({ length: N }, (_, i) => String(i)));
    await sendAll(tx, quiet.port, ['x']);
    busy.sock.readStart();
    quiet.sock.readStart();
    await waitFor(() => order.length === N + 1, 5000, `every datagram (got ${order.length})`);
    const at = order.indexOf('quiet:x');
    // One turn reads at most 8 batches of 64 from a socket, then the others get theirs.
    t.true(at >= 0 && at <= 8 * 64 * 2, `the quiet socket's datagram came at ${at} of ${N + 1}`);
  } finally {
    busy.sock.close();
    quiet.sock.close();
    tx.close();
  }
});

test('a send that fills the peer\'s queue waits for writable, and drained() comes once the peer reads; every datagram arrives, in order', async (t) => {
  if (!needAddon(t)) return;
  const { r, s, hr, hs, close } = unixPair(socketsAddon()!);
  const N = 3000; // more than a Unix datagram queue holds (net.unix.max_dgram_qlen, 512 by default)
  try {
    for (let i = 0; i < N; i++) s.send(Buffer.from(String(i)));
    s.flush();
    t.true(s.queued > 0, 'the peer\'s queue is full: the rest waits');
    await turns();
    t.is(hs.drains, 0, 'no drained() while the peer does not read');
    r.readStart();
    await waitFor(() => hr.got.length === N, 5000, `all ${N} datagrams (got ${hr.got.length})`);
    t.true(hr.got.every((m, i) => m === String(i)), 'in order');
    await waitFor(() => hs.drains > 0, 5000, 'drained()');
    t.deepEqual([...hr.errors, ...hs.errors], []);
  } finally {
    close();
  }
});

test('an ICMP error on a connected UDP socket (port unreachable) ends it with ECONNREFUSED', async (t) => {
  if (!needAddon(t)) return;
  const addon = socketsAddon()!;
  const c = addon.constants as Record<string, number>;
  const probe = dgram.createSocket('udp4');
  await new Promise<void>((res) => probe.bind(0, '127.0.0.1', res));
  const closedPort = probe.address().port;
  await new Promise<void>((res) => probe.close(() => res()));
  const fd = addon.socket(c.AF_INET!, c.SOCK_DGRAM!, 0);
  addon.connectInet(fd, '127.0.0.1', closedPort);
  const h = collector();
  const s = new NativeSocket(addon, fd, 'data', h);
  try {
    s.readStart();
    s.send(Buffer.from('x'));
    await waitFor(() => h.errors.length > 0, 5000, 'the socket error');
    t.deepEqual(h.errors, ['ECONNREFUSED']);
  } finally {
    s.close();
  }
});

test('a worker thread ending with an addon socket still open does not take the process down (the reactor closes with its environment)', async (t) => {
  if (!needAddon(t)) return;
  const r = await spawnAsync(process.execPath, [path.join(root, 'bench/workers/probe-addon-threads.mjs'), '200', 'open'], { timeout: 60_000 });
  t.is(r.status, 0, `probe exited ${r.status} (${r.signal ?? ''}): ${r.stderr.slice(0, 400)}`);
  const out = JSON.parse(r.stdout.trim().split('\n').pop()!) as { afterTerminateAndRestart: { got: number }[]; processAlive: boolean };
  t.true(out.processAlive);
  t.deepEqual(out.afterTerminateAndRestart.map((x) => x.got), [200, 200]);
});

test('a worker thread whose socket callback throws while datagrams keep coming ends alone: the process and its main thread go on (5 threads in turn)', async (t) => {
  if (!needAddon(t)) return;
  // The thread's environment is torn down while its socket still has
  // datagrams queued; libuv runs the reactor once more during that teardown,
  // when JavaScript can no longer run. An exception the addon then cannot
  // throw must be dropped (NODE_API_SWALLOW_UNTHROWABLE_EXCEPTIONS), not
  // abort the process: without it 2 of 3 runs ended in SIGABRT. Unix
  // datagram sockets, not UDP: datagrams sent after the receiver is gone
  // would make ICMP port-unreachable errors, and the kernel's ICMP rate
  // limit is shared with the tests that wait for one.
  const mod = path.join(root, 'dist/gateway/src/native');
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'l7mp-fdsock-thread-'));
  try {
    const r = await spawnAsync(process.execPath, ['--input-type=module', '-e', `
      import { Worker } from 'node:worker_threads';
      import { NativeSocket } from '${mod}/fdsocket.js';
      import { socketsAddon } from '${mod}/sockets.js';
      const a = socketsAddon(); const c = a.constants;
      const body = \`
        import { parentPort, workerData } from 'node:worker_threads';
        import { NativeSocket } from '${mod}/fdsocket.js';
        import { socketsAddon } from '${mod}/sockets.js';
        const a = socketsAddon(); const c = a.constants;
        const fd = a.socket(c.AF_UNIX, c.SOCK_DGRAM, 0); a.bindUnix(fd, workerData);
        let n = 0;
        const s = new NativeSocket(a, fd, 'data', { message() { if (++n === 200) throw new Error('thrown in the thread'); }, error() {} });
        s.readStart();
        parentPort.postMessage('ready');
      \`;
      const out = [];
      for (let i = 0; i < 5; i++) {
        const where = '${dir}/rx-' + i + '.sock';
        out.push(await new Promise((resolve) => {
          const w = new Worker(body, { eval: true, workerData: where });
          let timer; let error = ''; let tx;
          w.on('message', () => {
            const fd = a.socket(c.AF_UNIX, c.SOCK_DGRAM, 0); a.connectUnix(fd, where);
            tx = new NativeSocket(a, fd, 'data', { message() {}, error() {} });
            timer = setInterval(() => { for (let k = 0; k < 50; k++) tx.send(Buffer.from('x')); }, 1);
          });
          w.on('error', (e) => { error = e.message; });
          w.on('exit', (code) => { clearInterval(timer); tx?.close(); resolve({ code, error }); });
        }));
      }
      console.log(JSON.stringify(out));`], { timeout: 30_000 });
    t.is(r.status, 0, `exited ${r.status} (${r.signal ?? ''}): ${r.stderr.slice(0, 300)}`);
    const out = JSON.parse(r.stdout.trim().split('\n').pop()!) as { code: number; error: string }[];
    t.deepEqual(out, Array.from({ length: 5 }, () => ({ code: 1, error: 'thrown in the thread' })));
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('a socket keeps the process alive while it reads or waits to write, as a libuv handle would, and not once stopped or closed', async (t) => {
  if (!needAddon(t)) return;
  // Each child exits on its own only if nothing holds its event loop; a hold
  // the reactor forgot to release would keep it running until the timeout.
  const mod = path.join(root, 'dist/gateway/src/native');
  const run = (body: string) => spawnAsync(process.execPath, ['--input-type=module', '-e', `
    import { NativeSocket } from '${mod}/fdsocket.js';
    import { socketsAddon } from '${mod}/sockets.js';
    const a = socketsAddon(); const c = a.constants;
    const fd = a.socket(c.AF_INET, c.SOCK_DGRAM, 0); a.bindInet(fd, '127.0.0.1', 0, false);
    const h = { message() {}, error() {} };
    const s = new NativeSocket(a, fd, 'data', h);
    ${body}`], { timeout: 3000 });
  for (const body of ['s.readStart(); s.readStop();', 's.readStart(); s.close();', 's.awaitWritable(); s.close();', '']) {
    const r = await run(body);
    t.is(r.status, 0, `"${body}" exits by itself: ${r.signal ?? ''} ${r.stderr.slice(0, 300)}`);
  }
  const held = await run('s.readStart();');
  t.is(held.signal, 'SIGTERM', 'a reading socket keeps the process running (ended by the timeout)');
});

test('a bare socket (fdOpen) calls the callbacks of setCallbacks() with its number, may be closed from inside one, and names nothing after fdClose; before setCallbacks() fdOpen is a TypeError', async (t) => {
  if (!needAddon(t)) return;
  // A fresh process: setCallbacks() is per environment, and this test
  // process's NativeSockets have set them already.
  const mod = path.join(root, 'dist/gateway/src/native');
  const r = await spawnAsync(process.execPath, ['--input-type=module', '-e', `
    import dgram from 'node:dgram';
    import { socketsAddon } from '${mod}/sockets.js';
    const a = socketsAddon(); const c = a.constants;
    const fd = a.socket(c.AF_INET, c.SOCK_DGRAM, 0); a.bindInet(fd, '127.0.0.1', 0, false);
    const port = a.localAddress(fd).port;
    let before = 'opened';
    try { a.fdOpen(fd, 0); } catch (e) { before = e.constructor.name + ': ' + e.message; }
    const slab = Buffer.alloc(a.batchLayout.batch * a.batchLayout.slot);
    const meta = new Int32Array(a.batchLayout.batch * 2);
    a.initBatch(slab, meta, Buffer.alloc(a.batchLayout.batch * a.batchLayout.addr));
    const calls = [];
    a.setCallbacks(
      (id, n) => { calls.push({ id, n, text: slab.subarray(0, meta[0]).toString() }); a.fdClose(id); },
      (id) => calls.push('accepted ' + id), (id) => calls.push('writable ' + id), (id, code) => calls.push('error ' + id + ' ' + code));
    const other = a.socket(c.AF_INET, c.SOCK_DGRAM, 0);
    const first = a.fdOpen(other, 0);
    const id = a.fdOpen(fd, 0);
    a.fdReadStart(id);
    const s = dgram.createSocket('udp4');
    s.send('hello', port, '127.0.0.1', () => setTimeout(() => s.send('again', port, '127.0.0.1', () => s.close()), 100));
    setTimeout(() => {
      const sendAfter = a.fdSend(id, [Buffer.from('x')], 1);
      a.fdClose(first);
      const reused = a.fdOpen(a.socket(c.AF_INET, c.SOCK_DGRAM, 0), 0);
      console.log(JSON.stringify({ before, first, id, calls, sendAfter, reused }));
    }, 400);
  `], { timeout: 10_000 });
  t.is(r.status, 0, r.stderr.slice(0, 400));
  const out = JSON.parse(r.stdout.trim().split('\n').pop()!) as { before: string; first: number; id: number; calls: unknown[]; sendAfter: number; reused: number };
  t.regex(out.before, /^TypeError: .*setCallbacks/);
  t.not(out.id, out.first);
  t.deepEqual(out.calls, [{ id: out.id, n: 1, text: 'hello' }], 'one call, with its number; nothing after its close');
  t.true(out.sendAfter < 0, `a send on a closed number fails (${out.sendAfter})`);
  t.true(out.reused === out.first || out.reused === out.id, `a closed number is reused (${out.reused})`);
});
