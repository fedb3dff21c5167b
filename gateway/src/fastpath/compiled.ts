// Compiled listeners: TCP and Unix stream listeners whose route does not look
// at the connection, decided here once per configuration change and carried
// out for each connection by the addon's Forwarder (native/sockets/src/
// forward.cc), with no JavaScript per connection (docs/compiled-listeners.md).
//
// A stream listener on the raw path accepts with a Forwarder and attaches it
// here (attach). After every change of the object graph (refresh) each
// attached listener gets its plan: the targets of its route's cluster, or
// none, and then every connection takes the ordinary path (handed over with
// its socket). A listener is compiled when all of these hold:
//   - its rule walk ends at the same route for every connection: each
//     rulelist's first rule matches everything, has no rewrite, and routes
//     (or applies the next rulelist);
//   - that route has no ingress or egress and never relinks a stage
//     (dataplane/raw-route.ts, as the raw path);
//   - its cluster's protocol can give the addon a target for every endpoint
//     (ClusterImpl.compiledTarget: numeric addresses, no bind), its policy is
//     Trivial or WeightedRandom (or it has one endpoint), and it keeps no
//     endpoint health (no outlier detection, no active check).
//
// What the rest of the gateway sees: admission's counters include the
// pairs (the Forwarder adds them to the shared cells, core/admission.ts);
// GET /api/v1/sessions lists them (`"path": "raw"`, `splice.compiled`),
// DELETE ends one (RSTs, as a cut raw session), drain waits for them and
// cuts the rest; metrics count them (starts folded in when read, each ended
// pair from the Forwarder's records). With an access log, or a listener's
// options.track, the Forwarder keeps each pair's addresses for its record,
// and the ended session's line is written, or its view kept listed, from it.

import { END_KINDS, type EndKind } from '../core/drain.js';
import type { Admission } from '../core/admission.js';
import type { ClusterObj, EndpointObj, RouteObj, RuleObj } from '../core/model.js';
import { MAX_APPLY_DEPTH, type RouteGraph } from '../dataplane/router.js';
import { retriesOnDisconnect } from '../dataplane/reconnect-budget.js';
import { ENDED_RECORD, type CompiledHandle, type ForwarderOptions, type ForwarderPair } from '../native/sockets.js';
import { accessLine, endedOf, endedView, liveView, nameOf } from './compiled-views.js';
import type { Logger } from '../observe/log.js';
import type { CompiledLive, CompiledSessions } from '../core/compiled.js';
import type { CompiledSite, FailedAttempt, PairNaming } from '../protocols/types.js';

/** What the compiler reads of the object graph. */
export interface CompileGraph extends RouteGraph {
  readonly rules: ReadonlyMap<string, Pick<RuleObj, 'name' | 'matches' | 'action' | 'match'>>;
  readonly listeners: ReadonlyMap<string, { readonly rules: string; readonly options: { readonly track: number } }>;
  readonly clusters: ReadonlyMap<string, ClusterObj>;
  /** With the kernel offload on, UDP listeners stay uncompiled: the offload takes their sessions from JavaScript. */
  readonly admin: { readonly offload: boolean };
}

/** Metrics of compiled sessions (observe/metrics.ts). */
export interface CompiledObserver {
  compiledStarted(listener: string, cluster: string, sessions: number): void;
  compiledEnded(listener: string, cluster: string, kind: EndKind, rx: number, tx: number, rxPackets: number, txPackets: number, seconds: number): void;
}

export interface Plan {
  readonly route: RouteObj;
  readonly cluster: ClusterObj;
  readonly endpoints: readonly EndpointObj[];
  /** Where the addon goes for an endpoint (ClusterImpl.compiledTarget, or compiledDatagramTarget for UDP flows). */
  readonly target: (ep: EndpointObj) => [string, number] | [string] | undefined;
}

export interface Entry {
  readonly listener: string;
  readonly f: CompiledHandle;
  readonly naming: PairNaming;
  /** UDP flows (the addon's UdpForwarder), not stream pairs. */
  readonly datagram: boolean;
  /** Seconds an ended session stays listed (options.track). */
  track: number;
  /** The Forwarder keeps addresses for the ended records (an access log, or track). */
  detail: boolean;
  gen: number;
  /** The plan of each generation some live pair began in (0: none). */
  readonly plans: Map<number, Plan>;
  /** The key of the current plan, to tell a change from a refresh that changes nothing. */
  key: string;
  /** The Forwarder's count of sessions already folded into the metrics. */
  folded: number;
}

/** The handles' stats (CompiledHandle.stats): 10 cells, 12 for UDP flows. */
const STATS = new Float64Array(12);
const RECORDS = new Float64Array(512 * ENDED_RECORD);

