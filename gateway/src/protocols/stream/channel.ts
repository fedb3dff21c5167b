// One TCP or Unix stream connection as a byte-stream channel. A
// SocketChannel can leave Node for the kernel splice path
// (gateway/src/fastpath/splice.ts): spliceCheck() says whether its socket could
// be handed over right now, spliceAttach() takes what was read but not yet
// forwarded and lets go of the Node socket (the addon forwards on dup()s of
// its fd); from then on closing the channel closes the kernel path, whose end
// finishes the channel (spliceEnded()).

import type net from 'node:net';
import { BaseChannel, type ChannelKind } from '../../dataplane/channel.js';
import type { SpliceableChannel, SpliceControl } from '../../dataplane/capabilities.js';

/** How long a gracefully closed socket may take to flush before it is destroyed. */
const GRACEFUL_CLOSE_MS = 5000;

/**
 * Bytes queued in user space before send() asks the session to pause the
 * source. Node's own mark (16 KiB) is smaller than one 64 KiB read, so every
 * read that the kernel could not take at once paused and resumed the source
 * (two epoll_ctl calls and a bubble in the pipe); 256 KiB lets a bulk transfer
 * keep both sockets busy. The drain event still comes: write() returned false
 * long before this mark.
 */
const WRITE_HIGH_WATER = 256 * 1024;

/**
 * Whether closing for `err` must reset the connection (RST) rather than end
 * it with a FIN that would read as a complete stream: a cut (core/drain.ts
 * SessionCut), or the other peer's own reset passed on.
 */
export function resetsPeer(err: Error | undefined): boolean {
  if (err === undefined) return false;
  const code = (err as NodeJS.ErrnoException).code;
  return (err as { reset?: boolean }).reset === true || code === 'ECONNRESET' || code === 'EPIPE';
}

export class SocketChannel extends BaseChannel implements SpliceableChannel {
  readonly kind: ChannelKind = 'byte';
  private error: Error | undefined;
  /** Set once the kernel splice path forwards for this socket; the Node socket is gone then. */
  private spliced: SpliceControl | undefined;

  constructor(readonly socket: net.Socket, peer: string) {
    super();
    this.peer = peer;
    // After a splice handover the socket is destroyed; what it still emits
    // (the data read() returns, 'end', 'close') is not ours any more.
    socket.on('data', (chunk: Buffer) => { if (this.spliced === undefined) this.deliver(chunk); });
    socket.on('end', () => { if (this.spliced === undefined) this.deliverEnd(); });
    socket.on('drain', () => this.emitDrain());
    socket.on('error', (err) => { this.error ??= err; });
    socket.on('close', () => { if (this.spliced === undefined) this.finish(this.error); });
  }

  send(chunk: Uint8Array): boolean {
    const s = this.socket;
    if (this.closed || this.spliced !== undefined || s.writableEnded) return true;
    s.write(chunk);
    return s.writableLength < WRITE_HIGH_WATER;
  }

  end(): void {
    if (this.spliced === undefined && !this.socket.writableEnded) this.socket.end();
  }

  spliceCheck(): number {
    const s = this.socket;
    // Every byte written must be in the kernel, and no EOF seen or sent yet.
    // Bytes read and not yet forwarded are fine: spliceAttach() hands them over.
    if (this.closed || this.spliced !== undefined || s.destroyed || s.connecting || s.writableEnded || s.readableEnded) return -1;
    if (s.writableLength !== 0) return -1;
    const q = this.queuedBytes();
    return q < 0 ? -1 : q + s.readableLength;
  }

  spliceFd(): number {
    const fd = (this.socket as unknown as { _handle?: { fd?: number } | null })._handle?.fd;
    return typeof fd === 'number' && fd >= 0 ? fd : -1;
  }

  spliceAttach(path: SpliceControl): Uint8Array[] | undefined {
    const s = this.socket;
    this.spliced = path; // from here on the socket's events are ignored
    const pending = this.takeQueue();
    // Node's readable buffer (read() in flowing mode returns one chunk at a
    // time). read() may ask libuv to read again (readStart); nothing is read
    // before destroy() below, in this same turn, closes the handle.
    for (let left = s.readableLength; left > 0;) {
      const c = s.read() as Buffer | null;
      if (c === null || c.length === 0) break;
      pending.push(c);
      left -= c.length;
    }
    const complete = s.readableLength === 0;
    // Closes Node's fd only: the addon holds dup()s, so the connection stays
    // up (no FIN, no RST); libuv takes the fd out of epoll before closing it.
    s.destroy();
    return complete ? pending : undefined;
  }

  spliceEnded(err: Error | undefined): void {
    this.finish(err);
  }

  protected doPause(): void {
    if (this.spliced === undefined) this.socket.pause();
  }

  protected doResume(): void {
    if (this.spliced === undefined) this.socket.resume();
  }

  protected doClose(err: Error | undefined): void {
    const s = this.socket;
    if (this.spliced !== undefined) {
      this.spliced.close(resetsPeer(err)); // both sockets of the pair (idempotent)
      this.finish(err);
      return;
    }
    if (s.destroyed) {
      this.finish(err);
      return;
    }
    if (err && (err as { graceful?: boolean }).graceful !== true) {
      this.error ??= err;
      // A cut or the other peer's reset resets, so the peer cannot take it
      // for a complete stream. Not after our FIN: libuv refuses to reset a
      // socket that is shutting down, and Node then leaves the handle open.
      if (resetsPeer(err) && !s.connecting && !s.writableEnded && s.remotePort !== undefined) s.resetAndDestroy();
      else s.destroy();
      return;
    }
    s.end();
    s.resume(); // drain whatever the peer still sends so that its FIN arrives
    const t = setTimeout(() => s.destroy(), GRACEFUL_CLOSE_MS);
    t.unref();
    // A pending timer holds the socket, and through it this channel and its
    // session: released with the close, not 5 s later (at 10k sessions a
    // second that was 50k ended sessions kept in memory).
    s.once('close', () => clearTimeout(t));
  }
}
