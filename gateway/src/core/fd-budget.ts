// The file-descriptor budget: new data-plane flows stop well before the
// process runs out of descriptors, so that the REST API, the admin listener
// and live sessions (a reconnect, a log file) always find one.
//
// Why it matters beyond "new flows fail": at EMFILE the two kinds of
// listener behave very differently. libuv (node:net) keeps a spare
// descriptor for exactly this case (uv__emfile_trick): it closes the spare,
// accepts the pending connection, closes it and re-opens the spare, so a
// net listener resets the client and stays calm. uWebSockets.js (uSockets)
// has no such trick: its accept loop stops at the first failing accept()
// ("Todo: start timer here" in loop.c) and leaves the connection in the
// backlog; the listen socket stays readable in level-triggered epoll, so the
// loop wakes again at once and spins at ~100 % CPU, and the REST API on it is
// unreachable until descriptors come back. So the budget refuses data-plane
// flows while `limit - reserve` descriptors are in use: the reserve is never
// reached by data-plane load, and uWS never sees EMFILE from it.
//
// The limit is RLIMIT_NOFILE. Node raises the soft limit to the hard limit
// at start (as nginx's worker_rlimit_nofile would), so the soft limit read
// here is already the highest the process may have. The usage is sampled
// from /proc/self/fd at most every SAMPLE_MS, not per packet; between samples
// each admitted data-plane session is assumed to take FDS_PER_SESSION more
// (and each ended one to give them back), so a burst between two samples
// cannot overshoot. Linux 6.2 and later report the count as the size of
// /proc/self/fd (one stat, a few µs at any count); older kernels list the
// directory, and then samples are spaced out as the count grows.

import fs from 'node:fs';

/**
 * At most one /proc/self/fd count per this many ms. Where the count needs a
 * directory scan (kernels before 6.2), at most one per (descriptors open / 20) ms
 * when that is longer: a scan costs up to ~0.7 µs per descriptor (measured on a
 * loaded machine), so the scans never take more than ~1.5 % of a core; at 100k
 * open descriptors one runs every 5 s and the per-session estimate carries the rest.
 */
export const SAMPLE_MS = 100;
/** Descriptors a data-plane session is assumed to take until the next sample (a client and an upstream socket). */
export const FDS_PER_SESSION = 2;

/** The default reserve: an eighth of the limit, at least 64 and at most 1024 descriptors. */
export function defaultReserve(limit: number): number {
  return Math.max(64, Math.min(1024, Math.floor(limit / 8)));
}

/** RLIMIT_NOFILE's soft limit from /proc/self/limits; undefined where there is none (not Linux) or it is unlimited. */
export function readFdLimit(file = '/proc/self/limits'): number | undefined {
  try {
    const line = fs.readFileSync(file, 'utf8').split('\n').find((l) => l.startsWith('Max open files'));
    const soft = line?.slice('Max open files'.length).trim().split(/\s+/)[0];
    const n = Number(soft);
    return Number.isInteger(n) && n > 0 ? n : undefined;
  } catch {
    return undefined;
  }
}

/** Whether stat() of /proc/self/fd gives the count (Linux >= 6.2); unknown until the first count. */
let statCounts: boolean | undefined;

/**
 * Descriptors open now, or undefined if they cannot be counted (no /proc).
 * EMFILE itself counts as "all of them" (`limit`), or as unknown without one.
 */
function countOpenFds(limit?: number): number | undefined {
  try {
    if (statCounts !== false) {
      // The size is the number of open descriptors; 0 where the kernel does not report it (a process always has some).
      const n = fs.statSync('/proc/self/fd').size;
      statCounts = n > 0;
      if (statCounts) return n;
    }
    return fs.readdirSync('/proc/self/fd').length - 1; // minus the descriptor readdir itself held
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    return code === 'EMFILE' || code === 'ENFILE' ? limit : undefined;
  }
}

/**
 * The count for a metric (process_open_fds) that scrapers read at their own
 * rate: fresh on every read where a stat gives it; where it needs a listing,
 * reused for the same spacing as the budget's samples, so that scrapes
 * cannot list a large directory back to back.
 */
export class OpenFdCount {
  private last: { n: number; at: number } | undefined;

  constructor(
    private readonly count: () => number | undefined = () => countOpenFds(),
    private readonly byStat: () => boolean = () => statCounts === true,
    private readonly now: () => number = Date.now,
  ) {}

  read(): number | undefined {
    const t = this.now();
    const l = this.last;
    if (l !== undefined && !this.byStat() && t - l.at < Math.max(SAMPLE_MS, l.n / 20)) return l.n;
    const n = this.count();
    if (n !== undefined) this.last = { n, at: t };
    return n;
  }
}

/**
 * Where the budget keeps its sample, its estimate and its ceiling: cells of a
 * Float64Array that the addon's Forwarder (native/sockets/src/forward.cc)
 * reads and adds its own sessions to, so that both decide from one count.
 */
export const FD_SAMPLED = 2;
export const FD_DELTA = 3;
export const FD_CEILING = 4;

export class FdBudget {
  private sampledAt = -Infinity;

  /**
   * `limit` undefined: the budget is off (no /proc or no limit).
   * `reserve`: descriptors kept for the control plane and live sessions.
   * `cells`: shared counters (FD_SAMPLED, FD_DELTA, FD_CEILING; -1: off).
   */
  constructor(
    readonly limit: number | undefined,
    readonly reserve: number,
    private readonly now: () => number = Date.now,
    private readonly count: (limit: number) => number | undefined = countOpenFds,
    private readonly cells: Float64Array = new Float64Array(FD_CEILING + 1),
  ) {
    cells[FD_CEILING] = this.ceiling ?? -1;
  }

  private get sampled(): number {
    return this.cells[FD_SAMPLED]!;
  }

  /** Data-plane sessions opened minus ended since the last sample. */
  private get delta(): number {
    return this.cells[FD_DELTA]!;
  }

  /** The descriptors data-plane flows may use (limit - reserve), or undefined when off. */
  get ceiling(): number | undefined {
    return this.limit === undefined ? undefined : Math.max(0, this.limit - this.reserve);
  }

  /** The estimated usage now (sampled at most every SAMPLE_MS). */
  usage(): number {
    const t = this.now();
    // A scan's cost grows with the count, a stat's does not.
    const every = this.count === countOpenFds && statCounts === true ? SAMPLE_MS : Math.max(SAMPLE_MS, this.sampled / 20);
    if (this.limit !== undefined && t - this.sampledAt >= every) {
      const n = this.count(this.limit);
      if (n !== undefined) {
        this.cells[FD_SAMPLED] = n;
        this.cells[FD_DELTA] = 0;
      }
      this.sampledAt = t;
    }
    return this.sampled + this.delta * FDS_PER_SESSION;
  }

  /** Whether a new data-plane flow would eat into the reserve. */
  exhausted(): boolean {
    const c = this.ceiling;
    return c !== undefined && this.usage() >= c;
  }

  opened(): void {
    this.cells[FD_DELTA]++;
  }

  closed(): void {
    this.cells[FD_DELTA]--;
  }
}
