// WebSocket client helpers for the tests: open, next message, close, each with a deadline.

import type { ExecutionContext } from 'ava';
import WebSocket from 'ws';

export function openClient(url: string, protocols?: string[]): Promise<WebSocket> {
  return new Promise((resolve, reject) => {
    const c = new WebSocket(url, protocols);
    c.once('open', () => resolve(c));
    c.once('error', reject);
    c.once('unexpected-response', (_q, res) => reject(new Error(`HTTP ${res.statusCode}`)));
  });
}

export function nextWsMessage(c: WebSocket, timeoutMs = 3000): Promise<{ data: Buffer; isBinary: boolean }> {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error('no WebSocket message in time')), timeoutMs);
    c.once('message', (data: Buffer, isBinary: boolean) => { clearTimeout(t); resolve({ data, isBinary }); });
  });
}

export function closed(c: WebSocket, timeoutMs = 5000): Promise<{ code: number; reason: string }> {
  return new Promise((resolve, reject) => {
    if (c.readyState === WebSocket.CLOSED) return resolve({ code: 1006, reason: '' });
    const t = setTimeout(() => reject(new Error('WebSocket not closed in time')), timeoutMs);
    c.once('close', (code: number, reason: Buffer) => { clearTimeout(t); resolve({ code, reason: reason.toString() }); });
  });
}

/** Binary messages of 1 B to 16 KiB come back byte-exact and binary; a text frame comes back as text. */
export async function assertMirrored(t: ExecutionContext, c: WebSocket): Promise<void> {
  for (const size of [1, 64, 1400, 16 * 1024]) {
    const msg = Buffer.alloc(size, size & 0xff);
    c.send(msg, { binary: true });
    const back = await nextWsMessage(c);
    t.deepEqual(back.data, msg, `${size} B`);
    t.true(back.isBinary);
  }
  c.send('text frame', { binary: false });
  const back = await nextWsMessage(c);
  t.is(back.data.toString(), 'text frame');
  t.false(back.isBinary, 'a text frame comes back as text');
}
