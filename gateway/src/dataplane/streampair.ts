// A byte-stream Channel over two one-way Node streams: what it reads comes
// from `rx`, what it sends goes to `tx` (a FIFO pair, a child's stdout/stdin).
// Either side may be missing for a one-way channel.

import type { Readable, Writable } from 'node:stream';
import { BaseChannel, type ChannelKind } from './channel.js';

export class StreamPairChannel extends BaseChannel {
  readonly kind: ChannelKind = 'byte';
  private error: Error | undefined;
  private rxOpen: boolean;
  private txOpen: boolean;

  constructor(private readonly rx: Readable | undefined, private readonly tx: Writable | undefined, peer: string) {
    super();
    this.peer = peer;
    this.rxOpen = rx !== undefined;
    this.txOpen = tx !== undefined;
    if (rx) {
      rx.on('data', (chunk: Buffer) => this.deliver(chunk));
      rx.on('end', () => this.deliverEnd());
      rx.on('error', (err) => { this.error ??= err; this.close(err); });
      rx.on('close', () => { this.rxOpen = false; this.settle(); });
    }
    if (tx) {
      tx.on('drain', () => this.emitDrain());
      tx.on('error', (err) => { this.error ??= err; this.close(err); });
      tx.on('close', () => { this.txOpen = false; this.settle(); });
    }
  }

  /** Run `fn` once both streams are gone (for owners that track live channels; the close listener belongs to the session). */
  onClosed(fn: () => void): void {
    this.rx?.once('close', () => { if (this.tx === undefined || this.tx.destroyed) fn(); });
    this.tx?.once('close', () => { if (this.rx === undefined || this.rx.destroyed) fn(); });
  }

  /** Feed a chunk read before the channel existed (the first read of a FIFO). */
  inject(chunk: Uint8Array): void {
    this.deliver(chunk);
  }

  send(chunk: Uint8Array): boolean {
    const tx = this.tx;
    if (this.closed || tx === undefined || tx.writableEnded || tx.destroyed) return true;
    return tx.write(chunk);
  }

  end(): void {
    if (this.tx && !this.tx.writableEnded) this.tx.end();
  }

  protected doPause(): void {
    this.rx?.pause();
  }

  protected doResume(): void {
    this.rx?.resume();
  }

  protected doClose(err: Error | undefined): void {
    if (err) this.error ??= err;
    if (this.tx && !this.tx.destroyed) {
      if (err) this.tx.destroy();
      else {
        const tx = this.tx;
        tx.end(() => tx.destroy());
        setTimeout(() => tx.destroy(), 5000).unref(); // a reader that never drains cannot hold the session
      }
    }
    this.rx?.destroy();
    this.settle();
  }

  /** Finished once closed and both streams are gone. */
  private settle(): void {
    if (this.closed && !this.rxOpen && !this.txOpen) this.finish(this.error);
    else if (!this.closed && !this.rxOpen && !this.txOpen) this.close();
  }
}
