// Prometheus metrics with prom-client, in a registry of our own (never the
// global one, so several gateways in one process, as in the tests, stay apart).
//
// The hot path does no metrics work. Links already count bytes and packets
// per session (dataplane/session.ts); this module reads those counters when it is
// scraped: the live sessions in gw.sessions plus the totals folded in when
// each session ended (onSessionEnd). A session moves from "live" to "folded"
// synchronously in the pipeline's finalize, so every byte counter is monotonic across
// session ends. Event counts (sessions, connect failures, retries, REST calls)
// are incremented by the gateway's lifecycle hooks, once per event.
//
// Directions are seen from the gateway: `rx` is what the gateway received from
// that listener's clients or from that cluster, `tx` what it sent to them.
//
// Metric names (see README "Metrics"):
//   l7mp_listener_sessions_total / _sessions_active / _bytes_total / _packets_total
//   l7mp_listener_connect_failures_total / _retries_total
//   l7mp_cluster_sessions_total / _sessions_active / _bytes_total / _packets_total
//   l7mp_cluster_connect_failures_total / _retries_total
//   l7mp_session_duration_seconds (histogram)
//   l7mp_rest_requests_total{operationId,status}
//   l7mp_refusals_total{reason,listener}
//   l7mp_endpoint_healthy{cluster,endpoint}, l7mp_health_checks_total{result},
//   l7mp_outlier_ejections_total (gateway/src/health)
//   l7mp_sessions_ended_total{reason}: completed, error, deleted, drain_timeout, shutdown
// and l7mp's own: listener_requests_total{listenerName,protocol},
// cluster_requests_total{clusterName,protocol},
// session_byte_counter_total / session_packet_counter_total{sessionName,clusterName}
// (Metric clusters; a session's series disappear when it ends).
// The series of a deleted listener or cluster go once it has been deleted and
// idle for a retention (observe/retired-series.ts).

import { AggregatorRegistry, Counter, Gauge, Registry, type MetricObjectWithValues, type MetricValue } from 'prom-client';
import type { Gateway } from '../core/gateway.js';
import { END_KINDS, endKindOf, type EndKind } from '../core/drain.js';
import type { GatewayObserver } from '../dataplane/observer.js';
import type { Session, Stage } from '../dataplane/session.js';
import { MetricChannel } from '../protocols/prometheus/index.js';
import { Paced } from './paced.js';
import { registerProcessMetrics } from './process-metrics.js';
import { RetiredSeries } from './retired-series.js';
import { DurationHistogram } from './duration-histogram.js';
import { eventCounter, type Events } from './event-counters.js';
import { add, entry, zero, type Row, type Traffic } from './traffic.js';

/** Scrapes are answered by collections at least this far apart: at most 10 a second, whoever asks. */
export const EXPOSITION_MIN_MS = 100;

/** A registered metric as the registry collects it. */
interface Collectable {
  get(): Promise<MetricObjectWithValues<MetricValue<string>>>;
}


interface Snapshot {
  listeners: Map<string, Row>;
  clusters: Map<string, Row>;
  /** Metric-cluster counts of live sessions, keyed by session and cluster. */
  metered: Map<string, { sessionName: string; clusterName: string; bytes: number; packets: number }>;
}


const isLive = (s: Session): boolean => s.status === 'INIT' || s.status === 'CONNECTED';

export const DURATION_BUCKETS = [0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 3600];

export interface MetricsOptions {
  /** Process and Node.js metrics (collectDefaultMetrics); default true. */
  defaultMetrics?: boolean;
  /** How long the series of a deleted listener or cluster stay, and how often that is checked (observe/retired-series.ts); for tests. */
  retiredSeriesMs?: number;
  retireCheckMs?: number;
}

export class GatewayMetrics implements GatewayObserver {
  readonly registry = new Registry();
  private gw: Gateway | undefined;
  /** Traffic of ended sessions, by listener and by cluster. */
  private readonly endedListeners = new Map<string, Traffic>();
  private readonly endedClusters = new Map<string, Traffic>();
  private readonly listenerEvents = new Map<string, Events>();
  private readonly clusterEvents = new Map<string, Events>();
  private readonly endedBy = new Map<string, number>();
  /** Protocol names seen, so that a deleted object's series keep their labels. */
  private readonly listenerProto = new Map<string, string>();
  private readonly clusterProto = new Map<string, string>();
  private snap: Snapshot | undefined;
  private readonly retired: RetiredSeries;

