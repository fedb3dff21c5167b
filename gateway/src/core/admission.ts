// Admission of new data-plane sessions: the gate every listener's new
// session (a TCP connection, a UDP flow, an HTTP request) passes before it is
// routed and before it opens an upstream socket.
//
// In order, each refusal counted under its reason (observe/refusals.ts):
//   flow_rate          the source address made more than flow_rate new flows per second
//   listener_sessions  the listener holds its own cap of live sessions
//   max_sessions       the data plane as a whole holds max_sessions
//   fd_budget          descriptors in use reached the limit minus the reserve (fd-budget.ts)
// A listener that can evict (a UDP listener's flow table, ListenerImpl.evictIdle)
// is asked first when one of the last three would refuse: an idle flow goes
// (counted as flow_evicted) and the newcomer takes its place, as conntrack's
// early drop does, so a table filled by a flood does not lock out a new
// legitimate flow until the idle timeout.
//
// Listeners that serve the control plane (a route to an L7mpController or
// Prometheus cluster: the REST API, metrics) are never counted and never
// refused here: data-plane load cannot take the REST API down. The admin
// listener (observe/probe-listener.ts) is not a gateway listener at all.

import { RateLimiter } from '../api/security.js';
import type { Logger } from '../observe/log.js';
import type { RefusalReason, Refusals } from '../observe/refusals.js';
import { invalid } from './errors.js';
import { FD_CEILING, FdBudget, defaultReserve, readFdLimit } from './fd-budget.js';
import { isObject } from './is-object.js';

export interface AdmissionLimits {
  /** Live data-plane sessions at most, gateway-wide. */
  maxSessions: number;
  /** Live sessions per listener unless its options.max_sessions says otherwise. */
  listenerMaxSessions: number;
  /** New flows per source address per second; 0 turns the limit off. */
  flowRate: number;
  /** New flows a source may open at once before flowRate applies. */
  flowBurst: number;
  /** Source addresses tracked at once (the bucket map's bound). */
  flowSources: number;
  /** Descriptors kept for the control plane and live sessions; undefined: defaultReserve(limit). */
  fdReserve: number | undefined;
}

export const DEFAULT_LIMITS: AdmissionLimits = {
  maxSessions: 100_000,
  listenerMaxSessions: 50_000,
  flowRate: 1000,
  flowBurst: 2000,
  flowSources: 65_536,
  fdReserve: undefined,
};

/** A listener's `options.max_sessions` (undefined: the admin default). */
export function parseListenerMaxSessions(options: Record<string, unknown>, field: string): number | undefined {
  const v = options.max_sessions;
  if (v === undefined) return undefined;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 1) throw invalid(`${field}.max_sessions`, 'must be a positive integer');
  return v;
}

/** What admission reads of the object graph (the Gateway). */
export interface AdmissionGraph {
  readonly listeners: ReadonlyMap<string, {
    readonly rules: string;
    readonly options: { readonly max_sessions?: number };
    readonly impl: { evictIdle?(): boolean };
  }>;
  readonly rulelists: ReadonlyMap<string, { readonly rules: readonly string[] }>;
  readonly rules: ReadonlyMap<string, { readonly action: { readonly route?: string; readonly apply?: string } }>;
  readonly routes: ReadonlyMap<string, { readonly destination: string }>;
  readonly clusters: ReadonlyMap<string, { readonly protocol: { readonly name: string } }>;
}

/** Cluster protocols that make a listener part of the control plane. */
export const CONTROL_PLANE_PROTOCOLS: ReadonlySet<string> = new Set(['L7mpController', 'Prometheus']);

/**
 * A listener's live data-plane sessions. Sessions hold a reference, so a
 * listener deleted and re-added keeps its count right. The count is a cell
 * the addon's Forwarder adds its own sessions to (fastpath/compiled.ts).
 */
export class ListenerCount {
  readonly cell = new Float64Array(1);
  constructor(readonly name: string) {}

  get live(): number {
    return this.cell[0]!;
  }

  set live(n: number) {
    this.cell[0] = n;
  }
}

/** The gateway-wide cells shared with the addon's Forwarder: live sessions and max_sessions, then the descriptor budget's (fd-budget.ts). */
export const GLOBAL_LIVE = 0;
export const GLOBAL_MAX = 1;

/** What a new session offers for admission. */
export interface Candidate {
  readonly metadata: Record<string, unknown>;
}

export class Admission {
  readonly fds: FdBudget;
  private readonly rate: RateLimiter | undefined;
  /** [live, max_sessions, then FdBudget's cells]: read and written by the Forwarder too. */
  readonly cells = new Float64Array(FD_CEILING + 1);
  private readonly counts = new Map<string, ListenerCount>();
  /** listener -> serves the control plane; cleared by invalidate() on every change of the graph. */
  private readonly controlPlane = new Map<string, boolean>();

  constructor(
    private readonly graph: AdmissionGraph,
    private readonly refusals: Refusals,
    readonly limits: AdmissionLimits = DEFAULT_LIMITS,
    fdLimit: number | undefined = readFdLimit(),
  ) {
    this.fds = new FdBudget(fdLimit, limits.fdReserve ?? (fdLimit === undefined ? 0 : defaultReserve(fdLimit)), undefined, undefined, this.cells);
    this.cells[GLOBAL_MAX] = limits.maxSessions;
    this.rate = limits.flowRate > 0 ? new RateLimiter(limits.flowRate, limits.flowBurst, limits.flowSources) : undefined;
  }

