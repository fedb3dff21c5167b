// The Gateway: the one object api/, observe/ and protocols talk to. A façade:
// it wires the store (store.ts), the builder (build.ts), the session pipeline
// and its hook list (dataplane/), and serves what protocols ask of it.

import { NO_COMPILED, type CompiledSessions } from './compiled.js';
import type { CompiledSite } from '../protocols/types.js';
import type { AdminSettings } from '../config/admin-settings.js';
import type { Logger } from '../observe/log.js';
import { accessLogHooks } from '../observe/access-log.js';
import { Refusals } from '../observe/refusals.js';
import type { GatewayServices, HttpExchange, ListenerImpl } from '../protocols/types.js';
import { HealthStats } from '../health/index.js';
import { SessionHookList } from '../dataplane/hooks.js';
import type { GatewayObserver } from '../dataplane/observer.js';
import { Pipeline } from '../dataplane/pipeline.js';
import type { Session } from '../dataplane/session.js';
import { Admission, DEFAULT_LIMITS, type AdmissionLimits } from './admission.js';
import { key } from './apiobjects.js';
import { Builder } from './build.js';
import { checkName } from './names.js';
import { DEFAULT_DRAIN_TIMEOUT_MS, SessionCut } from './drain.js';
import { GatewayError, invalid } from './errors.js';
import { edgeLimits, type EdgeLimitSettings, type MessageBudget } from './limits.js';
import type { ClusterObj, EndpointObj, ListenerObj, ObjKind, RouteObj, RuleListObj, RuleObj } from './model.js';
import { checkApiExposure, guardApi, withChange, type LiveGraph, type StagedChange } from './policy.js';
import type { GraphView } from './apiobjects.js';
import type { GatewayOptions } from './options.js';
import { Store, type Transaction } from './store.js';
import { isObject } from './is-object.js';
import { applyProvenance, provenanceOf, type Provenance } from './provenance.js';
import { withDumpedEndpoints } from './dumped-endpoints.js';

export type { GatewayOptions } from './options.js';

/** A REST change the main process accepts, replayed in each worker through the same handler. */
export interface RemoteOp {
  readonly operationId: string;
  readonly params: Record<string, string>;
  readonly recursive: boolean;
  readonly body: unknown;
}

/** What the control plane reads of a data plane that runs in other processes. */
export interface RemoteDataPlane {
  readinessReasons(): string[];
  sessions(): Promise<unknown[]>;
  /** One worker's session (its name carries the worker), asked of that worker only; throws NOT_FOUND. */
  session(name: string): Promise<unknown>;
  /** End a worker's session (its name carries the worker); throws NOT_FOUND. */
  deleteSession(name: string): Promise<void>;
  /** A REST change: prepared in every worker before the main process applies it, then committed or aborted. */
  prepareOp(op: RemoteOp): Promise<number>;
  commitOp(gen: number): Promise<void>;
  abortOp(gen: number): void;
}

