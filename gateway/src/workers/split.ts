// Which listeners run in the workers: every listener except the control
// plane's (a route to an L7mpController or Prometheus cluster, the test
// core/admission.ts applies to the built graph). Both sides hold the whole
// graph; each builds a stand-in for the listeners the other side runs
// (workers/start.ts, workers/entry.ts). Decided on the raw listener, looking
// names up in the config being applied and then in the gateway's store,
// because the listener is not built yet when the choice is made.

import { CONTROL_PLANE_PROTOCOLS } from '../core/admission.js';
import type { Gateway } from '../core/gateway.js';
import { isObject } from '../core/is-object.js';

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
      case 'routes': { const r = g.routes.get(v); return r && { destination: r.destination }; }
      case 'rulelists': { const r = g.rulelists.get(v); return r && { rules: r.rules }; }
    }
  }
}

function servesControlPlane(listener: Raw, names: Names): boolean {
  const items = Array.isArray(listener.rules) ? listener.rules : list(names.get('rulelists', listener.rules) ?? {}, 'rules');
  return items.some((r) => {
    const rule = names.get('rules', r);
    const action = isObject(rule?.action) ? rule.action : undefined;
    const route = names.get('routes', action?.route);
    // l7mp takes `cluster` as another name for `destination`.
    const dest = names.get('clusters', route?.destination ?? route?.cluster);
    const spec = isObject(dest?.spec) ? dest.spec : undefined;
    return typeof spec?.protocol === 'string' && CONTROL_PLANE_PROTOCOLS.has(spec.protocol);
  });
}

/** Whether a listener about to be built serves the control plane; `cfg` is the config it comes with, if any. */
export function isControlPlaneListener(listener: Raw, gw: Gateway | undefined, cfg: Raw = {}): boolean {
  return servesControlPlane(listener, new Names(cfg, gw));
}

/** The names of a config's data-plane listeners (for the log). */
export function dataPlaneListeners(cfg: Raw): string[] {
  const names = new Names(cfg, undefined);
  return list(cfg, 'listeners').filter((l) => isObject(l) && !servesControlPlane(l, names)).map((l) => String((l as Raw).name));
}
