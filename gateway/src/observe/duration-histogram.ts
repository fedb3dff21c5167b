// l7mp_session_duration_seconds without prom-client's work per observation.
//
// prom-client's Histogram.observe() checks the labels, builds the series' key
// string and looks it up on every call: about a microsecond per ended session,
// a tenth of what the whole session costs in JavaScript on the raw TCP path.
// Here the caller holds its series (one per listener and cluster pair,
// observe/metrics.ts), and an observation is a bucket search and three
// additions. The registry reads it through get(), in the shape prom-client's
// Histogram gives (cumulative `le` buckets, then _sum and _count), so the
// exposition and the workers' merge (AggregatorRegistry sums each sample)
// see no difference.

import type { MetricValueWithName, Registry } from 'prom-client';

/** What the registry reads (prom-client's types give `type` as a numeric enum; at run time it is this string). */
export interface HistogramJson {
  readonly name: string;
  readonly help: string;
  readonly type: 'histogram';
  readonly values: MetricValueWithName<string>[];
  readonly aggregator: 'sum';
}

export interface DurationLabels {
  readonly listener: string;
  readonly cluster: string;
}

/** One label pair's counts; the caller keeps it and passes it to observe(). */
export class DurationSeries {
  /** Per bucket, not cumulative; the last one is +Inf. */
  readonly counts: Float64Array;
  sum = 0;
  count = 0;

  constructor(readonly labels: DurationLabels, buckets: number) {
    this.counts = new Float64Array(buckets + 1);
  }
}

export class DurationHistogram {
  readonly type = 'histogram' as const;
  readonly aggregator = 'sum' as const;
  /** listener -> cluster -> series. */
  private readonly series = new Map<string, Map<string, DurationSeries>>();

  constructor(readonly name: string, readonly help: string, private readonly bounds: readonly number[], registers: readonly Registry[]) {
    for (const r of registers) r.registerMetric(this as unknown as Parameters<Registry['registerMetric']>[0]);
  }

  /** The pair's series, made on first use. */
  seriesOf(listener: string, cluster: string): DurationSeries {
    let byCluster = this.series.get(listener);
    if (byCluster === undefined) {
      byCluster = new Map();
      this.series.set(listener, byCluster);
    }
    let s = byCluster.get(cluster);
    if (s === undefined) {
      s = new DurationSeries({ listener, cluster }, this.bounds.length);
      byCluster.set(cluster, s);
    }
    return s;
  }

  observe(s: DurationSeries, seconds: number): void {
    const b = this.bounds;
    let i = 0;
    while (i < b.length && seconds > b[i]!) i++;
    s.counts[i]!++;
    s.sum += seconds;
    s.count++;
  }

  /** Drop a listener's series (all its clusters). */
  removeListener(listener: string): void {
    this.series.delete(listener);
  }

  /** Drop every listener's series with this cluster. */
  removeCluster(cluster: string): void {
    for (const m of this.series.values()) m.delete(cluster);
  }

  /** The pairs that have a series, as "listener/cluster" (for diagnostics and tests). */
  pairs(): string[] {
    const out: string[] = [];
    for (const [l, m] of this.series) {
      if (m.size === 0) out.push(`${l}/`);
      for (const c of m.keys()) out.push(`${l}/${c}`);
    }
    return out;
  }

  reset(): void {
    this.series.clear();
  }

  async get(): Promise<HistogramJson> {
    const values: MetricValueWithName<string>[] = [];
    const bucket = `${this.name}_bucket`;
    for (const m of this.series.values()) {
      for (const s of m.values()) {
        const { listener, cluster } = s.labels;
        let acc = 0;
        for (let i = 0; i < this.bounds.length; i++) {
          acc += s.counts[i]!;
          values.push({ metricName: bucket, labels: { le: this.bounds[i]!, listener, cluster }, value: acc });
        }
        values.push({ metricName: bucket, labels: { le: '+Inf', listener, cluster }, value: s.count });
        values.push({ metricName: `${this.name}_sum`, labels: { listener, cluster }, value: s.sum });
        values.push({ metricName: `${this.name}_count`, labels: { listener, cluster }, value: s.count });
      }
    }
    return { name: this.name, help: this.help, type: this.type, values, aggregator: this.aggregator };
  }
}
