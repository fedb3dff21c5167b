// The readiness checks the tests' peers rely on (conformance/ports.ts,
// helpers.ts): read from the kernel's tables, never by binding the port (a
// probe bind that falls between a peer's start and its own bind makes the
// peer fail with EADDRINUSE), and a peer counts as ready only when it holds
// its port itself.

import test from 'ava';
import { spawn, type ChildProcess } from 'node:child_process';
import { portHeldBy } from '../../../conformance/ports.js';
import { echo, freePort, udpBound, waitFor } from './helpers.js';

/** A node process holding a UDP port and a listening TCP port until killed. */
async function holder(udpPort: number, tcpPort: number): Promise<ChildProcess> {
  const code = `
    const s = require('dgram').createSocket('udp4');
    s.bind(${udpPort}, '127.0.0.1', () => require('net').createServer().listen(${tcpPort}, '127.0.0.1', () => console.log('ready')));`;
  const p = spawn(process.execPath, ['-e', code], { stdio: ['ignore', 'pipe', 'inherit'] });
  await new Promise<void>((resolve, reject) => {
    p.stdout!.once('data', () => resolve());
    p.once('exit', (c) => reject(new Error(`holder exited with ${c}`)));
  });
  return p;
}

test('portHeldBy says which process holds a UDP port or listens on a TCP port; udpBound reads the tables without binding', async (t) => {
  const [udpPort, tcpPort] = [await freePort(), await freePort()];
  t.false(await udpBound(udpPort));
  const p = await holder(udpPort, tcpPort);
  t.teardown(() => { p.kill('SIGKILL'); });
  t.true(await udpBound(udpPort));
  t.true(portHeldBy(p.pid!, udpPort, 'udp'), 'the holder holds its UDP port');
  t.true(portHeldBy(p.pid!, tcpPort, 'tcp'), 'and listens on its TCP port');
  t.false(portHeldBy(process.pid, udpPort, 'udp'), 'this process does not hold it');
  t.false(portHeldBy(p.pid!, udpPort, 'tcp'), 'no TCP listener on the UDP port');
  p.kill('SIGKILL');
  await waitFor(async () => !(await udpBound(udpPort)), 3000, 'the port released');
  t.false(portHeldBy(p.pid!, tcpPort, 'tcp'), 'a process that is gone holds nothing');
});

test('a socat peer whose port another process holds is not taken as ready: its start fails naming the holder', async (t) => {
  const [udpPort, tcpPort] = [await freePort(), await freePort()];
  const p = await holder(udpPort, tcpPort);
  t.teardown(() => { p.kill('SIGKILL'); });
  const err = await t.throwsAsync(echo.udpFlow(udpPort));
  t.regex(err?.message ?? '', /Address already in use/);
  t.regex(err?.message ?? '', new RegExp(`pid=${p.pid}`), 'the holder is named');
});
