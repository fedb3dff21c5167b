// The raw stream path's switch and its part of the addon: RawStream handles,
// non-blocking stream connects, and Splice pairs that take RawStreams (see
// gateway/src/fastpath/raw.ts for which sessions take the path).
//
// L7MP_TCP_FASTPATH=off keeps every TCP and Unix stream session on net.Socket
// (for comparison, or to rule the path out when something looks wrong).

import { socketsAddon, type RawStreamHandle, type SocketsAddon } from './sockets.js';

export type RawAddon = SocketsAddon & Required<Pick<SocketsAddon, 'RawStream' | 'connectStream' | 'connectedNow' | 'closeStream'>>;

let cached: RawAddon | undefined | null = null;

/** The addon with the raw stream path, or undefined (off, not built, too old). */
export function rawAddon(): RawAddon | undefined {
  if (cached === null) {
    const a = process.env.L7MP_TCP_FASTPATH === 'off' ? undefined : socketsAddon();
    const ok = a !== undefined && typeof a.RawStream === 'function' && typeof a.connectStream === 'function'
      && typeof a.connectedNow === 'function' && typeof a.closeStream === 'function'
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

/**
 * A raw stream socket as a bare fd: an accepted connection, or an upstream
 * whose connect was over at once. It has the RawStream's methods but is not
 * one of the addon's wrapped objects, which cost a reference, a type tag and
 * a finalizer each; a Splice takes its fd as a number (take()). Nothing
 * closes it but close(): every owner (RawStreamChannel) closes, moves or
 * pairs its socket. A connect still in progress waits on a real RawStream
 * (raw-connect.ts).
 */
export class BareStream implements RawStreamHandle {
  constructor(private readonly addon: RawAddon, public fd: number) {}

  connectedNow(): true | string | undefined {
    return this.addon.connectedNow(this.fd);
  }

  waitConnect(): void {
    throw new Error('BareStream: a connect in progress waits on a RawStream');
  }

  /** For a Splice that owns it from now on: the fd; the stream is empty afterwards. */
  take(): number {
    const fd = this.fd;
    this.fd = -1;
    return fd;
  }

  release(): number {
    return this.take();
  }

  close(reset?: boolean): void {
    if (this.fd < 0) return;
    const fd = this.take();
    this.addon.closeStream(fd, reset);
  }
}

export type { RawStreamHandle };
