// One handler per REST operation, keyed by the spec's operationId. A handler
// returns the GET payload, or undefined for "OK". Errors are GatewayErrors.

import { GatewayError, invalid } from '../core/errors.js';
import type { Gateway } from '../core/gateway.js';
import { parseAdminUpdate } from '../config/admin.js';
import type { OperationId } from './generated/types.js';
import {
  dumpAdmin, dumpCluster, dumpConfig, dumpEndpoint, dumpListener, dumpRoute, dumpRule, dumpRuleList, dumpSession, dumpSessions,
} from './dump.js';

export interface ApiRequest {
  readonly params: Readonly<Record<string, string>>;
  readonly recursive: boolean;
  readonly body: unknown;
  /** The session that carries this request (left out of session dumps). */
  readonly session: string | undefined;
}

export type Handler = (gw: Gateway, req: ApiRequest) => unknown | Promise<unknown>;

function wrapped(body: unknown, key: string): unknown {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) throw invalid('body', `must be an object {${key}: {...}}`);
  const v = (body as Record<string, unknown>)[key];
  if (v === undefined) throw invalid(key, `is required: the body must be {${key}: {...}}`);
  return v;
}

function need<T>(v: T | undefined, kind: string, name: string): T {
  if (v === undefined) throw new GatewayError('NOT_FOUND', `Unknown ${kind} "${name}"`);
  return v;
}

export const handlers: Record<OperationId, Handler> = {
  getConf: (gw, req) => dumpConfig(gw, req.session),
  setConf: async (gw, req) => {
    const b = req.body as Record<string, unknown> | null;
    const cfg = b && typeof b === 'object' && 'config' in b ? b.config : b;
    await gw.applyConfig(cfg, false);
  },
  getAdmin: (gw) => dumpAdmin(gw),
  applyAdmin: (gw, req) => {
    const u = parseAdminUpdate(wrapped(req.body, 'admin'), gw.admin);
    if (u.log_level !== undefined) {
      gw.admin.log_level = u.log_level;
      gw.log.level = u.log_level;
    }
    if (u.strict !== undefined) gw.admin.strict = u.strict;
    // The operator sets this last, once the generation's objects are in place: /ready follows it.
    if (u.generation !== undefined) gw.admin.generation = u.generation;
  },

  getListeners: (gw, req) => [...gw.listeners.values()].map((l) => dumpListener(gw, l, req.recursive)),
  addListener: (gw, req) => gw.addListener(wrapped(req.body, 'listener')),
  getListener: (gw, req) => dumpListener(gw, need(gw.listeners.get(req.params.name!), 'listener', req.params.name!), req.recursive),
  deleteListener: (gw, req) => gw.deleteListener(req.params.name!, req.recursive),

  getClusters: (gw, req) => [...gw.clusters.values()].map((c) => dumpCluster(c, req.recursive)),
  addCluster: (gw, req) => gw.addCluster(wrapped(req.body, 'cluster')),
  getCluster: (gw, req) => dumpCluster(need(gw.clusters.get(req.params.name!), 'cluster', req.params.name!), req.recursive),
  deleteCluster: (gw, req) => gw.deleteCluster(req.params.name!, req.recursive),

  getEndPoints: (gw, req) => {
    const c = need(gw.clusters.get(req.params.name!), 'cluster', req.params.name!);
    return c.endpoints.map((e) => dumpEndpoint(e, c.health));
  },
  addEndPoint: (gw, req) => gw.addEndpoint(req.params.name!, wrapped(req.body, 'endpoint')),
  getEndPoint: (gw, req) => {
    const e = need(gw.endpoints.get(req.params.name!), 'endpoint', req.params.name!);
    return dumpEndpoint(e, gw.clusters.get(e.cluster)?.health);
  },
  deleteEndPoint: (gw, req) => gw.deleteEndpoint(req.params.name!, req.recursive),

  getRuleLists: (gw, req) => [...gw.rulelists.values()].map((r) => dumpRuleList(gw, r, req.recursive)),
  addRuleList: (gw, req) => gw.addRuleList(wrapped(req.body, 'rulelist')),
  getRuleList: (gw, req) => dumpRuleList(gw, need(gw.rulelists.get(req.params.name!), 'rulelist', req.params.name!), req.recursive),
  deleteRuleList: (gw, req) => gw.deleteRuleList(req.params.name!, req.recursive),

  getRuleFromRuleList: (gw, req) => {
    const rl = gw.rulelists.get(req.params.name!);
    if (!rl) throw new GatewayError('NOT_FOUND', `No such rule list: ${req.params.name}`);
    const name = rl.rules[gw.rulePosition(rl, req.params.position!)]!;
    const rule = gw.rules.get(name);
    if (!rule) throw new GatewayError('NOT_FOUND', `Rule "${name}" at position ${req.params.position} of RuleList "${rl.name}" does not exist`);
    return dumpRule(gw, rule, req.recursive);
  },
  addRuleToRuleList: (gw, req) => {
    const pos = req.params.position!;
    if (!/^\d+$/.test(pos)) throw invalid('position', `must be a non-negative integer, got "${pos}"`);
    return gw.addRuleToRuleList(req.params.name!, Number(pos), wrapped(req.body, 'rule'));
  },
  deleteRuleFromRuleList: (gw, req) => gw.deleteRuleFromRuleList(req.params.name!, req.params.position!, req.recursive),

  getRules: (gw, req) => [...gw.rules.values()].map((r) => dumpRule(gw, r, req.recursive)),
  addRule: (gw, req) => gw.addRule(wrapped(req.body, 'rule')),
  getRule: (gw, req) => dumpRule(gw, need(gw.rules.get(req.params.name!), 'rule', req.params.name!), req.recursive),
  deleteRule: (gw, req) => gw.deleteRule(req.params.name!, req.recursive),

  getRoutes: (gw, req) => [...gw.routes.values()].map((r) => dumpRoute(gw, r, req.recursive)),
  addRoute: (gw, req) => gw.addRoute(wrapped(req.body, 'route')),
  getRoute: (gw, req) => dumpRoute(gw, need(gw.routes.get(req.params.name!), 'route', req.params.name!), req.recursive),
  deleteRoute: (gw, req) => gw.deleteRoute(req.params.name!, req.recursive),

  // As in l7mp, the listing includes the session carrying this very request.
  // With workers, theirs too; their names carry the worker (workers/entry.ts).
  getSessions: async (gw) => [...dumpSessions(gw), ...(await gw.workers?.sessions() ?? [])],
  getSession: async (gw, req) => {
    const s = gw.sessions.get(req.params.name!);
    if (s) return dumpSession(s);
    const compiled = gw.compiled.get(req.params.name!);
    if (compiled) return compiled;
    // A worker's session: asked of the worker its name names (workers/supervisor.ts).
    if (gw.workers === undefined) throw new GatewayError('NOT_FOUND', 'No such session');
    return gw.workers.session(req.params.name!);
  },
  // A worker's session is ended by its worker.
  deleteSession: (gw, req) => (gw.workers !== undefined && !gw.sessions.has(req.params.name!) ? gw.workers.deleteSession(req.params.name!) : gw.deleteSession(req.params.name!)),
};
