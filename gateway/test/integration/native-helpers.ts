// Test plumbing for the native-addon protocols: whether the addon is there
// (skip with the reason on a developer machine, fail under CI=true), and socat
// run as a one-shot client.

import { spawn } from 'node:child_process';
import type { ExecutionContext } from 'ava';
import { socketsUnavailable } from '../../src/native/sockets.js';

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
