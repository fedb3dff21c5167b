// The Gateway: the object graph (listeners, clusters, endpoints, rulelists,
// rules, routes), its transactional add/delete, and the session router.
//
// Every change, from the static config file or from REST, goes through a
// Transaction: it validates everything and builds every object before it
// touches the graph; listeners bind last; if anything fails, nothing changed.

import { createBalancer } from '../balancer/index.js';
import type { Channel } from '../dataplane/channel.js';
import type { AdminSettings } from '../config/admin-settings.js';
import type { Logger } from '../observe/log.js';
import { findProtocol, protocolFor } from '../protocols/registry.js';
import type { GatewayServices, HttpExchange, NewSession, Spec } from '../protocols/types.js';
import { compileMatch, compileRewrite } from '../routing/predicate.js';
import { GatewayError, invalid, asGatewayError, clientContent } from './errors.js';
import {
  DEFAULT_RETRY, type AnyObj, type ClusterObj, type EndpointObj, type ListenerObj, type ObjKind,
  type RetryOn, type RetryPolicy, type RouteObj, type RuleListObj, type RuleObj,
} from './model.js';
import { NameCounters, checkName, dedupe, type CountedKind } from './names.js';
import { checkExposure, exposedApiListeners, key, protectedApiObjects, servesApiError, type GraphView } from './apiobjects.js';
import { confineSpec } from './confine.js';
import type { GatewayObserver } from '../dataplane/observer.js';
import { Refusals } from '../observe/refusals.js';
import { edgeLimits, type EdgeLimitSettings, type MessageBudget } from './limits.js';
import { Admission, DEFAULT_LIMITS, parseListenerMaxSessions, type AdmissionLimits } from './admission.js';
import { Session, Stage, type SessionOwner } from '../dataplane/session.js';
import { StreamSplicer } from '../fastpath/splice.js';
import { HealthStats, UpstreamHealth, noteSessionEnd, noteStageClosed, pickEndpoint } from '../health/index.js';
import { DEFAULT_DRAIN_TIMEOUT_MS, SessionCut } from './drain.js';
import { mayReconnect, reconnected } from '../dataplane/reconnect-budget.js';

/** The kernel fast path (gateway/src/fastpath/offload/bridge.ts), told about session milestones. */
export interface SessionOffloader {
  /** The session is linked (or a stage was relinked): offload it once eligible. */
  sessionConnected(s: Session): void;
  /** Before stages close or change: take the session out of the kernel, keeping its final counts. */
  release(s: Session): void;
}

const KIND_LABEL: Record<ObjKind, string> = {
  listener: 'listener', cluster: 'cluster', endpoint: 'endpoint', rulelist: 'rulelist', rule: 'rule', route: 'route',
};
const KIND_TITLE: Record<ObjKind, string> = {
  listener: 'Listener', cluster: 'Cluster', endpoint: 'EndPoint', rulelist: 'RuleList', rule: 'Rule', route: 'Route',
};

const RETRY_ON: readonly RetryOn[] = ['never', 'connect-failure', 'disconnect', 'always'];
const MAX_APPLY_DEPTH = 16;

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function clone<T>(v: T): T {
  return v === undefined ? v : structuredClone(v);
}

export interface GatewayOptions {
  log: Logger;
  version: string;
  /** Serves REST exchanges for L7mpController clusters. */
  api?: (gw: Gateway, exchange: HttpExchange, body: Uint8Array, session: string) => Promise<void>;
  /** Called with one line per ended session when access_log_path is set. */
  accessLog?: (line: Record<string, unknown>) => void;
  /** Allow protocols that run programs (static config only). */
  allowStaticOnly?: boolean;
  /** The programs STDIO-fork clusters may run (admin.stdio_fork.commands of the static config). */
  stdioForkCommands?: readonly (readonly string[])[];
  /** Admits a REST call from its head (rate limit, bearer token) before its body is read. */
  admitApi?: GatewayServices['admitApi'];
  /** Lifecycle hooks for metrics (observe/metrics.ts); never called per packet. */
  observer?: GatewayObserver;
  /** admin.file_root (resolved): the only directory REST calls may name files in; none without it. */
  fileRoot?: string;
  /** An API token is required: a REST call may then expose the API beyond loopback. */
  apiTokenSet?: boolean;
  /** Data-plane admission limits (admin.limits); DEFAULT_LIMITS otherwise. */
  limits?: AdmissionLimits;
}

/** Staged additions, applied all at once on commit. */
class Transaction {
  readonly objects = new Map<string, AnyObj>(); // key: kind + '\0' + name
  /** Live objects as the commit will change them (a rulelist with an inserted rule), for checks only. */
  readonly preview = new Map<string, AnyObj>();
  readonly order: AnyObj[] = [];
  private readonly counterSnapshot;

  constructor(private readonly gw: Gateway, readonly fromStaticConfig: boolean) {
    this.counterSnapshot = gw.counters.snapshot();
  }

  taken(kind: ObjKind, name: string): boolean {
    return this.objects.has(`${kind}\0${name}`) || this.gw.has(kind, name);
  }

  stage(obj: AnyObj, field: string): void {
    if (this.taken(obj.kind, obj.name)) {
      throw new GatewayError('NAME_TAKEN', `Cannot add ${KIND_LABEL[obj.kind]}: ${KIND_TITLE[obj.kind]} "${obj.name}" already defined`, `${field}.name`);
    }
    this.objects.set(`${obj.kind}\0${obj.name}`, obj);
    this.order.push(obj);
  }

  implicitName(kind: ObjKind, base: string, counted?: CountedKind): string {
    const raw = counted ? `${base}-${counted}-${this.gw.counters.next(counted)}` : base;
    return dedupe(raw, (n) => this.taken(kind, n));
  }

  rollbackCounters(): void {
    this.gw.counters.restore(this.counterSnapshot);
  }
}

