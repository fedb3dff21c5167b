// A session's life: admitted and named when a listener emits it, routed
// (router.ts), its stages connected with retries and linked; then stage EOF,
// close and reconnect, and the end that finalizes it exactly once.

import type { Admission } from '../core/admission.js';
import { SessionCut } from '../core/drain.js';
import { GatewayError, asGatewayError, clientContent } from '../core/errors.js';
import type { ClusterObj, EndpointObj, ListenerObj, RouteObj } from '../core/model.js';
import { dedupe } from '../core/names.js';
import type { SessionCuts } from '../core/store.js';
import { noteSessionEnd, noteStageClosed, pickEndpoint } from '../health/index.js';
import type { Logger } from '../observe/log.js';
import type { FailedAttempt, NewSession, SessionPriv } from '../protocols/types.js';
import type { Channel } from './channel.js';
import type { SessionHookList } from './hooks.js';
import { mayReconnect, reconnected, retriesOnDisconnect } from './reconnect-budget.js';
import { rawEligible } from './raw-route.js';
import { lookup, warnDowngrade, type RouteGraph } from './router.js';
import { Session, Stage, type SessionOwner } from './session.js';

/** The part of the object graph sessions read: the rule walk's, plus listeners' options and clusters. */
export interface PipelineGraph extends RouteGraph {
  readonly listeners: ReadonlyMap<string, ListenerObj>;
  readonly clusters: ReadonlyMap<string, ClusterObj>;
}

export interface PipelineOptions {
  readonly graph: PipelineGraph;
  readonly log: Logger;
  /** Charges and releases each data-plane session (core/admission.ts). */
  readonly admission: Admission;
  readonly hooks: SessionHookList;
  /** The gateway is stopping or draining: new sessions are refused. */
  readonly refusing: () => boolean;
}

export class Pipeline implements SessionOwner, SessionCuts {
  /** Live sessions, and ended ones their listener's `track` keeps listed for a while. */
  readonly sessions = new Map<string, Session>();
  private readonly graph: PipelineGraph;
  private readonly log: Logger;
  private readonly admission: Admission;
  private readonly hooks: SessionHookList;
  private readonly refusing: () => boolean;

  constructor(o: PipelineOptions) {
    this.graph = o.graph;
    this.log = o.log;
    this.admission = o.admission;
    this.hooks = o.hooks;
    this.refusing = o.refusing;
  }

