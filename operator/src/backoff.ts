// Per-key retry backoff, as controller-runtime's rate-limited work queue keeps
// it: each failing key (a resource, or a gateway that could not be reached)
// waits base * 2^(failures-1), capped, before it is tried again; a success
// forgets it. Keys are independent: one key backing off never delays another.
// A key whose inputs changed since it failed (its spec, the Endpoints it
// resolves to, the gateways it selects) is due at once, as a new event for a
// key is in controller-runtime, but its failure count stays until a success.

export interface BackoffEntry {
  failures: number;
  dueAt: number;
  /** What the key's inputs were when it failed. */
  fingerprint: string;
}

export class KeyedBackoff {
  private readonly entries = new Map<string, BackoffEntry>();

  constructor(private readonly baseMs: number, private readonly capMs: number) {}

  /** Whether `key` may be tried at `now`: it is not backing off, its wait is over, or its inputs changed. */
  due(key: string, fingerprint: string, now: number): boolean {
    const e = this.entries.get(key);
    return e === undefined || e.dueAt <= now || e.fingerprint !== fingerprint;
  }

  /** Record a failure; returns the delay until the key is due again. */
  failed(key: string, fingerprint: string, now: number): number {
    const failures = (this.entries.get(key)?.failures ?? 0) + 1;
    const delay = Math.min(this.baseMs * 2 ** Math.min(failures - 1, 30), this.capMs);
    this.entries.set(key, { failures, dueAt: now + delay, fingerprint });
    return delay;
  }

  succeeded(key: string): void {
    this.entries.delete(key);
  }

  /** Forget keys that no longer exist (a deleted resource, a gone gateway). */
  retain(alive: (key: string) => boolean): void {
    for (const k of [...this.entries.keys()]) if (!alive(k)) this.entries.delete(k);
  }

  /** The earliest time some key is due, or undefined when nothing backs off. */
  nextDue(): number | undefined {
    let min: number | undefined;
    for (const e of this.entries.values()) if (min === undefined || e.dueAt < min) min = e.dueAt;
    return min;
  }

  get(key: string): BackoffEntry | undefined {
    return this.entries.get(key);
  }
}
