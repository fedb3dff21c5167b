// The control loop. Informers keep caches of the watched kinds; any change
// schedules a pass (debounced, never two at once). A pass:
//   1. adds the finalizer to resources that lack it (before anything reaches a
//      gateway, so a delete cannot slip past the cleanup);
//   2. computes every gateway pod's desired configuration (desired.ts) and
//      reconciles the gateways concurrently (reconcile.ts);
//   3. writes each resource's status (only when it changed), and releases the
//      finalizer of a deleted resource once no gateway holds its objects;
//   4. schedules a retry with backoff while a gateway is unreachable or failed,
//      and a periodic resync anyway (a gateway may restart between events).
// A gateway pod is a running pod (its `l7mp` container running, not
// necessarily Ready: readiness waits for us) with an IP that some resource
// selects or that carries the annotation l7mp.io/controller-port; the REST
// controller is at http://<podIP>:<port>, the port from that annotation
// (default 1234).

import { L7mpClient } from '../../gateway/src/api/generated/client.js';
import { CUSTOM_KINDS, WATCHED_KINDS, type KubeApi, type KubeObject, type WatchedKind } from './kube/api.js';
import { DesiredState, emptyConfig, type DesiredConfig } from './desired.js';
import { Informer } from './informer.js';
import { canonical, ownerKey } from './names.js';
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
  /** First retry delay after a failed gateway (ms); doubles up to 30 s. */
  retryMs?: number;
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
  private running = false;
  private again = false;
  private stopped = false;
  private timer: NodeJS.Timeout | undefined;
  private resyncTimer: NodeJS.Timeout | undefined;
  private retryDelay: number;
  passes = 0;

  constructor(private readonly opts: OperatorOptions) {
    this.log = opts.log ?? quietLog;
    this.retryDelay = opts.retryMs ?? 1000;
  }

  async start(): Promise<void> {
    for (const kind of WATCHED_KINDS) {
      const inf = new Informer(this.opts.kube, kind, this.opts.namespace, () => this.schedule(20), this.log);
      this.informers.set(kind, inf);
      inf.start();
    }
    await Promise.all([...this.informers.values()].map((i) => i.synced));
    this.schedule(0);
  }

  stop(): void {
    this.stopped = true;
    for (const i of this.informers.values()) i.stop();
    if (this.timer) clearTimeout(this.timer);
    if (this.resyncTimer) clearTimeout(this.resyncTimer);
  }

  /** Run a pass after `ms` (coalesced with one already scheduled or running). */
  schedule(ms: number): void {
    if (this.stopped) return;
    if (this.running) {
      this.again = true;
      return;
    }
    if (this.timer) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      void this.pass();
    }, ms);
  }

  private cache(kind: WatchedKind): KubeObject[] {
    return this.informers.get(kind)?.list() ?? [];
  }

  private async pass(): Promise<void> {
    this.running = true;
    let retry = false;
    try {
      retry = await this.passOnce();
    } catch (err) {
      this.log.error({ err: (err as Error).stack }, 'reconciliation pass failed');
      retry = true;
    } finally {
      this.running = false;
      this.passes++;
    }
    if (this.stopped) return;
    if (this.again) {
      this.again = false;
      this.schedule(20);
    } else if (retry) {
      this.schedule(this.retryDelay);
      this.retryDelay = Math.min(this.retryDelay * 2, 30_000);
    } else {
      this.retryDelay = this.opts.retryMs ?? 1000;
    }
    if (this.resyncTimer) clearTimeout(this.resyncTimer);
    this.resyncTimer = setTimeout(() => this.schedule(0), this.opts.resyncMs ?? 30_000);
  }

  /** One pass; true when something should be retried. */
  private async passOnce(): Promise<boolean> {
    const customs = CUSTOM_KINDS.flatMap((kind) => this.cache(kind).map((o) => ({ kind, o })));
    // 1. Finalizers first.
    let finalizersChanged = false;
    let finalizerFailed = false;
    for (const { kind, o } of customs) {
      const f = o.metadata.finalizers ?? [];
      if (o.metadata.deletionTimestamp === undefined && !f.includes(FINALIZER)) {
        await this.opts.kube.setFinalizers(kind, o.metadata.namespace!, o.metadata.name, [...f, FINALIZER], o.metadata.resourceVersion!)
          .catch((err: Error) => {
            finalizerFailed = true; // e.g. a stale resourceVersion: the watch brings the new one, the retry uses it
            this.log.warn({ kind, name: o.metadata.name, err: err.message }, 'adding the finalizer failed; retrying');
          });
        finalizersChanged = true;
      }
    }
    // The watch brings the updated objects and another pass; nothing reaches a gateway before.
    if (finalizersChanged) return finalizerFailed;

    // 2. Desired configuration per gateway, and reconcile.
    const ds = new DesiredState({
      virtualServices: this.cache('VirtualService'), targets: this.cache('Target'), rules: this.cache('Rule'),
      pods: this.cache('Pod'), services: this.cache('Service'), endpoints: this.cache('Endpoints'),
    }, this.opts.clusterDomain !== undefined ? { clusterDomain: this.opts.clusterDomain } : {});
    const gateways = new Map<string, { pod: KubeObject; desired: DesiredConfig }>();
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
      gateways.set(key, { pod, desired: owners.length > 0 ? ds.forGateway(pod) : emptyConfig() });
    }
    for (const key of [...this.known.keys()]) if (!gateways.has(key)) this.known.delete(key);

    const results = new Map<string, ReconcileResult>();
    await Promise.all([...gateways].map(async ([key, { pod, desired }]) => {
      const incarnation = incarnationOf(pod, this.opts.containerName ?? 'l7mp');
      let k = this.known.get(key);
      if (!k || k.incarnation !== incarnation) {
        k = { incarnation, memo: new Map() };
        this.known.set(key, k);
      }
      const client = new L7mpClient(this.baseUrl(pod), this.opts.token !== undefined ? { token: this.opts.token } : {});
      const r = await reconcileGateway(client, desired, k.memo);
      results.set(key, r);
      if (!r.reached) this.log.warn({ gateway: key, err: r.unreachable }, 'gateway unreachable');
      else if (r.changes.length > 0) this.log.info({ gateway: key, changes: r.changes, generation: r.generation }, 'gateway reconciled');
      for (const [owner, errs] of r.errors) this.log.warn({ gateway: key, owner, errors: errs }, 'gateway rejected a change');
      // A gateway with nothing of ours left needs no more visits (annotated ones are visited anyway).
      if (r.reached && r.errors.size === 0 && desired.owners.size === 0) this.known.delete(key);
    }));
    this.opts.onPass?.({ gateways: results });

    // 3. Status and finalizer release.
    const planErrors = ds.planErrors();
    const now = new Date().toISOString();
    let retry = false;
    for (const r of results.values()) if (!r.reached || r.errors.size > 0) retry = true;
    for (const { kind, o } of customs) {
      const ns = o.metadata.namespace!;
      const owner = ownerKey(kind, ns, o.metadata.name);
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
            .catch((err: Error) => { retry = true; this.log.warn({ owner, err: err.message }, 'releasing the finalizer failed; retrying'); });
          this.statusSent.delete(owner);
        }
        continue;
      }
      const status = buildStatus({ invalid: planErrors.get(owner) ?? [], selected, applied, failed }, o.metadata.generation, o.status as ResourceStatus | undefined, now);
      const text = canonical({ ...status, conditions: status.conditions.map(({ lastTransitionTime: _t, ...c }) => c) });
      const prevText = o.status ? canonical({ ...o.status, conditions: ((o.status as ResourceStatus).conditions ?? []).map(({ lastTransitionTime: _t, ...c }) => c) }) : undefined;
      if (text === prevText || this.statusSent.get(owner) === `${o.metadata.resourceVersion} ${text}`) continue;
      await this.opts.kube.patchStatus(kind, ns, o.metadata.name, status as unknown as Record<string, unknown>)
        .then(() => this.statusSent.set(owner, `${o.metadata.resourceVersion} ${text}`))
        .catch((err: Error) => { retry = true; this.log.warn({ owner, err: err.message }, 'status update failed'); });
    }
    return retry;
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

function incarnationOf(pod: KubeObject, container: string): string {
  const cs = (pod.status as { containerStatuses?: Array<{ name: string; restartCount?: number; containerID?: string }> } | undefined)?.containerStatuses;
  const c = cs?.find((x) => x.name === container);
  return `${pod.metadata.uid ?? ''}/${c?.restartCount ?? 0}/${c?.containerID ?? ''}`;
}
