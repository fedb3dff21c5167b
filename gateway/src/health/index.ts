// Upstream health of a cluster, as the gateway core uses it: built with the
// cluster, told about endpoint changes, consulted on every endpoint pick, and
// fed passive observations from the session lifecycle.
//
// What counts, passively (outlier detection):
// - failure: a connect attempt that fails; a stage that closes with an error
//   before its endpoint sent a byte (reset before the first byte); an HTTP
//   5xx answer from a cluster that reports outcomes (ClusterSide.reportsOutcome).
// - success: a session ends having received bytes from the endpoint (for
//   clusters that report outcomes: an HTTP status below 500). A bare connect
//   is neither: an endpoint that accepts and then resets every connection
//   must still reach `consecutive_failures`.

import type { Logger } from '../observe/log.js';
import type { Balancer } from '../balancer/index.js';
import type { ClusterImpl, ProtocolDef, Spec } from '../protocols/types.js';
import type { Session, Stage } from '../dataplane/session.js';
import { ActiveChecker } from './active.js';
import { ClusterHealth, HealthStats, type EndpointHealthView } from './cluster-health.js';
import { NameResolver, isHostName, parseDns, resolverFor, type DnsSettings } from './dns.js';
import { probeFor } from './probes.js';
import {
  dumpHealthCheck, parseHealthCheck, parseOutlier, parsePanicThreshold, DEFAULT_PANIC_THRESHOLD,
} from './settings.js';

export { ClusterHealth, HealthStats };
export type { EndpointHealthView };

interface Named {
  readonly name: string;
  readonly address: string;
}

export class UpstreamHealth {
  private checker: ActiveChecker | undefined;
  /** Why a configured health_check does not run (datagram cluster without send). */
  private noActive: string | undefined;

  /** Endpoints given by host name, kept resolved (./dns.ts); only for clusters with a numeric port. */
  private readonly names = new Map<string, NameResolver>();
  private resolveNames = false;
  private readonly resolver;

  private constructor(
    readonly state: ClusterHealth,
    private readonly dns: DnsSettings,
    private readonly dnsGiven: boolean,
    private readonly stats: HealthStats,
    private readonly log: Logger,
  ) {
    this.resolver = resolverFor(dns);
  }

  /**
   * Parse a cluster's health settings (throws a GatewayError naming the
   * field); undefined for virtual clusters, which have no endpoints.
   */
  static parse(raw: Record<string, unknown>, field: string, cluster: string, protocol: ProtocolDef, stats: HealthStats, log: Logger): UpstreamHealth | undefined {
    const outlier = parseOutlier(raw.outlier_detection, `${field}.outlier_detection`);
    const check = parseHealthCheck(raw.health_check, `${field}.health_check`);
    const panic = parsePanicThreshold(raw.loadbalancer, `${field}.loadbalancer.panic_threshold`);
    const dns = parseDns(raw.dns, `${field}.dns`);
    if (protocol.cluster?.virtual) return undefined;
    const given = raw.dns !== undefined && raw.dns !== null;
    return new UpstreamHealth(new ClusterHealth(cluster, outlier, check, panic, stats, log), dns, given, stats, log);
  }

  /** The cluster is built: prepare its active probe (started by the first update). */
  attach(c: { name: string; protocol: ProtocolDef; spec: Spec; impl: ClusterImpl }): void {
    // Opt-in: a resolved endpoint is reached by IP, so HTTP Host, WebSocket URLs and TLS server
    // names carry the address, not the name (the name is kept where no `dns` section is given).
    this.resolveNames = this.dnsGiven && typeof c.spec.port === 'number';
    const hc = this.state.check;
    // A data-plane worker takes the main process's results (HealthStats.share, workers/start.ts).
    if (hc === undefined || !this.stats.probes) return;
    const probe = probeFor(c, hc);
    if (typeof probe === 'string') {
      this.noActive = probe;
      this.log.warn({ cluster: c.name }, `health_check: no active check: ${probe}`);
      return;
    }
    this.checker = new ActiveChecker(this.state, probe, hc, this.stats, (e) => this.target(e));
  }

