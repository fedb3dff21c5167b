// Test plumbing for the native-addon protocols: whether the addon is there
// (skip with the reason on a developer machine, fail under CI=true), socat
// run as a one-shot client, and a port where a connect hangs.

import { spawn } from 'node:child_process';
import type { ExecutionContext } from 'ava';
import { socketsUnavailable, type SocketsAddon } from '../../src/native/sockets.js';
import { streamListenSocket } from '../../src/protocols/common/reuseport.js';
import { freePort } from './helpers.js';

/** true: go on. false: the test was skipped (logged) or failed (CI). */
export function needAddon(t: ExecutionContext): boolean {
  return needCapability(t, socketsUnavailable());
}

/** A capability gate: `reason` undefined means present. Absent: skip (logged) on a developer machine, fail under CI=true. */
export function needCapability(t: ExecutionContext, reason: string | undefined): boolean {
  if (reason === undefined) return true;
  if (process.env.CI === 'true') t.fail(reason);
  else {
    t.log(`skipped: ${reason}`);
    t.pass();
  }
  return false;
}

/**
 * Run socat as a client: write `input` to its stdin, collect stdout until it
 * exits (socat -t bounds how long it waits for answers after stdin's EOF).
 */
export function socatClient(args: string[], input: Buffer | string, timeoutMs = 5000): Promise<{ out: Buffer; code: number | null; err: string }> {
  return new Promise((resolve, reject) => {
    const p = spawn('socat', args, { stdio: ['pipe', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    let err = '';
    p.stdout.on('data', (d: Buffer) => out.push(d));
    p.stderr.on('data', (d) => { err += String(d); });
    const timer = setTimeout(() => { p.kill('SIGKILL'); reject(new Error(`socat ${args.join(' ')} did not finish: ${err}`)); }, timeoutMs);
    p.on('error', (e) => { clearTimeout(timer); reject(e); });
    p.on('close', (code) => { clearTimeout(timer); resolve({ out: Buffer.concat(out), code, err }); });
    p.stdin.end(input);
  });
}

/**
 * A loopback port whose listening socket nobody accepts from, its queue
 * (backlog 1) already full of connects: a SYN to it is dropped, so a connect
 * to it stays in progress until its own timeout. Everything is closed at the
 * test's teardown.
 */
export async function hangingPort(t: ExecutionContext, a: Required<Pick<SocketsAddon, 'close' | 'connectStream' | 'connectedNow' | 'closeStream'>>): Promise<number> {
  const port = await freePort();
  const lfd = streamListenSocket('127.0.0.1', port, 1);
  const fill: number[] = [];
  t.teardown(() => {
    for (const fd of fill) a.closeStream(fd);
    a.close(lfd);
  });
  for (let i = 0; i < 8; i++) {
    const fd = a.connectStream('127.0.0.1', port);
    fill.push(fd);
    if (a.connectedNow(fd) === undefined) return port; // in progress: the queue is full
  }
  throw new Error(`127.0.0.1:${port}: 8 connects and its queue is still not full`);
}
