// InMemoryKubeApiDouble: a test double of the Kubernetes API server for the
// operator's KubeApi interface. It is NOT a Kubernetes API server; it keeps
// the parts of its contract the operator depends on:
//   - one global, increasing resourceVersion; list returns it, watch replays
//     every change after a given version and then streams new ones;
//   - a version older than the retained history answers 410 Gone (onError), so
//     the relist path is exercised;
//   - delete of an object with finalizers only sets deletionTimestamp; the
//     object goes once its finalizers are emptied;
//   - setFinalizers with a stale resourceVersion fails with a 409 Conflict;
//   - status patches do not bump metadata.generation, spec writes do.
// Tests drive it like kubectl and the kubelet would: create/replace/delete
// objects, update pod statuses.

import type { CustomKind, KubeApi, KubeObject, ListResult, WatchEvent, WatchHandle, WatchedKind } from './api.js';

interface Watcher {
  kind: WatchedKind;
  namespace: string | undefined;
  onEvent: (e: WatchEvent) => void;
  onError: (err: Error) => void;
  stopped: boolean;
}

interface HistoryEntry {
  rv: number;
  kind: WatchedKind;
  event: WatchEvent;
}

export class KubeApiDoubleError extends Error {
  constructor(readonly status: number, message: string) {
    super(message);
    this.name = 'KubeApiDoubleError';
  }
}

const clone = <T>(v: T): T => structuredClone(v);

export class InMemoryKubeApiDouble implements KubeApi {
  private rv = 1;
  private readonly store = new Map<WatchedKind, Map<string, KubeObject>>();
  private readonly history: HistoryEntry[] = [];
  private readonly watchers = new Set<Watcher>();
  /** History kept for watches; older versions get 410 Gone. */
  constructor(private readonly maxHistory = 10_000) {}

  // ------------------------------------------------------- KubeApi (operator side)

  async list(kind: WatchedKind, namespace: string | undefined): Promise<ListResult> {
    const items = [...this.objects(kind).values()].filter((o) => namespace === undefined || o.metadata.namespace === namespace);
    return { items: items.map(clone), resourceVersion: String(this.rv) };
  }

  async watch(kind: WatchedKind, namespace: string | undefined, resourceVersion: string,
    onEvent: (e: WatchEvent) => void, onError: (err: Error) => void): Promise<WatchHandle> {
    const from = Number(resourceVersion);
    const oldest = this.history.length > 0 ? this.history[0]!.rv : this.rv + 1;
    const w: Watcher = { kind, namespace, onEvent, onError, stopped: false };
    if (from + 1 < oldest && from < this.rv) {
      // Like the API server: the requested version was compacted away.
      queueMicrotask(() => onError(new KubeApiDoubleError(410, `too old resource version: ${from}`)));
      return { stop: () => undefined };
    }
    const replay = this.history.filter((h) => h.rv > from && h.kind === kind && this.inNs(h.event.object, namespace));
    this.watchers.add(w);
    // Deliver asynchronously, in order, like a stream.
    queueMicrotask(() => { for (const h of replay) if (!w.stopped) onEvent(clone(h.event)); });
    return { stop: () => { w.stopped = true; this.watchers.delete(w); } };
  }

  async patchStatus(kind: CustomKind, namespace: string, name: string, status: Record<string, unknown>): Promise<void> {
    const o = this.objects(kind).get(`${namespace}/${name}`);
    if (!o) throw new KubeApiDoubleError(404, `${kind} ${namespace}/${name} not found`);
    o.status = mergePatch(o.status ?? {}, status);
    this.commit(kind, 'MODIFIED', o);
  }

  async setFinalizers(kind: CustomKind, namespace: string, name: string, finalizers: string[], resourceVersion: string): Promise<void> {
    const o = this.objects(kind).get(`${namespace}/${name}`);
    if (!o) throw new KubeApiDoubleError(404, `${kind} ${namespace}/${name} not found`);
    if (o.metadata.resourceVersion !== resourceVersion) throw new KubeApiDoubleError(409, `${kind} ${namespace}/${name}: resourceVersion ${resourceVersion} is stale`);
    o.metadata.finalizers = [...finalizers];
    if (o.metadata.deletionTimestamp !== undefined && finalizers.length === 0) {
      this.remove(kind, o);
      return;
    }
    this.commit(kind, 'MODIFIED', o);
  }

  // ------------------------------------------------- test side (kubectl, kubelet)