  private readonly durations: DurationHistogram;
  private readonly restCalls: Counter<'operationId' | 'status'>;

  constructor(opts: MetricsOptions = {}) {
    const registers = [this.registry];
    this.retired = new RetiredSeries(opts.retiredSeriesMs, opts.retireCheckMs);
    if (opts.defaultMetrics !== false) registerProcessMetrics(this.registry);
    const self = this;

    // l7mp's names, labels and help texts.
    // Through the scrape's snapshot first: it folds in the compiled listeners' new sessions.
    const listeners = () => (this.snapshot(), this.listenerEvents);
    const clusters = () => (this.snapshot(), this.clusterEvents);
    eventCounter('listener_requests_total', 'Total number of requests', 'listenerName', 'sessions', listeners, registers);
    eventCounter('cluster_requests_total', 'Total number of requests', 'clusterName', 'sessions', clusters, registers);
    new Counter({
      name: 'session_byte_counter_total', help: 'Total number of bytes that flows trough the cluster',
      labelNames: ['sessionName', 'clusterName'], registers,
      collect() {
        this.reset();
        for (const m of self.snapshot().metered.values()) this.inc({ sessionName: m.sessionName, clusterName: m.clusterName }, m.bytes);
      },
    });
    new Counter({
      name: 'session_packet_counter_total', help: 'Total number of packets that flows trough the cluster',
      labelNames: ['sessionName', 'clusterName'], registers,
      collect() {
        this.reset();
        for (const m of self.snapshot().metered.values()) this.inc({ sessionName: m.sessionName, clusterName: m.clusterName }, m.packets);
      },
    });

    // Inputs refused at the edge (observe/refusals.ts), read at scrape time.
    new Counter({
      name: 'l7mp_refusals_total', help: 'Inputs refused at the edge to protect the gateway or its other clients, by reason',
      labelNames: ['reason', 'listener'], registers,
      collect() {
        this.reset();
        for (const r of self.gw?.refusals.rows() ?? []) this.inc({ reason: r.reason, listener: r.listener }, r.count);
      },
    });

    // Upstream health (gateway/src/health), read at scrape time.
    new Gauge({
      name: 'l7mp_endpoint_healthy', help: 'Whether the endpoint takes new sessions by its health: 1 healthy or not yet known, 0 unhealthy or ejected',
      // With workers every process checks: unhealthy in one is unhealthy (workers/metrics.ts).
      labelNames: ['cluster', 'endpoint'], registers, aggregator: 'min',
      collect() {
        this.reset();
        for (const c of self.gw?.clusters.values() ?? []) {
          if (!c.health?.configured) continue;
          for (const [endpoint, state] of c.health.state.gauge()) {
            this.set({ cluster: c.name, endpoint }, state === 'unhealthy' || state === 'ejected' ? 0 : 1);
          }
        }
      },
    });
    new Counter({
      name: 'l7mp_health_checks_total', help: 'Active health check probes by result (success, failure, timeout)',
      labelNames: ['result'], registers,
      collect() {
        this.reset();
        const checks = self.gw?.healthStats.checks;
        if (checks) for (const [result, n] of Object.entries(checks)) this.inc({ result }, n);
      },
    });
    new Counter({
      name: 'l7mp_outlier_ejections_total', help: 'Endpoints ejected by outlier detection', registers,
      collect() {
        this.reset();
        this.inc(self.gw?.healthStats.ejections ?? 0);
      },
    });
    // How sessions ended: on their own (completed, error) or cut by the gateway (core/drain.ts).
    for (const reason of END_KINDS) this.endedBy.set(reason, 0);
    new Counter({
      name: 'l7mp_sessions_ended_total', help: 'Sessions ended, by reason: completed, error, or cut by the gateway (deleted, drain_timeout, shutdown)',
      labelNames: ['reason'], registers,
      collect() {
        this.reset();
        for (const [reason, n] of self.endedBy) this.inc({ reason }, n);
      },
    });

    // Per listener.
    eventCounter('l7mp_listener_sessions_total', 'Sessions accepted by the listener', 'listener', 'sessions', listeners, registers);
    new Gauge({
      name: 'l7mp_listener_sessions_active', help: 'Sessions of the listener that have not ended',
      labelNames: ['listener', 'protocol'], registers,
      collect() {
        this.reset();
        for (const [listener, r] of self.snapshot().listeners) this.set({ listener, protocol: r.protocol }, r.active);
      },
    });
    new Counter({
      name: 'l7mp_listener_bytes_total', help: 'Bytes received from (rx) and sent to (tx) the clients of the listener',
      labelNames: ['listener', 'protocol', 'direction'], registers,
      collect() {
        this.reset();
        for (const [listener, r] of self.snapshot().listeners) {
          this.inc({ listener, protocol: r.protocol, direction: 'rx' }, r.rxBytes);
          this.inc({ listener, protocol: r.protocol, direction: 'tx' }, r.txBytes);
        }
      },
    });
    new Counter({
      name: 'l7mp_listener_packets_total', help: 'Packets (datagrams or stream chunks) received from (rx) and sent to (tx) the clients of the listener',
      labelNames: ['listener', 'protocol', 'direction'], registers,
      collect() {
        this.reset();
        for (const [listener, r] of self.snapshot().listeners) {
          this.inc({ listener, protocol: r.protocol, direction: 'rx' }, r.rxPackets);
          this.inc({ listener, protocol: r.protocol, direction: 'tx' }, r.txPackets);
        }
      },
    });
    eventCounter('l7mp_listener_connect_failures_total', 'Failed cluster connect attempts of sessions from the listener', 'listener', 'failures', listeners, registers);
    eventCounter('l7mp_listener_retries_total', 'Cluster connect retries (setup retries and reconnects) of sessions from the listener', 'listener', 'retries', listeners, registers);

    // Per cluster (every stage: destination and transforms).
    eventCounter('l7mp_cluster_sessions_total', 'Session stages connected to the cluster (reconnects not counted)', 'cluster', 'sessions', clusters, registers);
    new Gauge({
      name: 'l7mp_cluster_sessions_active', help: 'Live session stages connected to the cluster',
      labelNames: ['cluster', 'protocol'], registers,
      collect() {
        this.reset();
        for (const [cluster, r] of self.snapshot().clusters) this.set({ cluster, protocol: r.protocol }, r.active);
      },
    });
    new Counter({
      name: 'l7mp_cluster_bytes_total', help: 'Bytes sent to (tx) and received from (rx) the cluster',
      labelNames: ['cluster', 'protocol', 'direction'], registers,
      collect() {
        this.reset();
        for (const [cluster, r] of self.snapshot().clusters) {
          this.inc({ cluster, protocol: r.protocol, direction: 'rx' }, r.rxBytes);
          this.inc({ cluster, protocol: r.protocol, direction: 'tx' }, r.txBytes);
        }
      },
    });
    new Counter({
      name: 'l7mp_cluster_packets_total', help: 'Packets (datagrams or stream chunks) sent to (tx) and received from (rx) the cluster',
      labelNames: ['cluster', 'protocol', 'direction'], registers,
      collect() {
        this.reset();
        for (const [cluster, r] of self.snapshot().clusters) {
          this.inc({ cluster, protocol: r.protocol, direction: 'rx' }, r.rxPackets);
          this.inc({ cluster, protocol: r.protocol, direction: 'tx' }, r.txPackets);
        }
      },
    });
    eventCounter('l7mp_cluster_connect_failures_total', 'Failed connect attempts to the cluster (each attempt counts)', 'cluster', 'failures', clusters, registers);
    eventCounter('l7mp_cluster_retries_total', 'Connect retries to the cluster (setup retries and reconnects after a disconnect)', 'cluster', 'retries', clusters, registers);

    this.durations = new DurationHistogram('l7mp_session_duration_seconds',
      'Session duration from creation to end, by listener and destination cluster', DURATION_BUCKETS, registers);
    this.restCalls = new Counter({
      name: 'l7mp_rest_requests_total', help: 'REST API calls by operationId and HTTP status',
      labelNames: ['operationId', 'status'], registers,
    });
  }

