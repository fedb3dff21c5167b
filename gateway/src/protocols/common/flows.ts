// Early drop for flow tables (UDP server mode), after conntrack's: when
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

export const flowClock = { now: Date.now() };
let clockTimer: NodeJS.Timeout | undefined;

/** Keep flowClock ticking (idempotent; the timer does not hold the process). */
export function startFlowClock(): void {
  if (clockTimer !== undefined) return;
  flowClock.now = Date.now();
  clockTimer = setInterval(() => { flowClock.now = Date.now(); }, CLOCK_MS);
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
