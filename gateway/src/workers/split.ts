// Which listeners run where: the control plane's in the main process (a
// route to an L7mpController or Prometheus cluster, the test
// core/admission.ts applies to the built graph), the others on every worker
// or on one, as their protocols declare (protocols/types.ts
// WorkerPlacement). Both sides hold the whole
// graph; each builds a stand-in for the listeners the other side runs
// (workers/start.ts, workers/entry.ts). Decided on the raw listener, looking
// names up in the graph with the change being applied on top, because the
// listener is not built yet when the choice is made. A listener
// stays where it was placed: a later change that would need it elsewhere
// (a shared listener that comes to reach a PIPE cluster) is refused
// (checkPlacement).

import { CONTROL_PLANE_PROTOCOLS } from '../core/admission.js';
import type { GraphView } from '../core/apiobjects.js';
import { GatewayError } from '../core/errors.js';
import { isObject } from '../core/is-object.js';
import type { ListenerObj } from '../core/model.js';
import { findProtocol } from '../protocols/registry.js';
import type { ProtocolDef, WorkerPlacement } from '../protocols/types.js';

type Raw = Record<string, unknown>;

function list(cfg: Raw, key: string): unknown[] {
  const v = cfg[key];
  return Array.isArray(v) ? v : [];
}

/** Raw objects by name, from a graph (in raw shape): the live one with the change being applied on top. */
class Names {
  constructor(private readonly view: GraphView) {}

  /** An inline object, or the named one. */
  get(kind: 'clusters' | 'rules' | 'routes' | 'rulelists', v: unknown): Raw | undefined {
    if (isObject(v)) return v;
    if (typeof v !== 'string') return undefined;
    return this.stored(kind, v);
  }

  private stored(kind: 'clusters' | 'rules' | 'routes' | 'rulelists', v: string): Raw | undefined {
    const o = this.view.get(kind.slice(0, -1) as 'cluster' | 'rule' | 'route' | 'rulelist', v);
    switch (o?.kind) {
      case 'cluster': return { name: o.name, spec: { protocol: o.protocol.name } };
      case 'rule': return { action: { route: o.action.route, apply: o.action.apply } };
      case 'route': return { destination: o.destination, ingress: o.ingress, egress: o.egress };
      case 'rulelist': return { rules: o.rules };
      default: return undefined;
    }
  }
}

/** The clusters a listener's rules route to (destinations and ingress/egress chains), following `apply` into other rulelists. */
function reachedClusters(listener: Raw, names: Names): Raw[] {
  const out: Raw[] = [];
  const seen = new Set<string>();
  const walk = (items: unknown[]): void => {
    for (const r of items) {
      const rule = names.get('rules', r);
      const action = isObject(rule?.action) ? rule.action : undefined;
      if (typeof action?.apply === 'string' && !seen.has(action.apply)) {
        seen.add(action.apply);
        walk(list(names.get('rulelists', action.apply) ?? {}, 'rules'));
      }
      const route = names.get('routes', action?.route);
      if (route === undefined) continue;
      // l7mp takes `cluster` as another name for `destination`.
      for (const c of [route.destination ?? route.cluster, ...list(route, 'ingress'), ...list(route, 'egress')]) {
        const cluster = names.get('clusters', c);
        if (cluster !== undefined) out.push(cluster);
      }
    }
  };
  if (typeof listener.rules === 'string') seen.add(listener.rules);
  walk(Array.isArray(listener.rules) ? listener.rules : list(names.get('rulelists', listener.rules) ?? {}, 'rules'));
  return out;
}

function protocolOf(obj: Raw): ProtocolDef | undefined {
  const spec = isObject(obj.spec) ? obj.spec : undefined;
  return typeof spec?.protocol === 'string' ? findProtocol(spec.protocol) : undefined;
}

export type Placement = 'main' | WorkerPlacement;

/**
 * Where a listener about to be built runs: `main` (it serves the control
 * plane: a route to an L7mpController or Prometheus cluster), on `every`
 * worker (its protocol shares the port), or on `one` worker (its protocol
 * cannot share, or a cluster it routes to keeps its sessions in one process).
 * `graph`: the live graph with the change that adds the listener on top.
 */
export function placementOf(listener: Raw, graph: GraphView): Placement {
  return placementIn(listener, new Names(graph)).where;
}

/** Where a listener runs on the graph `names` reads, and the cluster that decides it when one does. */
function placementIn(listener: Raw, names: Names): { where: Placement; cluster?: Raw } {
  const clusters = reachedClusters(listener, names);
  const control = clusters.find((c) => CONTROL_PLANE_PROTOCOLS.has(String((c.spec as Raw | undefined)?.protocol)));
  if (control !== undefined) return { where: 'main', cluster: control };
  const single = clusters.find((c) => protocolOf(c)?.cluster?.workers === 'one');
  if (single !== undefined) return { where: 'one', cluster: single };
  const side = protocolOf(listener)?.listener;
  const w = side?.workers ?? 'one';
  return { where: typeof w === 'function' ? w(isObject(listener.spec) ? listener.spec : {}) : w };
}

/** Whether a listener placed at `was` can serve as one placed at `now`: only a move to fewer processes cannot. */
function fits(was: Placement, now: Placement): boolean {
  return was === now || now === 'every' || was === 'main';
}

/**
 * Refuse a change after which a listener would need another placement than
 * the one it runs with: a listener on every worker that comes to reach a
 * cluster that keeps its sessions in one process (PIPE, AF_PACKET, Sync),
 * or the control plane. Moving a live listener between processes would cut
 * its sessions; the user deletes it and adds it again instead. `placed`:
 * where a listener was built; `after`: the graph with the change on top.
 */
export function checkPlacement(listeners: Iterable<ListenerObj>, placed: (l: ListenerObj) => Placement, after: GraphView): void {
  for (const l of listeners) {
    const raw = { name: l.name, spec: l.spec, rules: l.rules };
    const was = placed(l);
    const now = placementIn(raw, new Names(after));
    if (fits(was, now.where)) continue;
    const c = now.cluster;
    const cluster = c === undefined ? '' : ` cluster "${String(c.name ?? '(inline)')}" (${String((c.spec as Raw | undefined)?.protocol)}), which`;
    const needs = now.where === 'main' ? 'runs in the main process (the control plane)' : 'keeps its sessions in one process';
    throw new GatewayError('NOT_SUPPORTED',
      `listener "${l.name}" runs on ${was === 'every' ? 'every worker' : 'one worker'}; after this change it would reach${cluster || ' a cluster that'} ${needs}: ` +
      'a listener is placed when it is added, so delete it and add it again with this route (admin.workers > 1, docs/workers.md)');
  }
}