  /** Create or replace (spec and labels); keeps status and finalizers like an update would. */
  apply(kind: WatchedKind, obj: KubeObject): KubeObject {
    const ns = obj.metadata.namespace ?? 'default';
    const key = `${ns}/${obj.metadata.name}`;
    const cur = this.objects(kind).get(key);
    const next = clone(obj);
    next.kind = kind;
    next.metadata = { ...next.metadata, namespace: ns };
    if (cur) {
      next.metadata.uid = cur.metadata.uid;
      next.metadata.finalizers = cur.metadata.finalizers;
      if (cur.metadata.deletionTimestamp !== undefined) next.metadata.deletionTimestamp = cur.metadata.deletionTimestamp;
      const specChanged = JSON.stringify(cur.spec) !== JSON.stringify(next.spec);
      next.metadata.generation = (cur.metadata.generation ?? 1) + (specChanged ? 1 : 0);
      if (next.status === undefined) next.status = cur.status;
      this.objects(kind).set(key, next);
      this.commit(kind, 'MODIFIED', next);
    } else {
      next.metadata.uid = next.metadata.uid ?? `uid-${kind}-${ns}-${obj.metadata.name}-${this.rv}`;
      next.metadata.generation = 1;
      this.objects(kind).set(key, next);
      this.commit(kind, 'ADDED', next);
    }
    return clone(next);
  }

  /** Delete: with finalizers the object stays, marked for deletion, until they are removed. */
  delete(kind: WatchedKind, namespace: string, name: string): void {
    const o = this.objects(kind).get(`${namespace}/${name}`);
    if (!o) throw new KubeApiDoubleError(404, `${kind} ${namespace}/${name} not found`);
    if ((o.metadata.finalizers ?? []).length > 0) {
      if (o.metadata.deletionTimestamp === undefined) {
        o.metadata.deletionTimestamp = new Date().toISOString();
        this.commit(kind, 'MODIFIED', o);
      }
      return;
    }
    this.remove(kind, o);
  }

  get(kind: WatchedKind, namespace: string, name: string): KubeObject | undefined {
    const o = this.objects(kind).get(`${namespace}/${name}`);
    return o ? clone(o) : undefined;
  }

  /** End every open watch with an error (as an API server restart would): the operator must relist. */
  breakWatches(): void {
    for (const w of [...this.watchers]) {
      this.watchers.delete(w);
      w.stopped = true;
      w.onError(new KubeApiDoubleError(500, 'watch closed by the API double'));
    }
  }

  /** Drop the watch history (etcd compaction): a watch from an old version gets 410 Gone. */
  compact(): void {
    this.history.length = 0;
  }

  get resourceVersion(): string {
    return String(this.rv);
  }

  // ----------------------------------------------------------------- internals

  private objects(kind: WatchedKind): Map<string, KubeObject> {
    let m = this.store.get(kind);
    if (!m) {
      m = new Map();
      this.store.set(kind, m);
    }
    return m;
  }

  private inNs(o: KubeObject, ns: string | undefined): boolean {
    return ns === undefined || o.metadata.namespace === ns;
  }

  private remove(kind: WatchedKind, o: KubeObject): void {
    this.objects(kind).delete(`${o.metadata.namespace}/${o.metadata.name}`);
    this.commit(kind, 'DELETED', o);
  }

  private commit(kind: WatchedKind, type: WatchEvent['type'], o: KubeObject): void {
    this.rv++;
    o.metadata.resourceVersion = String(this.rv);
    const event: WatchEvent = { type, object: clone(o) };
    this.history.push({ rv: this.rv, kind, event });
    if (this.history.length > this.maxHistory) this.history.shift();
    for (const w of this.watchers) {
      if (w.kind !== kind || !this.inNs(o, w.namespace)) continue;
      const e = clone(event);
      queueMicrotask(() => { if (!w.stopped) w.onEvent(e); });
    }
  }
}

/** RFC 7386 JSON merge patch. */
function mergePatch(target: unknown, patch: unknown): unknown {
  if (typeof patch !== 'object' || patch === null || Array.isArray(patch)) return clone(patch);
  const out: Record<string, unknown> = typeof target === 'object' && target !== null && !Array.isArray(target) ? { ...(target as Record<string, unknown>) } : {};
  for (const [k, v] of Object.entries(patch)) {
    if (v === null) delete out[k];
    else out[k] = mergePatch(out[k], v);
  }
  return out;
}