  /** Names the hooks keep rows for, and duration label pairs ("l/" for an empty map): all go at retirement. */
  get tracked(): { listeners: string[]; clusters: string[]; durationPairs: string[] } {
    return { listeners: [...this.listenerEvents.keys()], clusters: [...this.clusterEvents.keys()], durationPairs: this.durations.pairs() };
  }

  /** Read live sessions from this gateway at scrape time. */
  attach(gw: Gateway): void {
    this.gw = gw;
    // A process's first collection deoptimizes the session path's code, once
    // ("code dependencies"); on a loaded gateway that first scrape cost 43-56
    // CPU-us per new UDP session against 40-42. So it happens now, before traffic.
    this.registry.metrics().catch((err: unknown) => gw.log.warn({ err: (err as Error).message }, 'metrics: the first collection failed'));
  }

  // ------------------------------------------------------------------ hooks

  onSessionStart(s: Session): void {
    this.listenerRow(s.listener).sessions++;
  }

  onStageConnect(_s: Session, st: Stage, reconnect: boolean): void {
    if (reconnect) return; // as l7mp: streams of sessions still in INIT only
    this.clusterRow(st.origin).sessions++;
  }

  onConnectFailure(s: Session, st: Stage): void {
    this.listenerRow(s.listener).failures++;
    this.clusterRow(st.origin).failures++;
  }

