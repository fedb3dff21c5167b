// Source-port quarantine for UDP cluster sockets: UDP's missing TIME_WAIT.
//
// Each cluster session opens a socket on a kernel-chosen ephemeral port. The
// kernel may hand a port that a session to the same upstream closed a moment
// ago to the next session. The upstream cannot tell: a per-flow UDP server
// (socat's UDP-LISTEN,fork keeps a child per flow until it has been silent
// for a while), a NAT's conntrack entry or a load balancer's flow table still
// belongs to the old session, so the new session's first datagrams land in
// the old flow's state. The conformance suite saw exactly that: a
// load-balancing probe answered by the previous probe's upstream child,
// without the new child's tag (about 1 run in 3 of UDP→UDP, where ~130 flows
// in a few seconds draw from 28k ports: a birthday collision).
//
// So a port released by a session stays barred for new sessions to the same
// upstream for QUARANTINE_MS. A socket that draws a barred port is kept open
// while another is drawn (so the kernel cannot hand the same port again), then
// closed. The table is bounded (oldest entries go first), so a high session
// rate costs at most a few retries, never an exhausted port range.

/** How long a released port stays barred for the same upstream (TCP's TIME_WAIT is 60 s; UDP flow state is usually shorter). */
export const QUARANTINE_MS = 10_000;
/** Entries kept at most: under a fifth of Linux's default ephemeral range (32768–60999). */
export const QUARANTINE_MAX = 4096;
/** Draws before a barred port is taken anyway (the range is nearly all barred, or tiny). */
export const QUARANTINE_TRIES = 8;
/** Upstreams numbered at most (PortQuarantine.key): keeps every key a small integer. */
const REMOTES_MAX = 16_384;

export class PortQuarantine {
  /** (upstream, port) key → release time; Map order is release order, so the oldest entry is first. */
  private readonly released = new Map<number, number>();
  /**
   * Upstream (address:port) → a small number for the keys, so that a session
   * builds no string to look its port up (the upstream strings are the
   * clusters' own, their hashes cached). Bounded: past REMOTES_MAX upstreams
   * both tables start over, and the ports barred until then are free early.
   */
  private readonly remotes = new Map<string, number>();

  constructor(private readonly ms = QUARANTINE_MS, private readonly max = QUARANTINE_MAX) {}

  /** A small integer (a V8 Smi): upstream number × 65536 + port. */
  private key(remote: string, localPort: number): number {
    let id = this.remotes.get(remote);
    if (id === undefined) {
      if (this.remotes.size >= REMOTES_MAX) {
        this.remotes.clear();
        this.released.clear();
      }
      id = this.remotes.size;
      this.remotes.set(remote, id);
    }
    return id * 65536 + localPort;
  }

  /** A session to `remote` (address:port) stopped using `localPort`. */
  release(remote: string, localPort: number, now = Date.now()): void {
    const k = this.key(remote, localPort);
    this.released.delete(k); // re-inserted last: its order is its new release time
    this.released.set(k, now);
    for (const [old, at] of this.released) {
      if (this.released.size <= this.max && now - at < this.ms) break;
      this.released.delete(old);
    }
  }

  /** Whether a new session to `remote` should not use `localPort` yet. */
  barred(remote: string, localPort: number, now = Date.now()): boolean {
    const k = this.key(remote, localPort);
    const at = this.released.get(k);
    if (at === undefined) return false;
    if (now - at >= this.ms) {
      this.released.delete(k);
      return false;
    }
    return true;
  }

  get size(): number {
    return this.released.size;
  }
}

/** One table per process: every UDP cluster draws from the same kernel port range. */
export const udpSourcePorts = new PortQuarantine();

/**
 * A cluster socket whose kernel-chosen source port goes into quarantine when
 * it closes: two fields on the channel, not a closure and its context per session.
 */
export interface SourcePortHolder {
  /** The upstream (address:port) the port is barred for; undefined: nothing to release. */
  releaseRemote: string | undefined;
  releasePort: number;
}

/** The holder's socket closed: quarantine its port (once). */
export function releaseSourcePort(h: SourcePortHolder): void {
  const remote = h.releaseRemote;
  if (remote === undefined) return;
  h.releaseRemote = undefined;
  udpSourcePorts.release(remote, h.releasePort);
}

/**
 * drawUnbarred for sockets that open synchronously (the batched path,
 * batch.ts): no promise per session, so that a session whose every stage
 * connects at once is set up without waiting (dataplane/pipeline.ts).
 */
export function drawUnbarredNow<S>(
  remote: string,
  open: () => S,
  port: (s: S) => number | undefined,
  close: (s: S) => void,
  q: PortQuarantine = udpSourcePorts,
): S {
  let rejected: S[] | undefined;
  try {
    let s = open();
    for (let i = 1; i < QUARANTINE_TRIES; i++) {
      const p = port(s);
      if (p === undefined || !q.barred(remote, p)) break;
      (rejected ??= []).push(s);
      s = open();
    }
    return s;
  } finally {
    if (rejected !== undefined) for (const r of rejected) close(r);
  }
}

/**
 * Open sockets with `open` until one has a port that is not barred for
 * `remote` (at most QUARANTINE_TRIES draws), close the others, and return it.
 * `port` reads a socket's local port; `close` discards one.
 */
export async function drawUnbarred<S>(
  remote: string,
  open: () => S | Promise<S>,
  port: (s: S) => number | undefined,
  close: (s: S) => void,
  q: PortQuarantine = udpSourcePorts,
): Promise<S> {
  const rejected: S[] = [];
  try {
    let s = await open();
    for (let i = 1; i < QUARANTINE_TRIES; i++) {
      const p = port(s);
      if (p === undefined || !q.barred(remote, p)) break;
      rejected.push(s);
      s = await open();
    }
    return s;
  } finally {
    for (const r of rejected) close(r);
  }
}