export class CompiledListeners implements CompiledSessions, CompiledSite {
  private readonly entries = new Map<string, Entry>();
  /** Entries of listeners that stopped while pairs still lived (a delete without ?recursive): kept until those end. */
  private readonly retired = new Set<Entry>();
  /** Ended sessions kept listed for their listener's options.track: name -> view. */
  private readonly tracked = new Map<string, Record<string, unknown>>();
  readonly observers = new Set<CompiledObserver>();

  /** `accessLog`: where each ended session's line goes (admin.access_log_path), if anywhere. */
  constructor(
    private readonly graph: CompileGraph,
    private readonly admission: Admission,
    private readonly log: Logger,
    private readonly accessLog?: (line: Record<string, unknown>) => void,
  ) {}

  /** What a listener's Forwarder is made with: the shared admission counters and the flow limit. */
  options(listener: string, connectTimeoutMs: number): ForwarderOptions {
    const l = this.admission.limits;
    return {
      max: this.admission.listenerMax(listener),
      connectTimeoutMs,
      listenerLive: this.admission.countFor(listener).cell,
      global: this.admission.cells,
      flowRate: l.flowRate,
      flowBurst: l.flowBurst,
      flowSources: l.flowSources,
    };
  }

  /** A listener started on a Forwarder; it hands every connection over until the next refresh plans it. */
  attach(listener: string, f: CompiledHandle, naming: PairNaming): void {
    this.entries.set(listener, { listener, f, naming, datagram: naming.protocol === 'UDP', track: 0, detail: false, gen: 0, plans: new Map(), key: '', folded: 0 });
    this.refresh();
  }

  /**
   * The listener stops. Its live pairs go on, as sessions do when a listener
   * is deleted without ?recursive (the cut comes through cutListener then);
   * the Forwarder is closed when the last one ends.
   */
  detach(listener: string, f: CompiledHandle): void {
    const e = this.entries.get(listener);
    if (e === undefined || e.f !== f) {
      f.close(true, END_KINDS.indexOf('deleted'));
      return;
    }
    this.entries.delete(listener);
    this.fold(e);
    f.stopAccepting();
    this.retired.add(e);
    this.takeEnded(e);
  }

  /** The Forwarder says ended pairs are waiting. */
  ended(listener: string): void {
    for (const e of this.all()) if (e.listener === listener) this.takeEnded(e);
  }

  /**
   * Take every ended record now: a session no longer listed has been counted
   * and logged (the records otherwise wait for a batch or 100 ms).
   */
  private settle(): void {
    for (const e of [...this.all()]) this.takeEnded(e);
  }

  /** Every entry: the attached listeners' and the retired ones'. */
  private *all(): Iterable<Entry> {
    yield* this.entries.values();
    yield* this.retired;
  }

  /** The addon's connect failed: the endpoint it went to and the message raw-connect.ts gives for the same failure. */
  failedAttempt(listener: string, generation: number, target: number, code: string): FailedAttempt | undefined {
    const plan = this.entries.get(listener)?.plans.get(generation);
    const ep = plan?.endpoints[target];
    const t = ep === undefined ? undefined : plan!.target(ep);
    if (t === undefined) return undefined;
    const what = t.length === 2 ? `TCP ${t[0]}:${t[1]}` : `UnixDomainSocket ${t[0]}`;
    const peer = t.length === 2 ? `${t[0]}:${t[1]}` : t[0];
    const timeoutMs = plan!.route.retry.timeout > 0 ? plan!.route.retry.timeout : 2000;
    return { endpoint: ep!.name, message: code === 'ETIMEDOUT' ? `${what}: connect timed out after ${timeoutMs} ms` : `${what}: connect ${code} ${peer}` };
  }

  /** After every change of the graph: each attached listener's plan, and its targets when the plan changed. */
  refresh(): void {
    for (const e of this.entries.values()) {
      e.track = this.graph.listeners.get(e.listener)?.options.track ?? 0;
      // A listener starts before its change commits: its options.max_sessions is known from here on.
      e.f.setMax(this.admission.listenerMax(e.listener));
      const detail = this.accessLog !== undefined || e.track > 0;
      if (detail !== e.detail) {
        e.f.setDetail(detail);
        e.detail = detail;
      }
      const plan = e.datagram && this.graph.admin.offload ? undefined : this.plan(e.listener, e.datagram);
      const key = plan === undefined ? '' : planKey(plan);
      if (key === e.key) {
        if (plan !== undefined) e.plans.set(e.gen, plan); // the same plan, made of the objects now in the graph
        continue;
      }
      this.fold(e);
      e.key = key;
      e.gen++;
      if (plan === undefined) {
        e.f.targets([], e.gen);
        continue;
      }
      e.plans.set(e.gen, plan);
      const targets = plan.endpoints.map((ep): [string, number, number] => {
        const t = plan.target(ep)!;
        return [t[0], t.length === 2 ? t[1] : -1, ep.weight];
      });
      e.f.targets(targets, e.gen, plan.route.retry.timeout > 0 ? plan.route.retry.timeout : 2000);
      this.log.verbose({ listener: e.listener, route: plan.route.name, cluster: plan.cluster.name, endpoints: plan.endpoints.length }, 'listener compiled: connections are set up in the addon');
    }
    this.prune();
  }