  onRetry(s: Session, st: Stage): void {
    this.listenerRow(s.listener).retries++;
    this.clusterRow(st.origin).retries++;
  }

  onSessionEnd(s: Session): void {
    const reason = endKindOf(s);
    this.endedBy.set(reason, (this.endedBy.get(reason) ?? 0) + 1);
    const c = s.counters();
    add(entry(this.endedListeners, s.listener), c.ingress.bytes, c.egress.bytes, c.ingress.packets, c.egress.packets);
    for (const st of s.stages()) {
      if (st.role === 'source') continue;
      add(entry(this.endedClusters, st.origin), st.outLink?.bytes ?? 0, st.inLink?.bytes ?? 0, st.outLink?.packets ?? 0, st.inLink?.packets ?? 0);
    }
    const ended = s.ended ?? Date.now();
    this.durations.observe(this.durations.seriesOf(s.listener, s.destination?.origin ?? ''), Math.max(0, ended - s.started) / 1000);
    if (this.retired.due(ended)) this.retire(ended).catch((err: unknown) => this.gw?.log.warn({ err: (err as Error).message }, 'metrics: retiring series failed'));
  }

  // ------------------------------------------- compiled sessions (fastpath/compiled.ts)

  compiledStarted(listener: string, cluster: string, sessions: number): void {
    this.listenerRow(listener).sessions += sessions;
    this.clusterRow(cluster).sessions += sessions;
  }

  compiledEnded(listener: string, cluster: string, kind: EndKind, rx: number, tx: number, rxPackets: number, txPackets: number, seconds: number): void {
    this.endedBy.set(kind, (this.endedBy.get(kind) ?? 0) + 1);
    add(entry(this.endedListeners, listener), rx, tx, rxPackets, txPackets);
    // A cluster's rx is what came from it: the session's egress.
    if (cluster !== '') add(entry(this.endedClusters, cluster), tx, rx, txPackets, rxPackets);
    this.durations.observe(this.durations.seriesOf(listener, cluster), seconds);
  }

  onApiCall(operationId: string, status: number): void {
    this.restCalls.inc({ operationId, status: String(status) });
  }

  /**
   * With workers (docs/workers.md): their metrics, as prom-client JSON, to be
   * merged into this process's exposition: counters and gauges summed with
   * the same names and labels, each metric's `aggregator` otherwise.
   */
  remote: (() => Promise<MetricObjectWithValues<MetricValue<string>>[][]>) | undefined;