export class Gateway implements SessionOwner, GatewayServices {
  readonly log: Logger;
  readonly counters = new NameCounters();
  readonly listeners = new Map<string, ListenerObj>();
  readonly clusters = new Map<string, ClusterObj>();
  readonly endpoints = new Map<string, EndpointObj>();
  readonly rulelists = new Map<string, RuleListObj>();
  readonly rules = new Map<string, RuleObj>();
  readonly routes = new Map<string, RouteObj>();
  readonly sessions = new Map<string, Session>();
  readonly admin: AdminSettings;
  /** Inputs refused at the edge, by reason (observe/refusals.ts). */
  readonly refusals: Refusals;
  /** Edge limits (admin.limits, core/limits.ts) and the shared message-byte budget; app.ts replaces `settings`. */
  readonly limits: { settings: EdgeLimitSettings; readonly messages: MessageBudget } = edgeLimits();
  /** Serialises changes: REST calls and config loads never interleave. */
  private queue: Promise<unknown> = Promise.resolve();
  private readonly opts: GatewayOptions;
  private stopping = false;
  /** Draining (core/drain.ts): not ready, no new sessions, the live ones finishing. */
  draining = false;
  readonly observer: GatewayObserver | undefined;
  /** The static configuration was applied (readiness). */
  configApplied = false;
  private readonly stopHooks: Array<() => Promise<void> | void> = [];
  /** Listeners of the static config: what carries their REST API is protected from REST deletes. */
  private readonly staticListeners = new Set<string>();
  /** The kernel offload bridge, when admin.offload enabled it (set by app.ts). */
  offloader: SessionOffloader | undefined;
  /** Admits new data-plane sessions: caps, flow rate, descriptor budget (admission.ts). */
  readonly admission: Admission;
  /** The splice(2) fast path for bulk stream sessions; undefined without the addon or with L7MP_SPLICE=off. */
  readonly splicer = StreamSplicer.create();
  /** Health check and ejection counters of every cluster (gateway/src/health). */
  readonly healthStats = new HealthStats();

  constructor(opts: GatewayOptions) {
    this.opts = opts;
    this.log = opts.log;
    this.observer = opts.observer;
    this.refusals = new Refusals(opts.log);
    this.admission = new Admission(this, this.refusals, opts.limits ?? DEFAULT_LIMITS);
    this.admin = {
      log_level: 'info',
      strict: false,
      offload: false,
      max_body_bytes: 1024 * 1024,
      max_sessions: (opts.limits ?? DEFAULT_LIMITS).maxSessions,
      drain_timeout: DEFAULT_DRAIN_TIMEOUT_MS,
      version: opts.version,
      managed: false,
    };
  }

  // ---------------------------------------------------------------- services

  handleApi(exchange: HttpExchange, body: Uint8Array, session: string): Promise<void> {
    if (!this.opts.api) {
      exchange.respond(500, { 'content-type': 'application/json' }, JSON.stringify({ status: 500, message: 'Internal Server Error', content: 'no API handler configured' }));
      return Promise.resolve();
    }
    return this.opts.api(this, exchange, body, session);
  }

  maxBodyBytes(): number {
    return this.admin.max_body_bytes;
  }

  admitApi(exchange: HttpExchange): ReturnType<NonNullable<GatewayServices['admitApi']>> {
    return this.opts.admitApi?.(exchange);
  }

  exposition(): Promise<{ contentType: string; body: string }> {
    const o = this.observer;
    if (!o?.exposition) return Promise.reject(new GatewayError('NOT_SUPPORTED', 'metrics are not enabled in this gateway'));
    return o.exposition();
  }

  stdioForkCommands(): readonly (readonly string[])[] | undefined {
    return this.opts.stdioForkCommands;
  }

  get isStopping(): boolean {
    return this.stopping;
  }

  /** Run `fn` at the end of stop() (the admin listener, ...). */
  onStop(fn: () => Promise<void> | void): void {
    this.stopHooks.push(fn);
  }

  // ----------------------------------------------------------------- lookup

