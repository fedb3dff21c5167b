// The splice fast path for bulk byte-stream sessions (native/sockets/src/splice.cc).
//
// A session whose two channels are plain TCP/Unix stream sockets, with no
// transforms in its route (nothing needs to see the bytes) and no reconnect
// on disconnect (a relink needs the JavaScript path), starts on the normal
// path. Once one direction has carried L7MP_SPLICE_AFTER bytes (default
// 256 KiB: an "elephant"; short connections never get here and pay one
// comparison per chunk), Link.data offers the chunk in hand to offer()
// below, and Link.drain offers the moment a congested direction's writes
// have all reached the kernel. The handover needs both sockets quiescent on
// the write side (nothing queued in Node for writing) and no EOF yet; bytes
// read but not yet forwarded (the chunk in hand, the channel's queue, Node's
// readable buffer) are fine: they go into the pipe of their direction first,
// so byte order is kept. Then the addon dup()s both fds, Node's sockets are
// destroyed (closing only Node's copies of the fds: no FIN, no RST), and the
// kernel moves the bytes from then on. Not quiescent: the offer is declined
// and made again on a later chunk or drain.
//
// Counters: sync() folds the addon's per-direction counts into the session's
// two links; Session.counters() calls it, so the REST dump, metrics and the
// access log read exact figures without any per-chunk callback.
//
// Ending: the addon calls back once, when both directions have passed EOF on
// (a clean end: the source channel finishes without error) or an error hit
// one socket (that side's channel finishes with it). Either way the session
// ends through its usual stageClosed -> endSession path. Ending the session
// from JavaScript (REST delete, listener or cluster removed, shutdown) closes
// both sockets through SocketChannel.doClose -> close().
//
// L7MP_SPLICE=off keeps every session on the JavaScript path (for
// comparison); L7MP_SPLICE_AFTER=<bytes> moves the handover point.

import type { Gateway } from '../core/gateway.js';
import type { SessionHooks } from '../dataplane/hooks.js';
import { retriesOnDisconnect } from '../dataplane/reconnect-budget.js';
import { SPLICE_NEVER, type FastPath, type Link, type Session, type Splicer } from '../dataplane/session.js';
import { socketsAddon } from '../native/sockets.js';
import type { SpliceableChannel, SpliceControl } from '../dataplane/capabilities.js';

export interface SpliceHandle {
  /** Queue bytes already read by JavaScript into direction `dir`'s pipe; all of chunk, or -errno. */
  prime(dir: 0 | 1, chunk: Uint8Array): number;
  /** Bytes prime() can still queue in direction `dir`. */
  space(dir: 0 | 1): number;
  start(): void;
  /** [bytes A->B, reads A->B, bytes B->A, reads B->A] */
  counts(out: Float64Array): void;
  /** Abort: close both sockets; `reset` sends RSTs (SO_LINGER 0) instead of FINs. */
  close(reset?: boolean): void;
  readonly state: 'failed' | 'ready' | 'active' | 'done';
}


/** Default handover point: bytes one direction has carried on the JavaScript path. */
const DEFAULT_SPLICE_AFTER = 256 * 1024;

function isSpliceable(ch: unknown): ch is SpliceableChannel {
  return typeof (ch as SpliceableChannel | undefined)?.spliceCheck === 'function';
}

/** owned: a and b are RawStreams or bare fds the pair takes over (fastpath/raw.ts); else fds it duplicates. */
export type SpliceCtor = new (a: number | unknown, b: number | unknown, onDone: (code: string | undefined, side: number) => void, owned?: boolean) => SpliceHandle;

let ctor: SpliceCtor | undefined | null = null;

/** The addon's Splice class, or undefined (addon not built, too old, or L7MP_SPLICE=off). */
function spliceCtor(): SpliceCtor | undefined {
  if (ctor === null) {
    const c = process.env.L7MP_SPLICE === 'off' ? undefined : (socketsAddon() as unknown as { Splice?: SpliceCtor } | undefined)?.Splice;
    ctor = typeof c === 'function' ? c : undefined;
  }
  return ctor;
}

/** Why splicing is off, or undefined when it is available. */
export function spliceUnavailable(): string | undefined {
  if (process.env.L7MP_SPLICE === 'off') return 'disabled by L7MP_SPLICE=off';
  if (spliceCtor() === undefined) return 'the native sockets addon (with Splice) is not available';
  return undefined;
}

