// The control loop. Informers keep caches of the watched kinds; any change
// schedules a pass (debounced, never two at once; an event never waits behind
// a pending retry). A pass:
//   1. adds the finalizer to resources that lack it; such a resource is left
//      out of this pass (nothing of it reaches a gateway before its finalizer
//      is in, so a delete cannot slip past the cleanup), the others go on;
//   2. computes every gateway pod's desired configuration (desired.ts) and
//      reconciles the gateways concurrently (reconcile.ts), leaving out the
//      resources and gateways that are backing off;
//   3. writes each resource's status (only when it changed), and releases the
//      finalizer of a deleted resource once no gateway holds its objects;
//   4. backs off per key (backoff.ts): a resource a gateway rejected, or a
//      gateway that could not be reached, waits before it is tried again,
//      doubling up to a cap, and is forgotten on success; a key whose inputs
//      changed is tried at once. A periodic resync runs anyway (a gateway may
//      restart between events).
// A gateway pod is a running pod (its `l7mp` container running, not
// necessarily Ready: readiness waits for us) with an IP that some resource
// selects or that carries the annotation l7mp.io/controller-port; the REST
// controller is at http://<podIP>:<port>, the port from that annotation
// (default 1234).

import { L7mpClient } from '../../gateway/src/api/generated/client.js';
import { CUSTOM_KINDS, WATCHED_KINDS, type KubeApi, type KubeObject, type WatchedKind } from './kube/api.js';
import { KeyedBackoff } from './backoff.js';
import { DesiredState, emptyConfig, type DesiredConfig } from './desired.js';
import { Informer } from './informer.js';
import { canonical, contentHash, ownerKey } from './names.js';
import { reconcileGateway, type AppliedMemo, type ReconcileResult } from './reconcile.js';
import { buildStatus, type GatewayFailure, type ResourceStatus } from './status.js';

export const FINALIZER = 'l7mp.io/gateway-cleanup';
export const PORT_ANNOTATION = 'l7mp.io/controller-port';

export interface OperatorLog {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
  error(obj: object, msg: string): void;
  debug(obj: object, msg: string): void;
}

export interface OperatorOptions {
  kube: KubeApi;
  /** Watch one namespace; all when undefined. */
  namespace?: string;
  /** Bearer token for the gateways' REST API. */
  token?: string;
  /** The gateway container's name (l7mp's chart: `l7mp`). */
  containerName?: string;
  /** REST controller port when the pod has no l7mp.io/controller-port annotation. */
  controllerPort?: number;
  /** Full resync period (ms). */
  resyncMs?: number;
  /** First retry delay of a failed resource or gateway (ms); doubles per failure up to `retryCapMs`. */
  retryMs?: number;
  /** Longest retry delay (ms), 30 s by default. */
  retryCapMs?: number;
  clusterDomain?: string;
  log?: OperatorLog;
  /** Called after every pass (tests and metrics). */
  onPass?: (p: PassReport) => void;
}

export interface PassReport {
  gateways: Map<string, ReconcileResult>;
}

interface KnownGateway {
  /** uid + container restarts: a change means a fresh process with an empty configuration. */
  incarnation: string;
  memo: AppliedMemo;
}

const quietLog: OperatorLog = { info() {}, warn() {}, error() {}, debug() {} };

export class Operator {
  private readonly informers = new Map<WatchedKind, Informer>();
  private readonly known = new Map<string, KnownGateway>();
  private readonly statusSent = new Map<string, string>();
  private readonly log: OperatorLog;
  private readonly backoff: KeyedBackoff;
  /** The last result of each gateway, for the status of resources on a gateway that is backing off. */
  private readonly lastResults = new Map<string, ReconcileResult>();
  private running = false;
  private runningSince = 0;
  private again = false;
  private stopped = false;
  private synced = false;
  private timer: NodeJS.Timeout | undefined;
  private timerAt = Infinity;
  private resyncTimer: NodeJS.Timeout | undefined;
  passes = 0;

  constructor(private readonly opts: OperatorOptions) {
    this.log = opts.log ?? quietLog;
    this.backoff = new KeyedBackoff(opts.retryMs ?? 1000, opts.retryCapMs ?? 30_000);
  }

  async start(): Promise<void> {
    for (const kind of WATCHED_KINDS) {
      const inf = new Informer(this.opts.kube, kind, this.opts.namespace, () => this.schedule(20), this.log);
      this.informers.set(kind, inf);
      inf.start();
    }
    await Promise.all([...this.informers.values()].map((i) => i.synced));
    this.synced = true;
    this.schedule(0);
  }

