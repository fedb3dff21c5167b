// What a listener on the addon's accept4 does when accepting fails (EMFILE,
// ENFILE, ENOMEM): the addon stops watching the socket, so pause, then watch
// again. A process out of descriptors fails every accept; the pause keeps it
// from spinning, and the log says so at most once per interval, with the count.

import type { Logger } from '../observe/log.js';

/** How long accepting pauses after a failure. */
export const ACCEPT_RETRY_MS = 100;
/** At most one log line per this many ms about failing accepts, per listener. */
export const ACCEPT_LOG_EVERY_MS = 10_000;

export class AcceptRetry {
  private timer: NodeJS.Timeout | undefined;
  private lastLog = -Infinity;
  private failed = 0;

  /** `restart`: watch the listening socket again. `what`: the protocol, for the log line. */
  constructor(private readonly log: Logger, private readonly listener: string, private readonly what: string, private readonly restart: () => void, private readonly now: () => number = Date.now) {}

  /** An accept failed with `code`: the addon stopped watching; restart after the pause. */
  failure(code: string): void {
    this.failed++;
    const now = this.now();
    if (now - this.lastLog >= ACCEPT_LOG_EVERY_MS) {
      this.log.warn({ listener: this.listener, code, failed_since_last_log: this.failed },
        `${this.what} accept failed; pausing accepts for ${ACCEPT_RETRY_MS} ms (logged once per ${ACCEPT_LOG_EVERY_MS / 1000} s)`);
      this.lastLog = now;
      this.failed = 0;
    }
    if (this.timer !== undefined) return;
    this.timer = setTimeout(() => { this.timer = undefined; this.restart(); }, ACCEPT_RETRY_MS);
    this.timer.unref();
  }

  /** The listener stops: no restart after this. */
  cancel(): void {
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
  }
}