export class Gateway implements GatewayServices {
  readonly log: Logger;
  readonly admin: AdminSettings;
  /** Inputs refused at the edge, by reason (observe/refusals.ts). */
  readonly refusals: Refusals;
  /** Edge limits (admin.limits, core/limits.ts) and the shared message-byte budget; app.ts replaces `settings`. */
  readonly limits: { settings: EdgeLimitSettings; readonly messages: MessageBudget } = edgeLimits();
  /** Session milestone hooks: metrics, access log, and the fast paths app.ts registers (fastpath/). */
  readonly hooks = new SessionHookList();
  /** Draining (core/drain.ts): not ready, no new sessions, the live ones finishing. */
  draining = false;
  readonly observer: GatewayObserver | undefined;
  /** The static configuration was applied (readiness). */
  configApplied = false;
  /** With admin.workers > 1: the data plane's worker processes (workers/supervisor.ts). */
  workers: RemoteDataPlane | undefined;
  /**
   * With workers: the stand-in for a listener that runs in them, undefined
   * for one that runs here. `graph`: the live graph with the change that
   * adds the listener on top, so a placement sees what comes with it.
   */
  remoteListener: ((raw: Record<string, unknown>, graph: GraphView) => ListenerImpl | undefined) | undefined;
  /** With workers: refuse a change the placement of a live listener cannot take (workers/split.ts checkPlacement). */
  checkChange: ((live: LiveGraph, tx: StagedChange) => void) | undefined;
  /** Admits new data-plane sessions: caps, flow rate, descriptor budget (admission.ts). */
  readonly admission: Admission;
  /** Sessions of stream listeners the addon sets up itself (fastpath/compiled.ts, registered by useCompiled). */
  compiled: CompiledSessions = NO_COMPILED;
  /** Where listeners attach their Forwarder; undefined: no listener is compiled. */
  private compiledSite: CompiledSite | undefined;
  /** Health check and ejection counters of every cluster (gateway/src/health). */
  readonly healthStats = new HealthStats();
  private readonly opts: GatewayOptions;
  /** The object graph: maps, mutate queue, transactions, deletes. */
  private readonly store: Store;
  private readonly build: Builder;
  private readonly pipeline: Pipeline;
  private stopping = false;
  private readonly stopHooks: Array<() => Promise<void> | void> = [];

  constructor(opts: GatewayOptions) {
    this.opts = opts;
    this.log = opts.log;
    this.observer = opts.observer;
    this.refusals = new Refusals(opts.log);
    const limits = opts.limits ?? DEFAULT_LIMITS;
    // After every change: which listeners serve the control plane, and which are compiled.
    this.store = new Store(opts.log, () => {
      this.admission.invalidate();
      this.compiled.refresh();
    });
    this.admission = new Admission(this.store, this.refusals, limits);
    this.pipeline = new Pipeline({
      graph: this.store, log: opts.log, admission: this.admission, hooks: this.hooks, refusing: () => this.stopping || this.draining,
    });
    const pipeline = this.pipeline;
    this.store.cuts = {
      cutListener: (name) => { pipeline.cutListener(name); this.compiled.cutListener(name); },
      cutCluster: (name) => { pipeline.cutCluster(name); this.compiled.cutCluster(name); },
      disconnectEndpoint: (e) => { pipeline.disconnectEndpoint(e); this.compiled.disconnectEndpoint(e); },
    };
    this.build = new Builder({
      log: opts.log, refusals: this.refusals, limits: this.limits, healthStats: this.healthStats, services: this,
      allowStaticOnly: opts.allowStaticOnly === true, fileRoot: opts.fileRoot,
      emit: (listener, s) => this.pipeline.open(listener, s),
      admit: (listener, c) => this.admission.admit(listener, c),
      compiled: () => this.compiledSite,
      remoteListener: (raw, tx) => this.remoteListener?.(raw, withChange(this.store, tx)),
    });
    if (opts.accessLog) this.hooks.add(accessLogHooks(opts.accessLog));
    if (opts.observer) this.hooks.add(opts.observer);
    this.admin = {
      log_level: 'info',
      strict: false,
      offload: false,
      max_body_bytes: 1024 * 1024,
      max_sessions: limits.maxSessions,
      drain_timeout: DEFAULT_DRAIN_TIMEOUT_MS,
      version: opts.version,
      managed: false,
    };
  }

  get listeners(): Map<string, ListenerObj> { return this.store.listeners; }
  /** Hold the next change that adds objects once it is built and bound, until `gate` settles (workers/entry.ts). */
  holdNextChange(gate: (() => Promise<void>) | undefined): void { this.store.gate = gate; }
  get clusters(): Map<string, ClusterObj> { return this.store.clusters; }
  get endpoints(): Map<string, EndpointObj> { return this.store.endpoints; }
  get rulelists(): Map<string, RuleListObj> { return this.store.rulelists; }
  get rules(): Map<string, RuleObj> { return this.store.rules; }
  get routes(): Map<string, RouteObj> { return this.store.routes; }
  get sessions(): Map<string, Session> { return this.pipeline.sessions; }
  /** What a dump of the graph cannot say about how its objects came to be (core/provenance.ts). */
  provenance(): Provenance { return provenanceOf(this.store); }
  /** Take over another gateway's provenance, right after building its dump (workers/snapshot.ts). */
  applyProvenance(p: Provenance): void { applyProvenance(this.store, p); }

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

