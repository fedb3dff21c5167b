// The "UDP socket" the `sctp` package is given for one flow.

import { EventEmitter } from 'node:events';
import type { Logger } from '../../observe/log.js';
import { MIN_PACKET, checksumOk } from './packet.js';

/**
 * What the `sctp` package takes for its "UDP socket" (`udpTransport`): an
 * emitter of 'message', 'error' and 'close' with a send(). It binds the
 * package's one association per transport object to one UDP flow, and is
 * where bad packets stop: a wrong checksum is dropped here, and an exception
 * the package throws while taking a packet closes this flow only.
 */
export class FlowTransport extends EventEmitter {
  /** The last error of the flow's UDP socket (ECONNREFUSED: nobody on the port), for messages. */
  lastError: NodeJS.ErrnoException | undefined;
  private shut = false;

  constructor(
    private readonly out: (packet: Buffer, cb: (err: Error | null) => void) => void,
    private readonly onBadPacket: (err: Error) => void,
    private readonly log: Logger,
    private readonly what: string,
  ) {
    super();
    // The package's handlers for 'error' and 'close' come first; nothing else listens.
    this.setMaxListeners(4);
  }

  /** The package calls send(buffer, port, address, cb) on an unconnected transport; the flow knows its peer. */
  send(packet: Buffer, ...rest: unknown[]): void {
    if (this.shut) return;
    const cb = rest.find((r) => typeof r === 'function') as ((err: Error | null) => void) | undefined;
    this.out(packet, (err) => cb?.(err));
  }

  /** One UDP payload from the flow's peer. */
  feed(packet: Buffer): void {
    if (this.shut) return;
    if (packet.byteLength < MIN_PACKET) {
      this.log.verbose({ flow: this.what, bytes: packet.byteLength }, 'SCTP/UDP: runt packet dropped');
      return;
    }
    if (!checksumOk(packet)) {
      this.log.verbose({ flow: this.what }, 'SCTP/UDP: packet with a bad CRC32c dropped');
      return;
    }
    try {
      this.emit('message', packet, undefined);
    } catch (err) {
      // The package does not guard its parsers: whatever it throws on is the
      // peer's garbage, and ends this association, never the gateway.
      this.onBadPacket(new Error(`SCTP/UDP ${this.what}: malformed packet: ${(err as Error).message}`));
    }
  }

  /** A transport-level error from the flow's UDP socket (the package ends the association on ECONNREFUSED). */
  fail(err: NodeJS.ErrnoException): void {
    if (this.shut) return;
    this.lastError = err;
    try {
      this.emit('error', err);
    } catch {
      /* the package's handler only logs */
    }
  }

  /** Tear down every association on this transport (the package closes its endpoint on 'close'). */
  close(): void {
    if (this.shut) return;
    // Shut first: the package's teardown ends the association, whose 'end'
    // handlers close this transport again.
    this.shut = true;
    try {
      this.emit('close');
    } catch {
      /* the endpoint is gone either way */
    }
    this.removeAllListeners();
  }
}
