// JSON dumps of the object graph, in l7mp's shapes. Non-recursive dumps name
// sub-objects; recursive dumps inline them, and a dangling reference shows as
// "<name>:<STALE>".

import { exceedsDepth } from '../core/depth.js';
import type { Gateway } from '../core/gateway.js';
import type { ClusterObj, EndpointObj, ListenerObj, RouteObj, RuleListObj, RuleObj } from '../core/model.js';
import type { Session } from '../dataplane/session.js';
import { REDACTED, redactSpec } from '../protocols/common/tls.js';
import type { UpstreamHealth } from '../health/index.js';

const stale = (name: string) => `${name}:<STALE>`;

/**
 * An endpoint; with `status` (health, last check, reason) when its cluster
 * has health settings: without them the dump keeps l7mp's shape.
 */
export function dumpEndpoint(e: EndpointObj, health?: UpstreamHealth): Record<string, unknown> {
  const out: Record<string, unknown> = { name: e.name, spec: e.spec, weight: e.weight };
  if (health?.configured) out.status = health.view(e.name);
  return out;
}

export function dumpCluster(c: ClusterObj, recursive: boolean): Record<string, unknown> {
  let endpoints: unknown;
  if (c.protocol.cluster!.virtual) {
    endpoints = recursive ? [{ name: c.name, spec: { address: '<VIRTUAL>' } }] : 0;
  } else {
    endpoints = recursive ? c.endpoints.map((e) => dumpEndpoint(e, c.health)) : c.endpoints.length;
  }
  const out: Record<string, unknown> = { name: c.name, spec: c.spec, endpoints, loadbalancer: c.balancer.toJSON() };
  c.health?.dump(out);
  if (c.options !== undefined) out.options = c.options;
  return out;
}

export function dumpRoute(gw: Gateway, r: RouteObj, recursive: boolean): Record<string, unknown> {
  const ref = (n: string) => {
    if (!recursive) return n;
    const c = gw.clusters.get(n);
    return c ? dumpCluster(c, true) : stale(n);
  };
  return {
    name: r.name,
    destination: ref(r.destination),
    ingress: r.ingress.map(ref),
    egress: r.egress.map(ref),
    retry: r.retry,
  };
}

export function dumpRule(gw: Gateway, r: RuleObj, recursive: boolean): Record<string, unknown> {
  const action: Record<string, unknown> = {};
  if (r.action.rewrite !== undefined) action.rewrite = r.action.rewrite;
  if (r.action.apply !== undefined) action.apply = r.action.apply;
  if (r.action.route !== undefined) {
    if (recursive) {
      const route = gw.routes.get(r.action.route);
      action.route = route ? dumpRoute(gw, route, true) : stale(r.action.route);
    } else {
      action.route = r.action.route;
    }
  }
  const out: Record<string, unknown> = { name: r.name };
  // A wildcard is dumped as "*", which reads back as a wildcard (l7mp's {"match":"*"} did not).
  out.match = r.match === undefined || r.match === null ? '*' : r.match;
  out.action = action;
  return out;
}

export function dumpRuleList(gw: Gateway, rl: RuleListObj, recursive: boolean): Record<string, unknown> {
  return {
    name: rl.name,
    rules: recursive
      ? rl.rules.map((n) => {
        const r = gw.rules.get(n);
        return r ? dumpRule(gw, r, true) : stale(n);
      })
      : [...rl.rules],
  };
}

export function dumpListener(gw: Gateway, l: ListenerObj, recursive: boolean): Record<string, unknown> {
  let rules: unknown = l.rules;
  if (recursive) {
    const rl = gw.rulelists.get(l.rules);
    rules = rl ? dumpRuleList(gw, rl, true).rules : stale(l.rules);
  }
  return { name: l.name, spec: redactSpec(l.spec), rules, options: l.options };
}

export function dumpAdmin(gw: Gateway): Record<string, unknown> {
  const a = gw.admin;
  const out: Record<string, unknown> = { log_level: a.log_level, strict: a.strict, offload: a.offload, version: a.version };
  if (a.log_file !== undefined) out.log_file = a.log_file;
  if (a.access_log_path !== undefined) out.access_log_path = a.access_log_path;
  if (a.managed) out.managed = true;
  if (a.generation !== undefined) out.generation = a.generation;
  if (a.workers !== undefined) out.workers = a.workers;
  return out;
}

const CREDENTIAL_HEADERS = ['authorization', 'proxy-authorization'];

/**
 * How deep a session's metadata may nest in a dump. Metadata comes from
 * clients (a JSONSocket header, HTTP headers) and rewrite rules; the listener
 * bounds it, and this is the second line: a session whose metadata would
 * overflow the JSON writer must not make every GET /api/v1/config and
 * /sessions answer 500 for as long as it lives.
 */
export const MAX_DUMP_METADATA_DEPTH = 64;

/** A session as dumped: credentials in its HTTP request headers (the API token among them) are redacted. */
export function dumpSession(s: Session): Record<string, unknown> {
  const out = s.toJSON();
  if (exceedsDepth(out.metadata, MAX_DUMP_METADATA_DEPTH)) {
    out.metadata = { name: s.name, dump: `metadata not shown: nested deeper than ${MAX_DUMP_METADATA_DEPTH} levels` };
    return out;
  }
  const metadata = out.metadata as { HTTP?: { headers?: Record<string, unknown> } } | undefined;
  const headers = metadata?.HTTP?.headers;
  if (headers && CREDENTIAL_HEADERS.some((h) => headers[h] !== undefined)) {
    const redacted = { ...headers };
    for (const h of CREDENTIAL_HEADERS) if (redacted[h] !== undefined) redacted[h] = REDACTED;
    out.metadata = { ...metadata, HTTP: { ...metadata!.HTTP, headers: redacted } };
  }
  return out;
}

export function dumpSessions(gw: Gateway, exclude?: string): unknown[] {
  const out: unknown[] = [];
  for (const s of gw.sessions.values()) if (s.name !== exclude) out.push(dumpSession(s));
  for (const s of gw.compiled.dump()) out.push(s);
  return out;
}

export function dumpConfig(gw: Gateway, exclude?: string): Record<string, unknown> {
  return {
    admin: dumpAdmin(gw),
    listeners: [...gw.listeners.values()].map((l) => dumpListener(gw, l, false)),
    clusters: [...gw.clusters.values()].map((c) => dumpCluster(c, false)),
    rulelists: [...gw.rulelists.values()].map((r) => dumpRuleList(gw, r, false)),
    rules: [...gw.rules.values()].map((r) => dumpRule(gw, r, false)),
    routes: [...gw.routes.values()].map((r) => dumpRoute(gw, r, false)),
    // Each with its cluster, so that the dump loads back (core/dumped-endpoints.ts).
    endpoints: [...gw.endpoints.values()].map((e) => ({ ...dumpEndpoint(e, gw.clusters.get(e.cluster)?.health), cluster: e.cluster })),
    sessions: dumpSessions(gw, exclude),
  };
}
