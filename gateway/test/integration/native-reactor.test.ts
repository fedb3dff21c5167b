// The reactor's own waits (native/sockets/src/reactor.cc, "Owning the
// wait"): with a data plane busy in the addon, the reactor waits in its own
// epoll set instead of returning to libuv after every batch. What libuv
// watches must still run while it does: a timer, a socket of Node's, an
// immediate set from a callback the reactor ran. Batches that run
// JavaScript (a UDP socket's datagrams) go back to libuv as before: there
// the reactor's own wait measured slower. The load comes from another
// process (an echo server and ping-pong clients), so that this process's
// libuv has nothing to do but what the test gives it.

import test, { type ExecutionContext } from 'ava';
import { spawn } from 'node:child_process';
import net from 'node:net';
import { setTimeout as delay } from 'node:timers/promises';
import { NativeSocket, sourceAddress } from '../../src/native/fdsocket.js';
import { socketsAddon, type SocketsAddon } from '../../src/native/sockets.js';
import { streamListenSocket } from '../../src/protocols/common/reuseport.js';
import { freePort, waitFor } from './helpers.js';
import { needCapability } from './native-helpers.js';

type Addon = SocketsAddon & Required<Pick<SocketsAddon, 'Forwarder' | 'closeStream' | 'reactorStats'>>;

function addon(t: ExecutionContext): Addon | undefined {
  const a = socketsAddon();
  const ok = a !== undefined && typeof a.Forwarder === 'function' && typeof a.reactorStats === 'function';
  if (!needCapability(t, ok ? undefined : 'the sockets addon with Forwarder and reactorStats is not built')) return undefined;
  return a as Addon;
}

function reactor(a: Addon) {
  const s = new Float64Array(5);
  a.reactorStats(s);
  return { waits: s[0], wakeups: s[1], endLibuv: s[2], endWork: s[3], endDeadline: s[4] };
}

// The other process: an echo server (its port printed as "echo N"), then on
// a line from stdin, CONNS clients doing 64-byte ping-pong through PORT for
// MS ms; "done SENT ECHOED BAD" when every client has closed.
const LOAD = `
const net = require('net');
const [port, conns, ms] = process.argv.slice(1).map(Number);
const echo = net.createServer((s) => { s.on('error', () => {}); s.pipe(s); });
echo.listen(0, '127.0.0.1', () => process.stdout.write('echo ' + echo.address().port + '\\n'));
process.stdin.once('data', () => {
  const end = Date.now() + ms;
  let sent = 0, echoed = 0, bad = 0, open = conns;
  for (let i = 0; i < conns; i++) {
    const msg = Buffer.alloc(64, i + 1);
    let got = 0;
    const s = net.connect(port, '127.0.0.1', () => { s.setNoDelay(true); s.write(msg); sent++; });
    s.on('data', (d) => {
      for (const b of d) if (b !== i + 1) bad++;
      got += d.length;
      if (got < 64) return;
      got -= 64;
      echoed++;
      if (Date.now() < end) { s.write(msg); sent++; } else s.end();
    });
    s.on('error', () => { bad++; });
    s.on('close', () => { if (--open === 0) { process.stdout.write('done ' + sent + ' ' + echoed + ' ' + bad + '\\n'); echo.close(); } });
  }
});
`;

/** A reading NativeSocket on a fresh UDP port of 127.0.0.1 (unconnected: sends name their address), closed at teardown. */
function udpSocket(t: ExecutionContext, a: Addon, message: (msg: Buffer, slot: number) => void): { sock: NativeSocket; port: number } {
  const c = a.constants;
  const fd = a.socket(c.AF_INET, c.SOCK_DGRAM, 0);
  a.bindInet(fd, '127.0.0.1', 0, false);
  const sock = new NativeSocket(a, fd, 'data', { message, error: (code) => t.fail(`UDP socket: ${code}`) }, true);
  t.teardown(() => sock.close());
  sock.readStart();
  return { sock, port: a.localPort(fd) };
}

