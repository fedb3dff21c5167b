// Which listeners run where: the control plane's in the main process (a
// route to an L7mpController or Prometheus cluster, the test
// core/admission.ts applies to the built graph), the others on every worker
// or on one, as their protocols declare (protocols/types.ts
// WorkerPlacement). Both sides hold the whole
// graph; each builds a stand-in for the listeners the other side runs
// (workers/start.ts, workers/entry.ts). Decided on the raw listener, looking
// names up in the config being applied and then in the gateway's store,
// because the listener is not built yet when the choice is made.

import { CONTROL_PLANE_PROTOCOLS } from '../core/admission.js';
import type { Gateway } from '../core/gateway.js';
import { isObject } from '../core/is-object.js';
import { findProtocol } from '../protocols/registry.js';
import type { ProtocolDef, WorkerPlacement } from '../protocols/types.js';

type Raw = Record<string, unknown>;

function list(cfg: Raw, key: string): unknown[] {
  const v = cfg[key];
  return Array.isArray(v) ? v : [];
}

function byName(items: unknown[]): Map<string, Raw> {
  const m = new Map<string, Raw>();
  for (const x of items) if (isObject(x) && typeof x.name === 'string') m.set(x.name, x);
  return m;
}

/** Raw objects by name: from a config being applied, else from the gateway's store (in raw shape). */
class Names {
  private readonly cfg: Record<string, Map<string, Raw>>;

  constructor(cfg: Raw, private readonly gw: Gateway | undefined) {
    this.cfg = { clusters: byName(list(cfg, 'clusters')), rules: byName(list(cfg, 'rules')), routes: byName(list(cfg, 'routes')), rulelists: byName(list(cfg, 'rulelists')) };
  }

  /** An inline object, or the named one. */
  get(kind: 'clusters' | 'rules' | 'routes' | 'rulelists', v: unknown): Raw | undefined {
    if (isObject(v)) return v;
    if (typeof v !== 'string') return undefined;
    // The store first: once applied it is the truth; the config fills in what is being added with it.
    return this.stored(kind, v) ?? this.cfg[kind]!.get(v);
  }

  private stored(kind: 'clusters' | 'rules' | 'routes' | 'rulelists', v: string): Raw | undefined {
    const g = this.gw;
    if (g === undefined) return undefined;
    switch (kind) {
      case 'clusters': { const c = g.clusters.get(v); return c && { spec: { protocol: c.protocol.name } }; }
      case 'rules': { const r = g.rules.get(v); return r && { action: { route: r.action.route } }; }
      case 'routes': { const r = g.routes.get(v); return r && { destination: r.destination, ingress: r.ingress, egress: r.egress }; }
      case 'rulelists': { const r = g.rulelists.get(v); return r && { rules: r.rules }; }
    }
  }
}

/** The clusters a listener's rules route to: destinations and ingress/egress chains. */
function reachedClusters(listener: Raw, names: Names): Raw[] {
  const items = Array.isArray(listener.rules) ? listener.rules : list(names.get('rulelists', listener.rules) ?? {}, 'rules');
  const out: Raw[] = [];
  for (const r of items) {
    const rule = names.get('rules', r);
    const action = isObject(rule?.action) ? rule.action : undefined;
    const route = names.get('routes', action?.route);
    if (route === undefined) continue;
    // l7mp takes `cluster` as another name for `destination`.
    for (const c of [route.destination ?? route.cluster, ...list(route, 'ingress'), ...list(route, 'egress')]) {
      const cluster = names.get('clusters', c);
      if (cluster !== undefined) out.push(cluster);
    }
  }
  return out;
}

function protocolOf(obj: Raw): ProtocolDef | undefined {
  const spec = isObject(obj.spec) ? obj.spec : undefined;
  return typeof spec?.protocol === 'string' ? findProtocol(spec.protocol) : undefined;
}

/**
 * Where a listener about to be built runs: `main` (it serves the control
 * plane: a route to an L7mpController or Prometheus cluster), on `every`
 * worker (its protocol shares the port), or on `one` worker (its protocol
 * cannot share, or a cluster it routes to keeps its sessions in one process).
 * `cfg` is the config it comes with, if any.
 */
export function placementOf(listener: Raw, gw: Gateway | undefined, cfg: Raw = {}): 'main' | WorkerPlacement {
  const names = new Names(cfg, gw);
  const clusters = reachedClusters(listener, names);
  if (clusters.some((c) => CONTROL_PLANE_PROTOCOLS.has(String((c.spec as Raw | undefined)?.protocol)))) return 'main';
  if (clusters.some((c) => protocolOf(c)?.cluster?.workers === 'one')) return 'one';
  const side = protocolOf(listener)?.listener;
  const w = side?.workers ?? 'one';
  return typeof w === 'function' ? w(isObject(listener.spec) ? listener.spec : {}) : w;
}

/** The names of a config's data-plane listeners and where they run (for the log). */
export function dataPlaneListeners(cfg: Raw): Record<string, WorkerPlacement> {
  const out: Record<string, WorkerPlacement> = {};
  for (const l of list(cfg, 'listeners')) {
    if (!isObject(l)) continue;
    const p = placementOf(l, undefined, cfg);
    if (p !== 'main') out[String(l.name)] = p;
  }
  return out;
}
