// A cache of one kind kept current by list + watch: list, remember the
// collection's resourceVersion, watch from there; when the watch ends (410
// Gone after compaction, a dropped connection, an API server restart) list
// again and replace the cache. Every change calls `onChange`.

import type { KubeApi, KubeObject, WatchHandle, WatchedKind } from './kube/api.js';
import { objectKey } from './kube/api.js';

export interface InformerLog {
  warn(obj: object, msg: string): void;
}

export class Informer {
  readonly items = new Map<string, KubeObject>();
  private handle: WatchHandle | undefined;
  private stopped = false;
  private timer: NodeJS.Timeout | undefined;
  private backoffMs = 100;
  /** Resolves after the first successful list. */
  readonly synced: Promise<void>;
  private markSynced!: () => void;

  constructor(private readonly api: KubeApi, readonly kind: WatchedKind, private readonly namespace: string | undefined,
    private readonly onChange: () => void, private readonly log: InformerLog) {
    this.synced = new Promise((r) => { this.markSynced = r; });
  }

  start(): void {
    void this.relist();
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.handle?.stop();
  }

  list(): KubeObject[] {
    return [...this.items.values()];
  }

  private async relist(): Promise<void> {
    if (this.stopped) return;
    try {
      const res = await this.api.list(this.kind, this.namespace);
      if (this.stopped) return;
      this.items.clear();
      for (const o of res.items) this.items.set(objectKey(o), o);
      this.markSynced();
      this.onChange();
      this.handle = await this.api.watch(this.kind, this.namespace, res.resourceVersion, (e) => {
        const key = objectKey(e.object);
        if (e.type === 'DELETED') this.items.delete(key);
        else this.items.set(key, e.object);
        this.backoffMs = 100;
        this.onChange();
      }, (err) => this.retry(err));
      if (this.stopped) this.handle.stop();
    } catch (err) {
      this.retry(err as Error);
    }
  }

  private retry(err: Error): void {
    if (this.stopped) return;
    this.log.warn({ kind: this.kind, err: err.message }, 'watch ended; listing again');
    this.timer = setTimeout(() => void this.relist(), this.backoffMs);
    this.backoffMs = Math.min(this.backoffMs * 2, 10_000);
  }
}
