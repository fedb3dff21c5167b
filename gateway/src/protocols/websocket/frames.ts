// What both WebSocket listener engines and the WebSocket cluster share: how
// outgoing messages are framed, how close codes travel as session end
// reasons, which subprotocol a listener picks, and a listener's settings.

import type { TlsFiles } from '../common/tls.js';

/** How outgoing messages are framed. */
export type FrameMode = 'binary' | 'text' | 'mirror';

export const NORMAL_CLOSES = new Set([1000, 1001, 1005]);

/** A WebSocket close with its code, carried as a session end reason. */
export class WebSocketCloseError extends Error {
  /** Not an abort: peers close normally, and WebSocket peers get the code. */
  readonly graceful = true;
  constructor(readonly closeCode: number, reason: string) {
    super(`WebSocket closed with code ${closeCode}${reason ? `: ${reason}` : ''}`);
    this.name = 'WebSocketCloseError';
  }
}

/** The close code to send for an error that ends a session. */
export function closeCodeFor(err: Error | undefined): number {
  if (!err) return 1000;
  const c = (err as { closeCode?: number }).closeCode;
  // 1005/1006/1015 may not be sent on the wire.
  if (typeof c === 'number' && c >= 1000 && c < 5000 && c !== 1005 && c !== 1006 && c !== 1015) return c;
  return 1011;
}

export function closeReason(err: Error | undefined): string {
  if (!err) return '';
  // A close frame's reason is at most 123 bytes.
  return Buffer.from(err.message).subarray(0, 120).toString('utf8').replace(/\uFFFD+$/, '');
}

export function chooseSubprotocol(offered: string, allowed: readonly string[] | undefined): string | undefined {
  const list = offered.split(',').map((s) => s.trim()).filter(Boolean);
  if (list.length === 0) return '';
  if (!allowed) return list[0];
  return list.find((p) => allowed.includes(p));
}

/** A WebSocket listener's settings, whichever engine serves it. */
export interface WsListenerConfig {
  address: string;
  port: number;
  path: string | undefined;
  subprotocols: string[] | undefined;
  maxMessage: number;
  idleTimeout: number;
  frame: FrameMode;
  /** Serve wss: (uWS SSLApp, engine uws only); common/tls.ts. */
  tls?: TlsFiles;
}
