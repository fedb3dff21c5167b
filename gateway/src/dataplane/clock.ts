// Milliseconds since this process loaded, for times that many objects keep
// (a session's start, a flow's last datagram). A wall-clock time in ms is a
// double, and V8 gives every object that keeps one in a field a heap number
// of its own: two objects to allocate and to copy out of the young
// generation per session where one would do. These readings stay small
// integers for the first 12 days, which a field holds inline; after that
// they are doubles again, just as correct.

/** Date.now() when the process loaded this module. */
export const CLOCK_EPOCH = Date.now();

/** ms since CLOCK_EPOCH: compare readings with each other, or add CLOCK_EPOCH for a wall-clock time. */
export function clockNow(): number {
  return small(Date.now() - CLOCK_EPOCH);
}

/** ms since an earlier clockNow() reading, as a small integer where it is one. */
export function clockSince(t0: number): number {
  return small(clockNow() - t0);
}

// `| 0` makes it a small integer even in unoptimized code, where the
// difference of two doubles is a heap number, and a field's first value
// decides whether the field holds numbers inline.
function small(ms: number): number {
  return ms < 0x3fffffff ? ms | 0 : ms;
}
