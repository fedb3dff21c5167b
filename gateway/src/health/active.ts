// The active check schedule of one cluster: one timer per endpoint, each
// probe `interval` after the previous one ended, jittered by ±10 % so that
// endpoints (and gateways) do not probe in lockstep. The first probe of a new
// endpoint runs within a tenth of an interval.
//
// Bounds: one probe in flight per endpoint (the next is scheduled only when
// it settles, and timeout <= interval); at most MAX_INFLIGHT probes in flight
// per gateway: a probe that finds no slot is put off by one interval, not
// queued, and is not counted as a result.

import type { ClusterHealth, HealthStats } from './cluster-health.js';
import { ProbeTimeout, type Probe, type ProbeTarget } from './probes.js';
import type { HealthCheckSettings } from './settings.js';

export const MAX_INFLIGHT = 64;

export class ActiveChecker {
  private readonly timers = new Map<string, NodeJS.Timeout>();
  private readonly targets = new Map<string, ProbeTarget>();
  private closed = false;

  constructor(
    private readonly health: ClusterHealth,
    private readonly probe: Probe,
    private readonly hc: HealthCheckSettings,
    private readonly stats: HealthStats,
    /** Where to probe an endpoint (its resolved address, for names). */
    private readonly resolve: (e: ProbeTarget) => ProbeTarget,
  ) {}

  update(endpoints: readonly ProbeTarget[]): void {
    if (this.closed) return;
    const keep = new Set(endpoints.map((e) => e.name));
    for (const [name, t] of this.timers) {
      if (keep.has(name)) continue;
      clearTimeout(t);
      this.timers.delete(name);
      this.targets.delete(name);
    }
    for (const e of endpoints) {
      const known = this.targets.get(e.name);
      this.targets.set(e.name, e);
      if (known === undefined) this.schedule(e.name, Math.random() * this.hc.interval * 0.1);
    }
  }

  close(): void {
    this.closed = true;
    for (const t of this.timers.values()) clearTimeout(t);
    this.timers.clear();
    this.targets.clear();
  }

  private schedule(name: string, ms: number): void {
    const t = setTimeout(() => this.run(name), ms);
    t.unref();
    this.timers.set(name, t);
  }

  private next(name: string): void {
    if (this.closed || !this.targets.has(name)) return;
    this.schedule(name, this.hc.interval * (0.9 + Math.random() * 0.2));
  }

  private run(name: string): void {
    const target = this.targets.get(name);
    if (this.closed || target === undefined) return;
    if (this.stats.inflight >= MAX_INFLIGHT) {
      this.next(name);
      return;
    }
    this.stats.inflight++;
    this.probe(this.resolve(target), this.hc.timeout).then(
      (reason) => this.settle(name, target, true, reason, false),
      (err: unknown) => this.settle(name, target, false, err instanceof Error ? err.message : String(err), err instanceof ProbeTimeout),
    );
  }

  private settle(name: string, target: ProbeTarget, ok: boolean, reason: string, timedOut: boolean): void {
    this.stats.inflight--;
    // An endpoint deleted (or replaced) while its probe ran: the result is about something gone.
    if (this.closed || this.targets.get(name) !== target) return;
    this.health.checked(name, ok, reason, timedOut);
    this.stats.share?.(this.health.cluster, name, ok, reason, timedOut);
    this.next(name);
  }
}