/** Lines of a child's stdout; next(prefix) resolves with the first line starting with it. */
function lines(stream: NodeJS.ReadableStream) {
  let buf = '';
  const seen: string[] = [];
  stream.on('data', (d: Buffer) => {
    buf += String(d);
    const parts = buf.split('\n');
    buf = parts.pop()!;
    seen.push(...parts);
  });
  return {
    next: async (prefix: string, ms = 10000): Promise<string> => {
      await waitFor(() => seen.some((l) => l.startsWith(prefix)), ms, `a "${prefix}" line from the load process`);
      return seen.find((l) => l.startsWith(prefix))!;
    },
  };
}

test.serial('under load the reactor serves wakeups in its own wait, and a timer, a Node socket and an immediate set from its callback still run', async (t) => {
  const a = addon(t);
  if (!a) return;
  const port = await freePort();
  const load = spawn(process.execPath, ['-e', LOAD, String(port), '8', '2500'], { stdio: ['pipe', 'pipe', 'inherit'] });
  t.teardown(() => load.kill('SIGKILL'));
  const out = lines(load.stdout);
  const echoPort = Number((await out.next('echo ')).split(' ')[1]);

  // A connection handed over (here: every one, while the targets are []) runs
  // JavaScript from the reactor; what it schedules must run without waiting
  // for the reactor's wait to end on its own.
  let handoffs = 0;
  let immediates = 0;
  const f = new a.Forwarder(streamListenSocket('127.0.0.1', port, 64), (fd) => {
    handoffs++;
    if (fd >= 0) a.closeStream(fd);
    setImmediate(() => { immediates++; });
  }, () => {}, { max: 100, connectTimeoutMs: 2000 });
  t.teardown(() => f.close());
  f.targets([['127.0.0.1', echoPort]], 1);
  f.start();

  const before = reactor(a);
  load.stdin.write('go\n');
  await waitFor(() => reactor(a).wakeups - before.wakeups >= 200, 10000, 'wakeups served in the reactor\'s own wait under load');

  // A libuv timer: due in 20 ms. The wait ends by the next timer's time, so
  // it is late by scheduling only; 2 s allows for a machine busy with other
  // test files, and is far from "never".
  const t0 = performance.now();
  await delay(20);
  t.true(performance.now() - t0 < 2000, `a 20 ms timer fired after ${Math.round(performance.now() - t0)} ms`);

  // A socket of Node's: accepted, answered and read back in this process.
  const server = net.createServer((s) => s.end('pong'));
  const sport = await freePort();
  await new Promise<void>((resolve) => server.listen(sport, '127.0.0.1', resolve));
  t.teardown(() => server.close());
  const reply = await new Promise<string>((resolve, reject) => {
    const c = net.connect(sport, '127.0.0.1');
    let got = '';
    c.on('data', (d) => { got += String(d); });
    c.on('end', () => resolve(got));
    c.on('error', reject);
  });
  t.is(reply, 'pong');

  // Immediates set from the reactor's callbacks.
  f.targets([], 2);
  for (let i = 0; i < 5; i++) {
    const c = net.connect(port, '127.0.0.1');
    c.on('error', () => {});
    await waitFor(() => handoffs === i + 1 && immediates === i + 1, 5000, `handoff ${i + 1} and the immediate it set`);
    c.destroy();
  }
  f.targets([['127.0.0.1', echoPort]], 3);

  const [, sent, echoed, bad] = (await out.next('done ', 15000)).split(' ').map(Number);
  t.is(bad, 0);
  t.true(echoed > 0);
  t.is(echoed, sent, 'every ping-pong message came back');
  const after = reactor(a);
  t.true(after.waits > before.waits);
  t.true(after.endLibuv + after.endWork + after.endDeadline > before.endLibuv + before.endWork + before.endDeadline, 'waits end');
  t.log(`reactor: ${after.waits - before.waits} waits, ${after.wakeups - before.wakeups} wakeups in them; ended by libuv's fd ${after.endLibuv - before.endLibuv}, by its work ${after.endWork - before.endWork}, by the deadline ${after.endDeadline - before.endDeadline}; ${echoed} messages`);
});

