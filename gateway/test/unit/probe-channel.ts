// A BaseChannel whose far side is the test: it pushes what "the peer" sends
// (deliver/deliverEnd), decides whether send() takes more, and sees every call
// the base class makes into the subclass (doPause/doResume/doClose).

import { BaseChannel, type ChannelKind, type ChannelSink } from '../../src/dataplane/channel.js';

export class ProbeChannel extends BaseChannel {
  readonly kind: ChannelKind;
  /** What was sent to the peer, in order. */
  readonly sent: Uint8Array[] = [];
  /** send()'s answer: false means "buffered, stop until drain". */
  accept = true;
  ended = false;
  pauses = 0;
  resumes = 0;
  closes: Array<Error | undefined> = [];
  /** Finish as soon as doClose is called (a resource that goes at once). */
  finishOnClose = true;

  constructor(kind: ChannelKind = 'byte', peer = 'probe') {
    super();
    this.kind = kind;
    this.peer = peer;
  }

  send(chunk: Uint8Array): boolean {
    this.sent.push(chunk);
    return this.accept;
  }

  end(): void {
    this.ended = true;
  }

  /** The peer sent `chunk`. */
  push(chunk: Uint8Array): void {
    this.deliver(chunk);
  }

  /** The peer sent EOF. */
  pushEnd(): void {
    this.deliverEnd();
  }

  /** The peer took what was buffered. */
  drained(): void {
    this.emitDrain();
  }

  /** The resource went away (on its own, or after doClose). */
  gone(err?: Error): void {
    this.finish(err);
  }

  held(): number {
    return this.queuedBytes();
  }

  take(): Uint8Array[] {
    return this.takeQueue();
  }

  protected doPause(): void {
    this.pauses++;
  }

  protected doResume(): void {
    this.resumes++;
  }

  protected doClose(err: Error | undefined): void {
    this.closes.push(err);
    if (this.finishOnClose) this.finish(err);
  }
}

/** A sink that records what reached it; `onData` may act on the channel mid-delivery. */
export function recorder(onData?: (chunk: Uint8Array, n: number) => void): ChannelSink & { got: number[]; ends: number } {
  const r = {
    got: [] as number[],
    ends: 0,
    data(chunk: Uint8Array) {
      r.got.push(seq(chunk));
      onData?.(chunk, r.got.length);
    },
    end() {
      r.ends++;
    },
  };
  return r;
}

/** A two-byte chunk carrying `n` (< 65536), so order can be checked. */
export const chunk = (n: number): Uint8Array => Uint8Array.of(n >> 8, n & 0xff);

/** The number a chunk() carries. */
export const seq = (c: Uint8Array): number => (c[0]! << 8) | c[1]!;
