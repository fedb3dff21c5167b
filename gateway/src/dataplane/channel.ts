// The data-plane primitive. Every protocol endpoint and every transform is a
// Channel: a bidirectional message pipe with explicit backpressure. Listeners
// and clusters hand channels to the session, which links them together.
//
// Why not Node streams: a stream costs several closures, a buffer list and an
// event emission per chunk. A channel calls one method on one sink object per
// chunk, and a session can re-link stages (on retry) by swapping sinks.

export type ChannelKind = 'datagram' | 'byte';

/** Receives what a channel reads from its peer. */
export interface ChannelSink {
  /** One chunk; for datagram channels exactly one message. */
  data(chunk: Uint8Array): void;
  /** The peer will send no more (EOF / half-close). */
  end(): void;
}

/** Told when a channel can take more after send() returned false. */
export interface DrainListener {
  drain(): void;
}

/** Told once when the channel is closed for good. */
export interface CloseListener {
  closed(channel: Channel, err: Error | undefined): void;
}

export interface Channel {
  readonly kind: ChannelKind;
  /** Human-readable peer description for logs and the session dump. */
  readonly peer: string;
  /** Send one chunk. false: buffered, stop sending until drain. */
  send(chunk: Uint8Array): boolean;
  /** No more data will be sent (half-close for byte streams). */
  end(): void;
  setSink(sink: ChannelSink | undefined): void;
  setDrainListener(l: DrainListener | undefined): void;
  setCloseListener(l: CloseListener | undefined): void;
  /** Stop delivering data to the sink (flow control); data is held, not lost. */
  pause(): void;
  resume(): void;
  /** Close both directions. With an error: abort; without: graceful (flush). */
  close(err?: Error): void;
  readonly closed: boolean;
}

const MAX_EARLY_QUEUE = 256;

/**
 * Common plumbing: sink/listener slots, an early-data queue for chunks that
 * arrive before the session links the channel, and once-only close.
 * Subclasses implement doSend/doEnd/doPause/doResume/doClose.
 */
export abstract class BaseChannel implements Channel {
  abstract readonly kind: ChannelKind;
  peer = '';
  protected sink: ChannelSink | undefined;
  protected drainListener: DrainListener | undefined;
  protected closeListener: CloseListener | undefined;
  private queue: Uint8Array[] | undefined;
  private endQueued = false;
  protected paused = false;
  private _closed = false;
  /** The peer was held back because the early queue filled up. */
  private overflowPaused = false;
  private closeError: Error | undefined;
  private closeNotified = false;

  get closed(): boolean {
    return this._closed;
  }

  abstract send(chunk: Uint8Array): boolean;
  abstract end(): void;
  protected abstract doPause(): void;
  protected abstract doResume(): void;
  /** Release the underlying resource. Must eventually call this.finish(). */
  protected abstract doClose(err: Error | undefined): void;

  setSink(sink: ChannelSink | undefined): void {
    this.sink = sink;
    if (sink && !this.paused) this.flushQueue();
  }

  setDrainListener(l: DrainListener | undefined): void {
    this.drainListener = l;
  }

  setCloseListener(l: CloseListener | undefined): void {
    this.closeListener = l;
    if (l && this._closed && !this.closeNotified) {
      this.closeNotified = true;
      l.closed(this, this.closeError);
    }
  }

  pause(): void {
    if (this.paused) return;
    this.paused = true;
    this.doPause();
  }

  resume(): void {
    if (!this.paused) return;
    this.paused = false;
    this.flushQueue();
    if (!this.paused) this.doResume();
  }

  close(err?: Error): void {
    if (this._closed) return;
    this._closed = true;
    this.closeError = err;
    this.doClose(err);
  }

  /** For a splice handover: bytes read and held for the sink, or -1 when an EOF is held too. */
  protected queuedBytes(): number {
    if (this.endQueued) return -1;
    let n = 0;
    if (this.queue !== undefined) for (const c of this.queue) n += c.byteLength;
    return n;
  }

  /** For a splice handover: take the held chunks, oldest first (the channel leaves the JavaScript path). */
  protected takeQueue(): Uint8Array[] {
    const q = this.queue ?? [];
    this.queue = undefined;
    return q;
  }

  /** Subclasses: deliver one chunk read from the peer. */
  protected deliver(chunk: Uint8Array): void {
    const sink = this.sink;
    if (sink !== undefined && !this.paused && this.queue === undefined) {
      sink.data(chunk);
      return;
    }
    const q = (this.queue ??= []);
    if (q.length >= MAX_EARLY_QUEUE) {
      if (this.kind === 'datagram') return; // datagram semantics: drop on overflow
      if (!this.overflowPaused) {
        this.overflowPaused = true;
        this.doPause(); // byte streams: hold the peer back instead
      }
    }
    q.push(chunk);
  }

  /** Subclasses: the peer will send no more. */
  protected deliverEnd(): void {
    if (this.sink !== undefined && !this.paused && this.queue === undefined) {
      this.sink.end();
    } else {
      this.endQueued = true;
    }
  }

  protected emitDrain(): void {
    this.drainListener?.drain();
  }

  /** Subclasses: the resource is gone. Notifies the close listener once. */
  protected finish(err?: Error): void {
    if (!this._closed) {
      this._closed = true;
      this.closeError = err;
    } else if (err && !this.closeError) {
      this.closeError = err;
    }
    if (this.closeNotified) return;
    const l = this.closeListener;
    if (l) {
      this.closeNotified = true;
      l.closed(this, this.closeError);
    }
  }

  private flushQueue(): void {
    const q = this.queue;
    if (q !== undefined) {
      while (q.length > 0 && this.sink !== undefined && !this.paused) {
        this.sink.data(q.shift()!);
      }
      if (q.length > 0) return;
      this.queue = undefined;
      if (this.overflowPaused) {
        this.overflowPaused = false;
        if (!this.paused) this.doResume();
      }
    }
    if (this.endQueued && this.sink !== undefined && !this.paused) {
      this.endQueued = false;
      this.sink.end();
    }
  }
}

/**
 * A pair of in-process channels: what one side sends, the other reads.
 * Used by transforms and tests. Datagram kind, unbounded (transforms are
 * synchronous, so backpressure is carried by the next stage).
 */
export class LoopChannel extends BaseChannel {
  readonly kind: ChannelKind;
  other!: LoopChannel;
  private ended = false;

  constructor(kind: ChannelKind = 'datagram', peer = 'loop') {
    super();
    this.kind = kind;
    this.peer = peer;
  }

  static pair(kind: ChannelKind = 'datagram'): [LoopChannel, LoopChannel] {
    const a = new LoopChannel(kind);
    const b = new LoopChannel(kind);
    a.other = b;
    b.other = a;
    return [a, b];
  }

  send(chunk: Uint8Array): boolean {
    if (this.closed || this.ended) return true;
    this.other.deliver(chunk);
    return true;
  }

  end(): void {
    if (this.ended) return;
    this.ended = true;
    this.other.deliverEnd();
  }

  protected doPause(): void {}
  protected doResume(): void {}

  protected doClose(err: Error | undefined): void {
    this.finish(err);
    if (!this.other.closed) this.other.close(err);
  }
}