  has(kind: ObjKind, name: string): boolean {
    return this.store.has(kind, name);
  }

  // ------------------------------------------------------------------ adds

  addListener(raw: unknown, fromStaticConfig = false): Promise<void> {
    return this.store.mutate(() => this.apply(fromStaticConfig, (tx) => this.build.listener(tx, raw, 'listener')));
  }

  addCluster(raw: unknown, fromStaticConfig = false): Promise<void> {
    return this.store.mutate(() => this.apply(fromStaticConfig, (tx) => { this.build.cluster(tx, raw, 'cluster', false); }));
  }

  addRuleList(raw: unknown): Promise<void> {
    return this.store.mutate(() => this.apply(false, (tx) => { this.build.ruleList(tx, raw, 'rulelist', false); }));
  }

  addRule(raw: unknown): Promise<void> {
    return this.store.mutate(() => this.apply(false, (tx) => { this.build.rule(tx, raw, 'rule', false); }));
  }

  addRoute(raw: unknown): Promise<void> {
    return this.store.mutate(() => this.apply(false, (tx) => { this.build.route(tx, raw, 'route', false); }));
  }

  addEndpoint(clusterName: string, raw: unknown): Promise<void> {
    return this.store.mutate(() => this.apply(false, (tx) => {
      const c = this.clusters.get(clusterName);
      if (!c) throw new GatewayError('NOT_FOUND', `Cannot add endpoint: Unknown cluster "${clusterName}"`);
      this.build.endpoint(tx, raw, 'endpoint', c, false);
    }));
  }

  /** Insert a rule (object or name) into a rulelist before `position` (0..length). */
  addRuleToRuleList(rulelist: string, position: number, raw: unknown): Promise<void> {
    return this.store.mutate(() => {
      const rl = this.rulelists.get(rulelist);
      if (!rl) throw new GatewayError('NOT_FOUND', `No such rule list: ${rulelist}`);
      if (!Number.isInteger(position) || position < 0 || position > rl.rules.length) {
        throw new GatewayError('INVALID_INPUT', `Cannot insert rule at position ${position} into rulelist "${rulelist}" of ${rl.rules.length} rules`, 'position');
      }
      // A rule before one that carries the API could take its requests.
      guardApi(this.store, 'rule', rl.rules.slice(position), `shadowed by a rule inserted before it into RuleList "${rulelist}"`);
      let ruleName: string;
      return this.apply(false, (tx) => {
        ruleName = typeof raw === 'string' ? checkName(raw, 'rule') : this.build.rule(tx, raw, 'rule', true, rl.name);
        tx.preview.set(key('rulelist', rl.name), { ...rl, rules: [...rl.rules.slice(0, position), ruleName, ...rl.rules.slice(position)] });
      }).then(() => {
        rl.rules.splice(position, 0, ruleName);
      });
    });
  }

  /** Add every section of a config (static file or POST /config) as one transaction. */
  applyConfig(raw: unknown, fromStaticConfig: boolean): Promise<void> {
    return this.store.mutate(() => {
      if (!isObject(raw)) throw invalid('config', 'must be an object');
      const cfg = withDumpedEndpoints(raw);
      return this.apply(fromStaticConfig, (tx) => {
        const list = (key: string): unknown[] => {
          const v = cfg[key];
          if (v === undefined || v === null) return [];
          if (!Array.isArray(v)) throw invalid(key, 'must be an array');
          return v;
        };
        list('clusters').forEach((c, i) => this.build.cluster(tx, c, `clusters[${i}]`, false));
        list('rulelists').forEach((c, i) => this.build.ruleList(tx, c, `rulelists[${i}]`, false));
        list('rules').forEach((c, i) => this.build.rule(tx, c, `rules[${i}]`, false));
        list('routes').forEach((c, i) => this.build.route(tx, c, `routes[${i}]`, false));
        list('listeners').forEach((c, i) => this.build.listener(tx, c, `listeners[${i}]`));
      }).then(() => { if (fromStaticConfig) this.configApplied = true; });
    });
  }

