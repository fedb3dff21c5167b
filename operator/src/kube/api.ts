// The operator's whole view of Kubernetes: list and watch with resource
// versions, patch a status, set finalizers. Everything else in the operator is
// plain data in, REST calls out, so the reconciliation can be tested against
// real gateways with an in-memory double of this interface
// (InMemoryKubeApiDouble) where no API server can run, and run unchanged on a
// cluster with the @kubernetes/client-node implementation (ClientNodeKubeApi).

/** The kinds the operator reads. */
export type WatchedKind = 'VirtualService' | 'Target' | 'Rule' | 'Pod' | 'Service' | 'Endpoints';
/** The kinds the operator owns (status, finalizers). */
export type CustomKind = 'VirtualService' | 'Target' | 'Rule';

export const CUSTOM_KINDS: readonly CustomKind[] = ['VirtualService', 'Target', 'Rule'];
export const WATCHED_KINDS: readonly WatchedKind[] = ['VirtualService', 'Target', 'Rule', 'Pod', 'Service', 'Endpoints'];

export const GROUP = 'l7mp.io';
export const VERSION = 'v1';
export const PLURAL: Record<CustomKind, string> = { VirtualService: 'virtualservices', Target: 'targets', Rule: 'rules' };

export interface ObjectMeta {
  name: string;
  namespace?: string;
  uid?: string;
  resourceVersion?: string;
  generation?: number;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  finalizers?: string[];
  deletionTimestamp?: string;
}

export interface KubeObject {
  apiVersion?: string;
  kind?: string;
  metadata: ObjectMeta;
  spec?: any;
  status?: any;
  [key: string]: unknown;
}

export interface ListResult {
  items: KubeObject[];
  /** The collection's resourceVersion: a watch from here misses nothing. */
  resourceVersion: string;
}

export type WatchEventType = 'ADDED' | 'MODIFIED' | 'DELETED';

export interface WatchEvent {
  type: WatchEventType;
  object: KubeObject;
}

export interface WatchHandle {
  stop(): void;
}

export interface KubeApi {
  /** List `kind` in `namespace` (all namespaces when undefined). */
  list(kind: WatchedKind, namespace: string | undefined): Promise<ListResult>;
  /**
   * Watch `kind` from `resourceVersion`. `onError` is called once when the
   * watch ends for any reason (HTTP 410 Gone included); the caller relists.
   */
  watch(kind: WatchedKind, namespace: string | undefined, resourceVersion: string,
    onEvent: (e: WatchEvent) => void, onError: (err: Error) => void): Promise<WatchHandle>;
  /** Merge-patch the status subresource. */
  patchStatus(kind: CustomKind, namespace: string, name: string, status: Record<string, unknown>): Promise<void>;
  /** Replace metadata.finalizers, guarded by the object's resourceVersion (a stale write fails: the caller retries). */
  setFinalizers(kind: CustomKind, namespace: string, name: string, finalizers: string[], resourceVersion: string): Promise<void>;
}

export function objectKey(o: KubeObject): string {
  return `${o.metadata.namespace ?? ''}/${o.metadata.name}`;
}
