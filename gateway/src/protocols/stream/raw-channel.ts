// A TCP or Unix stream connection held below Node: the raw stream path.
//
// The listener accepts with accept4 in the addon and the cluster connects
// there too (raw-connect.ts); the channel starts holding just the socket: a
// bare fd (native/rawstream.ts BareStream), or the addon's RawStream while
// its connect was waited for. Then one of three things happens:
// - fastpath/raw.ts pairs it with the session's other raw channel
//   (rawAttach): the addon moves the bytes, JavaScript hears once at the end;
// - the session needs the bytes in JavaScript after all (a transform, a
//   WebSocket peer, a retry policy that relinks): the first use of the
//   channel as a channel (a sink set, send, end) moves the socket into a
//   net.Socket and everything goes through an ordinary SocketChannel
//   (`inner`), which may still splice a bulk transfer later;
// - it is closed before either (refused, routing failed): the fd is closed.
// Nothing is read from the socket before one of these, so no byte can be
// left behind in the move.

import net from 'node:net';
import type { Channel, ChannelKind, ChannelSink, CloseListener, DrainListener } from '../../dataplane/channel.js';
import type { RawStreamable, SpliceableChannel, SpliceControl } from '../../dataplane/capabilities.js';
import type { RawStreamHandle } from '../../native/rawstream.js';
import { SocketChannel, resetsPeer } from './channel.js';

/** Channels whose move setSink queued: one microtask for all of them (two channels per session). */
const toMove: RawStreamChannel[] = [];

function moveQueued(): void {
  // A move may queue more (a session relinking): the length is re-read. One
  // that fails ends its own session only; the queue is emptied whatever
  // happens, or no later channel would queue a microtask again.
  try {
    for (let i = 0; i < toMove.length; i++) {
      const ch = toMove[i]!;
      try {
        ch.moveIfUnpaired();
      } catch (err) {
        ch.close(err as Error);
      }
    }
  } finally {
    toMove.length = 0;
  }
}

export class RawStreamChannel implements Channel, SpliceableChannel, RawStreamable {
  readonly kind: ChannelKind = 'byte';
  private raw: RawStreamHandle | undefined;
  private inner: SocketChannel | undefined;
  private pair: SpliceControl | undefined;
  private sink: ChannelSink | undefined;
  private drainListener: DrainListener | undefined;
  private closeListener: CloseListener | undefined;
  private paused = false;
  private done = false;
  private closeError: Error | undefined;
  private notified = false;
  private moveQueued = false;

  constructor(raw: RawStreamHandle, readonly peer: string) {
    this.raw = raw;
  }

  get closed(): boolean {
    return this.inner !== undefined ? this.inner.closed : this.done;
  }

  /** Which path the socket is on, for the session dump. */
  get path(): 'raw' | 'node' | undefined {
    return this.pair !== undefined ? 'raw' : this.inner !== undefined ? 'node' : undefined;
  }

  // ------------------------------------------------ the raw pair (fastpath/raw.ts)

  rawHandle(): unknown {
    return this.inner === undefined && this.pair === undefined && !this.done ? this.raw : undefined;
  }

  rawAttach(path: SpliceControl): void {
    this.pair = path;
    this.raw = undefined; // the Splice took the fd and its poll
  }

  spliceEnded(err: Error | undefined): void {
    if (this.inner !== undefined) this.inner.spliceEnded(err);
    else this.finish(err);
  }

  // ------------------------------------------------ Channel

  send(chunk: Uint8Array): boolean {
    const c = this.node();
    return c === undefined ? true : c.send(chunk);
  }

  end(): void {
    this.node()?.end();
  }

  setSink(sink: ChannelSink | undefined): void {
    if (this.inner !== undefined) {
      this.inner.setSink(sink);
      return;
    }
    this.sink = sink;
    // A sink means someone wants the bytes. Unless fastpath/raw.ts pairs the
    // socket in this same turn (it runs right after the session links), move
    // it to Node.
    if (sink !== undefined && !this.moveQueued && this.raw !== undefined) {
      this.moveQueued = true;
      toMove.push(this);
      if (toMove.length === 1) queueMicrotask(moveQueued);
    }
  }

  /** The microtask setSink queued: to Node unless paired (or closed) meanwhile. */
  moveIfUnpaired(): void {
    if (this.raw !== undefined && this.pair === undefined && !this.done) this.node();
  }

  setDrainListener(l: DrainListener | undefined): void {
    if (this.inner !== undefined) this.inner.setDrainListener(l);
    else this.drainListener = l;
  }

  setCloseListener(l: CloseListener | undefined): void {
    this.closeListener = l;
    if (l !== undefined && this.done && !this.notified) {
      this.notified = true;
      l.closed(this, this.closeError);
    }
  }

  pause(): void {
    if (this.inner !== undefined) this.inner.pause();
    else this.paused = true;
  }

  resume(): void {
    if (this.inner !== undefined) this.inner.resume();
    else this.paused = false;
  }

  close(err?: Error): void {
    if (this.inner !== undefined) {
      this.inner.close(err);
      return;
    }
    if (this.done) return;
    if (this.pair !== undefined) this.pair.close(resetsPeer(err)); // both sockets of the pair (idempotent)
    else this.raw?.close(resetsPeer(err));
    this.raw = undefined;
    this.finish(err);
  }

  // ------------------------------------------------ the bulk splice handover, once on Node

  spliceCheck(): number {
    return this.inner !== undefined ? this.inner.spliceCheck() : -1;
  }

  spliceFd(): number {
    return this.inner !== undefined ? this.inner.spliceFd() : -1;
  }

  spliceAttach(path: SpliceControl): Uint8Array[] | undefined {
    return this.inner?.spliceAttach(path);
  }

  // ------------------------------------------------ internals

  /** The channel on Node: the socket moves into a net.Socket on first use; undefined once paired or closed. */
  private node(): SocketChannel | undefined {
    if (this.inner !== undefined) return this.inner;
    const raw = this.raw;
    if (raw === undefined || this.done) return undefined;
    this.raw = undefined;
    const sock = new net.Socket({ fd: raw.release(), allowHalfOpen: true, readable: true, writable: true });
    const inner = new SocketChannel(sock, this.peer);
    this.inner = inner;
    if (this.paused) inner.pause();
    inner.setDrainListener(this.drainListener);
    inner.setCloseListener({ closed: (_c, err) => this.finish(err) });
    inner.setSink(this.sink);
    return inner;
  }

  private finish(err: Error | undefined): void {
    if (!this.done) {
      this.done = true;
      this.closeError = err;
    }
    if (this.notified || this.closeListener === undefined) return;
    this.notified = true;
    this.closeListener.closed(this, this.closeError);
  }
}
