// One run at a time, and runs at least `minMs` apart, for work whose cost
// grows with the gateway's state and whose caller sets the rate: a metrics
// exposition passes over every live session (3-16 ms at 10,000-16,000), and
// anyone who can reach a metrics port (the admin listener, or a data-plane
// Prometheus listener) chooses how often. Callers that come while a run is
// pending or in flight share it; a caller right after a run waits for the
// spacing instead of being answered from a cache, so an answer is never
// older than its request. A run that fails is shared as a failure.

export class Paced<T> {
  private pending: Promise<T> | undefined;
  private lastEnd = -Infinity;

  constructor(private readonly run: () => Promise<T>, readonly minMs: number, private readonly now: () => number = Date.now) {}

  get(): Promise<T> {
    if (this.pending) return this.pending;
    const wait = this.lastEnd + this.minMs - this.now();
    const p = (async () => {
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
      try {
        return await this.run();
      } finally {
        this.lastEnd = this.now();
        this.pending = undefined;
      }
    })();
    this.pending = p;
    return p;
  }
}
