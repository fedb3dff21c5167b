// The object graph's store: the six object maps, the queue that serialises
// changes, the Transaction that commits a change whole or not at all, and
// recursive deletes with the in-use checks they need.

import type { Logger } from '../observe/log.js';
import { GatewayError, asGatewayError } from './errors.js';
import type { AnyObj, ClusterObj, EndpointObj, ListenerObj, ObjKind, RouteObj, RuleListObj, RuleObj } from './model.js';
import { NameCounters, dedupe, type CountedKind } from './names.js';
import { guardApi, type LiveGraph } from './policy.js';

export const KIND_LABEL: Record<ObjKind, string> = {
  listener: 'listener', cluster: 'cluster', endpoint: 'endpoint', rulelist: 'rulelist', rule: 'rule', route: 'route',
};
export const KIND_TITLE: Record<ObjKind, string> = {
  listener: 'Listener', cluster: 'Cluster', endpoint: 'EndPoint', rulelist: 'RuleList', rule: 'Rule', route: 'Route',
};

/** What a delete asks of the live sessions (dataplane/pipeline.ts). */
export interface SessionCuts {
  /** End the sessions a deleted listener accepted. */
  cutListener(name: string): void;
  /** End the sessions that traverse a deleted cluster. */
  cutCluster(name: string): void;
  /** Disconnect (not end) the stages on a deleted endpoint: their retry policy decides. */
  disconnectEndpoint(e: EndpointObj): void;
}

/** Until a session pipeline is attached there are no sessions to cut. */
const NO_SESSIONS: SessionCuts = { cutListener() {}, cutCluster() {}, disconnectEndpoint() {} };

/** Staged additions, applied all at once on commit. */
export class Transaction {
  readonly objects = new Map<string, AnyObj>(); // key: kind + '\0' + name
  /** Live objects as the commit will change them (a rulelist with an inserted rule), for checks only. */
  readonly preview = new Map<string, AnyObj>();
  readonly order: AnyObj[] = [];
  private readonly counterSnapshot;

  constructor(private readonly store: Store, readonly fromStaticConfig: boolean) {
    this.counterSnapshot = store.counters.snapshot();
  }

  taken(kind: ObjKind, name: string): boolean {
    return this.objects.has(`${kind}\0${name}`) || this.store.has(kind, name);
  }

  stage(obj: AnyObj, field: string): void {
    if (this.taken(obj.kind, obj.name)) {
      throw new GatewayError('NAME_TAKEN', `Cannot add ${KIND_LABEL[obj.kind]}: ${KIND_TITLE[obj.kind]} "${obj.name}" already defined`, `${field}.name`);
    }
    this.objects.set(`${obj.kind}\0${obj.name}`, obj);
    this.order.push(obj);
  }

  implicitName(kind: ObjKind, base: string, counted?: CountedKind): string {
    const raw = counted ? `${base}-${counted}-${this.store.counters.next(counted)}` : base;
    return dedupe(raw, (n) => this.taken(kind, n));
  }

  rollbackCounters(): void {
    this.store.counters.restore(this.counterSnapshot);
  }
}

export class Store implements LiveGraph {
  readonly counters = new NameCounters();
  readonly listeners = new Map<string, ListenerObj>();
  readonly clusters = new Map<string, ClusterObj>();
  readonly endpoints = new Map<string, EndpointObj>();
  readonly rulelists = new Map<string, RuleListObj>();
  readonly rules = new Map<string, RuleObj>();
  readonly routes = new Map<string, RouteObj>();
  /** Listeners of the static config: what carries their REST API is protected from REST deletes. */
  readonly staticListeners = new Set<string>();
  /** What deletes end or disconnect (the gateway attaches its session pipeline). */
  cuts: SessionCuts = NO_SESSIONS;
  /** Serialises changes: REST calls and config loads never interleave. */
  private queue: Promise<unknown> = Promise.resolve();

  /** `changed` runs after every change, whether it succeeded or not. */
  constructor(private readonly log: Logger, private readonly changed: () => void = () => undefined) {}

  has(kind: ObjKind, name: string): boolean {
    return this.mapOf(kind).has(name);
  }

  get(kind: ObjKind, name: string): AnyObj | undefined {
    return this.mapOf(kind).get(name);
  }

  private mapOf(kind: ObjKind): Map<string, AnyObj> {
    switch (kind) {
      case 'listener': return this.listeners;
      case 'cluster': return this.clusters;
      case 'endpoint': return this.endpoints;
      case 'rulelist': return this.rulelists;
      case 'rule': return this.rules;
      case 'route': return this.routes;
    }
  }

