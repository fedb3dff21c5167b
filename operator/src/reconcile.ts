// Brings one gateway to its desired configuration through the REST API (the
// generated typed client), reading what the gateway has first, so a gateway
// that restarted empty simply gets everything again.
//
// Order, so that nothing live is broken that the change does not touch:
//   1. listeners and Target clusters whose own spec changed are removed first
//      (a listener keeps its port, so it cannot be added next to itself);
//   2. clusters are added, endpoints of existing clusters synced one by one
//      through the endpoint API;
//   3. rules are added (new names for changed content), then linked into the
//      rulelists at their positions, and the old ones unlinked: a listener's
//      rulelist is edited in place, never re-created, so its socket and its
//      sessions stay;
//   4. new listeners are added;
//   5. whatever the operator owns that is no longer wanted goes, clusters last.
// Every failure is recorded against the resource the object comes from, and
// the pass goes on with the rest. Calls for a resource in `defer` (backing off
// after a failure, or still waiting for its finalizer) are not made at all:
// its objects stay as they are on the gateway, neither added nor removed.

import { L7mpClient, L7mpClientError } from '../../gateway/src/api/generated/client.js';
import type * as T from '../../gateway/src/api/generated/types.js';
import type { DesiredCluster, DesiredConfig, DesiredEndpoint, DesiredListener } from './desired.js';
import { NAME_PREFIX, canonical, contentHash, ownerOf } from './names.js';

export interface ReconcileResult {
  /** The gateway answered; when false, `unreachable` says why and nothing is known. */
  reached: boolean;
  unreachable?: string;
  /** Errors by owner key (the resource the failing object comes from). */
  errors: Map<string, string[]>;
  /** The generation set on the gateway (undefined when it could not be set). */
  generation?: string;
  /** REST calls that changed something (for logs and tests). */
  changes: string[];
  /** Owners with calls left out because they were deferred. */
  deferred: Set<string>;
}

/** Per gateway: the content hash of what the operator applied, by object name (catches removed fields a dump cannot show). */
export type AppliedMemo = Map<string, string>;

const managed = (name: string) => name.startsWith(NAME_PREFIX);

function errText(err: unknown): string {
  if (err instanceof L7mpClientError) {
    const b = err.body as { content?: unknown; code?: unknown; field?: unknown } | undefined;
    const content = typeof b?.content === 'string' ? b.content : JSON.stringify(b?.content ?? err.body);
    return `HTTP ${err.status}${typeof b?.code === 'string' ? ` ${b.code}` : ''}: ${content}${typeof b?.field === 'string' ? ` (field ${b.field})` : ''}`;
  }
  const e = err as Error & { cause?: { code?: string; message?: string } };
  return e.cause?.code ?? e.cause?.message ?? e.message ?? String(err);
}

/** Every key of `want` is in `have` with an equal (recursively subset) value. */
function subset(want: unknown, have: unknown): boolean {
  if (typeof want !== 'object' || want === null) return canonical(want) === canonical(have);
  if (Array.isArray(want)) return canonical(want) === canonical(have);
  if (typeof have !== 'object' || have === null || Array.isArray(have)) return false;
  return Object.entries(want).every(([k, v]) => v === undefined || subset(v, (have as Record<string, unknown>)[k]));
}

export function generationOf(d: DesiredConfig): string {
  const sorted = <V>(m: Map<string, V>) => [...m.entries()].sort(([a], [b]) => (a < b ? -1 : 1));
  return contentHash({ l: sorted(d.listeners), c: sorted(d.clusters), rl: sorted(d.rulelists), r: sorted(d.rules) }, 16);
}

const listenerHash = (l: DesiredListener) => contentHash({ spec: l.spec, rules: l.rules, options: l.options });
const clusterHash = (c: DesiredCluster) => contentHash({ spec: c.spec, lb: c.loadbalancer, options: c.options, od: c.outlier_detection, hc: c.health_check, dns: c.dns });

