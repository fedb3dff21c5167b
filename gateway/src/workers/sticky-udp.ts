// Sticky UDP flows across a worker's death and restart (docs/workers.md 1(b)).
//
// Every worker binds a shared UDP listener's port with SO_REUSEPORT, and the
// kernel picks a worker per datagram by hash over the group's live sockets:
// when one worker dies (or comes back) the count changes and most flows of
// the *other* workers move to another worker, where each becomes a new
// session with a new upstream port. The main process, which outlives every
// worker, attaches a selector program to each shared UDP listener's group
// (offload/reuseport_flows.bpf.c) that gives each worker a fixed slot, so a
// flow stays on its worker while that worker lives; a dead worker's flows
// are placed on the others and stay there after it comes back.
//
// Workers report each shared UDP socket they bind (its fd number); the
// native side takes a duplicate with pidfd_getfd, slots it and closes the
// duplicate (native/bpf/src/reuseport.cc). Without the means (no bpf addon or
// object, no CAP_BPF/CAP_SYS_ADMIN, no ptrace access to the workers, an old
// kernel, L7MP_REUSEPORT_BPF=off) the kernel's own spreading applies and the
// reason is logged once.

import path from 'node:path';
import { loadBpf, objectPath } from '../fastpath/offload/native.js';
import type { Logger } from '../observe/log.js';

/** A worker bound a shared UDP socket (workers/protocol.ts `udpShared`). */
export interface SharedUdpReport {
  readonly fd: number;
  readonly address: string;
  readonly port: number;
}

/** One loaded selector and its maps (native/bpf/src/reuseport.cc). */
export interface ReuseportGroup {
  /** Put worker `pid`'s socket `fd` into `slot` (worker index - 1) and attach the selector; throws with `errno`. */
  add(pid: number, fd: number, slot: number, address: string, port: number): void;
  /** Slots that hold a socket: the kernel empties a slot when its socket closes. */
  live(): number;
  /** The kernel's own pick applies again; the program and maps are released. */
  close(): void;
}

/** Load a selector; `shareWith`: an open one whose record of displaced flows it shares (one table for every listener). */
export type OpenGroup = (workers: number, shareWith?: ReuseportGroup) => ReuseportGroup;

/** How often groups whose sockets are all gone (a listener deleted everywhere) are released. */
const SWEEP_MS = 30_000;
/** add() errors that concern one report only: the worker is gone, or the fd is no longer that socket. */
const ESRCH = 3;
const EBADF = 9;

function selectorObject(): string {
  return process.env.L7MP_REUSEPORT_OBJECT ?? path.join(path.dirname(objectPath()), 'reuseport_flows.bpf.o');
}

/** Loads the selector unless L7MP_REUSEPORT_BPF=off; throws why it cannot. */
export function openSelector(workers: number, shareWith?: ReuseportGroup): ReuseportGroup {
  if (process.env.L7MP_REUSEPORT_BPF === 'off') throw new Error('L7MP_REUSEPORT_BPF=off');
  return loadSelector(workers, shareWith);
}

/** Loads the selector from the bpf addon; throws why it cannot (no addon or object, no privilege, an old kernel). */
export function loadSelector(workers: number, shareWith?: ReuseportGroup): ReuseportGroup {
  const loaded = loadBpf(selectorObject());
  if (!loaded.ok) throw new Error(loaded.reason);
  const Group = (loaded.addon as unknown as { ReuseportGroup?: new (obj: string, workers: number, shareWith?: ReuseportGroup) => ReuseportGroup }).ReuseportGroup;
  if (Group === undefined) throw new Error('the bpf addon predates ReuseportGroup: npm run build:native');
  return new Group(loaded.objectPath, workers, shareWith);
}

export class StickyUdp {
  /** One selector per shared address:port (one reuseport group each). */
  private readonly groups = new Map<string, ReuseportGroup>();
  /** Why flows are not sticky; set once, logged once. */
  private off: string | undefined;
  private sweep: NodeJS.Timeout | undefined;
  /** The gateway is stopping: a report that arrives now opens nothing. */
  private closed = false;

  constructor(private readonly workers: number, private readonly log: Logger, private readonly open: OpenGroup = openSelector) {}

  /** Whether the selector is in use (undefined until the first shared UDP socket). */
  get active(): boolean | undefined {
    return this.off !== undefined ? false : this.groups.size > 0 ? true : undefined;
  }

  /** Worker `index` (1-based, process `pid`) bound a shared UDP socket. */
  add(index: number, pid: number, r: SharedUdpReport): void {
    if (this.off !== undefined || this.closed) return;
    const key = `${r.address}:${r.port}`;
    let g = this.groups.get(key);
    try {
      if (g === undefined) {
        g = this.open(this.workers, this.groups.values().next().value);
        this.groups.set(key, g);
        if (this.groups.size === 1) this.log.info({ listener_address: key }, 'UDP flows stay on their worker across worker restarts (SO_REUSEPORT selector)');
        this.sweep ??= setInterval(() => this.releaseEmpty(), SWEEP_MS).unref();
      }
      g.add(pid, r.fd, index - 1, r.address, r.port);
    } catch (err) {
      const errno = (err as { errno?: number }).errno;
      if (g !== undefined && (errno === ESRCH || errno === EBADF)) {
        // That worker died, or closed that socket, before we got to it: its next socket reports again.
        this.log.verbose({ worker: index, listener_address: key, err: (err as Error).message }, 'a shared UDP socket went away before it was slotted');
        return;
      }
      this.disable((err as Error).message);
    }
  }

  /** Release every selector for good: the kernel's own spreading applies to the groups. */
  close(): void {
    this.closed = true;
    if (this.sweep !== undefined) clearInterval(this.sweep);
    this.sweep = undefined;
    for (const g of this.groups.values()) g.close();
    this.groups.clear();
  }

  /** A half-working selector would starve the sockets it cannot slot: every group goes back to the kernel's pick. */
  private disable(reason: string): void {
    this.off = reason;
    this.close();
    this.log.warn({ reason }, 'UDP flows are not sticky across worker restarts: the kernel spreads them over the live workers by hash, so a worker\'s death or restart moves most other workers\' flows (a new session each); see docs/workers.md');
  }

  /** Release the selectors of groups whose sockets are all closed (their listener is gone from every worker). */
  releaseEmpty(): void {
    for (const [key, g] of this.groups) {
      if (g.live() > 0) continue;
      g.close();
      this.groups.delete(key);
    }
  }
}