  /**
   * This process's metrics as prom-client JSON (what a worker hands to the
   * main process); with `keep`, only the metrics it keeps are collected. The
   * supervisor's 2 s poll keeps counters, histograms and the active gauge;
   * the other gauges' collect() would be work for values the poll drops.
   */
  async metricsJson(keep?: (type: string, name: string) => boolean): Promise<MetricObjectWithValues<MetricValue<string>>[]> {
    // A worker is asked every 2 s (workers/metrics-ledger.ts): its retirements run from here too.
    const now = Date.now();
    if (this.retired.due(now)) await this.retire(now);
    if (keep === undefined) return this.registry.getMetricsAsJSON();
    // get() is what getMetricsAsJSON() gives per metric (no default labels here); prom-client's typings leave it off.
    const kept = this.registry.getMetricsAsArray().filter((m) => keep(String(m.type), m.name)) as unknown as Collectable[];
    return Promise.all(kept.map((m) => m.get()));
  }

  /** A scrape's answer: one collection at a time, at most one per EXPOSITION_MIN_MS (observe/paced.ts). */
  private readonly paced = new Paced(() => this.collectExposition(), EXPOSITION_MIN_MS);
  exposition(): Promise<{ contentType: string; body: string }> { return this.paced.get(); }

  private async collectExposition(): Promise<{ contentType: string; body: string }> {
    const now = Date.now();
    if (this.retired.due(now)) await this.retire(now);
    if (this.remote === undefined) return { contentType: this.registry.contentType, body: await this.registry.metrics() };
    const all = [await this.registry.getMetricsAsJSON(), ...await this.remote()];
    return { contentType: this.registry.contentType, body: await AggregatorRegistry.aggregate(all).metrics() };
  }

  // -------------------------------------------------------------- retiring

  /** Remove the series of deleted listeners and clusters whose retention is over (observe/retired-series.ts). */
  async retire(now = Date.now()): Promise<void> {
    this.retired.checked(now);
    const gw = this.gw;
    if (gw === undefined) return;
    const listeners = new Set([...this.listenerProto.keys(), ...this.listenerEvents.keys(), ...this.endedListeners.keys(), ...gw.refusals.listeners()]);
    const clusters = new Set([...this.clusterProto.keys(), ...this.clusterEvents.keys(), ...this.endedClusters.keys()]);
    const liveListeners = new Set<string>();
    const liveClusters = new Set<string>();
    // The pass over the sessions only where a name is gone from the configuration (a worker runs this on its first poll, with every session live).
    if ([...listeners].some((n) => !gw.listeners.has(n)) || [...clusters].some((n) => !gw.clusters.has(n))) {
      for (const s of gw.sessions.values()) {
        if (!isLive(s)) continue;
        liveListeners.add(s.listener);
        for (const st of s.stages()) if (st.role !== 'source') liveClusters.add(st.origin);
      }
    }
    const retiredL = this.retired.pick('listener', listeners, (n) => gw.listeners.has(n) || liveListeners.has(n), now);
    const retiredC = this.retired.pick('cluster', clusters, (n) => gw.clusters.has(n) || liveClusters.has(n), now);
    if (retiredL.length === 0 && retiredC.length === 0) return;
    for (const name of retiredL) {
      this.listenerEvents.delete(name);
      this.durations.removeListener(name);
      this.endedListeners.delete(name);
      this.listenerProto.delete(name);
      gw.refusals.forget(name);
    }
    for (const name of retiredC) {
      this.clusterEvents.delete(name);
      this.durations.removeCluster(name);
      this.endedClusters.delete(name);
      this.clusterProto.delete(name);
    }
    gw.log.info({ listeners: retiredL.length, clusters: retiredC.length, names: [...retiredL, ...retiredC].slice(0, 10), after_ms: this.retired.afterMs },
      'metrics: the series of deleted listeners and clusters are retired');
  }

  // --------------------------------------------------------------- scraping

  private listenerRow(name: string): Events {
    return this.listenerEvents.get(name) ?? this.newRow(this.listenerEvents, name, this.listenerProtocol(name));
  }

