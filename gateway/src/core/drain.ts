// Ending sessions on purpose: graceful drain on SIGTERM/SIGINT, and the
// error that cut sessions carry (drain timeout, shutdown, REST deletes).
//
// Nothing may look like success when it was cut: a session the gateway ends
// itself closes its stages with a SessionCut, so each protocol shows it its
// own way (HTTP 503 before the response head, an aborted response after it,
// WebSocket close 1001, a TCP reset; UDP simply ends). A graceful close there
// read as an empty `200 OK` or a clean FIN.

import { GatewayError } from './errors.js';
import type { Gateway } from './gateway.js';
import type { Session } from '../dataplane/session.js';

/** Why a session ended, as counted in l7mp_sessions_ended_total{reason}. */
export type EndKind = 'completed' | 'error' | 'deleted' | 'drain_timeout' | 'shutdown';
export const END_KINDS: readonly EndKind[] = ['completed', 'error', 'deleted', 'drain_timeout', 'shutdown'];

/** admin.drain_timeout's default, in milliseconds. */
export const DEFAULT_DRAIN_TIMEOUT_MS = 10_000;
const POLL_MS = 25;

/** The cause a session is cut with: 503 for HTTP, close code 1001 for WebSocket, a reset for TCP. */
export class SessionCut extends GatewayError {
  /** WebSocket peers get "going away" (websocket.ts closeCodeFor). */
  readonly closeCode = 1001;
  /** Stream sockets are reset (RST), not closed with a FIN that reads as a complete stream. */
  readonly reset = true;
  constructor(readonly kind: EndKind, message: string) {
    super('UNAVAILABLE', message);
  }
}

/** The end kind of a session that is over (its cut, else how it ended). */
export function endKindOf(s: Session): EndKind {
  return s.endKind ?? (s.failed ? 'error' : 'completed');
}

function live(gw: Gateway): Session[] {
  const out: Session[] = [];
  for (const s of gw.sessions.values()) if (s.status === 'INIT' || s.status === 'CONNECTED') out.push(s);
  return out;
}

export interface DrainSummary {
  /** Sessions live when the drain began. */
  sessions: number;
  /** Of those, the ones that ended by themselves within the timeout. */
  drained: number;
  /** The ones cut at the timeout. */
  cut: number;
  durationMs: number;
}

export interface DrainOptions {
  /**
   * Called once this gateway's own sessions have ended before the timeout;
   * the stop waits for the promise it returns (or the timeout). A worker
   * (workers/entry.ts) waits there for the others: otherwise the one without
   * sessions would stop first and close the kept-alive connections it holds
   * without the 503 that a single process gives a request on them.
   */
  hold?: () => Promise<void>;
}

/**
 * Drain, then stop: `/ready` turns 503 (the gateway is `draining`), the
 * listeners stop accepting (new sessions on connections they still hold are
 * refused with 503), the live sessions get `timeoutMs` to end by themselves,
 * the rest are cut, and the gateway stops.
 */
export async function drainAndStop(gw: Gateway, timeoutMs: number, opts: DrainOptions = {}): Promise<DrainSummary> {
  const began = Date.now();
  gw.draining = true;
  const start = live(gw);
  const compiledStart = gw.compiled.live(); // compiled sessions (fastpath/compiled.ts): counted, not listed
  gw.log.info({ sessions: start.length + compiledStart, drain_timeout_ms: timeoutMs }, 'draining');
  for (const l of gw.listeners.values()) {
    try {
      l.impl.stopAccepting?.();
    } catch (err) {
      gw.log.warn({ listener: l.name, err: String(err) }, 'listener did not stop accepting');
    }
  }
  const deadline = began + timeoutMs;
  while (timeoutMs > 0 && Date.now() < deadline && live(gw).length + gw.compiled.live() > 0) {
    await new Promise((r) => setTimeout(r, Math.min(POLL_MS, Math.max(1, deadline - Date.now()))));
  }
  if (opts.hold !== undefined && timeoutMs > 0 && Date.now() < deadline) {
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([opts.hold(), new Promise((r) => { timer = setTimeout(r, deadline - Date.now()); })]);
    clearTimeout(timer);
  }
  const rest = live(gw);
  const compiledCut = gw.compiled.live();
  const kind: EndKind = timeoutMs > 0 ? 'drain_timeout' : 'shutdown';
  gw.compiled.cutAll(kind);
  for (const s of rest) {
    gw.endSession(s, timeoutMs > 0 ? `drain timeout (${timeoutMs} ms) reached` : 'gateway shutting down', false, new SessionCut(kind, 'the gateway is shutting down'));
  }
  const cutSet = new Set(rest);
  const summary: DrainSummary = {
    sessions: start.length + compiledStart,
    drained: start.filter((s) => !cutSet.has(s)).length + Math.max(0, compiledStart - compiledCut),
    cut: rest.length + compiledCut,
    durationMs: Date.now() - began,
  };
  gw.log.info({ ...summary }, `drain done: ${summary.drained} sessions drained, ${summary.cut} cut`);
  await gw.stop();
  return summary;
}
