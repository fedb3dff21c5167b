// STDIO-fork: a program per session over stdin/stdout, allowed only by the
// static config's allow-list; ending the session kills its process group.

import test from 'ava';
import fs from 'node:fs';
import net from 'node:net';
import { startGateway } from '../../src/app.js';
import type { GatewayError } from '../../src/core/errors.js';
import { silentLogger } from '../../src/observe/log.js';
import { controllerConfig, freePort, startGw, tcpRoundTrip, waitFor } from './helpers.js';

function forkRoute(cmd: unknown, name = 'fork'): unknown {
  return [{ action: { route: { destination: { name, spec: { protocol: 'STDIO-fork', cmd } } } } }];
}

/** Not running: no such process, or a zombie that is no longer ours to reap. */
function notRunning(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'ESRCH';
  }
  try {
    return /^\d+ \(.*\) Z/.test(fs.readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return true;
  }
}

test('STDIO-fork: a TCP session talks to an allow-listed program over its stdin/stdout', async (t) => {
  const port = await freePort();
  const port2 = await freePort();
  await startGw(t, {
    admin: { log_level: 'silent', metrics: { enabled: false }, stdio_fork: { commands: [['/bin/cat'], '/usr/bin/tr a-z A-Z'] } },
    listeners: [
      { name: 't1', spec: { protocol: 'TCP', address: '127.0.0.1', port }, rules: forkRoute(['/bin/cat'], 'fork-cat') },
      { name: 't2', spec: { protocol: 'TCP', address: '127.0.0.1', port: port2 }, rules: forkRoute('/usr/bin/tr a-z A-Z', 'fork-tr') },
    ],
  });
  t.is((await tcpRoundTrip(port, Buffer.from('to cat and back'))).toString(), 'to cat and back');
  t.is((await tcpRoundTrip(port2, Buffer.from('shout'))).toString(), 'SHOUT');
});

test('STDIO-fork: a command outside the allow-list, or no allow-list at all, is refused at startup', async (t) => {
  for (const [admin, re] of [
    [{}, /admin\.stdio_fork\.commands must list/],
    [{ stdio_fork: { commands: [['/bin/cat']] } }, /\["\/bin\/sh","-c","id"\] is not in admin\.stdio_fork\.commands/],
  ] as const) {
    const port = await freePort();
    const err = await t.throwsAsync(startGateway({
      config: controllerConfig(port, { admin: { log_level: 'silent', metrics: { enabled: false }, ...admin }, clusters: [{ name: 'fork', spec: { protocol: 'STDIO-fork', cmd: ['/bin/sh', '-c', 'id'] } }] }),
      logger: silentLogger(),
    }));
    t.is((err as GatewayError).code, 'FORBIDDEN');
    t.regex((err as Error).message, re);
  }
});

test('STDIO-fork: ending the session kills the program and what it started (its process group), leaving no zombie', async (t) => {
  const port = await freePort();
  const cmd = ['/bin/sh', '-c', 'sleep 600 & echo "$$ $!"; exec cat'];
  const { gw } = await startGw(t, {
    admin: { log_level: 'silent', metrics: { enabled: false }, stdio_fork: { commands: [cmd] } },
    listeners: [{ name: 't', spec: { protocol: 'TCP', address: '127.0.0.1', port }, rules: forkRoute(cmd) }],
  });
  const c = net.connect(port, '127.0.0.1');
  t.teardown(() => c.destroy());
  let text = '';
  c.on('data', (d) => { text += String(d); });
  const line = await waitFor(() => (text.includes('\n') ? text : undefined), 5000, 'the pids');
  const [shPid, sleepPid] = line.trim().split(' ').map(Number) as [number, number];
  t.true(shPid > 1 && sleepPid > 1, line);
  t.false(notRunning(shPid));
  t.false(notRunning(sleepPid));
  c.destroy(); // the client goes away: the session ends
  await waitFor(() => notRunning(shPid) && notRunning(sleepPid), 8000, 'the process group to be gone');
  // Node reaped its own child: no process table entry at all.
  t.throws(() => process.kill(shPid, 0), { code: 'ESRCH' });
  await waitFor(() => gw.sessions.size === 0, 5000, 'the session to end');
});
