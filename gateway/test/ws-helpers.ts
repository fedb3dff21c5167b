// WebSocket client helpers for the tests: open, next message, close, each with a deadline.

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