export async function reconcileGateway(client: L7mpClient, desired: DesiredConfig, memo: AppliedMemo,
  defer: ReadonlySet<string> = new Set()): Promise<ReconcileResult> {
  const res: ReconcileResult = { reached: false, errors: new Map(), changes: [], deferred: new Set() };
  const deferred = (owner: string | undefined) => {
    if (owner === undefined || !defer.has(owner)) return false;
    res.deferred.add(owner);
    return true;
  };
  const fail = (owner: string | undefined, what: string, err: unknown) => {
    const key = owner ?? 'gateway';
    res.errors.set(key, [...(res.errors.get(key) ?? []), `${what}: ${errText(err)}`]);
  };
  const call = async (owner: string | undefined, what: string, fn: () => Promise<unknown>): Promise<boolean> => {
    if (deferred(owner)) return false;
    try {
      await fn();
      res.changes.push(what);
      return true;
    } catch (err) {
      fail(owner, what, err);
      return false;
    }
  };

  let listeners: T.Listener[]; let clusters: T.Cluster[]; let rulelists: T.RuleList[]; let rules: T.Rule[]; let admin: T.Admin;
  try {
    [listeners, clusters, rulelists, rules, admin] = await Promise.all([client.getListeners(), client.getClusters(), client.getRuleLists(), client.getRules(), client.getAdmin()]);
  } catch (err) {
    res.unreachable = errText(err);
    return res;
  }
  res.reached = true;
  const haveListeners = new Map(listeners.filter((l) => managed(l.name)).map((l) => [l.name, l]));
  const haveClusters = new Map(clusters.filter((c) => c.name !== undefined && managed(c.name)).map((c) => [c.name!, c]));
  const haveRuleLists = new Map(rulelists.filter((r) => managed(r.name)).map((r) => [r.name, r]));
  const haveRules = new Set(rules.map((r) => r.name).filter((n): n is string => n !== undefined && managed(n)));

  // 1. Objects whose own definition changed go first.
  for (const [name, have] of haveListeners) {
    const want = desired.listeners.get(name);
    if (!want) continue;
    const memoHash = memo.get(`listener ${name}`);
    const same = memoHash !== undefined ? memoHash === listenerHash(want)
      : subset(want.spec, have.spec) && have.rules === want.rules && subset(want.options ?? {}, have.options ?? {});
    if (same) continue;
    if (await call(want.owner, `replace listener ${name} (its spec changed)`, () => client.deleteListener(name, { recursive: true }))) haveListeners.delete(name);
  }
  for (const [name, have] of haveClusters) {
    const want = desired.clusters.get(name);
    if (!want) continue;
    const memoHash = memo.get(`cluster ${name}`);
    const same = memoHash !== undefined ? memoHash === clusterHash(want)
      : subset(want.spec, have.spec) && (want.loadbalancer === undefined || subset(want.loadbalancer, have.loadbalancer))
        && (want.outlier_detection === undefined || subset(want.outlier_detection, have.outlier_detection))
        && (want.health_check === undefined || subset(want.health_check, have.health_check))
        && (want.dns === undefined || subset(want.dns, have.dns));
    if (same) continue;
    if (await call(want.owner, `replace cluster ${name} (its spec changed)`, () => client.deleteCluster(name, { recursive: true }))) haveClusters.delete(name);
  }

  // 2. Clusters and their endpoints.
  for (const c of desired.clusters.values()) {
    if (!haveClusters.has(c.name)) {
      const cluster: T.NamedCluster = { name: c.name, spec: c.spec as T.ClusterSpec, endpoints: c.endpoints.map(toEndpoint) };
      if (c.loadbalancer !== undefined) cluster.loadbalancer = c.loadbalancer as T.LoadBalancer;
      if (c.outlier_detection !== undefined) cluster.outlier_detection = c.outlier_detection as T.OutlierDetection;
      if (c.health_check !== undefined) cluster.health_check = c.health_check as T.HealthCheck;
      if (c.dns !== undefined) cluster.dns = c.dns as T.ClusterDns;
      if (c.options !== undefined) cluster.options = c.options as T.Cluster['options'];
      if (await call(c.owner, `add cluster ${c.name}`, () => client.addCluster({ cluster }))) {
        memo.set(`cluster ${c.name}`, clusterHash(c));
        haveClusters.set(c.name, cluster);
      }
      continue;
    }
    if (!deferred(c.owner)) await syncEndpoints(client, c, call, fail);
  }

  // 3. Rules, then the rulelists that order them.
  for (const r of desired.rules.values()) {
    if (haveRules.has(r.name)) continue;
    if (await call(r.owner, `add rule ${r.name}`, () => client.addRule({ rule: { ...r.rule, name: r.name } as T.NamedRule }))) haveRules.add(r.name);
  }
  for (const rl of desired.rulelists.values()) {
    const want = rl.rules.filter((n) => haveRules.has(n) || !managed(n));
    const have = haveRuleLists.get(rl.name);
    if (!have) {
      if (await call(rl.owner, `add rulelist ${rl.name}`, () => client.addRuleList({ rulelist: { name: rl.name, rules: want } }))) {
        haveRuleLists.set(rl.name, { name: rl.name, rules: want });
      }
      continue;
    }
    await syncRuleList(client, rl.name, rl.owner, want, have.rules.map((r) => (typeof r === 'string' ? r : r.name ?? '')), call, desired);
  }

  // 4. New listeners.
  for (const l of desired.listeners.values()) {
    if (haveListeners.has(l.name)) continue;
    const listener: T.Listener = { name: l.name, spec: l.spec as T.ListenerSpec, rules: l.rules };
    if (l.options !== undefined) listener.options = l.options as T.ListenerOptions;
    if (await call(l.owner, `add listener ${l.name}`, () => client.addListener({ listener }))) memo.set(`listener ${l.name}`, listenerHash(l));
  }

  // 5. What is no longer wanted.
  for (const name of haveListeners.keys()) {
    if (desired.listeners.has(name)) continue;
    if (await call(ownerOf(name), `delete listener ${name}`, () => client.deleteListener(name, { recursive: true }))) memo.delete(`listener ${name}`);
  }
  for (const name of haveRuleLists.keys()) {
    if (!desired.rulelists.has(name)) await call(ownerOf(name), `delete rulelist ${name}`, () => client.deleteRuleList(name, { recursive: false }));
  }
  for (const name of haveRules) {
    // recursive: the rule's embedded route goes with it (named clusters stay; they are handled below).
    if (!desired.rules.has(name)) await call(ownerOf(name), `delete rule ${name}`, () => client.deleteRule(name, { recursive: true }));
  }
  for (const name of haveClusters.keys()) {
    if (desired.clusters.has(name)) continue;
    if (await call(ownerOf(name), `delete cluster ${name}`, () => client.deleteCluster(name, { recursive: true }))) memo.delete(`cluster ${name}`);
  }

  // Set last: the gateway's /ready turns 200 only now. Unchanged, it is not written again.
  const generation = generationOf(desired);
  if (admin.generation === generation) res.generation = generation;
  else if (await call(undefined, `set generation ${generation}`, () => client.applyAdmin({ admin: { generation } }))) res.generation = generation;
  return res;
}