  private clusterRow(name: string): Events {
    return this.clusterEvents.get(name) ?? this.newRow(this.clusterEvents, name, this.clusterProtocol(name));
  }

  private newRow(m: Map<string, Events>, name: string, protocol: string): Events {
    const r: Events = { protocol, sessions: 0, failures: 0, retries: 0 };
    m.set(name, r);
    return r;
  }

  private listenerProtocol(name: string): string {
    let p = this.listenerProto.get(name);
    if (p === undefined) {
      p = this.gw?.listeners.get(name)?.protocol.name ?? 'unknown';
      this.listenerProto.set(name, p);
    }
    return p;
  }

  private clusterProtocol(name: string): string {
    let p = this.clusterProto.get(name);
    if (p === undefined) {
      p = this.gw?.clusters.get(name)?.protocol.name ?? 'unknown';
      this.clusterProto.set(name, p);
    }
    return p;
  }

  /**
   * One pass over the sessions per scrape: every collect() of one scrape runs
   * synchronously before the first microtask, so they share this snapshot.
   */
  private snapshot(): Snapshot {
    if (this.snap) return this.snap;
    const listeners = new Map<string, Row>();
    const clusters = new Map<string, Row>();
    const metered: Snapshot['metered'] = new Map();
    const row = (m: Map<string, Row>, name: string, protocol: () => string): Row => {
      let r = m.get(name);
      if (!r) {
        r = { protocol: protocol(), active: 0, ...zero() };
        m.set(name, r);
      }
      return r;
    };
    const gw = this.gw;
    // Configured objects show up with zeros before their first session.
    if (gw) {
      for (const l of gw.listeners.values()) row(listeners, l.name, () => this.listenerProtocol(l.name));
      for (const c of gw.clusters.values()) row(clusters, c.name, () => this.clusterProtocol(c.name));
    }
    // Compiled listeners first: their ended sessions are folded into the totals
    // below in the same pass, so no byte is missing from a scrape (counters never go back).
    gw?.compiled.scrape((p) => {
      const lr = row(listeners, p.listener, () => this.listenerProtocol(p.listener));
      lr.active++;
      add(lr, p.rx, p.tx, p.rxPackets, p.txPackets);
      if (p.cluster === '') return;
      const cr = row(clusters, p.cluster, () => this.clusterProtocol(p.cluster));
      cr.active++;
      add(cr, p.tx, p.rx, p.txPackets, p.rxPackets);
    });
    for (const [name, t] of this.endedListeners) {
      const r = row(listeners, name, () => this.listenerProtocol(name));
      add(r, t.rxBytes, t.txBytes, t.rxPackets, t.txPackets);
    }
    for (const [name, t] of this.endedClusters) {
      const r = row(clusters, name, () => this.clusterProtocol(name));
      add(r, t.rxBytes, t.txBytes, t.rxPackets, t.txPackets);
    }
    if (gw) {
      for (const s of gw.sessions.values()) {
        if (!isLive(s)) continue; // ended: already folded into the totals
        const lr = row(listeners, s.listener, () => this.listenerProtocol(s.listener));
        lr.active++;
        const c = s.counters();
        add(lr, c.ingress.bytes, c.egress.bytes, c.ingress.packets, c.egress.packets);
        for (const st of s.stages()) {
          if (st.role === 'source' || st.channel === undefined) continue;
          const cr = row(clusters, st.origin, () => this.clusterProtocol(st.origin));
          cr.active++;
          add(cr, st.outLink?.bytes ?? 0, st.inLink?.bytes ?? 0, st.outLink?.packets ?? 0, st.inLink?.packets ?? 0);
          if (st.channel instanceof MetricChannel) {
            const key = `${s.name}\0${st.origin}`;
            const m = metered.get(key);
            if (m) {
              m.bytes += st.channel.bytes;
              m.packets += st.channel.packets;
            } else {
              metered.set(key, { sessionName: s.name, clusterName: st.origin, bytes: st.channel.bytes, packets: st.channel.packets });
            }
          }
        }
      }
    }
    this.snap = { listeners, clusters, metered };
    queueMicrotask(() => { this.snap = undefined; });
    return this.snap;
  }
}
