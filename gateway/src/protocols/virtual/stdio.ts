// Stdio: the gateway's own standard input and output as a byte channel, for
// one session at a time.

import { BaseChannel, type ChannelKind } from '../../dataplane/channel.js';
import { GatewayError } from '../../core/errors.js';

/** Stdio: the gateway's own stdin and stdout. One session at a time. */
let stdioBusy = false;
class StdioChannel extends BaseChannel {
  readonly kind: ChannelKind = 'byte';
  private readonly onData = (chunk: Buffer) => this.deliver(chunk);
  private readonly onEnd = () => this.deliverEnd();

  constructor() {
    super();
    this.peer = 'stdio';
    process.stdin.on('data', this.onData);
    process.stdin.on('end', this.onEnd);
    process.stdin.resume();
  }
  send(chunk: Uint8Array): boolean {
    return process.stdout.write(chunk);
  }
  end(): void {}
  protected doPause(): void { process.stdin.pause(); }
  protected doResume(): void { process.stdin.resume(); }
  protected doClose(err: Error | undefined): void {
    process.stdin.off('data', this.onData);
    process.stdin.off('end', this.onEnd);
    process.stdin.pause();
    stdioBusy = false;
    this.finish(err);
  }
}

/** The Stdio channel, or CONNECT_FAILED while another session holds it. */
export function openStdio(): StdioChannel {
  if (stdioBusy) throw new GatewayError('CONNECT_FAILED', 'Stdio is already in use by another session');
  stdioBusy = true;
  return new StdioChannel();
}