  /** Build a change and commit it whole; without an API token a REST change may not expose the API (policy.ts). */
  private apply(fromStaticConfig: boolean, build: (tx: Transaction) => void): Promise<void> {
    return this.store.apply(fromStaticConfig, (tx) => {
      build(tx);
      if (!fromStaticConfig && !this.opts.apiTokenSet) checkApiExposure(this.store, tx);
      this.checkChange?.(this.store, tx);
    });
  }

  // --------------------------------------------------------------- deletes

  deleteListener(name: string, recursive: boolean): Promise<void> {
    return this.store.mutate(() => this.store.deleteListener(name, recursive));
  }

  deleteCluster(name: string, recursive: boolean): Promise<void> {
    return this.store.mutate(() => this.store.deleteCluster(name, recursive));
  }

  deleteEndpoint(name: string, recursive: boolean): Promise<void> {
    return this.store.mutate(() => this.store.deleteEndpoint(name, recursive));
  }

  deleteRuleList(name: string, recursive: boolean): Promise<void> {
    return this.store.mutate(() => this.store.deleteRuleList(name, recursive));
  }

  deleteRule(name: string, recursive: boolean): Promise<void> {
    return this.store.mutate(() => this.store.deleteRule(name, recursive));
  }

  deleteRoute(name: string, recursive: boolean): Promise<void> {
    return this.store.mutate(() => this.store.deleteRoute(name, recursive));
  }

  /** Unlink a rule (by position or name) from a rulelist; recursive also deletes the rule. */
  deleteRuleFromRuleList(rulelist: string, position: string, recursive: boolean): Promise<void> {
    return this.store.mutate(() => this.store.deleteRuleFromRuleList(rulelist, position, recursive));
  }

  rulePosition(rl: RuleListObj, position: string): number {
    return this.store.rulePosition(rl, position);
  }

  // -------------------------------------------------------------- sessions

  /**
   * Compile listeners whose route does not look at the connection (app.ts),
   * unless L7MP_COMPILED=off. Before the configuration: listeners started
   * already stay as they are.
   */
  useCompiled(c: CompiledSessions & CompiledSite): void {
    if (process.env.L7MP_COMPILED === 'off') return;
    this.compiled = c;
    this.compiledSite = c;
  }

  deleteSession(name: string): void {
    const s = this.sessions.get(name);
    if ((!s || s.status === 'DESTROYED') && this.compiled.delete(name)) return;
    if (!s || s.status === 'DESTROYED') throw new GatewayError('NOT_FOUND', 'No such session');
    this.endSession(s, 'Session removed from the API', false, new SessionCut('deleted', 'session deleted'));
  }

  /** End a session; `cause` is the error that ended it, passed on to the other stages. */
  endSession(s: Session, reason: string, failed = false, cause?: Error): void {
    this.pipeline.endSession(s, reason, failed, cause);
  }

  async stop(): Promise<void> {
    this.stopping = true;
    for (const s of [...this.sessions.values()]) this.endSession(s, 'gateway shutting down', false, new SessionCut('shutdown', 'the gateway is shutting down'));
    this.compiled.cutAll('shutdown');
    for (const l of this.listeners.values()) await l.impl.stop().catch(() => undefined);
    for (const c of this.clusters.values()) {
      c.impl.close?.();
      c.health?.close();
    }
    for (const fn of this.stopHooks.splice(0)) await Promise.resolve().then(fn).catch((err) => this.log.warn({ err: String(err) }, 'shutdown hook failed'));
  }
}
