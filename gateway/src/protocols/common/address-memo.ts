// What a cluster works out once per endpoint address (is it numeric, its
// peer and message strings, which socket path it takes), so that a session
// does not redo it. Endpoints come and go through the REST API, so the memo
// holds the recent ones only: at `max` addresses it starts over.

export class AddressMemo<V> {
  private readonly memo = new Map<string, V>();

  /** `make` must not return undefined (use null for "nothing"): undefined reads as "not worked out yet". */
  constructor(private readonly make: (address: string) => V, private readonly max = 256) {}

  get(address: string): V {
    let v = this.memo.get(address);
    if (v === undefined) {
      if (this.memo.size >= this.max) this.memo.clear();
      v = this.make(address);
      this.memo.set(address, v);
    }
    return v;
  }

  get size(): number {
    return this.memo.size;
  }
}