  // ------------------------------------------------------------- sessions

  /** Live compiled sessions, as GET /api/v1/sessions shows them. */
  dump(): Record<string, unknown>[] {
    this.settle();
    const out: Record<string, unknown>[] = [];
    for (const e of this.all()) for (const p of e.f.list()) out.push(this.view(e, p));
    for (const v of this.tracked.values()) out.push(v);
    return out;
  }

  /** One by name, or undefined. */
  get(name: string): Record<string, unknown> | undefined {
    this.settle();
    const found = this.find(name);
    return found === undefined ? this.tracked.get(name) : this.view(found.e, found.p);
  }

  /** DELETE: end it with RSTs (a cut, as a deleted raw session). false: not a live compiled session. */
  delete(name: string): boolean {
    const found = this.find(name);
    if (found === undefined) return false;
    found.e.f.closePair(found.p[0], true, END_KINDS.indexOf('deleted'));
    this.takeEnded(found.e);
    return true;
  }

  /** Live compiled sessions (drain waits for them). */
  live(): number {
    this.settle();
    let n = 0;
    for (const e of this.all()) {
      e.f.stats(STATS);
      n += STATS[0]!;
    }
    return n;
  }

  /** Cut every live one (drain timeout, shutdown). */
  cutAll(kind: EndKind): void {
    for (const e of [...this.all()]) {
      for (const p of e.f.list()) e.f.closePair(p[0], true, END_KINDS.indexOf(kind));
      this.takeEnded(e);
    }
  }

  /** A listener deleted with ?recursive: its sessions end. */
  cutListener(name: string): void {
    for (const e of [...this.all()]) {
      if (e.listener !== name) continue;
      for (const p of e.f.list()) e.f.closePair(p[0], true, END_KINDS.indexOf('deleted'));
      this.takeEnded(e);
    }
  }

  /** A cluster deleted with ?recursive: the sessions to it end. */
  cutCluster(name: string): void {
    this.cutWhere((plan) => plan.cluster.name === name);
  }

  /** An endpoint deleted with ?recursive: the sessions on it end (compiled routes never reconnect). */
  disconnectEndpoint(ep: EndpointObj): void {
    this.cutWhere((plan, target) => plan.endpoints[target] === ep);
  }

  // -------------------------------------------------------------- metrics

  /** Fold every Forwarder's counts in, then call `live` for each live pair (a metrics scrape). */
  scrape(live: (p: CompiledLive) => void): void {
    for (const e of [...this.all()]) {
      this.fold(e);
      this.takeEnded(e);
      for (const p of e.f.list()) {
        const plan = e.plans.get(p[1]);
        live({ listener: e.listener, cluster: plan?.cluster.name ?? '', rx: p[8], rxPackets: p[9], tx: p[10], txPackets: p[11] });
      }
    }
  }

  // ------------------------------------------------------------- internals

  /** The listener's plan, or undefined: its connections take the ordinary path. */
  private plan(listener: string, datagram: boolean): Plan | undefined {
    const l = this.graph.listeners.get(listener);
    if (l === undefined) return undefined;
    let list = this.graph.rulelists.get(l.rules);
    for (let depth = 0; list !== undefined && depth < MAX_APPLY_DEPTH; depth++) {
      const first = list.rules.length > 0 ? this.graph.rules.get(list.rules[0]!) : undefined;
      if (first === undefined || !matchesAll(first) || first.action.rewrite !== undefined) return undefined;
      if (first.action.apply !== undefined) {
        list = this.graph.rulelists.get(first.action.apply);
        continue;
      }
      const route = first.action.route === undefined ? undefined : this.graph.routes.get(first.action.route);
      if (route === undefined || route.ingress.length > 0 || route.egress.length > 0 || retriesOnDisconnect(route.retry)) return undefined;
      const cluster = this.graph.clusters.get(route.destination);
      return cluster === undefined ? undefined : clusterPlan(route, cluster, datagram);
    }
    return undefined;
  }

  private find(name: string): { e: Entry; p: ForwarderPair } | undefined {
    const m = /-c(\d+)$/.exec(name);
    if (m === null) return undefined;
    const id = Number(m[1]);
    for (const e of this.all()) {
      for (const p of e.f.list()) if (p[0] === id && nameOf(e, p) === name) return { e, p };
    }
    return undefined;
  }

