// A datagram Channel over a connected native socket (Unix datagram or
// seqpacket, AF_PACKET, batched UDP, kernel SCTP): one message per chunk, both ways.

import { BaseChannel, type ChannelKind } from '../dataplane/channel.js';
import { EofLinger } from '../dataplane/linger.js';
import { NativeSocket, type NativeSocketHandler } from './fdsocket.js';
import type { SocketsAddon } from './sockets.js';

export interface NativeChannelOptions {
  /** Connection-oriented (SOCK_SEQPACKET): a zero-length read is EOF and end() half-closes. */
  readonly seqpacket?: boolean;
  /**
   * Connectionless cluster sockets cannot half-close: after end() they keep
   * taking replies and report EOF once none came for this long (as UDP does).
   */
  readonly eofLingerMs?: number;
  /** What the session's error says when a message did not fit a receive slot. */
  readonly what?: string;
}

function sysError(code: string, what: string): Error {
  const e = new Error(`${what}: ${code}`) as NodeJS.ErrnoException;
  e.code = code;
  return e;
}

export class NativeDatagramChannel extends BaseChannel implements NativeSocketHandler {
  readonly kind: ChannelKind = 'datagram';
  readonly sock: NativeSocket;
  /** Datagrams seen either way since the owner last looked (idle sweeps). */
  activity = 0;
  private ended = false;
  private received = 0;
  private linger: EofLinger | undefined;
  private shutdownPending = false;
  /** seqpacket: the peer sent EOF. */
  private peerEnded = false;
  /** seqpacket: our half-close went out. */
  private shutDown = false;
  /** Set while connected() waits. */
  private connectWait: ((err?: Error) => void) | undefined;

  constructor(protected readonly addon: SocketsAddon, fd: number, peer: string, protected readonly opts: NativeChannelOptions = {}) {
    super();
    this.peer = peer;
    this.sock = new NativeSocket(addon, fd, 'data', this);
    this.sock.readStart();
  }

  message(msg: Buffer): void {
    if (this.opts.seqpacket === true && msg.byteLength === 0) {
      this.sock.readStop(); // EOF stays readable; stop watching it
      this.peerEnded = true;
      this.deliverEnd();
      this.closeIfDone();
      return;
    }
    this.activity++;
    this.received++;
    this.deliver(msg);
  }

  oversized(): void {
    this.close(sysError('EMSGSIZE', `${this.opts.what ?? 'socket'}: a message larger than 64 KiB arrived`));
  }

  /**
   * Resolves once the non-blocking connect of this channel's socket completed
   * (it became writable with no pending error); rejects with the connect's
   * error, or ETIMEDOUT after `timeoutMs`, and the channel is closed then.
   */
  connected(timeoutMs: number): Promise<void> {
    const what = this.opts.what ?? 'socket';
    return new Promise<void>((resolve, reject) => {
      if (this.closed) {
        reject(sysError('ECONNRESET', what));
        return;
      }
      const settle = (err?: Error): void => {
        clearTimeout(timer);
        this.connectWait = undefined;
        this.setCloseListener(undefined);
        if (err) {
          this.close(err);
          reject(err);
        } else {
          resolve();
        }
      };
      const timer = setTimeout(() => settle(sysError('ETIMEDOUT', what)), timeoutMs);
      this.connectWait = settle;
      this.setCloseListener({ closed: (_c, err) => settle(err ?? sysError('ECONNRESET', what)) });
      this.sock.awaitWritable();
    });
  }

  drained(): void {
    const wait = this.connectWait;
    if (wait !== undefined) {
      const code = this.addon.socketError(this.sock.fd);
      wait(code !== undefined ? sysError(code, this.opts.what ?? 'socket') : undefined);
      return;
    }
    if (this.shutdownPending) this.doShutdown();
    this.emitDrain();
  }

  error(code: string): void {
    this.close(sysError(code, this.opts.what ?? 'socket'));
  }

  send(chunk: Uint8Array): boolean {
    if (this.closed || this.ended) return true;
    // A zero-length seqpacket message would read as EOF at the peer.
    if (chunk.byteLength === 0 && this.opts.seqpacket === true) return true;
    this.activity++;
    return this.sock.send(chunk);
  }

  end(): void {
    if (this.ended) return;
    this.ended = true;
    if (this.opts.seqpacket === true) {
      // Queued messages first: half-close once the socket buffer took them.
      this.sock.flush();
      if (this.sock.queued === 0) this.doShutdown();
      else this.shutdownPending = true;
      return;
    }
    const ms = this.opts.eofLingerMs ?? 0;
    if (ms > 0) this.linger = new EofLinger(ms, () => this.received, () => { if (!this.closed) this.deliverEnd(); });
  }

  private doShutdown(): void {
    this.shutdownPending = false;
    try { this.addon.shutdown(this.sock.fd, 1); } catch { /* the peer is gone; close will follow */ }
    this.shutDown = true;
    this.closeIfDone();
  }

  /** Both halves ended (EOF read, our half-close sent): the connection is over, as a Node socket closes then. */
  private closeIfDone(): void {
    if (this.peerEnded && this.shutDown && !this.closed) this.close();
  }


  protected doPause(): void {
    this.sock.readStop();
  }

  protected doResume(): void {
    if (!this.sock.closed) this.sock.readStart();
  }

  protected doClose(err: Error | undefined): void {
    this.linger?.cancel();
    this.sock.flush();
    this.sock.close();
    this.finish(err);
  }
}
