// A listener whose listening socket is the addon's (accept4 in batches):
// UNIX/seqpacket and kernel SCTP. Subclasses open, bind and listen, hand the
// fd to listenOn(), and make a session of each accepted fd.

import type { ListenerContext, ListenerImpl } from '../protocols/types.js';
import { AcceptRetry } from './accept-retry.js';
import { NativeSocket, type NativeSocketHandler } from './fdsocket.js';
import type { SocketsAddon } from './sockets.js';

export abstract class NativeAcceptListener implements ListenerImpl, NativeSocketHandler {
  private main: NativeSocket | undefined;
  private readonly retry: AcceptRetry;
  /** Session numbers, for the names. */
  protected seq = 0;

  /** @param what the protocol, for the log line of a failed accept */
  constructor(protected readonly addon: SocketsAddon, protected readonly ctx: ListenerContext, what: string) {
    this.retry = new AcceptRetry(ctx.log, ctx.listenerName, what, () => this.main?.readStart());
  }

  abstract start(): Promise<void>;

  /** A new connection: a non-blocking fd the subclass now owns. */
  abstract accepted(fd: number): void;

  /** Start accepting on a bound, listening socket. */
  protected listenOn(fd: number): void {
    this.main = new NativeSocket(this.addon, fd, 'accept', this);
    this.main.readStart();
  }

  /** After stop() closed the listening socket. */
  protected stopped(): void {}

  message(): void { /* listening sockets only accept */ }

  error(code: string): void {
    this.retry.failure(code);
  }

  bound(): boolean {
    return this.main !== undefined;
  }

  async stop(): Promise<void> {
    this.retry.cancel();
    this.main?.close();
    this.main = undefined;
    this.stopped();
  }
}