  has(kind: ObjKind, name: string): boolean {
    return this.mapOf(kind).has(name);
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

  /** Run a change exclusively. */
  mutate<T>(fn: () => Promise<T> | T): Promise<T> {
    const run = this.queue.then(fn, fn);
    this.queue = run.catch(() => undefined);
    const changed = (): void => this.admission.invalidate(); // which listeners serve the control plane
    run.then(changed, changed);
    return run;
  }

  // ------------------------------------------------------------------ adds

  addListener(raw: unknown, fromStaticConfig = false): Promise<void> {
    return this.mutate(() => this.apply(fromStaticConfig, (tx) => this.stageListener(tx, raw, 'listener')));
  }

  addCluster(raw: unknown, fromStaticConfig = false): Promise<void> {
    return this.mutate(() => this.apply(fromStaticConfig, (tx) => { this.stageCluster(tx, raw, 'cluster', false); }));
  }

  addRuleList(raw: unknown): Promise<void> {
    return this.mutate(() => this.apply(false, (tx) => { this.stageRuleList(tx, raw, 'rulelist', false); }));
  }

  addRule(raw: unknown): Promise<void> {
    return this.mutate(() => this.apply(false, (tx) => { this.stageRule(tx, raw, 'rule', false); }));
  }

  addRoute(raw: unknown): Promise<void> {
    return this.mutate(() => this.apply(false, (tx) => { this.stageRoute(tx, raw, 'route', false); }));
  }

  addEndpoint(clusterName: string, raw: unknown): Promise<void> {
    return this.mutate(() => this.apply(false, (tx) => {
      const c = this.clusters.get(clusterName);
      if (!c) throw new GatewayError('NOT_FOUND', `Cannot add endpoint: Unknown cluster "${clusterName}"`);
      this.stageEndpoint(tx, raw, 'endpoint', c, false);
    }));
  }

  /** Insert a rule (object or name) into a rulelist before `position` (0..length). */
  addRuleToRuleList(rulelist: string, position: number, raw: unknown): Promise<void> {
    return this.mutate(() => {
      const rl = this.rulelists.get(rulelist);
      if (!rl) throw new GatewayError('NOT_FOUND', `No such rule list: ${rulelist}`);
      if (!Number.isInteger(position) || position < 0 || position > rl.rules.length) {
        throw new GatewayError('INVALID_INPUT', `Cannot insert rule at position ${position} into rulelist "${rulelist}" of ${rl.rules.length} rules`, 'position');
      }
      // A rule before one that carries the API could take its requests.
      this.guardApi('rule', rl.rules.slice(position), `shadowed by a rule inserted before it into RuleList "${rulelist}"`);
      let ruleName: string;
      return this.apply(false, (tx) => {
        if (typeof raw === 'string') {
          ruleName = checkName(raw, 'rule');
        } else {
          ruleName = this.stageRule(tx, raw, 'rule', true, rl.name);
        }
        tx.preview.set(key('rulelist', rl.name), { ...rl, rules: [...rl.rules.slice(0, position), ruleName, ...rl.rules.slice(position)] });
      }).then(() => {
        rl.rules.splice(position, 0, ruleName);
      });
    });
  }

  /** Add every section of a config (static file or POST /config) as one transaction. */
  applyConfig(raw: unknown, fromStaticConfig: boolean): Promise<void> {
    return this.mutate(() => {
      if (!isObject(raw)) throw invalid('config', 'must be an object');
      return this.apply(fromStaticConfig, (tx) => {
        const list = (key: string): unknown[] => {
          const v = raw[key];
          if (v === undefined || v === null) return [];
          if (!Array.isArray(v)) throw invalid(key, 'must be an array');
          return v;
        };
        list('clusters').forEach((c, i) => this.stageCluster(tx, c, `clusters[${i}]`, false));
        list('rulelists').forEach((c, i) => this.stageRuleList(tx, c, `rulelists[${i}]`, false));
        list('rules').forEach((c, i) => this.stageRule(tx, c, `rules[${i}]`, false));
        list('routes').forEach((c, i) => this.stageRoute(tx, c, `routes[${i}]`, false));
        list('listeners').forEach((c, i) => this.stageListener(tx, c, `listeners[${i}]`));
      }).then(() => { if (fromStaticConfig) this.configApplied = true; });
    });
  }

  private async apply(fromStaticConfig: boolean, build: (tx: Transaction) => void): Promise<void> {
    const tx = new Transaction(this, fromStaticConfig);
    try {
      build(tx);
      if (!fromStaticConfig && !this.opts.apiTokenSet) this.checkApiExposure(tx);
    } catch (err) {
      tx.rollbackCounters();
      this.closeStaged(tx);
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
        await this.undo(tx, started);
        throw asGatewayError(err);
      }
    }
    try {
      for (const obj of tx.order) if (obj.kind === 'cluster') obj.impl.activate?.();
    } catch (err) {
      await this.undo(tx, started);
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

  /**
   * Protocols that run programs come from the static config only. Checked
   * before anything else about the protocol, so a REST call learns nothing
   * more than FORBIDDEN (not even "not supported yet").
   */
  private checkStaticOnly(tx: Transaction, spec: Spec, field: string): void {
    const name = spec.protocol;
    const p = typeof name === 'string' ? findProtocol(name) : undefined;
    if (p?.staticOnly && !(tx.fromStaticConfig && this.opts.allowStaticOnly)) {
      throw new GatewayError('FORBIDDEN', `${field}.protocol: "${p.name}" ${p.staticOnly} and may only be configured in the static config file`, `${field}.protocol`);
    }
    // The spec of an inner protocol (JSONSocket's transport) is checked as that protocol.
    for (const k of p?.nestedSpecs ?? []) {
      const inner = spec[k];
      if (typeof inner === 'object' && inner !== null && !Array.isArray(inner)) this.checkStaticOnly(tx, inner as Spec, `${field}.${k}`);
    }
  }

  /** The live graph, or the live graph with a transaction's objects staged on top. */
  private view(tx?: Transaction): GraphView {
    return { get: (kind, name) => tx?.objects.get(key(kind, name)) ?? tx?.preview.get(key(kind, name)) ?? this.mapOf(kind).get(name) };
  }

  /** Without an API token, a REST change may not serve the API beyond loopback (apiobjects.ts). */
  private checkApiExposure(tx: Transaction): void {
    const staged = tx.order.filter((o): o is ListenerObj => o.kind === 'listener');
    const before = exposedApiListeners(this.view(), this.listeners.values());
    checkExposure(before, exposedApiListeners(this.view(tx), [...this.listeners.values(), ...staged]), this.view(tx));
  }

  /** 409 when a REST call would delete (or shadow) what carries the static config's API. */
  private guardApi(kind: ObjKind, names: string | readonly string[], what?: string): void {
    const statics = [...this.staticListeners].map((n) => this.listeners.get(n)).filter((l): l is ListenerObj => l !== undefined);
    const carriers = protectedApiObjects(this.view(), statics);
    for (const name of typeof names === 'string' ? [names] : names) {
      const listener = carriers.get(key(kind, name));
      if (listener !== undefined) throw servesApiError(kind, name, listener, what);
    }
  }

  /** Roll a transaction back after its listeners (`started`) bound. */
  private async undo(tx: Transaction, started: readonly ListenerObj[]): Promise<void> {
    for (const l of started) await l.impl.stop().catch(() => undefined);
    tx.rollbackCounters();
    this.closeStaged(tx);
  }

  private closeStaged(tx: Transaction): void {
    for (const obj of tx.order) if (obj.kind === 'cluster') obj.impl.close?.();
  }

  private stageListener(tx: Transaction, raw: unknown, field: string): void {
    if (!isObject(raw)) throw invalid(field, 'must be an object');
    const name = checkName(raw.name, `${field}.name`);
    if (!isObject(raw.spec)) throw invalid(`${field}.spec`, 'is required and must be an object');
    const spec = clone(raw.spec) as Spec;
    this.checkStaticOnly(tx, spec, `${field}.spec`);
    const protocol = protocolFor(spec.protocol, 'listener', `${field}.spec.protocol`);
    if (!tx.fromStaticConfig) confineSpec(this.opts.fileRoot, protocol, 'listener', spec, `${field}.spec`);
    // The REST controller binds to loopback unless told otherwise.
    if (spec.address === undefined && servesController(raw.rules)) spec.address = '127.0.0.1';
    if (tx.taken('listener', name)) {
      throw new GatewayError('NAME_TAKEN', `Cannot add listener: Listener "${name}" already defined`, `${field}.name`);
    }
    let rules: string;
    let inline = false;
    if (typeof raw.rules === 'string') {
      rules = checkName(raw.rules, `${field}.rules`);
    } else if (Array.isArray(raw.rules)) {
      rules = this.stageRuleList(tx, { rules: raw.rules }, field, true, name);
      inline = true;
    } else {
      throw invalid(`${field}.rules`, 'is required: an array of rules or the name of a rulelist');
    }
    let track = 0;
    let maxSessions: number | undefined;
    if (raw.options !== undefined) {
      if (!isObject(raw.options)) throw invalid(`${field}.options`, 'must be an object');
      const t = raw.options.track;
      if (t !== undefined && (typeof t !== 'number' || !Number.isFinite(t) || t < 0 || t > 86400)) {
        throw invalid(`${field}.options.track`, 'must be a number of seconds between 0 and 86400');
      }
      track = (t as number | undefined) ?? 0;
      maxSessions = parseListenerMaxSessions(raw.options, `${field}.options`);
    }
    const impl = protocol.listener!.create(spec, {
      listenerName: name,
      log: this.log,
      refusals: this.refusals,
      limits: this.limits,
      emit: (s) => this.addSession(name, s),
      admit: (c) => this.admission.admit(name, c),
    }, `${field}.spec`);
    const options = maxSessions === undefined ? { track } : { track, max_sessions: maxSessions };
    tx.stage({ kind: 'listener', name, spec, protocol, rules, options, impl, inlineRuleList: inline }, field);
  }

  private stageRuleList(tx: Transaction, raw: unknown, field: string, autogenerated: boolean, parent?: string): string {
    if (!isObject(raw)) throw invalid(field, 'must be an object');
    const name = raw.name !== undefined ? checkName(raw.name, `${field}.name`)
      : autogenerated ? tx.implicitName('rulelist', parent!, 'RuleList')
      : checkName(raw.name, `${field}.name`);
    if (!Array.isArray(raw.rules)) throw invalid(`${field}.rules`, 'must be an array of rules or rule names');
    if (tx.taken('rulelist', name)) {
      throw new GatewayError('NAME_TAKEN', `Cannot add rulelist: RuleList "${name}" already defined`, `${field}.name`);
    }
    const rules = raw.rules.map((r, i) => {
      if (typeof r === 'string') return checkName(r, `${field}.rules[${i}]`);
      return this.stageRule(tx, r, `${field}.rules[${i}]`, true, name);
    });
    tx.stage({ kind: 'rulelist', name, rules, autogenerated }, field);
    return name;
  }

  private stageRule(tx: Transaction, raw: unknown, field: string, autogenerated: boolean, parent?: string): string {
    if (!isObject(raw)) throw invalid(field, 'must be an object');
    const name = raw.name !== undefined ? checkName(raw.name, `${field}.name`)
      : autogenerated ? tx.implicitName('rule', parent!, 'Rule')
      : checkName(raw.name, `${field}.name`);
    if (tx.taken('rule', name)) {
      throw new GatewayError('NAME_TAKEN', `Cannot add rule: Rule "${name}" already defined`, `${field}.name`);
    }
    const matches = compileMatch(raw.match, `${field}.match`);
    const a = raw.action;
    if (!isObject(a)) throw invalid(`${field}.action`, 'is required and must be an object with route, apply and/or rewrite');
    let route: string | undefined;
    if (a.route !== undefined) {
      route = typeof a.route === 'string' ? checkName(a.route, `${field}.action.route`)
        : this.stageRoute(tx, a.route, `${field}.action.route`, true, name);
    }
    const apply = a.apply !== undefined ? checkName(a.apply, `${field}.action.apply`) : undefined;
    if (route === undefined && apply === undefined) {
      throw invalid(`${field}.action`, 'needs a route or an apply (the rulelist to continue with)');
    }
    const applyRewrite = a.rewrite !== undefined ? compileRewrite(a.rewrite, `${field}.action.rewrite`) : undefined;
    const action: RuleObj['action'] = {
      ...(a.rewrite !== undefined ? { rewrite: clone(a.rewrite), applyRewrite } : {}),
      ...(route !== undefined ? { route } : {}),
      ...(apply !== undefined ? { apply } : {}),
    };
    tx.stage({ kind: 'rule', name, match: clone(raw.match), matches, action, autogenerated }, field);
    return name;
  }

  private stageRoute(tx: Transaction, raw: unknown, field: string, autogenerated: boolean, parent?: string): string {
    if (!isObject(raw)) throw invalid(field, 'must be an object');
    const name = raw.name !== undefined ? checkName(raw.name, `${field}.name`)
      : autogenerated ? tx.implicitName('route', parent!, 'Route')
      : checkName(raw.name, `${field}.name`);
    if (tx.taken('route', name)) {
      throw new GatewayError('NAME_TAKEN', `Cannot add route: Route "${name}" already defined`, `${field}.name`);
    }
    const destRaw = raw.destination ?? raw.cluster; // `cluster` is l7mp's legacy alias
    const destField = raw.destination !== undefined ? `${field}.destination` : `${field}.cluster`;
    if (destRaw === undefined) throw invalid(`${field}.destination`, 'is required: a cluster or the name of one');
    const ref = (v: unknown, f: string, implicit: string): string => {
      if (typeof v === 'string') return checkName(v, f);
      if (!isObject(v)) throw invalid(f, 'must be a cluster or the name of one');
      const c = { ...v };
      if (c.name === undefined) c.name = tx.implicitName('cluster', implicit);
      return this.stageCluster(tx, c, f, true);
    };
    const destination = ref(destRaw, destField, `${name}-Cluster-0`);
    const chain = (key: 'ingress' | 'egress'): string[] => {
      const v = raw[key];
      if (v === undefined || v === null) return [];
      if (!Array.isArray(v)) throw invalid(`${field}.${key}`, 'must be an array of clusters or cluster names');
      return v.map((c, i) => ref(c, `${field}.${key}[${i}]`, `${name}-${key}-Cluster-${i}`));
    };
    const ingress = chain('ingress');
    const egress = chain('egress');
    const retry = parseRetry(raw.retry, `${field}.retry`);
    tx.stage({ kind: 'route', name, destination, ingress, egress, retry, autogenerated }, field);
    return name;
  }

  private stageCluster(tx: Transaction, raw: unknown, field: string, autogenerated: boolean): string {
    if (!isObject(raw)) throw invalid(field, 'must be an object');
    const name = checkName(raw.name, `${field}.name`);
    if (tx.taken('cluster', name)) {
      throw new GatewayError('NAME_TAKEN', `Cannot add cluster: Cluster "${name}" already defined`, `${field}.name`);
    }
    if (!isObject(raw.spec)) throw invalid(`${field}.spec`, 'is required and must be an object');
    const spec = clone(raw.spec) as Spec;
    this.checkStaticOnly(tx, spec, `${field}.spec`);
    const protocol = protocolFor(spec.protocol, 'cluster', `${field}.spec.protocol`);
    if (!tx.fromStaticConfig) confineSpec(this.opts.fileRoot, protocol, 'cluster', spec, `${field}.spec`);
    const balancer = createBalancer(raw.loadbalancer, `${field}.loadbalancer`);
    const health = UpstreamHealth.parse(raw, field, name, protocol, this.healthStats, this.log);
    const impl = protocol.cluster!.create(spec, {
      clusterName: name, log: this.log, refusals: this.refusals, limits: this.limits, services: this, ...(health ? { outcomes: health.state } : {}),
    }, `${field}.spec`);
    health?.attach({ name, protocol, spec, impl });
    const cluster: ClusterObj = {
      kind: 'cluster', name, spec, protocol, impl, endpoints: [], balancer, autogenerated, ...(health ? { health } : {}),
      ...(isObject(raw.options) ? { options: clone(raw.options) } : {}),
    };
    // Stage the cluster before its endpoints so that an endpoint error names the right field.
    const stagedEndpoints: EndpointObj[] = [];
    if (raw.endpoints !== undefined && raw.endpoints !== null) {
      if (!Array.isArray(raw.endpoints)) throw invalid(`${field}.endpoints`, 'must be an array');
      if (protocol.cluster!.virtual) {
        if (raw.endpoints.length > 0) this.log.warn({ cluster: name }, `${protocol.name} clusters ignore endpoints`);
      } else {
        raw.endpoints.forEach((e, i) => stagedEndpoints.push(this.buildEndpoint(tx, e, `${field}.endpoints[${i}]`, cluster, true)));
      }
    }
    tx.stage(cluster, field);
    // Endpoints are staged after their cluster: the commit appends them to it in order.
    stagedEndpoints.forEach((e, i) => tx.stage(e, `${field}.endpoints[${i}]`));
    return name;
  }

  private stageEndpoint(tx: Transaction, raw: unknown, field: string, cluster: ClusterObj, autogenerated: boolean): void {
    if (cluster.protocol.cluster!.virtual) {
      throw new GatewayError('INVALID_INPUT', `Adding an endpoint to a cluster of type "${cluster.protocol.name}" is not supported`, field);
    }
    tx.stage(this.buildEndpoint(tx, raw, field, cluster, autogenerated), field);
  }

  private buildEndpoint(tx: Transaction, raw: unknown, field: string, cluster: ClusterObj, autogenerated: boolean): EndpointObj {
    if (!isObject(raw)) throw invalid(field, 'must be an object');
    const name = raw.name !== undefined ? checkName(raw.name, `${field}.name`)
      : tx.implicitName('endpoint', cluster.name, 'EndPoint');
    if (tx.taken('endpoint', name)) {
      throw new GatewayError('NAME_TAKEN', `Cannot add endpoint: EndPoint "${name}" already defined`, `${field}.name`);
    }
    if (!isObject(raw.spec)) throw invalid(`${field}.spec`, 'is required and must be an object with an address');
    const spec = clone(raw.spec) as Spec;
    if (spec.address === undefined && typeof spec.filename === 'string') spec.address = spec.filename;
    if (!tx.fromStaticConfig) confineSpec(this.opts.fileRoot, cluster.protocol, 'endpoint', spec, `${field}.spec`, cluster.spec);
    cluster.protocol.cluster!.checkEndpoint?.(spec, `${field}.spec`, cluster.spec);
    const w = raw.weight ?? spec.weight ?? 1;
    if (typeof w !== 'number' || !Number.isFinite(w) || w < 0 || w > 1e6) {
      throw invalid(`${field}.weight`, 'must be a number between 0 and 1000000');
    }
    return { kind: 'endpoint', name, spec, address: String(spec.address), weight: w, cluster: cluster.name, autogenerated };
  }

  // --------------------------------------------------------------- deletes

  deleteListener(name: string, recursive: boolean): Promise<void> {
    return this.mutate(async () => {
      const l = this.listeners.get(name);
      if (!l) throw new GatewayError('NOT_FOUND', `Cannot delete listener: Unknown listener "${name}"`);
      this.guardApi('listener', name);
      this.listeners.delete(name);
      this.staticListeners.delete(name);
      await l.impl.stop().catch((err) => this.log.warn({ listener: name, err: String(err) }, 'listener stop failed'));
      if (recursive) {
        const shared = [...this.listeners.values()].some((o) => o.rules === l.rules);
        if (l.inlineRuleList && this.rulelists.has(l.rules) && !shared) this.removeRuleList(l.rules, true);
        for (const s of this.sessions.values()) if (s.listener === name) this.endSession(s, 'Listener deleted from API', false, new SessionCut('deleted', `listener "${name}" deleted`));
      }
      this.log.info({ listener: name, recursive }, 'Listener deleted');
    });
  }

  deleteCluster(name: string, recursive: boolean): Promise<void> {
    return this.mutate(() => {
      if (!this.clusters.has(name)) throw new GatewayError('NOT_FOUND', `Cannot delete cluster: Unknown cluster "${name}"`);
      this.guardApi('cluster', name);
      this.removeCluster(name, recursive);
    });
  }

  deleteEndpoint(name: string, recursive: boolean): Promise<void> {
    return this.mutate(() => {
      if (!this.endpoints.has(name)) throw new GatewayError('NOT_FOUND', `Cannot delete endpoint: Unknown endpoint "${name}"`);
      this.removeEndpoint(name, recursive);
    });
  }

  deleteRuleList(name: string, recursive: boolean): Promise<void> {
    return this.mutate(() => {
      if (!this.rulelists.has(name)) throw new GatewayError('NOT_FOUND', `Cannot delete rulelist: Unknown rulelist "${name}"`);
      this.guardApi('rulelist', name);
      this.removeRuleList(name, recursive);
    });
  }

  deleteRule(name: string, recursive: boolean): Promise<void> {
    return this.mutate(() => {
      if (!this.rules.has(name)) throw new GatewayError('NOT_FOUND', `Cannot delete rule: Unknown rule "${name}"`);
      this.guardApi('rule', name);
      this.removeRule(name, recursive);
    });
  }

  deleteRoute(name: string, recursive: boolean): Promise<void> {
    return this.mutate(() => {
      if (!this.routes.has(name)) throw new GatewayError('NOT_FOUND', `Cannot delete route: Unknown route "${name}"`);
      this.guardApi('route', name);
      this.removeRoute(name, recursive);
    });
  }

  /** Unlink a rule (by position or name) from a rulelist; recursive also deletes the rule. */
  deleteRuleFromRuleList(rulelist: string, position: string, recursive: boolean): Promise<void> {
    return this.mutate(() => {
      const rl = this.rulelists.get(rulelist);
      if (!rl) throw new GatewayError('NOT_FOUND', `No such rule list: ${rulelist}`);
      const idx = this.rulePosition(rl, position);
      this.guardApi('rule', rl.rules[idx]!, `removed from RuleList "${rulelist}"`);
      const [ruleName] = rl.rules.splice(idx, 1);
      if (recursive && ruleName !== undefined && this.rules.has(ruleName)) this.removeRule(ruleName, true);
    });
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
    if (recursive) {
      for (const s of this.sessions.values()) {
        if (s.status === 'DESTROYED' || s.status === 'FINALIZING') continue;
        if (s.stages().some((st) => st.role !== 'source' && st.origin === name)) this.endSession(s, 'Traversed Cluster deleted from API', false, new SessionCut('deleted', `cluster "${name}" deleted`));
      }
    }
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
    if (recursive) {
      // Disconnect (not end) the sessions on this endpoint: the retry policy decides.
      for (const s of this.sessions.values()) {
        for (const st of s.stages()) {
          if (st.endpoint === e && st.status === 'READY') st.channel?.close(new GatewayError('CONNECT_FAILED', `endpoint "${name}" deleted`));
        }
      }
    }
  }

  deleteSession(name: string): void {
    const s = this.sessions.get(name);
    if (!s || s.status === 'DESTROYED') throw new GatewayError('NOT_FOUND', 'No such session');
    this.endSession(s, 'Session removed from the API', false, new SessionCut('deleted', 'session deleted'));
  }

  // -------------------------------------------------------------- sessions

  private addSession(listener: string, ns: NewSession): void {
    if (this.stopping || this.draining) {
      // Not a graceful close: on an HTTP keep-alive connection that is an empty 200.
      const cut = new SessionCut('shutdown', 'the gateway is shutting down');
      ns.priv?.error?.(cut.status, { status: cut.status, message: 'Service Unavailable', content: cut.message });
      ns.channel.close(cut);
      return;
    }
    if (ns.admitted !== true && !this.admission.admit(listener, ns)) { // counted and logged there
      ns.priv?.error?.(503, { status: 503, message: 'Service Unavailable', content: 'refused by the gateway\'s limits' });
      ns.channel.close();
      return;
    }
    const name = dedupe(ns.name, (n) => this.sessions.has(n));
    // Not `{ ...ns.metadata, name }`: V8 gives every object made by that
    // spread a hidden class of its own (~170 B per session in a heap snapshot).
    const metadata: Record<string, unknown> = Object.assign({}, ns.metadata);
    metadata.name = name;
    const s = new Session(name, listener, metadata, ns.channel, ns.priv ?? {}, this);
    this.sessions.set(name, s);
    s.admitted = this.admission.opened(listener);
    s.event('INIT', 'Session created');
    this.observer?.onSessionStart?.(s);
    this.log.verbose({ session: name, listener }, 'new session');
    void this.route(s);
  }

  private lookup(s: Session): RouteObj {
    const l = this.listeners.get(s.listener);
    if (!l) throw new GatewayError('NO_ROUTE', `No route for session "${s.name}": listener "${s.listener}" is gone`);
    let list = this.rulelists.get(l.rules);
    if (!list) throw new GatewayError('NO_ROUTE', `No route for session "${s.name}": no rulelist "${l.rules}"`);
    for (let depth = 0; depth < MAX_APPLY_DEPTH; depth++) {
      let next: RuleListObj | undefined;
      let matched: RuleObj | undefined;
      for (const rn of list.rules) {
        const rule = this.rules.get(rn);
        if (rule && rule.matches(s.metadata)) {
          matched = rule;
          break;
        }
      }
      if (!matched) throw new GatewayError('NO_ROUTE', `No route for session "${s.name}"`);
      if (matched.action.apply !== undefined) {
        next = this.rulelists.get(matched.action.apply);
        if (!next) throw new GatewayError('NO_ROUTE', `No route for session "${s.name}": rule "${matched.name}" applies unknown rulelist "${matched.action.apply}"`);
        list = next;
        continue;
      }
      matched.action.applyRewrite?.(s.metadata);
      const route = this.routes.get(matched.action.route!);
      if (!route) throw new GatewayError('NO_ROUTE', `Cannot find Route "${matched.action.route}" for session "${s.name}"`);
      return route;
    }
    throw new GatewayError('NO_ROUTE', `No route for session "${s.name}": rulelist "apply" nested deeper than ${MAX_APPLY_DEPTH}`);
  }

  private async route(s: Session): Promise<void> {
    let route: RouteObj;
    try {
      route = this.lookup(s);
    } catch (err) {
      this.failSession(s, asGatewayError(err));
      return;
    }
    s.route = route.name;
    s.retry = route.retry;
    s.event('LOOKUP SUCCESS', `Route "${route.name}" selected`);
    s.destination = new Stage('destination', route.destination);
    s.ingress = route.ingress.map((c) => new Stage('ingress', c));
    s.egress = route.egress.map((c) => new Stage('egress', c));
    const retry = route.retry;
    const attempts = retry.retry_on === 'connect-failure' || retry.retry_on === 'always' ? 1 + retry.num_retries : 1;
    const stages = [...s.ingress, ...s.egress, s.destination];
    const results = await Promise.allSettled(stages.map((st) => this.connectStage(s, st, attempts)));
    if (s.status !== 'INIT') {
      // Ended while connecting (deleted from the API, listener removed...).
      for (const st of stages) st.channel?.close();
      return;
    }
    const failed = results.find((r) => r.status === 'rejected') as PromiseRejectedResult | undefined;
    if (failed) {
      for (const st of stages) st.channel?.close();
      const e = asGatewayError(failed.reason);
      this.failSession(s, new GatewayError(e.code === 'INTERNAL' ? 'CONNECT_FAILED' : e.code, `Pipeline setup failed for session "${s.name}": ${e.message}`));
      return;
    }
    this.checkDowngrade(s);
    // A stage may have closed while the others were still connecting (its
    // close was ignored then). Look before link(): linking flushes early data
    // and EOF, and a channel whose end() starts a close (WebSocket) is only
    // closing then; its close arrives through the close listener once done.
    // Ending the session on it here cut HTTP -> WebSocket responses empty.
    const closedEarly = s.stages().find((st) => st.channel?.closed);
    s.priv.connected?.(); // before link(): the listener's answer must precede anything the destination sends
    s.status = 'CONNECTED'; // before link(): a stage that closes while linking must be seen
    s.event('CONNECT', 'Session connected');
    s.link();
    this.splicer?.linked(s, retriesOnDisconnect(s.retry));
    this.log.verbose({ session: s.name, route: route.name, destination: s.destination.channel?.peer }, 'session connected');
    if (closedEarly !== undefined && !isOver(s)) this.stageClosed(s, closedEarly, undefined);
    else this.offloader?.sessionConnected(s);
  }

  private checkDowngrade(s: Session): void {
    const src = s.source.channel!;
    if (src.kind !== 'datagram') return;
    const chain = [...s.ingress, s.destination!];
    const byte = chain.find((st) => st.channel?.kind === 'byte');
    if (byte) {
      s.warnedDowngrade = true;
      this.log.warn({ session: s.name, stage: byte.origin }, `datagram stream routed into byte-stream cluster "${byte.origin}": message boundaries are not preserved`);
    }
  }

  private async connectStage(s: Session, st: Stage, attempts: number): Promise<void> {
    const timeout = s.retry!.timeout > 0 ? s.retry!.timeout : 2000;
    const failedEndpoints = new Set<string>();
    let last: unknown;
    for (let i = 0; i < attempts; i++) {
      if (i > 0) {
        st.status = 'RETRYING';
        this.observer?.onRetry?.(s, st, 'connect');
        await delay(s.retry!.timeout);
      }
      if (s.status !== 'INIT' && s.status !== 'CONNECTED') throw new GatewayError('CONNECT_FAILED', 'session ended while connecting');
      try {
        const ch = await this.connectOnce(s, st, timeout, failedEndpoints);
        if (isOver(s)) {
          ch.close();
          throw new GatewayError('CONNECT_FAILED', 'session ended while connecting');
        }
        st.channel = ch;
        st.status = 'CONNECTED';
        ch.setCloseListener(s);
        this.observer?.onStageConnect?.(s, st, false);
        return;
      } catch (err) {
        last = err;
        if (!isOver(s)) this.observer?.onConnectFailure?.(s, st, err);
        this.log.info({ session: s.name, cluster: st.origin, attempt: i + 1, of: attempts, err: (err as Error).message }, 'connect attempt failed');
      }
    }
    st.status = 'END';
    throw last;
  }

  private async connectOnce(s: Session, st: Stage, timeoutMs: number, failed: Set<string>): Promise<Channel> {
    const c = this.clusters.get(st.origin);
    if (!c) throw new GatewayError('NOT_FOUND', `cluster "${st.origin}" does not exist`);
    let endpoint: EndpointObj | undefined;
    if (!c.protocol.cluster!.virtual) {
      endpoint = pickEndpoint<EndpointObj>(c.balancer, c.health, s.metadata, failed);
      if (!endpoint) throw new GatewayError('CONNECT_FAILED', `No endpoint in cluster "${c.name}"`);
    }
    st.endpoint = endpoint;
    try {
      return await c.impl.connect({
        endpoint: endpoint && c.health ? c.health.target(endpoint) : endpoint,
        session: s,
        timeoutMs,
        role: st.role === 'source' ? undefined : st.role,
      });
    } catch (err) {
      if (endpoint) {
        failed.add(endpoint.name);
        if (!isOver(s)) c.health?.state.failure(endpoint.name, `connect failed: ${(err as Error).message}`);
      }
      throw err;
    }
  }

  /** A link's source stage sent EOF. */
  stageEnded(s: Session, st: Stage): void {
    // An EOF from a stage whose own input had already ended is the natural end
    // of the exchange (the upstream answered the client's half-close, or a
    // transform passed the client's EOF along), not a lost peer: propagate it.
    const inputEnded = st.inLink?.ended === true;
    if (st.role !== 'source' && !inputEnded && retriesOnDisconnect(s.retry) && this.clusters.get(st.origin)?.protocol.cluster?.retriable) {
      // Under retry_on disconnect/always an upstream EOF is a disconnect (as in l7mp).
      st.channel?.close();
      return;
    }
    st.outLink?.to.end();
  }

  stageClosed(s: Session, st: Stage, err: Error | undefined): void {
    if (s.status !== 'CONNECTED' || st.status !== 'READY') return;
    this.offloader?.release(s); // the kernel must not forward for a stage that is gone
    noteStageClosed(this.clusters.get(st.origin), st, err);
    st.status = 'DISCONNECTED';
    s.event('DISCONNECT', `${st.role === 'source' ? 'listener' : 'cluster'} "${st.origin}" disconnected`, err?.message);
    // A stage that finished both directions with EOF closed cleanly: nothing to retry.
    const finished = !err && st.inLink?.ended === true && st.outLink?.ended === true;
    if (st.role !== 'source' && !finished && retriesOnDisconnect(s.retry) && this.clusters.get(st.origin)?.protocol.cluster?.retriable && mayReconnect(st, s.retry!)) {
      void this.reconnect(s, st, err);
      return;
    }
    if (err) this.endSession(s, `stage "${st.origin}" failed: ${err.message}`, true, err);
    else this.endSession(s, `stage "${st.origin}" closed`);
  }

  private async reconnect(s: Session, st: Stage, err: Error | undefined): Promise<void> {
    st.inLink?.from.pause();
    this.log.info({ session: s.name, cluster: st.origin, err: err?.message }, 'stage disconnected, retrying');
    const retry = s.retry!;
    const failed = new Set<string>();
    if (st.endpoint) failed.add(st.endpoint.name);
    for (let i = 0; i < Math.max(1, retry.num_retries); i++) {
      if (i > 0) await delay(retry.timeout);
      if (s.status !== 'CONNECTED') return;
      st.status = 'RETRYING';
      this.observer?.onRetry?.(s, st, 'reconnect');
      try {
        const ch = await this.connectOnce(s, st, retry.timeout > 0 ? retry.timeout : 2000, failed);
        if (s.status !== 'CONNECTED') {
          ch.close();
          return;
        }
        s.relink(st, ch);
        reconnected(st);
        this.offloader?.sessionConnected(s);
        this.observer?.onStageConnect?.(s, st, true);
        s.event('CONNECT', `cluster "${st.origin}" reconnected`);
        this.log.info({ session: s.name, cluster: st.origin, peer: ch.peer }, 'stage reconnected');
        return;
      } catch (e) {
        if (s.status === 'CONNECTED') this.observer?.onConnectFailure?.(s, st, e);
        this.log.info({ session: s.name, cluster: st.origin, attempt: i + 1, err: (e as Error).message }, 'reconnect attempt failed');
      }
    }
    st.status = 'END';
    this.endSession(s, `Reconnect failed for cluster "${st.origin}"`, true);
  }

  private failSession(s: Session, err: GatewayError): void {
    s.failed = true;
    s.event('ERROR', err.message, err.code);
    this.log.warn({ session: s.name, err: err.message }, 'session setup failed');
    s.priv.error?.(err.status, { status: err.status, message: err.toBody().message, content: clientContent(err, `Pipeline setup failed for session "${s.name}": `) });
    this.finalize(s, err.message, err);
  }

  /** End a session; `cause` is the error that ended it, passed on to the other stages. */
  endSession(s: Session, reason: string, failed = false, cause?: Error): void {
    if (s.status === 'FINALIZING' || s.status === 'DESTROYED') return;
    s.failed ||= failed;
    s.event(failed ? 'ERROR' : 'END', reason);
    this.log.info({ session: s.name, reason, counters: s.counters() }, 'session ended');
    this.finalize(s, reason, cause ?? (failed ? new Error(reason) : undefined));
  }

  private finalize(s: Session, reason: string, err: Error | undefined): void {
    if (isOver(s)) return;
    this.offloader?.release(s); // final kernel counts, before the access log and metrics read them
    noteSessionEnd(this.clusters, s);
    if (s.admitted !== undefined) this.admission.closed(s.admitted);
    s.admitted = undefined;
    s.status = 'FINALIZING';
    s.endReason = reason;
    if (err instanceof SessionCut) s.endKind = err.kind;
    s.ended = Date.now();
    for (const st of s.stages()) {
      if (st.status !== 'END') st.status = 'END';
      // Every stage learns why: without a cause channels close gracefully
      // (flushing what is queued); with one, each protocol signals it its own
      // way (TCP reset, HTTP 502 or an aborted body, a WebSocket close code).
      st.channel?.close(err);
    }
    s.status = 'DESTROYED';
    s.event('DESTROY', 'Session destroyed');
    this.writeAccessLog(s);
    this.observer?.onSessionEnd?.(s);
    const track = this.listeners.get(s.listener)?.options.track ?? 0;
    if (track > 0) {
      const t = setTimeout(() => { if (this.sessions.get(s.name) === s) this.sessions.delete(s.name); }, track * 1000);
      t.unref();
    } else {
      this.sessions.delete(s.name);
    }
  }

  private writeAccessLog(s: Session): void {
    if (!this.opts.accessLog || this.admin.access_log_path === undefined) return;
    const c = s.counters();
    this.opts.accessLog({
      time: new Date(s.ended ?? Date.now()).toISOString(),
      session: s.name,
      listener: s.listener,
      route: s.route,
      destination: s.destination?.origin,
      endpoint: s.destination?.endpoint?.name,
      peer: s.source.channel?.peer,
      duration_ms: (s.ended ?? Date.now()) - s.started,
      ingress_bytes: c.ingress.bytes,
      ingress_packets: c.ingress.packets,
      egress_bytes: c.egress.bytes,
      egress_packets: c.egress.packets,
      status: s.failed ? 'error' : 'ok',
      reason: s.endReason,
    });
  }

  // --------------------------------------------------------------- shutdown

  async stop(): Promise<void> {
    this.stopping = true;
    for (const s of [...this.sessions.values()]) this.endSession(s, 'gateway shutting down', false, new SessionCut('shutdown', 'the gateway is shutting down'));
    for (const l of this.listeners.values()) await l.impl.stop().catch(() => undefined);
    for (const c of this.clusters.values()) {
      c.impl.close?.();
      c.health?.close();
    }
    for (const fn of this.stopHooks.splice(0)) await Promise.resolve().then(fn).catch((err) => this.log.warn({ err: String(err) }, 'shutdown hook failed'));
  }
}

/** Read through a call so that TypeScript does not narrow a status that changes across awaits. */
function isOver(s: Session): boolean {
  return s.status === 'FINALIZING' || s.status === 'DESTROYED';
}

function retriesOnDisconnect(p: RetryPolicy | undefined): boolean {
  return p !== undefined && (p.retry_on === 'disconnect' || p.retry_on === 'always');
}

function delay(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/**
 * Retry policy with per-field defaults. l7mp replaced the default whole when a
 * partial policy was given (a missing num_retries meant none, a missing
 * timeout meant 0 ms); we fill each missing field from the default instead.
 */
export function parseRetry(raw: unknown, field: string): RetryPolicy {
  if (raw === undefined || raw === null) return DEFAULT_RETRY;
  if (!isObject(raw)) throw invalid(field, 'must be an object {retry_on, num_retries, timeout}');
  const retry_on = raw.retry_on ?? DEFAULT_RETRY.retry_on;
  if (typeof retry_on !== 'string' || !RETRY_ON.includes(retry_on as RetryOn)) {
    throw invalid(`${field}.retry_on`, `must be one of ${RETRY_ON.join(', ')}`);
  }
  const num = raw.num_retries ?? DEFAULT_RETRY.num_retries;
  if (typeof num !== 'number' || !Number.isInteger(num) || num < 0 || num > 1000) {
    throw invalid(`${field}.num_retries`, 'must be an integer between 0 and 1000');
  }
  const timeout = raw.timeout ?? DEFAULT_RETRY.timeout;
  if (typeof timeout !== 'number' || !Number.isFinite(timeout) || timeout < 0 || timeout > 3_600_000) {
    throw invalid(`${field}.timeout`, 'must be a number of milliseconds between 0 and 3600000');
  }
  return { retry_on: retry_on as RetryOn, num_retries: num, timeout };
}

/** Does an inline rule list route straight to an L7mpController cluster? */
function servesController(rules: unknown): boolean {
  if (!Array.isArray(rules)) return false;
  return rules.some((r) => {
    const route = isObject(r) && isObject(r.action) ? r.action.route : undefined;
    if (!isObject(route)) return false;
    const dest = route.destination ?? route.cluster;
    return isObject(dest) && isObject(dest.spec) && dest.spec.protocol === 'L7mpController';
  });
}
