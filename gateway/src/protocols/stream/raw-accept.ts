// Accepting stream connections below Node (the raw stream path): the addon's
// FdSocket accepts with accept4 (up to 64 per readable event) and hands each
// connection to JavaScript as a bare fd, with the addresses the session's
// metadata needs (the peer's from accept4 itself; the local one only for a
// wildcard listener, where it costs a getsockname).

import type { Logger } from '../../observe/log.js';
import type { FdSocketHandle } from '../../native/sockets.js';
import type { RawAddon } from '../../native/rawstream.js';

export type AcceptedFn = (fd: number, peerAddress: string, peerPort: number, localAddress?: string, localPort?: number) => void;

/** How long accepting pauses after it failed (EMFILE and the like), so that a full process does not spin. */
const RETRY_MS = 100;
/** At most one log line per this many ms about failing accepts. */
const LOG_EVERY_MS = 10_000;

export class RawAcceptor {
  private readonly h: FdSocketHandle;
  private retry: NodeJS.Timeout | undefined;
  private lastLog = -Infinity;
  private failed = 0;

  /** `addresses`: 0 none (Unix), 1 the peer's, 2 the peer's and the local one. Takes over fd. */
  constructor(addon: RawAddon, fd: number, addresses: 0 | 1 | 2, onAccepted: AcceptedFn, private readonly log: Logger, private readonly what: string) {
    this.h = new addon.FdSocket(fd, (addresses + 1) as 1 | 2 | 3, onAccepted as (...args: never[]) => void, () => {}, (code) => this.error(code));
    this.h.readStart();
  }

  private error(code: string): void {
    this.failed++;
    const now = Date.now();
    if (now - this.lastLog >= LOG_EVERY_MS) {
      this.log.warn({ listener: this.what, code, failed: this.failed }, 'accept failed; pausing accepts for 100 ms');
      this.lastLog = now;
      this.failed = 0;
    }
    this.retry = setTimeout(() => { this.retry = undefined; this.h.readStart(); }, RETRY_MS);
    this.retry.unref();
  }

  close(): void {
    if (this.retry !== undefined) clearTimeout(this.retry);
    this.retry = undefined;
    this.h.close();
  }
}
