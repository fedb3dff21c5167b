// How a compiled listener's sessions show (fastpath/compiled.ts): the REST
// view of a live pair, the view kept listed after it ended (options.track),
// and its access log line, with the fields, names and wording a Session
// gives (dataplane/session.ts, api/dump.ts, observe/access-log.ts).

import { END_KINDS, type EndKind } from '../core/drain.js';
import { errnoCode, type ForwarderPair } from '../native/sockets.js';
import type { Entry, Plan } from './compiled.js';

/** An ended pair's record with its addresses (Forwarder.takeEnded in detail mode). */
export interface EndedPair {
  readonly pair: ForwarderPair;
  readonly duration: number;
  readonly kind: EndKind;
  /** The errno's code, when it ended with one. */
  readonly code: string | undefined;
  /** Which socket the error came from: 0 the client's, 1 the upstream's. */
  readonly side: number;
}

export function endedOf(r: Float64Array, a: [string, number, string, number]): EndedPair {
  const [id, gen, started, duration, rx, rxPackets, tx, txPackets, err, kind, target, side] = r as unknown as number[];
  return {
    pair: [id!, gen!, started!, a[0], a[1], a[2], a[3], target!, rx!, rxPackets!, tx!, txPackets!],
    duration: duration!,
    kind: END_KINDS[kind!] ?? 'error',
    code: err! !== 0 ? errnoCode(-err!) : undefined,
    side: side!,
  };
}

export function nameOf(e: Entry, p: ForwarderPair): string {
  const n = e.naming;
  if (n.protocol === 'UNIX') return `UNIX:${e.listener}-c${p[0]}`;
  if (n.protocol === 'UDP') return `UDP:${p[3]}:${p[4]}-${n.address}:${n.port}-c${p[0]}`;
  const lAddr = n.wildcard ? p[5] : n.address;
  const lPort = n.wildcard ? p[6] : n.port;
  return `TCP:${p[3]}:${p[4]}-${lAddr}:${lPort}-c${p[0]}`;
}

/** The reason an ended compiled session gives, as the pipeline words it for a session ended the same way. */
function endReason(e: Entry, plan: Plan | undefined, x: EndedPair): string {
  switch (x.kind) {
    case 'deleted': return 'Session removed from the API';
    case 'drain_timeout': return 'drain timeout reached';
    case 'shutdown': return 'gateway shutting down';
    default: {
      const stage = x.side === 1 ? plan?.cluster.name ?? '' : e.listener;
      if (x.code === undefined) return e.datagram ? 'UDP session idle timeout' : `stage "${e.listener}" closed`;
      return `stage "${stage}" failed: ${e.datagram ? 'UDP' : 'splice'}: ${x.code}`;
    }
  }
}

/** The access log line of an ended compiled session (observe/access-log.ts's fields). */
export function accessLine(e: Entry, plan: Plan | undefined, x: EndedPair): Record<string, unknown> {
  const p = x.pair;
  return {
    time: new Date(p[2] + x.duration).toISOString(),
    session: nameOf(e, p),
    listener: e.listener,
    route: plan?.route.name,
    destination: plan?.cluster.name,
    endpoint: plan?.endpoints[p[7]]?.name,
    peer: e.naming.protocol !== 'UNIX' ? `${p[3]}:${p[4]}` : e.naming.address,
    duration_ms: x.duration,
    ingress_bytes: p[8],
    ingress_packets: p[9],
    egress_bytes: p[10],
    egress_packets: p[11],
    status: x.code !== undefined ? 'error' : 'ok',
    reason: endReason(e, plan, x),
  };
}

/** The view of an ended compiled session, kept listed for options.track. */
export function endedView(e: Entry, plan: Plan | undefined, x: EndedPair): Record<string, unknown> {
  const v = liveView(e, plan, x.pair);
  const at = new Date(x.pair[2] + x.duration).toISOString();
  v.status = 'DESTROYED';
  (v.source as Record<string, unknown>).status = 'END';
  (v.destination as Record<string, unknown>).status = 'END';
  const state = x.kind === 'completed' || x.kind === 'error' ? 'done' : 'closed';
  v.splice = { state, since: v.started, compiled: true, ...(x.code !== undefined ? { error: x.code } : {}), kernel: v.counters };
  (v.events as unknown[]).push({ event: x.code !== undefined ? 'ERROR' : 'END', timestamp: at, message: endReason(e, plan, x) }, { event: 'DESTROY', timestamp: at, message: 'Session destroyed' });
  return v;
}

/** A live compiled session as GET /api/v1/sessions shows it (Session.toJSON's fields). */
export function liveView(e: Entry, plan: Plan | undefined, p: ForwarderPair): Record<string, unknown> {
  const [, , started, rAddr, rPort, lAddr, lPort, target, rx, rxPackets, tx, txPackets] = p;
  const ep = plan?.endpoints[target];
  const at = new Date(started).toISOString();
  const n = e.naming;
  const metadata: Record<string, unknown> = n.protocol === 'UNIX'
    ? { UNIX: { filename: n.address } }
    : { IP: { src_addr: rAddr, dst_addr: n.wildcard ? lAddr : n.address }, [n.protocol]: { src_port: rPort, dst_port: n.wildcard ? lPort : n.port } };
  const counters = { ingress: { bytes: rx, packets: rxPackets }, egress: { bytes: tx, packets: txPackets } };
  const t = ep === undefined ? undefined : plan!.target(ep);
  return {
    name: nameOf(e, p),
    metadata,
    source: { origin: e.listener, peer: n.protocol !== 'UNIX' ? `${rAddr}:${rPort}` : n.address, status: 'READY' },
    destination: {
      origin: plan?.cluster.name,
      endpoint: ep === undefined ? undefined : { name: ep.name, spec: ep.spec },
      peer: t === undefined ? undefined : t.length === 2 ? `${t[0]}:${t[1]}` : t[0],
      status: 'READY',
    },
    ingress: [],
    egress: [],
    route: plan?.route.name,
    retry: plan?.route.retry,
    status: 'CONNECTED',
    started: at,
    counters,
    offloaded: false,
    spliced: true,
    path: 'raw',
    splice: { state: 'active', since: at, compiled: true, kernel: counters },
    events: [
      { event: 'INIT', timestamp: at, message: 'Session created' },
      { event: 'LOOKUP SUCCESS', timestamp: at, message: `Route "${plan?.route.name ?? ''}" selected` },
      { event: 'CONNECT', timestamp: at, message: 'Session connected' },
    ],
  };
}
