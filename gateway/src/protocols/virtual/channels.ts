// The transform channels of the virtual clusters Echo, Discard, Logger,
// JSONEncap and JSONDecap: each computes its output from its input.

import type { SessionView } from '../types.js';
import { TransformChannel } from '../common/transform.js';

export class EchoChannel extends TransformChannel {
  protected transform(chunk: Uint8Array): void {
    this.deliver(chunk);
  }
}

export class DiscardChannel extends TransformChannel {
  protected transform(): void {}
}

export class LoggerChannel extends TransformChannel {
  constructor(
    private readonly sink_: { write(line: string): void },
    private readonly session: string,
    private readonly direction: string,
    private readonly prefix: string,
  ) {
    super();
  }

  protected transform(chunk: Uint8Array): void {
    const text = Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength).toString('utf8');
    this.sink_.write(JSON.stringify({
      time: new Date().toISOString(),
      session: this.session,
      direction: this.direction,
      prefix: this.prefix,
      bytes: chunk.byteLength,
      data: text,
    }) + '\n');
    this.deliver(chunk);
  }
}

export class EncapChannel extends TransformChannel {
  constructor(private readonly session: SessionView) {
    super();
  }
  protected transform(chunk: Uint8Array): void {
    const payload = Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength).toString('base64');
    this.deliver(Buffer.from(JSON.stringify({ metadata: this.session.metadata, payload })));
  }
}

export class DecapChannel extends TransformChannel {
  dropped = 0;
  constructor(private readonly onBad: (reason: string) => void) {
    super();
  }
  protected transform(chunk: Uint8Array): void {
    let msg: unknown;
    try {
      msg = JSON.parse(Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength).toString('utf8'));
    } catch {
      this.drop('not JSON');
      return;
    }
    const payload = (msg as { payload?: unknown } | null)?.payload;
    if (typeof payload !== 'string') {
      this.drop('no string "payload" field');
      return;
    }
    this.deliver(Buffer.from(payload, 'base64'));
  }
  private drop(reason: string): void {
    // Logged once per session: a flood of bad messages must not flood the log.
    if (this.dropped++ === 0) this.onBad(reason);
  }
}
