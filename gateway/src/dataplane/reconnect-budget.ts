// When a disconnected stage may be reconnected (retry_on disconnect/always).
//
// Two rules keep reconnects bounded:
// - A stage whose input had ended (the client half-closed, and that EOF was
//   passed on) is never reconnected: a new connection could not be given the
//   request's end again, so the session would wait forever. An upstream that
//   answers the client's EOF with a reset is the end of the exchange.
// - A stage that reconnected and dropped again before it sent a byte is
//   flapping: after `num_retries` (at least 1) such reconnects in a row the
//   session ends. A reconnect that carried data starts the count again, so a
//   long-lived session may still survive any number of spaced-out upstream
//   restarts.

import type { RetryPolicy } from '../core/model.js';
import type { Stage } from './session.js';

interface Streak {
  count: number;
  /** Bytes the stage had sent into the session when it last reconnected. */
  bytesAt: number;
}

const streaks = new WeakMap<Stage, Streak>();

export function mayReconnect(st: Stage, retry: RetryPolicy): boolean {
  if (st.inLink?.ended === true) return false;
  const streak = streaks.get(st);
  if (streak === undefined) return true;
  if ((st.outLink?.bytes ?? 0) !== streak.bytesAt) {
    streaks.delete(st);
    return true;
  }
  return streak.count < Math.max(1, retry.num_retries);
}

/** The stage was reconnected. */
export function reconnected(st: Stage): void {
  const streak = streaks.get(st) ?? { count: 0, bytesAt: 0 };
  streak.count++;
  streak.bytesAt = st.outLink?.bytes ?? 0;
  streaks.set(st, streak);
}

/** Does the policy reconnect a stage that drops (retry_on disconnect or always)? */
export function retriesOnDisconnect(p: RetryPolicy | undefined): boolean {
  return p !== undefined && (p.retry_on === 'disconnect' || p.retry_on === 'always');
}