/** A channel a kernel pair forwards for: told once when the pair is over. */
interface PairEnd {
  spliceEnded(err: Error | undefined): void;
}

/**
 * Where handle.counts() writes; read right away, so one serves every pair
 * (a typed array per session was an ArrayBuffer per connection to sweep).
 */
const scratch = new Float64Array(4);

/** A session's kernel pair (a Splice handle), as the session and its channels see it. */
export class SpliceSession implements FastPath, SpliceControl {
  /** The pair's counts as last read: [bytes A->B, reads A->B, bytes B->A, reads B->A]. */
  private readonly counts = [0, 0, 0, 0];
  /** What was already folded into the links (bytes, reads per direction). */
  private readonly seen = [0, 0, 0, 0];
  state: 'active' | 'done' | 'closed' = 'active';
  endCode: string | undefined;
  readonly since = Date.now();
  handle!: SpliceHandle;

  constructor(private readonly s: Session, private readonly a: PairEnd, private readonly b: PairEnd, readonly path?: 'raw') {}

  get active(): boolean {
    return this.state === 'active';
  }

  /** The addon's counts into this.counts: kept there after its fds are closed, so valid in any state but failed. */
  private read(): void {
    this.handle.counts(scratch);
    for (let i = 0; i < 4; i++) this.counts[i] = scratch[i]!;
  }

  sync(): void {
    if (this.state === 'active') this.read();
    const c = this.counts;
    const seen = this.seen;
    for (let d = 0; d < 2; d++) {
      const l = this.s.links[d];
      if (l === undefined) continue;
      l.bytes += c[2 * d]! - seen[2 * d]!;
      l.packets += c[2 * d + 1]! - seen[2 * d + 1]!;
      seen[2 * d] = c[2 * d]!;
      seen[2 * d + 1] = c[2 * d + 1]!;
    }
  }

  /** From the addon, once: both directions ended cleanly, or `code` hit socket `side`. */
  done(code: string | undefined, side: number): void {
    if (this.state !== 'active') return;
    this.read(); // final counts: kept in the addon after the fds are closed
    this.sync();
    this.state = 'done';
    this.endCode = code;
    if (code === undefined) {
      for (const l of this.s.links) l.ended = true; // both directions passed EOF on
      this.a.spliceEnded(undefined);
      this.b.spliceEnded(undefined);
      return;
    }
    const err = Object.assign(new Error(`splice: ${code}`), { code });
    const [failed, other] = side === 1 ? [this.b, this.a] : [this.a, this.b];
    failed.spliceEnded(err);
    other.spliceEnded(undefined);
  }

  /** The handover itself failed: end the session with an error. */
  abort(code: string): void {
    this.close();
    this.endCode = code;
    const err = Object.assign(new Error(`splice: ${code}`), { code });
    this.a.spliceEnded(err);
    this.b.spliceEnded(undefined);
  }

  close(reset = false): void {
    if (this.state !== 'active') return;
    this.read();
    this.sync();
    this.state = 'closed';
    this.handle.close(reset);
  }

  toJSON(): Record<string, unknown> {
    this.sync();
    return {
      state: this.state,
      since: new Date(this.since).toISOString(),
      ...(this.endCode !== undefined ? { error: this.endCode } : {}),
      kernel: {
        ingress: { bytes: this.counts[0], packets: this.counts[1] },
        egress: { bytes: this.counts[2], packets: this.counts[3] },
      },
    };
  }
}

/** Decides per session whether splicing may take over, and does the handover; a session hook (dataplane/hooks.ts). */
export class StreamSplicer implements Splicer, SessionHooks {
  readonly after: number;

  constructor(after?: number) {
    const env = Number(process.env.L7MP_SPLICE_AFTER);
    this.after = after ?? (Number.isFinite(env) && env >= 0 ? env : DEFAULT_SPLICE_AFTER);
  }

  /** Splicing is available in this process. */
  static create(): StreamSplicer | undefined {
    return spliceCtor() === undefined ? undefined : new StreamSplicer();
  }

  /** The session is linked: arm the handover if it could ever be spliced (never when a stage may be relinked). */
  onSessionLinked(s: Session): void {
    if (retriesOnDisconnect(s.retry) || s.links.length !== 2 || s.ingress.length > 0 || s.egress.length > 0) return;
    if (!isSpliceable(s.source.channel) || !isSpliceable(s.destination?.channel)) return;
    s.splicer = this;
    s.spliceAt = Math.max(1, this.after); // offered once a chunk has been counted; 0 is SPLICE_NEVER
  }