// The other process for UDP: CONNS sockets doing 64-byte ping-pong with
// PORT for MS ms; "done SENT ECHOED BAD" at the end. A datagram lost on
// loopback would stall its socket: each waits at most 1 s, then counts it.
const UDP_LOAD = `
const dgram = require('dgram');
const [port, conns, ms] = process.argv.slice(1).map(Number);
process.stdin.once('data', () => {
  const end = Date.now() + ms;
  let sent = 0, echoed = 0, bad = 0, open = conns;
  for (let i = 0; i < conns; i++) {
    const msg = Buffer.alloc(64, i + 1);
    const s = dgram.createSocket('udp4');
    let timer;
    const send = () => { s.send(msg, port, '127.0.0.1'); sent++; clearTimeout(timer); timer = setTimeout(() => { bad++; finish(); }, 1000); };
    const finish = () => { clearTimeout(timer); s.close(); if (--open === 0) process.stdout.write('done ' + sent + ' ' + echoed + ' ' + bad + '\\n'); };
    s.on('message', (d) => {
      if (d.length !== 64 || d[0] !== i + 1) bad++;
      echoed++;
      if (Date.now() < end) send(); else finish();
    });
    s.bind(0, '127.0.0.1', send);
  }
});
`;

test.serial('a UDP echo on the addon\'s sockets, whose datagrams run JavaScript: every one echoed, and its batches go back to libuv instead of a wait of the reactor\'s own', async (t) => {
  const a = addon(t);
  if (!a) return;
  const { sock, port } = udpSocket(t, a, (msg, slot) => { sock.send(msg, Buffer.from(sourceAddress(slot))); });

  const load = spawn(process.execPath, ['-e', UDP_LOAD, String(port), '8', '2000'], { stdio: ['pipe', 'pipe', 'inherit'] });
  t.teardown(() => load.kill('SIGKILL'));
  const out = lines(load.stdout);
  const before = reactor(a);
  load.stdin.write('go\n');
  const [, sent, echoed, bad] = (await out.next('done ', 15000)).split(' ').map(Number);
  const after = reactor(a);
  t.is(bad, 0);
  t.true(echoed > 0);
  t.is(echoed, sent, 'every datagram came back');
  t.is(after.waits - before.waits, 0, `${after.waits - before.waits} waits of the reactor's own, ${after.wakeups - before.wakeups} wakeups in them`);
  t.log(`reactor: ${after.waits - before.waits} waits, ${after.wakeups - before.wakeups} wakeups in them; ${echoed} datagrams echoed`);
});

// The other process for the sink: TOTAL 64-byte datagrams to PORT, 50 per
// millisecond at most, then "done SENT".
const UDP_BURSTS = `
const dgram = require('dgram');
const [port, total] = process.argv.slice(1).map(Number);
const s = dgram.createSocket('udp4');
const m = Buffer.alloc(64, 7);
let sent = 0;
const burst = () => {
  for (let i = 0; i < 50 && sent < total; i++) { s.send(m, port, '127.0.0.1'); sent++; }
  if (sent < total) setTimeout(burst, 1);
  else setTimeout(() => { process.stdout.write('done ' + sent + '\\n'); s.close(); }, 200);
};
process.stdin.once('data', burst);
`;

test.serial('a UDP sink whose callback schedules nothing: the batches that ran its JavaScript still go back to libuv', async (t) => {
  // Here no immediate or pending send keeps the reactor out of its own wait:
  // only the mark a client sets before calling JavaScript (ReactorCallsJs) does.
  const a = addon(t);
  if (!a) return;
  let got = 0;
  const { port } = udpSocket(t, a, () => { got++; });
  const load = spawn(process.execPath, ['-e', UDP_BURSTS, String(port), '20000'], { stdio: ['pipe', 'pipe', 'inherit'] });
  t.teardown(() => load.kill('SIGKILL'));
  const out = lines(load.stdout);
  const before = reactor(a);
  load.stdin.write('go\n');
  await out.next('done ', 15000);
  const after = reactor(a);
  t.true(got > 1000, `${got} datagrams read`);
  t.is(after.waits - before.waits, 0, `${after.waits - before.waits} waits of the reactor's own, ${after.wakeups - before.wakeups} wakeups in them`);
});
