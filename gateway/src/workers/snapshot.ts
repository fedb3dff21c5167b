// The control plane's graph as one worker config. A restarted worker is
// brought to the current configuration by replaying every REST change since
// the start onto the static config (workers/supervisor.ts); once that log is
// long, the supervisor replaces the static config and the log with this, so
// that neither the log nor a restart grows with the gateway's age.
//
// The objects are the graph's, named (a config dump, core/dumped-endpoints.ts,
// with specs unredacted); what names alone cannot say comes along: which
// objects were defined inline and which listeners are static
// (core/provenance.ts), and where each listener was placed (a listener stays
// where it was placed when it was added, workers/split.ts, even where the
// graph now would place it elsewhere).

import { dumpCluster, dumpEndpoint, dumpRule, dumpRoute, dumpRuleList } from '../api/dump.js';
import type { Gateway } from '../core/gateway.js';
import type { ListenerObj } from '../core/model.js';
import type { WorkerConfig } from './protocol.js';
import type { Placement } from './split.js';

export function snapshotOf(gw: Gateway, placed: (l: ListenerObj) => Placement, admin: Record<string, unknown>): WorkerConfig {
  const placement: Record<string, Placement> = {};
  for (const l of gw.listeners.values()) placement[l.name] = placed(l);
  const objects = {
    listeners: [...gw.listeners.values()].map((l) => ({ name: l.name, spec: l.spec, rules: l.rules, options: l.options })),
    clusters: [...gw.clusters.values()].map((c) => ({
      ...dumpCluster(c, false),
      // Without health (state, not configuration); virtual clusters have none (a recursive dump would show a stand-in).
      endpoints: c.endpoints.map((e) => dumpEndpoint(e)),
    })),
    rulelists: [...gw.rulelists.values()].map((r) => dumpRuleList(gw, r, false)),
    rules: [...gw.rules.values()].map((r) => dumpRule(gw, r, false)),
    routes: [...gw.routes.values()].map((r) => dumpRoute(gw, r, false)),
  };
  return { objects, admin, snapshot: { provenance: gw.provenance(), placement } };
}