  /**
   * Called once by the next apply() after it built and bound everything and
   * before it touches the graph: resolve to commit, reject to undo (the
   * two-phase change of data-plane workers).
   */
  gate: (() => Promise<void>) | undefined;

  /** Run a change exclusively. */
  mutate<T>(fn: () => Promise<T> | T): Promise<T> {
    const run = this.queue.then(fn, fn);
    this.queue = run.catch(() => undefined);
    run.then(this.changed, this.changed);
    return run;
  }

  /**
   * Build a change in a Transaction and commit it: `build` validates and
   * builds every object without touching the graph; listeners bind last; if
   * anything fails, nothing changed.
   */
  async apply(fromStaticConfig: boolean, build: (tx: Transaction) => void): Promise<void> {
    const tx = new Transaction(this, fromStaticConfig);
    try {
      build(tx);
    } catch (err) {
      tx.rollbackCounters();
      closeStaged(tx);
      throw err;
    }
    // Bind listeners last; undo the ones that bound if a later one fails.
    // Clusters take their files after that: a refused change opens none.
    const started: ListenerObj[] = [];
    for (const obj of tx.order) {
      if (obj.kind !== 'listener') continue;
      try {
        await obj.impl.start();
        started.push(obj);
      } catch (err) {
        await undo(tx, started);
        throw asGatewayError(err);
      }
    }
    try {
      for (const obj of tx.order) if (obj.kind === 'cluster') obj.impl.activate?.();
      // Everything is built and bound: a worker holds the change here until
      // every process has prepared it (workers/entry.ts); a refusal undoes it.
      const gate = this.gate;
      this.gate = undefined;
      await gate?.();
    } catch (err) {
      await undo(tx, started);
      throw asGatewayError(err);
    }
    for (const obj of tx.order) {
      if (fromStaticConfig && obj.kind === 'listener') this.staticListeners.add(obj.name);
      this.mapOf(obj.kind).set(obj.name, obj);
      if (obj.kind === 'endpoint') {
        const c = this.clusters.get(obj.cluster)!;
        c.endpoints.push(obj);
        c.balancer.update(c.endpoints);
        c.health?.update(c.endpoints);
      }
    }
    for (const obj of tx.order) {
      this.log.info({ kind: obj.kind, name: obj.name }, `${KIND_TITLE[obj.kind]} added`);
    }
    for (const obj of tx.order) if (obj.kind === 'listener') obj.impl.ready?.();
  }

  // ---------------------------------------------------------------- deletes
  // Each runs inside mutate(); REST deletes of what carries the static
  // config's API answer 409 (policy.ts guardApi) before anything changes.

  async deleteListener(name: string, recursive: boolean): Promise<void> {
    const l = this.listeners.get(name);
    if (!l) throw new GatewayError('NOT_FOUND', `Cannot delete listener: Unknown listener "${name}"`);
    guardApi(this, 'listener', name);
    this.listeners.delete(name);
    this.staticListeners.delete(name);
    await l.impl.stop().catch((err) => this.log.warn({ listener: name, err: String(err) }, 'listener stop failed'));
    if (recursive) {
      const shared = [...this.listeners.values()].some((o) => o.rules === l.rules);
      if (l.inlineRuleList && this.rulelists.has(l.rules) && !shared) this.removeRuleList(l.rules, true);
      this.cuts.cutListener(name);
    }
    this.log.info({ listener: name, recursive }, 'Listener deleted');
  }

  deleteCluster(name: string, recursive: boolean): void {
    if (!this.clusters.has(name)) throw new GatewayError('NOT_FOUND', `Cannot delete cluster: Unknown cluster "${name}"`);
    guardApi(this, 'cluster', name);
    this.removeCluster(name, recursive);
  }

  deleteEndpoint(name: string, recursive: boolean): void {
    if (!this.endpoints.has(name)) throw new GatewayError('NOT_FOUND', `Cannot delete endpoint: Unknown endpoint "${name}"`);
    this.removeEndpoint(name, recursive);
  }

  deleteRuleList(name: string, recursive: boolean): void {
    if (!this.rulelists.has(name)) throw new GatewayError('NOT_FOUND', `Cannot delete rulelist: Unknown rulelist "${name}"`);
    guardApi(this, 'rulelist', name);
    this.removeRuleList(name, recursive);
  }

  deleteRule(name: string, recursive: boolean): void {
    if (!this.rules.has(name)) throw new GatewayError('NOT_FOUND', `Cannot delete rule: Unknown rule "${name}"`);
    guardApi(this, 'rule', name);
    this.removeRule(name, recursive);
  }