  /**
   * Liveness and readiness for the probes (health.ts). Ready: every cache has
   * been listed and a first pass has run. Live: no pass has been running for
   * longer than `stuckMs` (a wedged pass would stop every reconciliation).
   */
  health(stuckMs = Math.max(300_000, 2 * (this.opts.resyncMs ?? 30_000))): { live: boolean; ready: boolean; reason: string } {
    if (this.stopped) return { live: false, ready: false, reason: 'stopped' };
    if (this.running && Date.now() - this.runningSince > stuckMs) return { live: false, ready: false, reason: `a pass has been running for more than ${Math.round(stuckMs / 1000)} s` };
    if (!this.synced) return { live: true, ready: false, reason: 'listing the watched resources' };
    if (this.passes === 0) return { live: true, ready: false, reason: 'the first reconciliation pass has not finished' };
    return { live: true, ready: true, reason: 'ok' };
  }

  stop(): void {
    this.stopped = true;
    for (const i of this.informers.values()) i.stop();
    if (this.timer) clearTimeout(this.timer);
    if (this.resyncTimer) clearTimeout(this.resyncTimer);
  }

  /**
   * Run a pass after `ms`, coalesced with one already scheduled or running. A
   * pending later pass (a retry) is brought forward, never left to delay this one.
   */
  schedule(ms: number): void {
    if (this.stopped) return;
    if (this.running) {
      this.again = true;
      return;
    }
    const at = Date.now() + ms;
    if (this.timer !== undefined) {
      if (this.timerAt <= at) return;
      clearTimeout(this.timer);
    }
    this.timerAt = at;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.timerAt = Infinity;
      void this.pass();
    }, ms);
  }

  private cache(kind: WatchedKind): KubeObject[] {
    return this.informers.get(kind)?.list() ?? [];
  }

  private async pass(): Promise<void> {
    this.running = true;
    this.runningSince = Date.now();
    try {
      await this.passOnce();
      this.backoff.succeeded(PASS_KEY);
    } catch (err) {
      this.log.error({ err: (err as Error).stack }, 'reconciliation pass failed');
      this.backoff.failed(PASS_KEY, '', Date.now());
    } finally {
      this.running = false;
      this.passes++;
    }
    if (this.stopped) return;
    if (this.again) {
      this.again = false;
      this.schedule(20);
    }
    const next = this.backoff.nextDue();
    if (next !== undefined) this.schedule(Math.max(0, next - Date.now()));
    if (this.resyncTimer) clearTimeout(this.resyncTimer);
    this.resyncTimer = setTimeout(() => this.schedule(0), this.opts.resyncMs ?? 30_000);
  }

  /** One pass; failures are recorded in the backoff per resource and per gateway. */
  private async passOnce(): Promise<void> {
    const now = Date.now();
    const customs = CUSTOM_KINDS.flatMap((kind) => this.cache(kind).map((o) => ({ kind, o, owner: ownerKey(kind, o.metadata.namespace!, o.metadata.name) })));
    // Resources whose calls are left out of this pass: no finalizer yet, or backing off.
    const defer = new Set<string>();
    // Resources whose Kubernetes writes (finalizer, status) failed this pass.
    const kubeFailed = new Set<string>();
    // 1. Finalizers first. The watch brings the updated object and another pass, which applies it.
    for (const { kind, o, owner } of customs) {
      const f = o.metadata.finalizers ?? [];
      if (o.metadata.deletionTimestamp === undefined && !f.includes(FINALIZER)) {
        defer.add(owner);
        await this.opts.kube.setFinalizers(kind, o.metadata.namespace!, o.metadata.name, [...f, FINALIZER], o.metadata.resourceVersion!)
          .catch((err: Error) => {
            kubeFailed.add(owner); // e.g. a stale resourceVersion: the watch brings the new one, the retry uses it
            this.log.warn({ kind, name: o.metadata.name, err: err.message }, 'adding the finalizer failed; retrying');
          });
      }
    }

    // 2. Desired configuration per gateway, and reconcile.
    const ds = new DesiredState({
      virtualServices: this.cache('VirtualService'), targets: this.cache('Target'), rules: this.cache('Rule'),
      pods: this.cache('Pod'), services: this.cache('Service'), endpoints: this.cache('Endpoints'),
    }, this.opts.clusterDomain !== undefined ? { clusterDomain: this.opts.clusterDomain } : {});
    const gateways = new Map<string, { pod: KubeObject; desired: DesiredConfig; print: string }>();
    for (const pod of this.cache('Pod')) {
      const key = `${pod.metadata.namespace}/${pod.metadata.name}`;
      if (!this.isRunningGateway(pod)) {
        this.known.delete(key); // gone or stopped: its configuration went with the process
        continue;
      }
      const owners = ds.selecting(pod);
      // Pods with the controller-port annotation (the l7mp-ingress chart's) are gateways even when
      // nothing selects them: they get an empty configuration applied (and so become ready), and
      // leftovers are cleaned up also after an operator restart.
      if (owners.length === 0 && !this.known.has(key) && pod.metadata.annotations?.[PORT_ANNOTATION] === undefined) continue;
      const print = `${incarnationOf(pod, this.opts.containerName ?? 'l7mp')}@${this.baseUrl(pod)}`;
      gateways.set(key, { pod, desired: owners.length > 0 ? ds.forGateway(pod) : emptyConfig(), print });
    }
    for (const key of [...this.known.keys()]) if (!gateways.has(key)) this.known.delete(key);
    const planErrors = ds.planErrors();
    const prints = ownerFingerprints(gateways, planErrors);
    const printOf = (owner: string) => prints.get(owner) ?? '';
    for (const { owner } of customs) if (!this.backoff.due(owner, printOf(owner), now)) defer.add(owner);

    const results = new Map<string, ReconcileResult>();
    const attempted = new Set<string>();
    await Promise.all([...gateways].map(async ([key, { pod, desired, print }]) => {
      const last = this.lastResults.get(key);
      if (last !== undefined && !this.backoff.due(gatewayKey(key), print, now)) {
        results.set(key, last); // backing off: its resources' status keeps what it said
        return;
      }
      const incarnation = incarnationOf(pod, this.opts.containerName ?? 'l7mp');
      let k = this.known.get(key);
      if (!k || k.incarnation !== incarnation) {
        k = { incarnation, memo: new Map() };
        this.known.set(key, k);
      }
      const client = new L7mpClient(this.baseUrl(pod), this.opts.token !== undefined ? { token: this.opts.token } : {});
      const r = await reconcileGateway(client, desired, k.memo, defer);
      results.set(key, r);
      this.lastResults.set(key, r);
      attempted.add(key);
      if (!r.reached) this.log.warn({ gateway: key, err: r.unreachable }, 'gateway unreachable');
      else if (r.changes.length > 0) this.log.info({ gateway: key, changes: r.changes, generation: r.generation }, 'gateway reconciled');
      for (const [owner, errs] of r.errors) this.log.warn({ gateway: key, owner, errors: errs }, 'gateway rejected a change');
      // A gateway with nothing of ours left needs no more visits (annotated ones are visited anyway).
      if (r.reached && r.errors.size === 0 && desired.owners.size === 0) this.known.delete(key);
    }));
    for (const key of [...this.lastResults.keys()]) if (!gateways.has(key)) this.lastResults.delete(key);
    this.opts.onPass?.({ gateways: results });

    // 3. Status and finalizer release, for the resources this pass tried.
    const nowIso = new Date(now).toISOString();
    for (const { kind, o, owner } of customs) {
      if (defer.has(owner)) continue;
      const ns = o.metadata.namespace!;
      const failed: GatewayFailure[] = [];
      const selected: string[] = [];
      const applied: string[] = [];
      for (const [key, { desired }] of gateways) {
        const r = results.get(key)!;
        const mine = desired.owners.has(owner);
        const errs = [...(desired.errors.get(owner) ?? []), ...(r.errors.get(owner) ?? [])];
        if (!r.reached && (mine || o.metadata.deletionTimestamp !== undefined)) failed.push({ pod: key, error: `unreachable: ${r.unreachable}` });
        else if (errs.length > 0) failed.push({ pod: key, error: errs.join('; ') });
        if (mine) {
          selected.push(key);
          if (r.reached && errs.length === 0) applied.push(key);
        }
      }
      if (o.metadata.deletionTimestamp !== undefined) {
        if (failed.length === 0 && (o.metadata.finalizers ?? []).includes(FINALIZER)) {
          await this.opts.kube.setFinalizers(kind, ns, o.metadata.name, (o.metadata.finalizers ?? []).filter((f) => f !== FINALIZER), o.metadata.resourceVersion!)
            .catch((err: Error) => { kubeFailed.add(owner); this.log.warn({ owner, err: err.message }, 'releasing the finalizer failed; retrying'); });
          this.statusSent.delete(owner);
        }
        continue;
      }
      const status = buildStatus({ invalid: planErrors.get(owner) ?? [], selected, applied, failed }, o.metadata.generation, o.status as ResourceStatus | undefined, nowIso);
      const text = canonical({ ...status, conditions: status.conditions.map(({ lastTransitionTime: _t, ...c }) => c) });
      const prevText = o.status ? canonical({ ...o.status, conditions: ((o.status as ResourceStatus).conditions ?? []).map(({ lastTransitionTime: _t, ...c }) => c) }) : undefined;
      if (text === prevText || this.statusSent.get(owner) === `${o.metadata.resourceVersion} ${text}`) continue;
      await this.opts.kube.patchStatus(kind, ns, o.metadata.name, status as unknown as Record<string, unknown>)
        .then(() => this.statusSent.set(owner, `${o.metadata.resourceVersion} ${text}`))
        .catch((err: Error) => { kubeFailed.add(owner); this.log.warn({ owner, err: err.message }, 'status update failed'); });
    }

    // 4. Backoff: per resource (rejected by a reached gateway, or a Kubernetes write failed), per gateway (unreachable).
    for (const { owner } of customs) {
      const rejected = [...attempted].some((key) => results.get(key)!.errors.has(owner));
      if (rejected || kubeFailed.has(owner)) {
        const delay = this.backoff.failed(owner, printOf(owner), now);
        this.log.debug({ owner, retryInMs: delay }, 'resource backing off');
      } else if (!defer.has(owner)) {
        this.backoff.succeeded(owner);
      }
    }
    for (const key of attempted) {
      const r = results.get(key)!;
      if (!r.reached || r.errors.has('gateway')) this.backoff.failed(gatewayKey(key), gateways.get(key)!.print, now);
      else this.backoff.succeeded(gatewayKey(key));
    }
    const alive = new Set([PASS_KEY, ...customs.map((c) => c.owner), ...[...gateways.keys()].map(gatewayKey)]);
    this.backoff.retain((k) => alive.has(k));
  }

  private isRunningGateway(pod: KubeObject): boolean {
    if (pod.metadata.deletionTimestamp !== undefined) return false;
    const st = pod.status as { podIP?: string; phase?: string; containerStatuses?: Array<{ name: string; state?: { running?: unknown } }> } | undefined;
    if (!st?.podIP || st.phase !== 'Running') return false;
    const c = st.containerStatuses?.find((x) => x.name === (this.opts.containerName ?? 'l7mp'));
    return c === undefined ? true : c.state?.running !== undefined;
  }

  private baseUrl(pod: KubeObject): string {
    const ip = String((pod.status as { podIP: string }).podIP);
    const port = Number(pod.metadata.annotations?.[PORT_ANNOTATION] ?? this.opts.controllerPort ?? 1234);
    return `http://${ip.includes(':') ? `[${ip}]` : ip}:${port}`;
  }
}