function toEndpoint(e: DesiredEndpoint): T.EndPoint {
  return { name: e.name, spec: e.spec as T.EndPointSpec, ...(e.weight !== undefined ? { weight: e.weight } : {}) };
}

type Call = (owner: string | undefined, what: string, fn: () => Promise<unknown>) => Promise<boolean>;

/** Endpoint by endpoint, so sessions on unchanged endpoints are never touched. */
async function syncEndpoints(client: L7mpClient, c: DesiredCluster, call: Call, fail: (o: string, w: string, e: unknown) => void): Promise<void> {
  let have: T.EndPoint[];
  try {
    have = await client.getEndPoints(c.name);
  } catch (err) {
    fail(c.owner, `list endpoints of ${c.name}`, err);
    return;
  }
  const byName = new Map(have.filter((e) => e.name !== undefined).map((e) => [e.name!, e]));
  for (const e of c.endpoints) {
    const cur = byName.get(e.name);
    if (cur) {
      const sameWeight = (e.weight ?? 1) === (cur.weight ?? 1);
      if (sameWeight && subset(e.spec, cur.spec)) continue;
      // A changed weight or address: the endpoint is replaced, its sessions left to end on their own.
      if (!(await call(c.owner, `replace endpoint ${e.name}`, () => client.deleteEndPoint(e.name, { recursive: false })))) continue;
    }
    await call(c.owner, `add endpoint ${e.name}`, () => client.addEndPoint(c.name, { endpoint: toEndpoint(e) }));
  }
  const wanted = new Set(c.endpoints.map((e) => e.name));
  for (const name of byName.keys()) {
    // recursive: sessions on a backend that is gone are disconnected, so their retry policy can fail over.
    if (!wanted.has(name) && managed(name)) await call(c.owner, `delete endpoint ${name}`, () => client.deleteEndPoint(name, { recursive: true }));
  }
}

/** Edit a rulelist in place into `want`: link new rules at their positions, unlink old ones, fix the order. */
async function syncRuleList(client: L7mpClient, name: string, owner: string, want: string[], cur: string[], call: Call, desired: DesiredConfig): Promise<void> {
  const ownerOfRule = (r: string) => desired.rules.get(r)?.owner ?? owner;
  for (let i = 0; i < want.length; i++) {
    const r = want[i]!;
    if (cur.includes(r)) continue;
    // After the previous wanted rule that is already linked.
    let pos = 0;
    for (let j = i - 1; j >= 0; j--) {
      const k = cur.indexOf(want[j]!);
      if (k >= 0) { pos = k + 1; break; }
    }
    if (await call(ownerOfRule(r), `link rule ${r} into ${name} at ${pos}`, () => client.addRuleToRuleList(name, pos, { rule: r }))) cur.splice(pos, 0, r);
  }
  for (const r of [...cur]) {
    if (want.includes(r)) continue;
    if (await call(ownerOf(r) ?? owner, `unlink rule ${r} from ${name}`, () => client.deleteRuleFromRuleList(name, r, { recursive: false }))) cur.splice(cur.indexOf(r), 1);
  }
  for (let i = 0; i < want.length && i < cur.length; i++) {
    const r = want[i]!;
    if (cur[i] === r || !cur.includes(r)) continue;
    // Out of order (a Rule resource's position changed): move it.
    if (!(await call(ownerOfRule(r), `unlink rule ${r} from ${name} (reorder)`, () => client.deleteRuleFromRuleList(name, r, { recursive: false })))) continue;
    cur.splice(cur.indexOf(r), 1);
    if (await call(ownerOfRule(r), `link rule ${r} into ${name} at ${i}`, () => client.addRuleToRuleList(name, i, { rule: r }))) cur.splice(i, 0, r);
  }
}
