// Accepting stream connections below Node (the raw stream path): the addon's
// FdSocket accepts with accept4 (up to 64 per readable event) and hands each
// connection to JavaScript as a bare fd, with the addresses the session's
// metadata needs (the peer's from accept4 itself; the local one only for a
// wildcard listener, where it costs a getsockname).

import { AcceptRetry } from '../../native/accept-retry.js';
import type { Logger } from '../../observe/log.js';
import type { FdSocketHandle } from '../../native/sockets.js';
import type { RawAddon } from '../../native/rawstream.js';

export type AcceptedFn = (fd: number, peerAddress: string, peerPort: number, localAddress?: string, localPort?: number) => void;

export class RawAcceptor {
  private readonly h: FdSocketHandle;
  private readonly retry: AcceptRetry;

  /** `addresses`: 0 none (Unix), 1 the peer's, 2 the peer's and the local one. Takes over fd. */
  constructor(addon: RawAddon, fd: number, addresses: 0 | 1 | 2, onAccepted: AcceptedFn, log: Logger, listener: string, what: string) {
    this.retry = new AcceptRetry(log, listener, what, () => this.h.readStart());
    this.h = new addon.FdSocket(fd, (addresses + 1) as 1 | 2 | 3, onAccepted as (...args: never[]) => void, () => {}, (code) => this.retry.failure(code));
    this.h.readStart();
  }

  close(): void {
    this.retry.cancel();
    this.h.close();
  }
}
