// Which listeners of a config run in the workers: every listener except the
// control plane's (a route to an L7mpController or Prometheus cluster, the
// same test core/admission.ts applies to the built graph). Done on the raw
// config because the main process never builds the data-plane listeners.

import { CONTROL_PLANE_PROTOCOLS } from '../core/admission.js';
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

/** Resolve a reference that is either an inline object or the name of one in `named`. */
function deref(v: unknown, named: Map<string, Raw>): Raw | undefined {
  if (isObject(v)) return v;
  return typeof v === 'string' ? named.get(v) : undefined;
}

export interface ConfigSplit {
  /** The config without the data-plane listeners: what the main process applies. */
  readonly control: Raw;
  /** Every object but the control-plane listeners and the admin section: what each worker applies. */
  readonly data: Raw;
  readonly dataListeners: readonly string[];
}

export function splitConfig(cfg: Raw): ConfigSplit {
  const clusters = byName(list(cfg, 'clusters'));
  const rules = byName(list(cfg, 'rules'));
  const routes = byName(list(cfg, 'routes'));
  const rulelists = byName(list(cfg, 'rulelists'));
  const servesControlPlane = (listener: Raw): boolean => {
    const rl = deref(listener.rules, rulelists);
    const ruleItems = Array.isArray(listener.rules) ? listener.rules : Array.isArray(rl?.rules) ? rl.rules : [];
    return ruleItems.some((r) => {
      const rule = deref(r, rules);
      const action = isObject(rule?.action) ? rule.action : undefined;
      const route = deref(action?.route, routes);
      // l7mp takes `cluster` as another name for `destination`.
      const dest = deref(route?.destination ?? route?.cluster, clusters);
      const spec = isObject(dest?.spec) ? dest.spec : undefined;
      return typeof spec?.protocol === 'string' && CONTROL_PLANE_PROTOCOLS.has(spec.protocol);
    });
  };
  const control: unknown[] = [];
  const data: unknown[] = [];
  for (const l of list(cfg, 'listeners')) (isObject(l) && servesControlPlane(l) ? control : data).push(l);
  const { admin: _admin, ...objects } = cfg;
  return {
    control: { ...cfg, listeners: control },
    data: { ...objects, listeners: data },
    dataListeners: data.map((l) => (isObject(l) && typeof l.name === 'string' ? l.name : '?')),
  };
}
