// Flow tables of the listeners that make a session per remote (UDP server
// mode, SCTP over UDP, Unix datagram): the idle sweep that ends silent flows,
// and early drop.
//
// Early drop, after conntrack's: when
// admission finds no room for a new flow (a session cap, or the descriptor
// budget), the listener ends an idle flow so that the newcomer gets through,
// instead of every new flow being refused until the flood's flows time out
// (idle_timeout, 120 s by default).
//
// Which flow: among the oldest entries of the table (a Map keeps insertion
// order), one idle for at least EVICT_MIN_IDLE_MS that never sent the client
// a reply (conntrack's "not assured") goes first; else the longest idle one.
// At most EVICT_SCAN entries are looked at per eviction, and the busy ones
// seen are moved to the back of the table, so a table of live flows costs a
// bounded scan per new flow, not a walk of the whole table.
//
// Idle time comes from a coarse clock (flowClock.now, refreshed every
// CLOCK_MS by a timer) so that the per-datagram cost is one field store.

import { clockNow } from '../../dataplane/clock.js';

/** A flow must have been silent this long to be evicted. */
export const EVICT_MIN_IDLE_MS = 500;
/** Entries looked at per eviction. */
export const EVICT_SCAN = 64;
/** Resolution of flowClock. */
export const CLOCK_MS = 100;

/** What eviction reads of a flow channel. */
export interface EvictableFlow {
  readonly closed: boolean;
  /** flowClock.now when a datagram last went either way. */
  lastActive: number;
  /** Whether the client was ever sent a datagram on this flow. */
  replied: boolean;
  close(err?: Error): void;
}

/** dataplane/clock.ts's ms: compare its readings with each other, never with Date.now(). */
export const flowClock = { now: clockNow() };
let clockTimer: NodeJS.Timeout | undefined;

/** Keep flowClock ticking (idempotent; the timer does not hold the process). */
export function startFlowClock(): void {
  if (clockTimer !== undefined) return;
  flowClock.now = clockNow();
  clockTimer = setInterval(() => { flowClock.now = clockNow(); }, CLOCK_MS);
  clockTimer.unref();
}

/**
 * Pick the flow to evict from `flows` (values that are not flows, such as a
 * flow's pending datagrams before its socket exists, are skipped), or
 * undefined when none is idle enough. Busy entries seen move to the back;
 * ended flows found on the way are deleted.
 */
export function pickEvictable<K, F extends EvictableFlow>(flows: Map<K, F | unknown>, isFlow: (v: unknown) => v is F, now = flowClock.now): F | undefined {
  let oldest: F | undefined;
  let unreplied: F | undefined;
  let seen = 0;
  const busy: K[] = [];
  for (const [k, v] of flows) {
    if (isFlow(v) && v.closed) {
      // An ended flow still listed (the node:dgram path drops it lazily): gone
      // for good, so it costs no scan slot; left in place, a table whose head
      // is all ended flows would never evict again.
      flows.delete(k);
      continue;
    }
    if (++seen > EVICT_SCAN) break;
    if (!isFlow(v) || now - v.lastActive < EVICT_MIN_IDLE_MS) {
      // Busy, or not a flow yet (its socket is being set up): look elsewhere next time.
      busy.push(k);
      continue;
    }
    if (!v.replied) {
      unreplied = v;
      break;
    }
    if (oldest === undefined || v.lastActive < oldest.lastActive) oldest = v;
  }
  for (const k of busy) {
    const v = flows.get(k)!;
    flows.delete(k);
    flows.set(k, v);
  }
  return unreplied ?? oldest;
}

/** What the idle sweep reads of a flow. */
export interface IdleFlow {
  readonly closed: boolean;
  close(err?: Error): void;
}

/** How an IdleSweep reads its owner's flow table. */
export interface IdleSweepOps<F extends IdleFlow> {
  /** The flow table; read on every sweep (the owner may swap it). */
  table(): Map<unknown, unknown>;
  /** The entry as a flow to judge, or undefined to pass it over (not a flow yet, still being set up). */
  flow(entry: unknown): F | undefined;
  /** Messages or packets the flow carried since the last call; resets its count. */
  takeActivity(flow: F): number;
  /** The flow was silent for the idle timeout: end it (and log why). */
  expired(flow: F): void;
}

/** How often to sweep for a timeout: a quarter of it, within 250 ms..10 s. */
export function sweepEvery(idleTimeoutS: number): number {
  return Math.max(250, Math.min(idleTimeoutS * 1000 / 4, 10_000));
}

/**
 * Ends the flows of a table that were silent for `idleTimeoutS` seconds
 * (0: never). Counting on the hot path is one increment per datagram; the
 * sweep reads and resets the counts every sweepEvery() ms, so the timeout
 * holds to within one sweep interval. Ended flows found in the table are
 * dropped (their sessions replaced the table's close listener, so they
 * leave lazily).
 */
export class IdleSweep<F extends IdleFlow> {
  private readonly lastActive = new WeakMap<F, number>();
  private timer: NodeJS.Timeout | undefined;
  /** The owner stopped: sweep on until the table is empty (its sessions outlive it). */
  private retiring = false;

  constructor(private readonly idleTimeoutS: number, private readonly ops: IdleSweepOps<F>) {}

  start(): void {
    if (this.idleTimeoutS <= 0 || this.timer !== undefined) return;
    this.timer = setInterval(() => this.sweep(), sweepEvery(this.idleTimeoutS));
    this.timer.unref();
  }

  stop(): void {
    if (this.timer !== undefined) clearInterval(this.timer);
    this.timer = undefined;
  }

  /** Keep sweeping the flows that are left, and stop once there are none. */
  retire(): void {
    this.retiring = true;
    // Nothing left: stop now. A pending interval holds the owner (a deleted
    // listener) until its next tick, up to 10 s.
    if (this.ops.table().size === 0) this.stop();
  }

  sweep(now = Date.now()): void {
    const flows = this.ops.table();
    if (this.retiring && flows.size === 0) this.stop();
    const limit = this.idleTimeoutS * 1000;
    for (const [key, entry] of flows) {
      const flow = this.ops.flow(entry);
      if (flow === undefined) continue;
      if (flow.closed) {
        flows.delete(key);
        continue;
      }
      const seen = this.lastActive.get(flow);
      if (this.ops.takeActivity(flow) > 0 || seen === undefined) {
        this.lastActive.set(flow, now);
      } else if (now - seen >= limit) {
        this.ops.expired(flow);
      }
    }
  }
}
