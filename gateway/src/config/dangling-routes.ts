// Routes that name a cluster which does not exist. l7mp accepts them (the
// cluster may be added later through the API), and so do we, but a gateway
// started on such a config fails every session of that route with no hint
// at startup. So: in strict mode (-s) the static config is refused; otherwise
// each one is logged as a warning at startup and /ready answers 503 naming it
// until the cluster exists (the check runs on every /ready, so adding the
// cluster, or changing the route, through the API makes the gateway ready).

import type { Gateway } from '../core/gateway.js';

export interface DanglingRef {
  readonly route: string;
  readonly cluster: string;
  /** Where in the route the name stands. */
  readonly role: 'destination' | 'ingress' | 'egress';
}

export function danglingClusterRefs(gw: Pick<Gateway, 'routes' | 'clusters'>): DanglingRef[] {
  const out: DanglingRef[] = [];
  for (const r of gw.routes.values()) {
    if (!gw.clusters.has(r.destination)) out.push({ route: r.name, cluster: r.destination, role: 'destination' });
    for (const c of r.ingress) if (!gw.clusters.has(c)) out.push({ route: r.name, cluster: c, role: 'ingress' });
    for (const c of r.egress) if (!gw.clusters.has(c)) out.push({ route: r.name, cluster: c, role: 'egress' });
  }
  return out;
}

export function describeDangling(d: DanglingRef): string {
  return `route "${d.route}" ${d.role === 'destination' ? 'sends to' : `has in its ${d.role} chain`} cluster "${d.cluster}", which does not exist`;
}

/** At most this many are named in /ready's reasons; the rest are counted. */
const MAX_NAMED = 10;

export function danglingReasons(gw: Pick<Gateway, 'routes' | 'clusters'>): string[] {
  const all = danglingClusterRefs(gw);
  const named = all.slice(0, MAX_NAMED).map(describeDangling);
  if (all.length > MAX_NAMED) named.push(`and ${all.length - MAX_NAMED} more route references to clusters that do not exist`);
  return named;
}