  /** Live data-plane sessions (control-plane ones are not counted). */
  get dataPlaneSessions(): number {
    return this.cells[GLOBAL_LIVE]!;
  }

  /** A listener's count (for the Forwarder to share); made on first use. */
  countFor(listener: string): ListenerCount {
    return this.countOf(listener);
  }

  /** A listener's cap of live sessions. */
  listenerMax(listener: string): number {
    return this.graph.listeners.get(listener)?.options.max_sessions ?? this.limits.listenerMaxSessions;
  }

  /** Log the limits once at start. */
  logLimits(log: Logger): void {
    const f = this.fds;
    log.info({
      fd_limit: f.limit ?? 'unknown', fd_reserve: f.reserve, fd_in_use: f.limit === undefined ? 'unknown' : f.usage(),
      max_sessions: this.limits.maxSessions, listener_max_sessions: this.limits.listenerMaxSessions,
      flow_rate: this.limits.flowRate, flow_burst: this.limits.flowBurst,
    }, f.limit === undefined
      ? 'data-plane limits; the descriptor budget is off (no /proc/self/limits)'
      : 'data-plane limits; RLIMIT_NOFILE is the soft limit Node raised to the hard limit at start');
  }

  /** The graph changed: which listeners serve the control plane is looked up again. */
  invalidate(): void {
    this.controlPlane.clear();
  }

  /**
   * May a new session of `listener` start? If not, the refusal is counted
   * and logged under its reason. The control plane is always admitted.
   */
  admit(listener: string, c: Candidate): boolean {
    if (this.servesControlPlane(listener)) return true;
    if (this.rate !== undefined) {
      const src = sourceOf(c.metadata);
      if (src !== undefined && !this.rate.take(src).ok) {
        this.refusals.refuse('flow_rate', listener, { source: src, flow_rate: this.limits.flowRate });
        return false;
      }
    }
    const lc = this.countOf(listener);
    const reason = this.full(lc, listener);
    if (reason === undefined) return true;
    // Room made by an early drop: one idle flow out, this one in.
    const impl = this.graph.listeners.get(listener)?.impl;
    if (impl?.evictIdle === undefined || !impl.evictIdle()) {
      this.refusals.refuse(reason, listener, this.detail(reason, lc, listener));
      return false;
    }
    this.refusals.refuse('flow_evicted', listener, { because: reason });
    return true;
  }

  /** Count an admitted session; returns what closed() takes back (undefined: the control plane, not counted). */
  opened(listener: string): ListenerCount | undefined {
    if (this.servesControlPlane(listener)) return undefined;
    const lc = this.countOf(listener);
    lc.live++;
    this.cells[GLOBAL_LIVE]++;
    this.fds.opened();
    return lc;
  }

  /** A counted session ended. */
  closed(lc: ListenerCount): void {
    lc.live--;
    this.cells[GLOBAL_LIVE]--;
    this.fds.closed();
    if (lc.live === 0 && !this.graph.listeners.has(lc.name)) this.counts.delete(lc.name);
  }

  private full(lc: ListenerCount, listener: string): RefusalReason | undefined {
    if (lc.live >= this.listenerMax(listener)) return 'listener_sessions';
    if (this.dataPlaneSessions >= this.limits.maxSessions) return 'max_sessions';
    if (this.fds.exhausted()) return 'fd_budget';
    return undefined;
  }

  private detail(reason: RefusalReason, lc: ListenerCount, listener: string): Record<string, unknown> {
    switch (reason) {
      case 'listener_sessions': return { live: lc.live, max: this.listenerMax(listener) };
      case 'max_sessions': return { live: this.dataPlaneSessions, max: this.limits.maxSessions };
      default: return { fd_in_use: this.fds.usage(), fd_limit: this.fds.limit, fd_reserve: this.fds.reserve };
    }
  }

  private countOf(listener: string): ListenerCount {
    let lc = this.counts.get(listener);
    if (lc === undefined) {
      lc = new ListenerCount(listener);
      this.counts.set(listener, lc);
    }
    return lc;
  }

  /** Does any rule reachable from the listener route to a control-plane cluster? */
  servesControlPlane(listener: string): boolean {
    let v = this.controlPlane.get(listener);
    if (v === undefined) {
      const l = this.graph.listeners.get(listener);
      v = this.walk(l?.rules, new Set());
      if (l !== undefined) this.controlPlane.set(listener, v); // not while it is still being added
    }
    return v;
  }

  private walk(rulelist: string | undefined, seen: Set<string>): boolean {
    if (rulelist === undefined || seen.has(rulelist)) return false;
    seen.add(rulelist);
    for (const rn of this.graph.rulelists.get(rulelist)?.rules ?? []) {
      const a = this.graph.rules.get(rn)?.action;
      if (a === undefined) continue;
      if (a.route !== undefined) {
        const dest = this.graph.routes.get(a.route)?.destination;
        const p = dest === undefined ? undefined : this.graph.clusters.get(dest)?.protocol.name;
        if (p !== undefined && CONTROL_PLANE_PROTOCOLS.has(p)) return true;
      }
      if (a.apply !== undefined && this.walk(a.apply, seen)) return true;
    }
    return false;
  }
}

/** The client address of a session's metadata (IP.src_addr), if any. */
function sourceOf(metadata: Record<string, unknown>): string | undefined {
  const ip = metadata.IP;
  if (!isObject(ip)) return undefined;
  const a = ip.src_addr;
  return typeof a === 'string' && a !== '' ? a : undefined;
}
