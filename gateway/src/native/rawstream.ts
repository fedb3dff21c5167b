// The raw stream path's switch and its part of the addon: RawStream handles,
// non-blocking stream connects, and Splice pairs that take RawStreams (see
// gateway/src/fastpath/raw.ts for which sessions take the path).
//
// L7MP_TCP_FASTPATH=off keeps every TCP and Unix stream session on net.Socket
// (for comparison, or to rule the path out when something looks wrong).

import { socketsAddon, type RawStreamHandle, type SocketsAddon } from './sockets.js';

export type RawAddon = SocketsAddon & Required<Pick<SocketsAddon, 'RawStream' | 'connectStream'>>;

let cached: RawAddon | undefined | null = null;

/** The addon with the raw stream path, or undefined (off, not built, too old). */
export function rawAddon(): RawAddon | undefined {
  if (cached === null) {
    const a = process.env.L7MP_TCP_FASTPATH === 'off' ? undefined : socketsAddon();
    const ok = a !== undefined && typeof a.RawStream === 'function' && typeof a.connectStream === 'function'
      && typeof (a as unknown as { Splice?: unknown }).Splice === 'function';
    cached = ok ? (a as RawAddon) : undefined;
  }
  return cached;
}

/** Why the raw stream path is off, or undefined when it is on. */
export function rawPathUnavailable(): string | undefined {
  if (process.env.L7MP_TCP_FASTPATH === 'off') return 'disabled by L7MP_TCP_FASTPATH=off';
  return rawAddon() === undefined ? 'the native sockets addon (with RawStream) is not available' : undefined;
}

export type { RawStreamHandle };
