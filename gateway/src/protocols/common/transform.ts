// The base of the in-process clusters that compute their output from their
// input (Echo, Logger, JSONEncap..., Sync, Metric): one class, so that every
// transform ends its session, not the process, when the input breaks it.

import { BaseChannel, type ChannelKind } from '../../dataplane/channel.js';
import { GatewayError } from '../../core/errors.js';

/** A channel whose output is computed from its input, synchronously. */
export abstract class TransformChannel extends BaseChannel {
  readonly kind: ChannelKind = 'datagram';
  private ended = false;

  send(chunk: Uint8Array): boolean {
    if (this.closed || this.ended) return true;
    try {
      this.transform(chunk);
    } catch (err) {
      // Hostile input (metadata JSON.stringify cannot write, a payload that
      // breaks a transform) ends this session, logged once with its reason;
      // it must never unwind into the listener's socket callback.
      this.close(new GatewayError('INVALID_INPUT', `${this.constructor.name.replace(/Channel$/, '')} transform failed: ${(err as Error).message}`));
    }
    return !this.paused;
  }

  protected abstract transform(chunk: Uint8Array): void;

  end(): void {
    if (this.ended) return;
    this.ended = true;
    this.deliverEnd();
  }

  protected doPause(): void {}
  protected doResume(): void {
    this.emitDrain();
  }
  protected doClose(err: Error | undefined): void {
    this.finish(err);
  }
}
