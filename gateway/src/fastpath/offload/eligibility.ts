// Which sessions the kernel may forward. The BPF program only rewrites
// addresses and ports, so a session qualifies only when user space would do
// nothing else with its packets: a plain UDP listener piped straight into a
// plain UDP cluster, with no ingress/egress transforms (Logger, Metric,
// JSONEncap... all need every packet) and no protocol that reads or writes
// per-packet metadata (JSONSocket frames every datagram, so it is not plain
// UDP). Rule rewrites and load balancing act once, at setup, so they do not
// matter. IPv4 only, as the program.

import { isIPv4 } from 'node:net';
import type { Gateway } from '../../core/gateway.js';
import type { Session } from '../../dataplane/session.js';
import { isOffloadable, type OffloadableFlow } from '../../dataplane/capabilities.js';
import type { FlowTuple } from './native.js';

/** The two kernel flows of a session: what arrives, and what it becomes. */
export interface SessionFlows {
  /** client -> gateway listener, rewritten to gateway -> server */
  ingress: { key: FlowTuple; rewrite: FlowTuple };
  /** server -> gateway cluster socket, rewritten to gateway -> client */
  egress: { key: FlowTuple; rewrite: FlowTuple };
  source: OffloadableFlow;
}

/** The flows to install, or why this session stays in user space. */
export function sessionFlows(gw: Gateway, s: Session): SessionFlows | string {
  if (s.ingress.length > 0 || s.egress.length > 0) return 'the route has ingress/egress transforms';
  const dest = s.destination;
  if (dest === undefined) return 'no destination';
  if (gw.listeners.get(s.listener)?.protocol.name !== 'UDP') return 'the listener is not UDP';
  if (gw.clusters.get(dest.origin)?.protocol.name !== 'UDP') return 'the destination cluster is not UDP';
  const src = s.source.channel;
  const dst = dest.channel;
  if (!isOffloadable(src) || !isOffloadable(dst)) return 'a stage is not a plain UDP socket';
  if (src.closed || dst.closed) return 'a stage is closed';
  if (s.links.length !== 2) return 'the session is not a direct pipe';
  const a = src.addresses();
  const b = dst.addresses();
  if (a === undefined || b === undefined) return 'a socket is not connected';
  for (const x of [a.local, a.remote, b.local, b.remote]) {
    if (!isIPv4(x.address)) return 'IPv6 flows are not offloaded';
    // Loopback traffic never crosses an offload interface's ingress.
    if (x.address.startsWith('127.')) return 'loopback flows are not offloaded';
  }
  const t = (from: { address: string; port: number }, to: { address: string; port: number }): FlowTuple =>
    ({ srcAddr: from.address, srcPort: from.port, dstAddr: to.address, dstPort: to.port });
  return {
    ingress: { key: t(a.remote, a.local), rewrite: t(b.local, b.remote) },
    egress: { key: t(b.remote, b.local), rewrite: t(a.local, a.remote) },
    source: src,
  };
}
