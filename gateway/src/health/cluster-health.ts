// The health of one cluster's endpoints: what active probes and passive
// observations (connect failures, resets before the first byte, HTTP 5xx)
// say about each, which endpoints the load balancer must avoid, and when an
// ejected endpoint comes back.
//
// An endpoint is avoided when it is ejected (outlier detection) or failed
// `unhealthy_threshold` active checks in a row. The balancers honour this
// through their `exclude` set (balancer/index.ts), so a ConsistentHash ring
// moves only the keys of the avoided endpoints, clockwise to the next usable
// one, and they move back when it returns.
//
// Panic mode (Envoy's healthy_panic_threshold): when fewer than
// `panic_threshold` percent of the endpoints are usable, health is ignored and
// every endpoint takes sessions again; a cluster whose endpoints all failed
// keeps trying them instead of refusing everything.
//
// State changes are logged once each (not per failure), and every state
// change recomputes the avoid set once, so a pick reads one field.

import type { Logger } from '../observe/log.js';
import type { HealthCheckSettings, OutlierSettings } from './settings.js';

export type HealthState = 'healthy' | 'unhealthy' | 'ejected' | 'unknown';

/** Health counters of a whole gateway, read by the metrics at scrape time; never reset. */
export class HealthStats {
  readonly checks = { success: 0, failure: 0, timeout: 0 };
  ejections = 0;
  /** Probes in flight over every cluster (health/active.ts bounds it). */
  inflight = 0;
  /**
   * With data-plane workers (docs/workers.md) the main process probes, once
   * per endpoint and interval however many workers run, and `share` hands
   * each result to the workers; a worker probes nothing (`probes` false).
   */
  probes = true;
  share: ((cluster: string, endpoint: string, ok: boolean, reason: string, timedOut: boolean) => void) | undefined;
}

interface EndpointHealth {
  /** Active check verdict: undefined until a threshold is crossed. */
  active: 'healthy' | 'unhealthy' | undefined;
  activeStreak: number;
  activeStreakOk: boolean;
  passiveFailures: number;
  /** A passive observation succeeded since the last failure streak began. */
  passiveOk: boolean;
  ejectedUntil: number;
  timesEjected: number;
  lastReturn: number;
  ejectTimer: NodeJS.Timeout | undefined;
  lastCheck: number | undefined;
  lastReason: string | undefined;
  /** The state last logged, so each change is logged once. */
  logged: HealthState;
}

export interface EndpointHealthView {
  readonly health: HealthState;
  readonly last_check?: string;
  readonly reason?: string;
  readonly ejections?: number;
  /** The addresses an endpoint given by name resolved to last (./dns.ts). */
  readonly addresses?: readonly string[];
}

export class ClusterHealth {
  private readonly eps = new Map<string, EndpointHealth>();
  /** Names the balancer must skip; undefined when none (or in panic mode). */
  private avoidSet: ReadonlySet<string> | undefined;
  private closed = false;

  constructor(
    readonly cluster: string,
    readonly outlier: OutlierSettings | undefined,
    readonly check: HealthCheckSettings | undefined,
    readonly panicThreshold: number,
    private readonly stats: HealthStats,
    private readonly log: Logger,
    private readonly now: () => number = Date.now,
  ) {}

  /** The endpoint set changed (added or deleted endpoints). */
  update(names: readonly string[]): void {
    const keep = new Set(names);
    for (const [name, h] of this.eps) {
      if (!keep.has(name)) {
        if (h.ejectTimer) clearTimeout(h.ejectTimer);
        this.eps.delete(name);
      }
    }
    for (const name of names) {
      if (this.eps.has(name)) continue;
      this.eps.set(name, {
        active: undefined, activeStreak: 0, activeStreakOk: true, passiveFailures: 0, passiveOk: false,
        ejectedUntil: 0, timesEjected: 0, lastReturn: 0, ejectTimer: undefined,
        lastCheck: undefined, lastReason: undefined, logged: 'unknown',
      });
    }
    this.recompute();
  }

  close(): void {
    this.closed = true;
    for (const h of this.eps.values()) if (h.ejectTimer) clearTimeout(h.ejectTimer);
    this.eps.clear();
    this.avoidSet = undefined;
  }

  /** Endpoints to avoid for a new connection; undefined when none. */
  avoid(): ReadonlySet<string> | undefined {
    return this.avoidSet;
  }

  // ------------------------------------------------------------- passive

  /** A passive failure: connect failure, reset before the first byte, HTTP 5xx. */
  failure(name: string, reason: string): void {
    const h = this.eps.get(name);
    if (!h || this.closed) return;
    h.passiveFailures++;
    h.passiveOk = false;
    h.lastReason = reason;
    const o = this.outlier;
    if (o !== undefined && h.ejectedUntil === 0 && h.passiveFailures >= o.consecutive_failures) this.eject(name, h, o, reason);
    else this.changed(name, h);
  }

  /** A passive success: bytes came back, or an HTTP status below 500. */
  success(name: string): void {
    const h = this.eps.get(name);
    if (!h || this.closed) return;
    if (h.passiveFailures === 0 && h.passiveOk) return; // the common case: nothing changes
    h.passiveFailures = 0;
    h.passiveOk = true;
    this.changed(name, h);
  }