  /**
   * Hand the session over if both sockets allow it now. From Link.data, with
   * the chunk just read (counted, not forwarded); from Link.drain, without:
   * the moment a congested flow's writes have all reached the kernel.
   */
  offer(s: Session, link: Link, chunk: Uint8Array | undefined): boolean {
    const dir = link === s.links[0] ? 0 : link === s.links[1] ? 1 : -1;
    const a = s.source.channel;
    const b = s.destination?.channel;
    if (dir < 0 || s.status !== 'CONNECTED' || s.splice !== undefined || !isSpliceable(a) || !isSpliceable(b)) {
      s.spliceAt = SPLICE_NEVER;
      return false;
    }
    const heldA = a.spliceCheck();
    const heldB = heldA < 0 ? -1 : b.spliceCheck();
    if (heldA < 0 || heldB < 0) return false; // not quiescent now: offered again on a later chunk or drain
    const fdA = a.spliceFd();
    const fdB = b.spliceFd();
    if (fdA < 0 || fdB < 0) {
      s.spliceAt = SPLICE_NEVER;
      return false;
    }
    const inHand = chunk?.byteLength ?? 0;
    const Splice = spliceCtor()!;
    const path = new SpliceSession(s, a, b);
    let h: SpliceHandle;
    try {
      h = new Splice(fdA, fdB, (code, side) => path.done(code, side));
    } catch (err) {
      // EMFILE and the like: this session stays on the JavaScript path.
      s.spliceAt = SPLICE_NEVER;
      s.event('SPLICE', 'kernel splice unavailable, staying on the JavaScript path', (err as Error).message);
      return false;
    }
    // Everything read and not yet forwarded must fit in the pipes (it
    // normally does: one read is at most 64 KiB, a pipe 64-256 KiB).
    if (heldA + (dir === 0 ? inHand : 0) > h.space(0) || heldB + (dir === 1 ? inHand : 0) > h.space(1)
      || (chunk !== undefined && inHand > 0 && h.prime(dir as 0 | 1, chunk) !== inHand)) {
      h.close();
      return false; // nothing was taken from the channels: the JavaScript path goes on
    }
    // Point of no return: Node lets go of its copies of the fds; what they
    // had read goes into the pipes behind the chunk in hand.
    path.handle = h;
    s.splice = path;
    s.spliceAt = SPLICE_NEVER;
    // Both channels let go of their sockets whatever happens (no && short cut).
    const heldBytesA = a.spliceAttach(path);
    const heldBytesB = b.spliceAttach(path);
    const primed = primeAll(h, 0, heldBytesA) && primeAll(h, 1, heldBytesB);
    if (!primed) {
      path.abort('EIO'); // cannot happen with the space checked above; never lose bytes silently
      return true;
    }
    // The held bytes were read by Node but never passed a link, and the addon
    // counts only what it reads itself: count them here, or the session's
    // counters come up short by what was in flight at the handover.
    countHeld(s.links[0]!, heldBytesA);
    countHeld(s.links[1]!, heldBytesB);
    s.event('SPLICE', 'kernel splice took over the forwarding', {
      after: { ingress: s.links[0]!.bytes, egress: s.links[1]!.bytes },
      on: chunk === undefined ? 'drain' : 'data',
      held: heldA + heldB + inHand,
    });
    h.start();
    return true;
  }
}

/** Register the splice fast path on the gateway's session hooks, when this process has it. */
export function setupSplice(gw: Gateway): void {
  const splicer = StreamSplicer.create();
  if (splicer !== undefined) gw.hooks.add(splicer);
}

function countHeld(l: Link, chunks: Uint8Array[] | undefined): void {
  for (const c of chunks ?? []) {
    if (c.byteLength === 0) continue;
    l.bytes += c.byteLength;
    l.packets++;
  }
}

function primeAll(h: SpliceHandle, dir: 0 | 1, chunks: Uint8Array[] | undefined): boolean {
  if (chunks === undefined) return false;
  for (const c of chunks) if (c.byteLength > 0 && h.prime(dir, c) !== c.byteLength) return false;
  return true;
}