const PASS_KEY = 'pass';
const gatewayKey = (podKey: string) => `gateway ${podKey}`;

/**
 * Per resource, what its calls depend on: its objects on each gateway (and
 * that gateway's incarnation) and its conversion errors. A change (a new spec,
 * Endpoints it resolves to, a gateway selected or restarted) makes a resource
 * that is backing off due at once.
 */
function ownerFingerprints(gateways: Map<string, { desired: DesiredConfig; print: string }>, planErrors: Map<string, string[]>): Map<string, string> {
  const parts = new Map<string, unknown[]>();
  const add = (owner: string, part: unknown) => { let l = parts.get(owner); if (!l) parts.set(owner, l = []); l.push(part); };
  for (const [key, { desired, print }] of gateways) {
    for (const owner of desired.owners) add(owner, [key, print]);
    for (const [what, m] of [['l', desired.listeners], ['c', desired.clusters], ['rl', desired.rulelists], ['r', desired.rules]] as const) {
      for (const [name, obj] of m as Map<string, { owner: string }>) add(obj.owner, [key, what, name, obj]);
    }
  }
  for (const [owner, errs] of planErrors) if (errs.length > 0) add(owner, ['invalid', errs]);
  return new Map([...parts].map(([owner, l]) => [owner, contentHash(l, 16)]));
}

function incarnationOf(pod: KubeObject, container: string): string {
  const cs = (pod.status as { containerStatuses?: Array<{ name: string; restartCount?: number; containerID?: string }> } | undefined)?.containerStatuses;
  const c = cs?.find((x) => x.name === container);
  return `${pod.metadata.uid ?? ''}/${c?.restartCount ?? 0}/${c?.containerID ?? ''}`;
}