  /**
   * A listener emitted a session: admit it, name it, route it. Drain and
   * admission are steps here, not hooks: hooks observe a session, these
   * decide whether it exists at all (and admission's charge is released in
   * finalize, in step with it).
   */
  open(listener: string, ns: NewSession): void {
    if (this.refusing()) {
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
    const s = new Session(name, listener, metadata, ns.channel, ns.priv ?? NO_PRIV, this);
    this.sessions.set(name, s);
    s.admitted = this.admission.opened(listener); // the session's INIT event is its creation
    this.hooks.onSessionStart(s);
    if (this.log.isLevelEnabled('verbose')) this.log.verbose({ session: name, listener }, 'new session');
    this.setup(s, ns.failedAttempt);
  }

  /** Route the session, connect every stage of its route, link them; `failed`: the destination's first attempt, made already. */
  private setup(s: Session, failed?: FailedAttempt): void {
    let route: RouteObj;
    try {
      route = lookup(this.graph, s);
    } catch (err) {
      this.failSession(s, asGatewayError(err));
      return;
    }
    s.route = route.name;
    s.retry = route.retry;
    s.lookedUp(selectedMessage(route));
    s.setStages(new Stage('destination', route.destination),
      route.ingress.map((c) => new Stage('ingress', c)), route.egress.map((c) => new Stage('egress', c)));
    const retry = route.retry;
    const attempts = retry.retry_on === 'connect-failure' || retry.retry_on === 'always' ? 1 + retry.num_retries : 1;
    const stages = s.stages().slice(1); // all but the source
    let pending: (Promise<void> | undefined)[] | undefined;
    for (let i = 0; i < stages.length; i++) {
      const st = stages[i]!;
      const p = failed !== undefined && st.role === 'destination' ? this.connectAfter(s, st, attempts, failed) : this.connectStage(s, st, attempts);
      if (p !== undefined) (pending ??= new Array<Promise<void> | undefined>(stages.length))[i] = p;
    }
    if (pending === undefined) {
      // Every stage connected at once (connectNow): linked after the
      // listener's emit returns, as when a connect resolves, with one promise.
      void Promise.resolve().then(() => this.linkStages(s, stages, NONE_SETTLED));
      return;
    }
    void Promise.allSettled(pending).then((results) => this.linkStages(s, stages, results));
  }

  /** Every stage's connect settled: link the session, or fail it with the first error. */
  private linkStages(s: Session, stages: readonly Stage[], results: readonly PromiseSettledResult<void>[]): void {
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
    warnDowngrade(s, this.log);
    // A stage may have closed while the others were still connecting (its
    // close was ignored then). Look before link(): linking flushes early data
    // and EOF, and a channel whose end() starts a close (WebSocket) is only
    // closing then; its close arrives through the close listener once done.
    // Ending the session on it here cut HTTP -> WebSocket responses empty.
    const closedEarly = s.stages().find((st) => st.channel?.closed);
    s.priv.connected?.(); // before link(): the listener's answer must precede anything the destination sends
    s.status = 'CONNECTED'; // before link(): a stage that closes while linking must be seen
    s.connectedAll();
    s.link();
    if (this.log.isLevelEnabled('verbose')) this.log.verbose({ session: s.name, route: s.route, destination: s.destination!.channel?.peer }, 'session connected');
    if (closedEarly !== undefined && !isOver(s)) this.stageClosed(s, closedEarly, undefined);
    else this.hooks.onSessionLinked(s);
  }

  /**
   * Connect one stage, retrying per the route's policy. undefined: connected
   * at once by its first attempt (connectNow); else the outcome to wait for.
   */
  private connectStage(s: Session, st: Stage, attempts: number): Promise<void> | undefined {
    if (s.status !== 'INIT' && s.status !== 'CONNECTED') return Promise.reject(new GatewayError('CONNECT_FAILED', 'session ended while connecting'));
    const timeout = s.retry!.timeout > 0 ? s.retry!.timeout : 2000;
    const failedEndpoints = new Set<string>();
    let first: Channel | Promise<Channel>;
    try {
      first = this.connectOnce(s, st, timeout, failedEndpoints);
    } catch (err) {
      first = Promise.reject(err);
    }
    if (!(first instanceof Promise) && !isOver(s)) {
      try {
        this.stageConnected(s, st, first);
        return undefined;
      } catch (err) {
        first = Promise.reject(err); // a hook failed: an attempt that failed, as when it runs after an await
      }
    }
    return this.connectAttempts(s, st, attempts, timeout, failedEndpoints, first);
  }

  /**
   * connectStage for a destination whose first attempt was made before the
   * session existed (NewSession.failedAttempt) and failed: counted and logged
   * as a failed attempt, then the rest of the attempts, that endpoint avoided.
   */
  private connectAfter(s: Session, st: Stage, attempts: number, failed: FailedAttempt): Promise<void> {
    const err = new GatewayError('CONNECT_FAILED', failed.message);
    this.hooks.onConnectFailure(s, st, err);
    this.log.info({ session: s.name, cluster: st.origin, attempt: 1, of: attempts, err: failed.message }, 'connect attempt failed');
    if (attempts <= 1) {
      st.status = 'END';
      return Promise.reject(err);
    }
    const timeout = s.retry!.timeout > 0 ? s.retry!.timeout : 2000;
    const failedEndpoints = new Set<string>([failed.endpoint]);
    const second = (async (): Promise<Channel> => {
      st.status = 'RETRYING';
      this.hooks.onRetry(s, st, 'connect');
      await delay(s.retry!.timeout);
      if (s.status !== 'INIT' && s.status !== 'CONNECTED') throw new GatewayError('CONNECT_FAILED', 'session ended while connecting');
      return this.connectOnce(s, st, timeout, failedEndpoints);
    })();
    return this.connectAttempts(s, st, attempts - 1, timeout, failedEndpoints, second);
  }

  /** connectStage's attempts from the first on, whose channel (or its promise) is `first`. */
  private async connectAttempts(s: Session, st: Stage, attempts: number, timeout: number, failedEndpoints: Set<string>, first: Channel | Promise<Channel>): Promise<void> {
    let last: unknown;
    for (let i = 0; i < attempts; i++) {
      if (i > 0) {
        st.status = 'RETRYING';
        this.hooks.onRetry(s, st, 'connect');
        await delay(s.retry!.timeout);
        if (s.status !== 'INIT' && s.status !== 'CONNECTED') throw new GatewayError('CONNECT_FAILED', 'session ended while connecting');
      }
      try {
        const ch = await (i === 0 ? first : this.connectOnce(s, st, timeout, failedEndpoints));
        if (isOver(s)) {
          ch.close();
          throw new GatewayError('CONNECT_FAILED', 'session ended while connecting');
        }
        this.stageConnected(s, st, ch);
        return;
      } catch (err) {
        last = err;
        if (!isOver(s)) this.hooks.onConnectFailure(s, st, err);
        this.log.info({ session: s.name, cluster: st.origin, attempt: i + 1, of: attempts, err: (err as Error).message }, 'connect attempt failed');
      }
    }
    st.status = 'END';
    throw last;
  }

  private stageConnected(s: Session, st: Stage, ch: Channel): void {
    st.channel = ch;
    st.status = 'CONNECTED';
    ch.setCloseListener(s);
    this.hooks.onStageConnect(s, st, false);
  }

  /** One attempt: the channel at once where the cluster has connectNow, else its promise; a failure throws or rejects. */
  private connectOnce(s: Session, st: Stage, timeoutMs: number, failed: Set<string>): Channel | Promise<Channel> {
    const c = this.graph.clusters.get(st.origin);
    if (!c) throw new GatewayError('NOT_FOUND', `cluster "${st.origin}" does not exist`);
    let endpoint: EndpointObj | undefined;
    if (!c.protocol.cluster!.virtual) {
      endpoint = pickEndpoint<EndpointObj>(c.balancer, c.health, s.metadata, failed);
      if (!endpoint) throw new GatewayError('CONNECT_FAILED', `No endpoint in cluster "${c.name}"`);
    }
    st.endpoint = endpoint;
    const failure = (err: unknown): never => {
      if (endpoint) {
        failed.add(endpoint.name);
        if (!isOver(s)) c.health?.state.failure(endpoint.name, `connect failed: ${(err as Error).message}`);
      }
      throw err;
    };
    const req = {
      endpoint: endpoint && c.health ? c.health.target(endpoint) : endpoint,
      session: s,
      timeoutMs,
      role: st.role === 'source' ? undefined : st.role,
      raw: st.role === 'destination' && rawEligible(s),
    };
    try {
      const now = c.impl.connectNow?.(req);
      if (now !== undefined) return now instanceof Promise ? now.catch(failure) : now;
      return c.impl.connect(req).catch(failure);
    } catch (err) {
      return failure(err);
    }
  }

  /** A link's source stage sent EOF. */
  stageEnded(s: Session, st: Stage): void {
    // An EOF from a stage whose own input had already ended is the natural end
    // of the exchange (the upstream answered the client's half-close, or a
    // transform passed the client's EOF along), not a lost peer: propagate it.
    const inputEnded = st.inLink?.ended === true;
    if (st.role !== 'source' && !inputEnded && retriesOnDisconnect(s.retry) && this.graph.clusters.get(st.origin)?.protocol.cluster?.retriable) {
      // Under retry_on disconnect/always an upstream EOF is a disconnect (as in l7mp).
      st.channel?.close();
      return;
    }
    st.outLink?.to.end();
  }

  stageClosed(s: Session, st: Stage, err: Error | undefined): void {
    if (s.status !== 'CONNECTED' || st.status !== 'READY') return;
    this.hooks.onSessionUnlinking(s); // a fast path must not forward for a stage that is gone
    noteStageClosed(this.graph.clusters.get(st.origin), st, err);
    st.status = 'DISCONNECTED';
    s.event('DISCONNECT', `${st.role === 'source' ? 'listener' : 'cluster'} "${st.origin}" disconnected`, err?.message);
    // A stage that finished both directions with EOF closed cleanly: nothing to retry.
    const finished = !err && st.inLink?.ended === true && st.outLink?.ended === true;
    if (st.role !== 'source' && !finished && retriesOnDisconnect(s.retry) && this.graph.clusters.get(st.origin)?.protocol.cluster?.retriable && mayReconnect(st, s.retry!)) {
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
      this.hooks.onRetry(s, st, 'reconnect');
      try {
        const ch = await this.connectOnce(s, st, retry.timeout > 0 ? retry.timeout : 2000, failed);
        if (s.status !== 'CONNECTED') {
          ch.close();
          return;
        }
        s.relink(st, ch);
        reconnected(st);
        this.hooks.onSessionLinked(s);
        this.hooks.onStageConnect(s, st, true);
        s.event('CONNECT', `cluster "${st.origin}" reconnected`);
        this.log.info({ session: s.name, cluster: st.origin, peer: ch.peer }, 'stage reconnected');
        return;
      } catch (e) {
        if (s.status === 'CONNECTED') this.hooks.onConnectFailure(s, st, e);
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
    if (this.log.isLevelEnabled('info')) this.log.info({ session: s.name, reason, counters: s.counters() }, 'session ended');
    this.finalize(s, reason, cause ?? (failed ? new Error(reason) : undefined));
  }

  private finalize(s: Session, reason: string, err: Error | undefined): void {
    if (isOver(s)) return;
    this.hooks.onSessionUnlinking(s); // final kernel counts, before the access log and metrics read them
    noteSessionEnd(this.graph.clusters, s);
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
    this.hooks.onSessionEnd(s);
    const track = this.graph.listeners.get(s.listener)?.options.track ?? 0;
    if (track > 0) {
      const t = setTimeout(() => { if (this.sessions.get(s.name) === s) this.sessions.delete(s.name); }, track * 1000);
      t.unref();
    } else {
      this.sessions.delete(s.name);
    }
  }

  // ------------------------------------------- cuts from deletes (core/store.ts)

  cutListener(name: string): void {
    for (const s of this.sessions.values()) if (s.listener === name) this.endSession(s, 'Listener deleted from API', false, new SessionCut('deleted', `listener "${name}" deleted`));
  }

  cutCluster(name: string): void {
    for (const s of this.sessions.values()) {
      if (s.status === 'DESTROYED' || s.status === 'FINALIZING') continue;
      if (s.stages().some((st) => st.role !== 'source' && st.origin === name)) this.endSession(s, 'Traversed Cluster deleted from API', false, new SessionCut('deleted', `cluster "${name}" deleted`));
    }
  }

  disconnectEndpoint(e: EndpointObj): void {
    // Disconnect (not end) the sessions on this endpoint: the retry policy decides.
    for (const s of this.sessions.values()) {
      for (const st of s.stages()) {
        if (st.endpoint === e && st.status === 'READY') st.channel?.close(new GatewayError('CONNECT_FAILED', `endpoint "${e.name}" deleted`));
      }
    }
  }
}

/** A session whose listener keeps nothing private: one object for all of them. */
const NO_PRIV: SessionPriv = Object.freeze({});
const NONE_SETTLED: readonly PromiseSettledResult<void>[] = Object.freeze([]);

/** One "Route ... selected" string per route object, not one per session: an idle session keeps its events. */
const selected = new WeakMap<RouteObj, string>();
function selectedMessage(route: RouteObj): string {
  let m = selected.get(route);
  if (m === undefined) {
    m = `Route "${route.name}" selected`;
    selected.set(route, m);
  }
  return m;
}

/** Read through a call so that TypeScript does not narrow a status that changes across awaits. */
function isOver(s: Session): boolean {
  return s.status === 'FINALIZING' || s.status === 'DESTROYED';
}

function delay(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