  deleteRoute(name: string, recursive: boolean): void {
    if (!this.routes.has(name)) throw new GatewayError('NOT_FOUND', `Cannot delete route: Unknown route "${name}"`);
    guardApi(this, 'route', name);
    this.removeRoute(name, recursive);
  }

  /** Unlink a rule (by position or name) from a rulelist; recursive also deletes the rule. */
  deleteRuleFromRuleList(rulelist: string, position: string, recursive: boolean): void {
    const rl = this.rulelists.get(rulelist);
    if (!rl) throw new GatewayError('NOT_FOUND', `No such rule list: ${rulelist}`);
    const idx = this.rulePosition(rl, position);
    guardApi(this, 'rule', rl.rules[idx]!, `removed from RuleList "${rulelist}"`);
    const [ruleName] = rl.rules.splice(idx, 1);
    if (recursive && ruleName !== undefined && this.rules.has(ruleName)) this.removeRule(ruleName, true);
  }

  rulePosition(rl: RuleListObj, position: string): number {
    if (/^\d+$/.test(position)) {
      const i = Number(position);
      if (i >= rl.rules.length) throw new GatewayError('NOT_FOUND', `No rule at position ${i} in RuleList "${rl.name}"`);
      return i;
    }
    const i = rl.rules.indexOf(position);
    if (i < 0) throw new GatewayError('NOT_FOUND', `No rule "${position}" in RuleList "${rl.name}"`);
    return i;
  }

  private removeRuleList(name: string, recursive: boolean): void {
    const rl = this.rulelists.get(name);
    if (!rl) return;
    this.rulelists.delete(name);
    if (recursive) {
      // Only rules defined inline go with the list, and only when no other list shares them.
      for (const r of rl.rules) {
        const rule = this.rules.get(r);
        if (rule?.autogenerated && !this.ruleInUse(r)) this.removeRule(r, true);
      }
    }
  }

  private removeRule(name: string, recursive: boolean): void {
    const rule = this.rules.get(name);
    if (!rule) return;
    this.rules.delete(name);
    if (recursive && rule.action.route !== undefined) {
      const route = this.routes.get(rule.action.route);
      if (route?.autogenerated && !this.routeInUse(route.name)) this.removeRoute(route.name, true);
    }
  }

  private removeRoute(name: string, recursive: boolean): void {
    const route = this.routes.get(name);
    if (!route) return;
    this.routes.delete(name);
    if (recursive) {
      // A cluster defined inline elsewhere and named here (the controller's
      // l7mp-controller, say) is used by that other route: it stays.
      for (const c of [route.destination, ...route.ingress, ...route.egress]) {
        if (this.clusters.get(c)?.autogenerated && !this.clusterInUse(c)) this.removeCluster(c, true);
      }
    }
  }

  private ruleInUse(name: string): boolean {
    for (const rl of this.rulelists.values()) if (rl.rules.includes(name)) return true;
    return false;
  }

  private routeInUse(name: string): boolean {
    for (const r of this.rules.values()) if (r.action.route === name) return true;
    return false;
  }

  private clusterInUse(name: string): boolean {
    for (const r of this.routes.values()) if (r.destination === name || r.ingress.includes(name) || r.egress.includes(name)) return true;
    return false;
  }

  private removeCluster(name: string, recursive: boolean): void {
    const c = this.clusters.get(name);
    if (!c) return;
    if (recursive) this.cuts.cutCluster(name);
    for (const e of [...c.endpoints]) this.removeEndpoint(e.name, recursive);
    this.clusters.delete(name);
    c.impl.close?.();
    c.health?.close();
  }

  private removeEndpoint(name: string, recursive: boolean): void {
    const e = this.endpoints.get(name);
    if (!e) return;
    this.endpoints.delete(name);
    const c = this.clusters.get(e.cluster);
    if (c) {
      const i = c.endpoints.indexOf(e);
      if (i >= 0) c.endpoints.splice(i, 1);
      c.balancer.update(c.endpoints);
      c.health?.update(c.endpoints);
    }
    if (recursive) this.cuts.disconnectEndpoint(e);
  }
}

/** Roll a transaction back after its listeners (`started`) bound. */
async function undo(tx: Transaction, started: readonly ListenerObj[]): Promise<void> {
  for (const l of started) await l.impl.stop().catch(() => undefined);
  tx.rollbackCounters();
  closeStaged(tx);
}

function closeStaged(tx: Transaction): void {
  for (const obj of tx.order) if (obj.kind === 'cluster') obj.impl.close?.();
}