  /** The cluster's endpoint list changed (commit or delete). */
  update(endpoints: readonly Named[]): void {
    this.state.update(endpoints.map((e) => e.name));
    const keep = new Set<string>();
    for (const e of endpoints) {
      if (!this.resolveNames || !isHostName(e.address)) continue;
      keep.add(e.name);
      if (!this.names.has(e.name)) this.names.set(e.name, new NameResolver(e.address, e.name, this.state.cluster, this.dns, this.resolver, this.log));
    }
    for (const [name, r] of this.names) {
      if (keep.has(name)) continue;
      r.close();
      this.names.delete(name);
    }
    this.checker?.update(endpoints);
  }

  /** Where to connect for an endpoint: its resolved addresses in turn, for names. */
  target<E extends Named>(e: E): Named {
    const r = this.names.get(e.name);
    return r === undefined ? e : { name: e.name, address: r.address() };
  }

  close(): void {
    for (const r of this.names.values()) r.close();
    this.names.clear();
    this.checker?.close();
    this.checker = undefined;
    this.state.close();
  }

  /** The user configured outlier detection or an active check. */
  get configured(): boolean {
    return this.state.outlier !== undefined || this.state.check !== undefined || this.dnsGiven;
  }

  view(endpoint: string): EndpointHealthView {
    let v = this.state.view(endpoint);
    if (this.noActive !== undefined && v.reason === undefined) v = { ...v, reason: `no active check: ${this.noActive}` };
    const r = this.names.get(endpoint);
    return r === undefined ? v : { ...v, addresses: [...r.current()] };
  }

  /** The cluster's health settings as dumped (only those the user set). */
  dump(out: Record<string, unknown>): void {
    const s = this.state;
    if (s.outlier !== undefined) out.outlier_detection = { ...s.outlier };
    if (s.check !== undefined) out.health_check = dumpHealthCheck(s.check);
    if (this.dnsGiven) out.dns = { ...(this.dns.servers ? { servers: [...this.dns.servers] } : {}), interval: this.dns.interval };
    if (s.panicThreshold !== DEFAULT_PANIC_THRESHOLD && typeof out.loadbalancer === 'object') {
      out.loadbalancer = { ...(out.loadbalancer as object), panic_threshold: s.panicThreshold };
    }
  }
}

/**
 * Pick an endpoint: first among the healthy ones not yet failed by this
 * session; then, if none is left, among those not yet failed (a retry may
 * still reach an unhealthy endpoint rather than none); then any.
 */
export function pickEndpoint<E extends Named>(balancer: Balancer, health: UpstreamHealth | undefined, metadata: object, failed: ReadonlySet<string>): E | undefined {
  const avoid = health?.state.avoid();
  if (avoid !== undefined) {
    const skip = failed.size === 0 ? avoid : new Set([...avoid, ...failed]);
    const e = balancer.pick(metadata, skip);
    if (e !== undefined) return e as unknown as E;
  }
  return (balancer.pick(metadata, failed) ?? balancer.pick(metadata)) as unknown as E | undefined;
}

interface HealthOf {
  health?: UpstreamHealth | undefined;
  protocol: ProtocolDef;
}

/** An upstream stage closed on its own: an error before any byte from it is a failure. */
export function noteStageClosed(c: HealthOf | undefined, st: Stage, err: Error | undefined): void {
  if (c?.health === undefined || err === undefined || st.endpoint === undefined || st.role === 'source') return;
  if ((st.outLink?.bytes ?? 0) > 0) return;
  c.health.state.failure(st.endpoint.name, `reset before the first byte: ${err.message}`);
}

/** A session ended: every upstream stage that received bytes counts as a success. */
export function noteSessionEnd(clusters: ReadonlyMap<string, HealthOf>, s: Session): void {
  for (const st of s.stages()) {
    if (st.role === 'source' || st.endpoint === undefined || (st.outLink?.bytes ?? 0) === 0) continue;
    const c = clusters.get(st.origin);
    if (c?.health === undefined || c.protocol.cluster?.reportsOutcome) continue;
    c.health.state.success(st.endpoint.name);
  }
}
