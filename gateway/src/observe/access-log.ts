// The access log (admin.access_log_path): one JSON line per ended session,
// written by a session hook (dataplane/hooks.ts) once the counters are final.

import type { SessionHooks } from '../dataplane/hooks.js';
import type { Session } from '../dataplane/session.js';

/** The access log line of an ended session. */
export function accessLogLine(s: Session): Record<string, unknown> {
  const c = s.counters();
  return {
    time: new Date(s.ended ?? Date.now()).toISOString(),
    session: s.name,
    listener: s.listener,
    route: s.route,
    destination: s.destination?.origin,
    endpoint: s.destination?.endpoint?.name,
    peer: s.source.channel?.peer,
    duration_ms: (s.ended ?? Date.now()) - s.started,
    ingress_bytes: c.ingress.bytes,
    ingress_packets: c.ingress.packets,
    egress_bytes: c.egress.bytes,
    egress_packets: c.egress.packets,
    status: s.failed ? 'error' : 'ok',
    reason: s.endReason,
  };
}

/** Hands each ended session's line to `write`. */
export function accessLogHooks(write: (line: Record<string, unknown>) => void): SessionHooks {
  return { onSessionEnd: (s) => write(accessLogLine(s)) };
}