  private eject(name: string, h: EndpointHealth, o: OutlierSettings, reason: string): void {
    let ejected = 0;
    let total = 0;
    for (const e of this.eps.values()) {
      total++;
      if (e.ejectedUntil !== 0) ejected++;
    }
    // Envoy's rule: at most max_ejection_percent, but one endpoint may always be ejected.
    if (ejected > 0 && ((ejected + 1) * 100) / total > o.max_ejection_percent) {
      this.changed(name, h);
      return;
    }
    const now = this.now();
    // A long quiet spell since the last return forgets earlier ejections.
    if (h.timesEjected > 0 && now - h.lastReturn > o.base_ejection_time * h.timesEjected * 2) h.timesEjected = 0;
    h.timesEjected++;
    const ms = Math.min(o.base_ejection_time * h.timesEjected, o.max_ejection_time);
    h.ejectedUntil = now + ms;
    h.lastReason = `${reason} (${h.passiveFailures} failures in a row; ejected for ${ms} ms)`;
    this.stats.ejections++;
    h.ejectTimer = setTimeout(() => this.unEject(name), ms);
    h.ejectTimer.unref();
    this.recompute();
    this.changed(name, h);
  }

  private unEject(name: string): void {
    const h = this.eps.get(name);
    if (!h || this.closed) return;
    h.ejectTimer = undefined;
    h.ejectedUntil = 0;
    h.passiveFailures = 0;
    h.lastReturn = this.now();
    h.lastReason = 'ejection time over';
    this.recompute();
    this.changed(name, h);
  }

  // -------------------------------------------------------------- active

  /** One active probe result; `counted`: false for a result the main process probed and counted (a worker's). */
  checked(name: string, ok: boolean, reason: string, timedOut = false, counted = true): void {
    const h = this.eps.get(name);
    if (!h || this.closed || this.check === undefined) return;
    if (counted) this.stats.checks[ok ? 'success' : timedOut ? 'timeout' : 'failure']++;
    h.lastCheck = this.now();
    h.lastReason = reason;
    if (h.activeStreakOk === ok) h.activeStreak++;
    else {
      h.activeStreakOk = ok;
      h.activeStreak = 1;
    }
    const before = h.active;
    if (ok && h.activeStreak >= this.check.healthy_threshold) h.active = 'healthy';
    // The first verdict on a new endpoint comes from its first failure streak too.
    if (!ok && h.activeStreak >= this.check.unhealthy_threshold) h.active = 'unhealthy';
    // An endpoint never checked before is taken as healthy at its first success.
    if (ok && before === undefined) h.active = 'healthy';
    if (before !== h.active) {
      if (h.active === 'healthy' && h.ejectedUntil !== 0) {
        // An active check that passes brings an ejected endpoint back early (as Envoy does).
        if (h.ejectTimer) clearTimeout(h.ejectTimer);
        h.ejectTimer = undefined;
        h.ejectedUntil = 0;
        h.passiveFailures = 0;
        h.lastReturn = this.now();
      }
      this.recompute();
    }
    this.changed(name, h);
  }

  // --------------------------------------------------------------- views

  private stateOf(h: EndpointHealth): HealthState {
    if (h.ejectedUntil !== 0) return 'ejected';
    if (h.active === 'unhealthy') return 'unhealthy';
    if (h.active === 'healthy') return 'healthy';
    if (this.check === undefined && h.passiveOk) return 'healthy';
    return 'unknown';
  }

  state(name: string): HealthState {
    const h = this.eps.get(name);
    return h ? this.stateOf(h) : 'unknown';
  }

  view(name: string): EndpointHealthView {
    const h = this.eps.get(name);
    if (!h) return { health: 'unknown' };
    return {
      health: this.stateOf(h),
      ...(h.lastCheck !== undefined ? { last_check: new Date(h.lastCheck).toISOString() } : {}),
      ...(h.lastReason !== undefined ? { reason: h.lastReason } : {}),
      ...(h.timesEjected > 0 ? { ejections: h.timesEjected } : {}),
    };
  }

  /** Whether the cluster ignores health now because too few endpoints are usable. */
  get panic(): boolean {
    return this.inPanic;
  }

  private inPanic = false;

  private recompute(): void {
    const bad = new Set<string>();
    for (const [name, h] of this.eps) if (h.ejectedUntil !== 0 || h.active === 'unhealthy') bad.add(name);
    const total = this.eps.size;
    const usablePct = total === 0 ? 100 : ((total - bad.size) * 100) / total;
    const panic = bad.size > 0 && usablePct < this.panicThreshold;
    if (panic !== this.inPanic) {
      this.inPanic = panic;
      if (panic) this.log.warn({ cluster: this.cluster, usable: total - bad.size, of: total }, 'too few healthy endpoints: panic mode, every endpoint takes sessions');
      else this.log.info({ cluster: this.cluster }, 'panic mode over: unhealthy endpoints are avoided again');
    }
    this.avoidSet = bad.size === 0 || panic ? undefined : bad;
  }

  private changed(name: string, h: EndpointHealth): void {
    const s = this.stateOf(h);
    if (s === h.logged) return;
    const from = h.logged;
    h.logged = s;
    const line = { cluster: this.cluster, endpoint: name, from, to: s, reason: h.lastReason };
    if (s === 'ejected' || s === 'unhealthy') this.log.warn(line, 'endpoint health changed');
    else this.log.info(line, 'endpoint health changed');
  }

  /** [endpoint, healthy?] for the l7mp_endpoint_healthy gauge. */
  *gauge(): IterableIterator<[string, HealthState]> {
    for (const [name, h] of this.eps) yield [name, this.stateOf(h)];
  }
}
