// What the main process remembers of each worker's metrics, so that a
// worker's death never makes a summed counter go down (docs/workers.md
// "Faults in the metrics").
//
// `record` keeps the last metrics a worker handed over (every scrape, and the
// supervisor's periodic poll, so the copy is at most METRICS_POLL_MS old).
// When the worker dies, `died` folds that copy's monotonic series (counters
// and histograms) into the slot's base, which the exposition adds to the live
// workers' metrics from then on; the restarted worker counts from zero on top
// of it. The sessions the dead worker had live (its
// l7mp_listener_sessions_active at the last copy) are added to
// l7mp_sessions_ended_total{reason="error"}; its gauges are dropped, so the
// active gauges lose them.
//
// Size: per slot one copy and one base, each with the series of the
// configured objects (and the process metrics); a deleted object's series
// leave the bases when the live workers no longer show them (`retire`). Per-session series
// (session_byte_counter_total / session_packet_counter_total, l7mp's Metric
// cluster) are left out of the base: they vanish when their session ends,
// and keeping a dead worker's would grow the base with every death.

import type { MetricObjectWithValues, MetricValue } from 'prom-client';

export type MetricJson = MetricObjectWithValues<MetricValue<string>>;

/** How often the supervisor refreshes each worker's copy between scrapes. */
export const METRICS_POLL_MS = 2000;

const PER_SESSION = new Set(['session_byte_counter_total', 'session_packet_counter_total']);
const ENDED = 'l7mp_sessions_ended_total';

const ACTIVE = 'l7mp_listener_sessions_active';

/**
 * Whether the ledger keeps a metric: its monotonic series (counters and
 * histograms, per-session ones aside) and the active gauge. By type and name
 * only, so that a worker collects just these for the poll (GatewayMetrics
 * metricsJson). prom-client gives the type as text ('counter') at run time,
 * whatever its typings say.
 */
export function ledgerKeeps(type: string, name: string): boolean {
  return ((type === 'counter' || type === 'histogram') && !PER_SESSION.has(name)) || name === ACTIVE;
}

const monotonic = (m: MetricJson): boolean => m.name !== ACTIVE && ledgerKeeps(String(m.type), m.name);

function seriesKey(v: MetricValue<string> & { metricName?: string }): string {
  const labels = Object.entries(v.labels).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return `${v.metricName ?? ''}\0${JSON.stringify(labels)}`;
}

/** Sum two lists of metrics series by series (same name, metricName and labels). */
function sum(a: MetricJson[], b: MetricJson[]): MetricJson[] {
  const out = new Map<string, MetricJson>();
  for (const m of [...a, ...b]) {
    const have = out.get(m.name);
    if (have === undefined) {
      out.set(m.name, { ...m, values: m.values.map((v) => ({ ...v, labels: { ...v.labels } })) });
      continue;
    }
    const byKey = new Map(have.values.map((v) => [seriesKey(v), v]));
    for (const v of m.values) {
      const old = byKey.get(seriesKey(v));
      if (old !== undefined) old.value += v.value;
      else have.values.push({ ...v, labels: { ...v.labels } });
    }
  }
  return [...out.values()];
}

/** The number of live sessions in a copy: the listener gauge's series summed. */
export function liveSessions(metrics: MetricJson[]): number {
  const g = metrics.find((m) => m.name === ACTIVE);
  return g === undefined ? 0 : g.values.reduce((n, v) => n + v.value, 0);
}

export class WorkerMetricsLedger {
  private readonly copies = new Map<number, MetricJson[]>();
  private readonly base = new Map<number, MetricJson[]>();

  /** A worker's metrics as it just handed them over. */
  record(slot: number, metrics: MetricJson[]): void {
    this.copies.set(slot, metrics);
  }

  /** A worker's last copy (it stands in for a worker that does not answer a scrape in time). */
  last(slot: number): MetricJson[] | undefined {
    return this.copies.get(slot);
  }

  /** The worker of `slot` died: fold its last copy into the base; returns how many sessions it had live. */
  died(slot: number): number {
    const last = this.copies.get(slot) ?? [];
    this.copies.delete(slot);
    const sessions = liveSessions(last);
    const ended = {
      name: ENDED, help: 'Sessions ended, by reason: completed, error, or cut by the gateway (deleted, drain_timeout, shutdown)',
      type: 'counter', aggregator: 'sum', values: [{ value: sessions, labels: { reason: 'error' } }],
    } as unknown as MetricJson;
    this.base.set(slot, sum(this.base.get(slot) ?? [], [...last.filter(monotonic), ended]));
    return sessions;
  }

  /** What the dead workers of every slot counted: added to the live workers' metrics. */
  bases(): MetricJson[][] {
    return [...this.base.values()];
  }

  /**
   * Drop from the bases the series of a deleted listener or cluster once no
   * live worker's copy shows that name any more: the workers retire a
   * deleted object's series after the retention (observe/retired-series.ts),
   * and what dead workers counted for it goes with them. Without this a base
   * would keep every name a dead worker ever counted. `exists` says whether
   * the control plane still has the object. Returns the series dropped.
   */
  retire(exists: (kind: 'listener' | 'cluster', name: string) => boolean): number {
    if (this.base.size === 0) return 0; // no worker has died: the common case, every 2 s
    const shown = new Set<string>();
    for (const copy of this.copies.values()) {
      for (const m of copy) for (const v of m.values) for (const [label, kind] of NAME_LABELS) {
        const n = v.labels[label];
        if (typeof n === 'string') shown.add(`${kind}\0${n}`);
      }
    }
    const gone = (v: MetricValue<string>): boolean => NAME_LABELS.some(([label, kind]) => {
      const n = v.labels[label];
      return typeof n === 'string' && !exists(kind, n) && !shown.has(`${kind}\0${n}`);
    });
    let dropped = 0;
    for (const [slot, base] of this.base) {
      const kept: MetricJson[] = [];
      for (const m of base) {
        const values = m.values.filter((v) => !gone(v));
        dropped += m.values.length - values.length;
        if (values.length > 0) kept.push(values.length === m.values.length ? m : { ...m, values });
      }
      this.base.set(slot, kept);
    }
    return dropped;
  }
}

/** The labels that name a listener or a cluster (ours and l7mp's). */
const NAME_LABELS: ReadonlyArray<readonly [string, 'listener' | 'cluster']> = [
  ['listener', 'listener'], ['listenerName', 'listener'], ['cluster', 'cluster'], ['clusterName', 'cluster'],
];
