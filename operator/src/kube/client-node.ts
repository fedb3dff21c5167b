// KubeApi on @kubernetes/client-node: the generic object API for lists, Watch
// for watches, the custom objects API for status and finalizer patches.

import * as k8s from '@kubernetes/client-node';
import { GROUP, PLURAL, VERSION, type CustomKind, type KubeApi, type KubeObject, type ListResult, type WatchEvent, type WatchHandle, type WatchedKind } from './api.js';

const CORE: Record<'Pod' | 'Service' | 'Endpoints', string> = { Pod: 'pods', Service: 'services', Endpoints: 'endpoints' };

function collectionPath(kind: WatchedKind, namespace: string | undefined): string {
  const ns = namespace === undefined ? '' : `/namespaces/${encodeURIComponent(namespace)}`;
  if (kind === 'Pod' || kind === 'Service' || kind === 'Endpoints') return `/api/v1${ns}/${CORE[kind]}`;
  return `/apis/${GROUP}/${VERSION}${ns}/${PLURAL[kind]}`;
}

export class ClientNodeKubeApi implements KubeApi {
  private readonly objects: k8s.KubernetesObjectApi;
  private readonly custom: k8s.CustomObjectsApi;
  private readonly watcher: k8s.Watch;

  constructor(private readonly kc: k8s.KubeConfig) {
    this.objects = k8s.KubernetesObjectApi.makeApiClient(kc);
    this.custom = kc.makeApiClient(k8s.CustomObjectsApi);
    this.watcher = new k8s.Watch(kc);
  }

  /** In a pod: the service account; elsewhere: $KUBECONFIG or ~/.kube/config. */
  static fromDefault(): ClientNodeKubeApi {
    const kc = new k8s.KubeConfig();
    kc.loadFromDefault();
    return new ClientNodeKubeApi(kc);
  }

  async list(kind: WatchedKind, namespace: string | undefined): Promise<ListResult> {
    const apiVersion = kind === 'Pod' || kind === 'Service' || kind === 'Endpoints' ? 'v1' : `${GROUP}/${VERSION}`;
    const res = await this.objects.list(apiVersion, kind, namespace);
    const items = (res.items as unknown as KubeObject[]).map((o) => ({ ...o, kind }));
    return { items, resourceVersion: res.metadata?.resourceVersion ?? '0' };
  }

  async watch(kind: WatchedKind, namespace: string | undefined, resourceVersion: string,
    onEvent: (e: WatchEvent) => void, onError: (err: Error) => void): Promise<WatchHandle> {
    let ended = false;
    const end = (err: unknown) => {
      if (ended) return;
      ended = true;
      onError(err instanceof Error ? err : new Error(String(err ?? 'watch ended')));
    };
    const ctl = await this.watcher.watch(collectionPath(kind, namespace), { resourceVersion, allowWatchBookmarks: true },
      (phase, obj) => {
        if (phase === 'ERROR') return end(new Error(`watch error: ${JSON.stringify(obj)}`)); // 410 Gone arrives here
        if (phase === 'ADDED' || phase === 'MODIFIED' || phase === 'DELETED') onEvent({ type: phase, object: { ...(obj as KubeObject), kind } });
      }, end);
    return { stop: () => { ended = true; ctl.abort(); } };
  }

  async patchStatus(kind: CustomKind, namespace: string, name: string, status: Record<string, unknown>): Promise<void> {
    await this.custom.patchNamespacedCustomObjectStatus(
      { group: GROUP, version: VERSION, namespace, plural: PLURAL[kind], name, body: { status } },
      k8s.setHeaderOptions('Content-Type', k8s.PatchStrategy.MergePatch),
    );
  }

  async setFinalizers(kind: CustomKind, namespace: string, name: string, finalizers: string[], resourceVersion: string): Promise<void> {
    // A merge patch carrying resourceVersion is an optimistic-concurrency write: a stale one gets 409.
    await this.custom.patchNamespacedCustomObject(
      { group: GROUP, version: VERSION, namespace, plural: PLURAL[kind], name, body: { metadata: { finalizers, resourceVersion } } },
      k8s.setHeaderOptions('Content-Type', k8s.PatchStrategy.MergePatch),
    );
  }
}
