// Which deleted listeners and clusters have had their metric series long
// enough. Counters keep a series per name they ever saw, so REST churn
// through ever-new names would grow the registry without bound. A name's
// series outlive it by a retention, counted from when it is gone from the
// configuration and its last session has ended: long enough for any scrape
// interval in use to read its final counts. Then observe/metrics.ts removes
// them; Prometheus takes a series that stops as ended, and a name created
// again counts from zero, which it reads as a counter reset.

/** How long the series of a deleted, idle listener or cluster stay. */
export const RETIRED_SERIES_MS = 10 * 60_000;
/** Names are checked at most this often (on a session end or a scrape: no timer of its own). */
export const RETIRE_CHECK_MS = 30_000;

export class RetiredSeries {
  /** kind + name → when a check first found it deleted and idle. */
  private readonly gone = new Map<string, number>();
  private last = -Infinity;

  constructor(readonly afterMs = RETIRED_SERIES_MS, readonly everyMs = RETIRE_CHECK_MS) {}

  /** Whether a check is due at `now`. */
  due(now: number): boolean {
    return now - this.last >= this.everyMs;
  }

  /** Start a check at `now`. */
  checked(now: number): void {
    this.last = now;
  }

  /**
   * Of `names` (of one kind), those whose series go now: not `kept` (still
   * configured, or with a live session) at this check, and found so at a
   * check at least `afterMs` before. A kept name starts over.
   */
  pick(kind: string, names: Iterable<string>, kept: (name: string) => boolean, now: number): string[] {
    const out: string[] = [];
    for (const name of names) {
      const key = `${kind}\0${name}`;
      const since = this.gone.get(key);
      if (kept(name)) this.gone.delete(key);
      else if (since === undefined) this.gone.set(key, now);
      else if (now - since >= this.afterMs) {
        this.gone.delete(key);
        out.push(name);
      }
    }
    return out;
  }
}
