// Event counters made at scrape time (observe/metrics.ts): the session hooks
// add to plain rows, and a scrape turns the rows into prom-client series.

import { Counter, type Registry } from 'prom-client';

/**
 * A listener's or cluster's event counts. The hooks run once or twice per
 * session: a prom-client inc() there (label hashing and validation per call)
 * was a measurable share of a short session's cost, so the hooks count here
 * and the counters are made from these rows at scrape time, like the byte
 * counters. A series appears with its first event, as with inc().
 */
export interface Events {
  readonly protocol: string;
  sessions: number;
  failures: number;
  retries: number;
}

/** A counter made at scrape time from event rows: a series per name whose `field` has counted anything. */
export function eventCounter(name: string, help: string, nameLabel: string, field: 'sessions' | 'failures' | 'retries', rows: () => Map<string, Events>, registers: Registry[]): void {
  new Counter({
    name, help, labelNames: [nameLabel, 'protocol'], registers,
    collect() {
      this.reset();
      for (const [n, r] of rows()) if (r[field] > 0) this.inc({ [nameLabel]: n, protocol: r.protocol }, r[field]);
    },
  });
}
