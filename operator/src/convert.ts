// l7mp's Kubernetes form of listeners, clusters, rules and routes, turned into
// the gateway's REST form (what l7mp's convert_to_old_api did from conv.yml):
//   spec: {UDP: {port: 53}}          -> spec: {protocol: 'UDP', port: 53}   (also `Sdtio`, l7mp's typo, -> Stdio)
//   rulesRef / destinationRef / routeRef -> rules / destination / route   (names)
//   ingress/egress [{cluster: X} | {clusterRef: n}] -> [X | n]
//   rewrite [{path, valueStr}]         -> [{path, value}]
//   endpoint spec {filename}           -> {address}
// References by name are resolved by the caller (resolveRef), so that a plain
// resource name in a manifest can point at the namespaced object of that
// resource on the gateway.

import { ClusterProtocolStaticOnly, ClusterProtocolValues, ListenerProtocolValues } from '../../gateway/src/api/generated/types.js';

type Obj = Record<string, any>;

/**
 * The protocol keys a resource may use: the spec's protocol enums (generated
 * from the gateway's protocol registry), without the static-only ones the
 * REST API refuses, and l7mp's `Sdtio` (while Stdio is not static-only).
 */
export const PROTOCOL_KEYS: readonly string[] = [...new Set([...ListenerProtocolValues, ...ClusterProtocolValues, 'Sdtio'])]
  .filter((p) => !ClusterProtocolStaticOnly.includes(p === 'Sdtio' ? 'Stdio' : p));
const KNOWN_KEYS = new Set(PROTOCOL_KEYS.map((p) => p.toLowerCase()));

export class ConvertError extends Error {
  constructor(readonly field: string, message: string) {
    super(`${field}: ${message}`);
    this.name = 'ConvertError';
  }
}

function isObj(v: unknown): v is Obj {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/**
 * `{UDP: {port: 53}}` -> `{protocol: 'UDP', port: 53}`. A spec that already
 * has `protocol` (the REST form) is accepted as is, so both forms apply.
 */
export function convertProtocolSpec(spec: unknown, field: string): Obj {
  if (!isObj(spec)) throw new ConvertError(field, 'must be an object {<Protocol>: {...}}');
  if (typeof spec.protocol === 'string') return structuredClone(spec);
  const keys = Object.keys(spec);
  if (keys.length !== 1) throw new ConvertError(field, `must have exactly one protocol key (${PROTOCOL_KEYS.join(', ')}), got ${keys.length === 0 ? 'none' : keys.join(', ')}`);
  const key = keys[0]!;
  // The gateway matches protocol names case-insensitively; so does this check.
  if (!KNOWN_KEYS.has(key.toLowerCase())) throw new ConvertError(`${field}.${key}`, `unknown protocol; one of ${PROTOCOL_KEYS.join(', ')}`);
  const inner = spec[key] ?? {};
  if (!isObj(inner)) throw new ConvertError(`${field}.${key}`, 'must be an object');
  const out: Obj = { protocol: key === 'Sdtio' ? 'Stdio' : key, ...structuredClone(inner) };
  for (const t of ['transport', 'transport_spec']) {
    if (isObj(out[t]) && typeof out[t].protocol !== 'string') out[t] = convertProtocolSpec(out[t], `${field}.${key}.${t}`);
  }
  return out;
}

/** How a converted object refers to clusters, rules and rulelists by name. */
export interface RefResolver {
  /** A cluster named in destinationRef/clusterRef. */
  cluster(name: string): string;
  /** A rulelist named in rulesRef or action.apply. */
  rulelist(name: string): string;
  /** A route named in routeRef. */
  route(name: string): string;
  /** An inline cluster: the caller names (and usually hoists) it; returns the name to reference. */
  inlineCluster(cluster: Obj, field: string): string;
}

export function convertRule(rule: unknown, field: string, r: RefResolver): Obj {
  if (!isObj(rule)) throw new ConvertError(field, 'must be an object');
  const out: Obj = {};
  if (rule.match !== undefined) out.match = structuredClone(rule.match);
  const a = rule.action;
  if (!isObj(a)) throw new ConvertError(`${field}.action`, 'is required');
  const action: Obj = {};
  if (a.rewrite !== undefined) {
    if (!Array.isArray(a.rewrite)) throw new ConvertError(`${field}.action.rewrite`, 'must be an array');
    action.rewrite = a.rewrite.map((rw: unknown, i: number) => {
      if (!isObj(rw)) throw new ConvertError(`${field}.action.rewrite[${i}]`, 'must be an object');
      return { path: rw.path, value: rw.valueStr !== undefined ? rw.valueStr : structuredClone(rw.value) };
    });
  }
  if (a.routeRef !== undefined) action.route = r.route(String(a.routeRef));
  else if (a.route !== undefined) action.route = convertRoute(a.route, `${field}.action.route`, r);
  if (a.apply !== undefined) action.apply = r.rulelist(String(a.apply));
  out.action = action;
  return out;
}

export function convertRoute(route: unknown, field: string, r: RefResolver): Obj {
  if (typeof route === 'string') return route as unknown as Obj;
  if (!isObj(route)) throw new ConvertError(field, 'must be an object');
  const out: Obj = {};
  const dest = (v: unknown, f: string): string => {
    if (typeof v === 'string') return r.cluster(v);
    if (!isObj(v)) throw new ConvertError(f, 'must be a cluster or a cluster name');
    return r.inlineCluster(v, f);
  };
  if (route.destinationRef !== undefined) out.destination = r.cluster(String(route.destinationRef));
  else if (route.destination !== undefined) out.destination = dest(route.destination, `${field}.destination`);
  else if (route.cluster !== undefined) out.destination = dest(route.cluster, `${field}.cluster`);
  else throw new ConvertError(`${field}.destination`, 'is required (destination or destinationRef)');
  for (const dir of ['ingress', 'egress'] as const) {
    const v = route[dir];
    if (v === undefined) continue;
    if (!Array.isArray(v)) throw new ConvertError(`${field}.${dir}`, 'must be an array');
    out[dir] = v.map((item: unknown, i: number) => {
      const f = `${field}.${dir}[${i}]`;
      if (isObj(item) && item.clusterRef !== undefined) return r.cluster(String(item.clusterRef));
      if (isObj(item) && item.cluster !== undefined) return dest(item.cluster, `${f}.cluster`);
      return dest(item, f); // the REST form: a cluster or a name
    });
  }
  if (route.retry !== undefined) out.retry = structuredClone(route.retry);
  return out;
}

export interface ClusterShell { spec: Obj; loadbalancer?: Obj; outlier_detection?: Obj; health_check?: Obj; dns?: Obj; options?: unknown }

/** A cluster without its endpoints (those are resolved separately). */
export function convertClusterShell(c: Obj, field: string): ClusterShell {
  const out: ClusterShell = { spec: convertProtocolSpec(c.spec, `${field}.spec`) };
  if (c.loadbalancer !== undefined) out.loadbalancer = structuredClone(c.loadbalancer);
  // Upstream health settings go through as given; the gateway validates them.
  if (c.outlier_detection !== undefined) out.outlier_detection = structuredClone(c.outlier_detection);
  if (c.health_check !== undefined) out.health_check = structuredClone(c.health_check);
  if (c.dns !== undefined) out.dns = structuredClone(c.dns);
  if (c.options !== undefined) out.options = structuredClone(c.options);
  return out;
}
