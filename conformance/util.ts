// Small helpers shared by the suite: bounded waits, payloads, REST calls.
// Every wait here has a deadline; nothing sleeps and hopes.

import fs from 'node:fs';

export function delay(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Poll `fn` until it returns a truthy value; throw after `timeoutMs`. */
export async function waitFor<T>(fn: () => T | Promise<T>, timeoutMs: number, what: string, everyMs = 20): Promise<NonNullable<T>> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v as NonNullable<T>;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last ? ` (last error: ${(last as Error).message ?? String(last)})` : ''}`);
    }
    await delay(everyMs);
  }
}

/** Reject when `p` does not settle within `ms`. */
export function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const t = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no result within ${ms} ms`)), ms);
  });
  return Promise.race([p, t]).finally(() => clearTimeout(timer));
}

/** A deterministic payload of `n` bytes; `seed` makes payloads of equal size differ. */
export function payload(n: number, seed = 0): Buffer {
  const b = Buffer.allocUnsafe(n);
  for (let i = 0; i < n; i++) b[i] = (i * 131 + seed * 17 + 7) & 0xff;
  return b;
}

/** A short description of where two buffers first differ. */
export function diff(expected: Buffer, got: Buffer): string {
  if (expected.equals(got)) return 'equal';
  const n = Math.min(expected.length, got.length);
  let i = 0;
  while (i < n && expected[i] === got[i]) i++;
  return `expected ${expected.length} B, got ${got.length} B, first difference at byte ${i}`;
}

export function fmtBytes(n: number): string {
  if (n === 65535) return '64KiB-1';
  if (n >= 1024 && n % 1024 === 0) return `${n / 1024}KiB`;
  return `${n}B`;
}

let seq = 0;
/** A run-unique id, usable in names, headers and log prefixes. */
export function uid(prefix = 'c'): string {
  return `${prefix}${process.pid.toString(36)}${(seq++).toString(36)}`;
}

export interface ApiResponse {
  status: number;
  text: string;
  body: any;
}

/** One REST call to a gateway under test, bounded. */
export async function api(base: string, method: string, path: string, body?: unknown, timeoutMs = 5000): Promise<ApiResponse> {
  const init: RequestInit = { method, headers: {}, signal: AbortSignal.timeout(timeoutMs) };
  if (body !== undefined) {
    init.body = JSON.stringify(body);
    (init.headers as Record<string, string>)['content-type'] = 'application/json';
  }
  let res: Response;
  try {
    res = await fetch(base + path, init);
  } catch (err) {
    throw new Error(`${method} ${path}: ${(err as Error).message}`);
  }
  const text = await res.text();
  let parsed: unknown;
  try { parsed = JSON.parse(text); } catch { parsed = undefined; }
  return { status: res.status, text, body: parsed };
}

/** A REST call that must succeed (2xx). */
export async function apiOk(base: string, method: string, path: string, body?: unknown): Promise<any> {
  const r = await api(base, method, path, body);
  if (r.status < 200 || r.status > 299) throw new Error(`${method} ${path} answered ${r.status}: ${r.text.slice(0, 300)}`);
  return r.body;
}

/** Run `tasks` with at most `limit` at a time, in order of the list. */
export async function pool<T>(items: readonly T[], limit: number, run: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const item = items[next++]!;
      await run(item);
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(limit, items.length)) }, worker));
}

/** A Unix socket file exists at `p`. */
export function isSocketFile(p: string): boolean {
  try { return fs.lstatSync(p).isSocket(); } catch { return false; }
}

/** Someone has the FIFO open for reading (a non-blocking write open succeeds). */
export function fifoHasReader(p: string): boolean {
  try {
    fs.closeSync(fs.openSync(p, fs.constants.O_WRONLY | fs.constants.O_NONBLOCK));
    return true;
  } catch {
    return false;
  }
}
