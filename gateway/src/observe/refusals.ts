// Refusals at the edge: every input the gateway turns away to protect itself
// or its other clients (a full flow table, a header nested too deep, a body
// too large) is counted here by reason and listener, and logged at most once
// per reason per interval, never per packet: a flood must not become a log flood.
//
// Metrics read the counts at scrape time (l7mp_refusals_total{reason,listener}).

import type { Logger } from './log.js';

/** Why an input was refused. One word each; the README's "Limits" table explains them. */
export const REFUSAL_REASONS = [
  'max_sessions',          // admin.limits.max_sessions: the gateway-wide data-plane session cap
  'listener_sessions',     // a listener's own session cap
  'flow_rate',             // new flows per source address per second
  'fd_budget',             // the file-descriptor reserve for the control plane and live sessions
  'flow_evicted',          // an idle UDP flow evicted to make room (early drop), not a refusal of the newcomer
  'message_buffer',        // total buffered WebSocket/HTTP message bytes
  'header_size',           // a JSONSocket header too large
  'header_depth',          // a JSONSocket header nested too deep
  'body_size',             // a REST body too large
  'yaml_aliases',          // a REST YAML body with too many aliases
  'api_host',              // a REST call to a loopback API without a token, for a Host that is not a loopback name (DNS rebinding)
  'http_path',             // an HTTP/WebSocket request path that climbs above the root or carries %2F/%5C/backslash (400)
  'udp_foreign_peer',      // a datagram from a peer that the UDP listener's connect{} does not allow
  'udp_dropped',           // a datagram of a compiled UDP flow dropped: a socket's send buffer was full (the addon never queues)
  'sync_buffer',           // a message for a Sync peer that has not joined yet, over the held-back bound
] as const;

export type RefusalReason = (typeof REFUSAL_REASONS)[number];

/** How often each reason may be logged (ms). */
export const REFUSAL_LOG_INTERVAL_MS = 10_000;

export class Refusals {
  /** reason -> listener ('' when none) -> count */
  private readonly counts = new Map<RefusalReason, Map<string, number>>();
  /** reason -> when it was last logged, and how many were not logged since. */
  private readonly lastLogged = new Map<RefusalReason, { at: number; suppressed: number }>();

  constructor(private readonly log: Logger, private readonly intervalMs = REFUSAL_LOG_INTERVAL_MS, private readonly now: () => number = Date.now) {}

  /** Count one refusal; log it unless this reason was logged within the interval. Cheap enough for the hot path. */
  refuse(reason: RefusalReason, listener = '', detail?: Record<string, unknown>): void {
    let byListener = this.counts.get(reason);
    if (!byListener) {
      byListener = new Map();
      this.counts.set(reason, byListener);
    }
    byListener.set(listener, (byListener.get(listener) ?? 0) + 1);
    const t = this.now();
    const last = this.lastLogged.get(reason);
    if (last && t - last.at < this.intervalMs) {
      last.suppressed++;
      return;
    }
    const suppressed = last?.suppressed ?? 0;
    this.lastLogged.set(reason, { at: t, suppressed: 0 });
    this.log.warn({ reason, ...(listener ? { listener } : {}), ...detail, ...(suppressed ? { suppressed_since_last_log: suppressed } : {}) },
      `refused: ${reason} (logged once per ${Math.round(this.intervalMs / 1000)} s per reason)`);
  }

  /** Total count for a reason (all listeners), for tests and readiness reasons. */
  total(reason: RefusalReason): number {
    let n = 0;
    for (const v of this.counts.get(reason)?.values() ?? []) n += v;
    return n;
  }

  /** The listeners that have a count. */
  listeners(): Set<string> {
    const out = new Set<string>();
    for (const m of this.counts.values()) for (const l of m.keys()) if (l !== '') out.add(l);
    return out;
  }

  /** Drop a deleted listener's counts (observe/metrics.ts retires its series). */
  forget(listener: string): void {
    for (const m of this.counts.values()) m.delete(listener);
  }

  /** Every (reason, listener, count) row, for the metrics exposition. */
  *rows(): Iterable<{ reason: RefusalReason; listener: string; count: number }> {
    for (const [reason, m] of this.counts) for (const [listener, count] of m) yield { reason, listener, count };
  }
}
