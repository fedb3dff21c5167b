// The raw stream path's upstream connect (protocols/stream/raw-connect.ts):
// over at once on loopback and Unix sockets, so the channel comes without a
// promise; a connect that has to wait gets its promise and its timeout; a
// refusal is the same CONNECT_FAILED either way. Real sockets, real addon.

import test, { type ExecutionContext } from 'ava';
import fs from 'node:fs';
import net from 'node:net';
import { GatewayError } from '../../src/core/errors.js';
import { rawAddon, type RawAddon } from '../../src/native/rawstream.js';
import { streamListenSocket } from '../../src/protocols/common/reuseport.js';
import { rawConnect } from '../../src/protocols/stream/raw-connect.js';
import { freePort, tmpPath } from './helpers.js';
import { hangingPort, needCapability } from './native-helpers.js';

function addon(t: ExecutionContext): RawAddon | undefined {
  const a = rawAddon();
  return needCapability(t, a === undefined ? 'the raw stream path needs the sockets addon (npm run build:native)' : undefined) ? a : undefined;
}

function listen(t: ExecutionContext, server: net.Server, where: number | string, backlog?: number): Promise<void> {
  t.teardown(() => new Promise<void>((r) => server.close(() => r())));
  return new Promise((resolve) => {
    if (typeof where === 'number') server.listen({ port: where, host: '127.0.0.1', backlog }, resolve);
    else server.listen({ path: where, backlog }, resolve);
  });
}

/** Bytes written to the raw channel's socket come back through a plain client, proving the fd is the connected one. */
async function roundTrip(ch: { close(): void }, server: net.Server, fd: number): Promise<string> {
  const got = new Promise<string>((resolve) => server.once('connection', (c) => c.once('data', (d) => { resolve(String(d)); c.destroy(); })));
  fs.writeSync(fd, 'through the raw fd');
  const text = await got;
  ch.close();
  return text;
}

test('a loopback TCP connect is over when it returns: the channel comes at once, without a promise, on the connected socket', async (t) => {
  const a = addon(t);
  if (a === undefined) return;
  const port = await freePort();
  const server = net.createServer();
  await listen(t, server, port);
  const ch = rawConnect(a, { host: '127.0.0.1', port, what: `TCP 127.0.0.1:${port}`, peer: `127.0.0.1:${port}` }, 1000);
  t.false(ch instanceof Promise, 'no promise for a connect that was over');
  if (ch instanceof Promise) return;
  t.is(await roundTrip(ch, server, (ch.rawHandle() as { fd: number }).fd), 'through the raw fd');
});

test('a Unix stream connect comes at once too', async (t) => {
  const a = addon(t);
  if (a === undefined) return;
  const p = tmpPath('raw-connect.sock');
  const server = net.createServer();
  await listen(t, server, p);
  const ch = rawConnect(a, { host: p, port: -1, what: `UnixDomainSocket ${p}`, peer: p }, 1000);
  t.false(ch instanceof Promise);
  if (ch instanceof Promise) return;
  t.is(await roundTrip(ch, server, (ch.rawHandle() as { fd: number }).fd), 'through the raw fd');
});

test('a refused connect throws CONNECT_FAILED naming the error and the upstream, at once', async (t) => {
  const a = addon(t);
  if (a === undefined) return;
  const port = await freePort(); // nothing listens
  const target = { host: '127.0.0.1', port, what: `TCP 127.0.0.1:${port}`, peer: `127.0.0.1:${port}` };
  const err = t.throws(() => rawConnect(a, target, 1000), { instanceOf: GatewayError });
  t.is(err?.code, 'CONNECT_FAILED');
  t.regex(err?.message ?? '', new RegExp(`^TCP 127\\.0\\.0\\.1:${port}: connect ECONNREFUSED 127\\.0\\.0\\.1:${port}$`));
  // A refused connect keeps no descriptor.
  const fds = fs.readdirSync('/proc/self/fd').length;
  for (let i = 0; i < 200; i++) t.throws(() => rawConnect(a, target, 1000));
  t.is(fs.readdirSync('/proc/self/fd').length, fds, '200 refused connects, no descriptor left');
});

test('a connect that has to wait (the listener\'s queue is full, its SYN dropped) gets a promise, which times out with CONNECT_FAILED', async (t) => {
  const a = addon(t);
  if (a === undefined) return;
  const port = await hangingPort(t, a);
  const target = { host: '127.0.0.1', port, what: `TCP 127.0.0.1:${port}`, peer: `127.0.0.1:${port}` };
  const ch = rawConnect(a, target, 300);
  t.true(ch instanceof Promise, 'once the queue is full, a connect is not over when it returns: a promise');
  const started = Date.now();
  const err = await t.throwsAsync(ch as Promise<unknown>, { instanceOf: GatewayError });
  t.is(err?.code, 'CONNECT_FAILED');
  t.regex(err?.message ?? '', /^TCP 127\.0\.0\.1:\d+: connect timed out after 300 ms$/);
  t.true(Date.now() - started < 3000);
});

test('a Splice that owns bare fds closes them even when it refuses them (the same fd twice, or a bad one), once each', async (t) => {
  const a = addon(t);
  if (a === undefined) return;
  const Splice = (a as unknown as { Splice: new (x: unknown, y: unknown, done: () => void, owned: boolean) => unknown }).Splice;
  const port = await freePort();
  const server = net.createServer();
  await listen(t, server, port);
  const open = (): number => a.connectStream('127.0.0.1', port);
  const isOpen = (fd: number): boolean => fs.existsSync(`/proc/self/fd/${fd}`);
  const fd = open();
  t.throws(() => new Splice(fd, fd, () => {}, true), { message: /EBADF/ });
  t.false(isOpen(fd), 'the fd given twice was closed');
  const other = open();
  t.throws(() => new Splice(other, -1, () => {}, true), { message: /EBADF/ });
  t.false(isOpen(other), 'the good side of a refused pair was closed');
  // A later fd may take the same number: it must not be closed by anything left over.
  const again = open();
  t.true(isOpen(again));
  a.closeStream(again);
  t.false(isOpen(again));
});