  private cutWhere(pred: (plan: Plan, target: number) => boolean): void {
    for (const e of [...this.all()]) {
      let cut = false;
      for (const p of e.f.list()) {
        const plan = e.plans.get(p[1]);
        if (plan !== undefined && pred(plan, p[7])) cut = e.f.closePair(p[0], true, END_KINDS.indexOf('deleted')) || cut;
      }
      if (cut) this.takeEnded(e);
    }
  }

  /**
   * Fold the Forwarder's new sessions into the metrics, under the current
   * plan. (Its failed connects are counted by the sessions they became:
   * FailedAttempt.)
   */
  private fold(e: Entry): void {
    e.f.stats(STATS);
    const paired = STATS[2]! - e.folded;
    if (paired === 0) return;
    e.folded = STATS[2]!;
    const cluster = e.plans.get(e.gen)?.cluster.name;
    if (cluster === undefined) return; // no plan: nothing was paired
    for (const o of this.observers) o.compiledStarted(e.listener, cluster, paired);
  }

  /** Take the ended pairs' records and count them; in detail mode, log and keep them as asked. */
  private takeEnded(e: Entry): void {
    for (;;) {
      const detail = e.detail ? DETAIL : undefined;
      if (detail !== undefined) detail.length = 0;
      const n = e.f.takeEnded(RECORDS, detail);
      for (let i = 0; i < n; i++) {
        const r = i * ENDED_RECORD;
        const plan = e.plans.get(RECORDS[r + 1]!);
        const kind = END_KINDS[RECORDS[r + 9]!] ?? 'error';
        for (const o of this.observers) {
          o.compiledEnded(e.listener, plan?.cluster.name ?? '', kind, RECORDS[r + 4]!, RECORDS[r + 6]!, RECORDS[r + 5]!, RECORDS[r + 7]!, RECORDS[r + 3]! / 1000);
        }
        const a = detail?.[i];
        if (a !== undefined) this.over(e, RECORDS.subarray(r, r + ENDED_RECORD), a, plan);
      }
      if (n < RECORDS.length / ENDED_RECORD) break;
    }
    if (this.retired.has(e)) {
      e.f.stats(STATS);
      if (STATS[0] === 0 && STATS[8] === 0) {
        this.retired.delete(e);
        e.f.close();
      }
    }
  }

  /** Forget the plans of generations no live pair began in (the current one stays). */
  private prune(): void {
    for (const e of this.entries.values()) {
      if (e.plans.size <= 1) continue;
      const used = new Set<number>([e.gen]);
      for (const p of e.f.list()) used.add(p[1]);
      for (const g of [...e.plans.keys()]) if (!used.has(g)) e.plans.delete(g);
    }
  }

  /** An ended session in detail mode: its access log line, and its view kept listed for options.track. */
  private over(e: Entry, r: Float64Array, a: [string, number, string, number], plan: Plan | undefined): void {
    const ended = endedOf(r, a);
    if (this.accessLog !== undefined) this.accessLog(accessLine(e, plan, ended));
    if (e.track > 0) {
      const v = endedView(e, plan, ended);
      const name = v.name as string;
      this.tracked.set(name, v);
      setTimeout(() => this.tracked.delete(name), e.track * 1000).unref();
    }
  }

  private view(e: Entry, p: ForwarderPair): Record<string, unknown> {
    return liveView(e, e.plans.get(p[1]), p);
  }
}

/** A rule that matches every connection: no match, or an empty one. */
function matchesAll(r: { readonly match?: unknown }): boolean {
  return r.match === undefined || r.match === null;
}

function clusterPlan(route: RouteObj, cluster: ClusterObj, datagram: boolean): Plan | undefined {
  const impl = cluster.impl;
  const of = datagram ? impl.compiledDatagramTarget : impl.compiledTarget;
  if (of === undefined) return undefined;
  const target = (ep: EndpointObj): [string, number] | [string] | undefined => of.call(impl, ep);
  const state = cluster.health?.state;
  if (state?.outlier !== undefined || state?.check !== undefined) return undefined;
  const live = cluster.endpoints.filter((ep) => ep.weight > 0);
  if (live.length === 0) return undefined;
  const policy = cluster.balancer.policy;
  let endpoints: EndpointObj[];
  if (live.length === 1 || policy === 'Trivial') endpoints = [live[0]!];
  else if (policy === 'WeightedRandom') endpoints = live;
  else return undefined;
  return endpoints.every((ep) => target(ep) !== undefined) ? { route, cluster, endpoints, target } : undefined;
}

function planKey(p: Plan): string {
  const t = p.endpoints.map((ep) => `${ep.name}=${p.target(ep)!.join(':')}/${ep.weight}`).join(',');
  const r = p.route.retry;
  return `${p.route.name}|${r.retry_on}/${r.num_retries}/${r.timeout}|${p.cluster.name}|${t}`;
}

/** What the addon's detail arrays are read into (reused). */
const DETAIL: ([string, number, string, number] | undefined)[] = [];
