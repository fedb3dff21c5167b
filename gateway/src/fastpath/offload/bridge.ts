// The bridge between sessions and the kernel's flow table.
//
// A session hook (dataplane/hooks.ts): a linked session is checked once for
// eligibility (eligibility.ts). An eligible one is offloaded once both
// directions have carried a datagram in user space: the server has answered
// (so the flow is real), and the gateway's own sends have resolved the
// neighbours. Then two entries go into the table, one per direction. From
// that moment the gateway sees no packet of the flow, and:
//  - counters: sync() reads the kernel's per-flow counts and adds what is new
//    to the session's links, so session counters, Prometheus metrics and the
//    access log include the kernel's traffic (Session.counters() calls it);
//  - idle timeout: the UDP listener's idle sweep asks kernelActivity(), so a
//    flow busy in the kernel is not idle;
//  - end: onSessionUnlinking() (session end, API delete, a stage closing) reads the
//    final counts and removes both entries; later packets go to user space,
//    which has no session for them any more (or starts a new one).
// An entry evicted from the LRU table (more flows than it holds) shows up as
// a missing entry on the next read: the session then stays in user space.

import type { Gateway } from '../../core/gateway.js';
import type { SessionHooks } from '../../dataplane/hooks.js';
import type { FastPath, Session } from '../../dataplane/session.js';
import type { Logger } from '../../observe/log.js';
import { sessionFlows, type SessionFlows } from './eligibility.js';
import type { BpfProgram, FlowCounters } from './native.js';

/**
 * How often sessions waiting for their first two-way exchange are checked:
 * every 50 ms during their first 2 s, then once a second, so that many
 * one-way flows (which never qualify) cost little.
 */
const PENDING_POLL_MS = 50;
const FRESH_MS = 2000;
const SLOW_EVERY = 20;

type State = 'pending' | 'kernel' | 'user' | 'released';

interface Count { bytes: number; packets: number }

class SessionKernel implements FastPath {
  state: State = 'pending';
  reason: string | undefined;
  flows: SessionFlows | undefined;
  /** The kernel's counts as last folded into the links. */
  readonly ingress: Count = { bytes: 0, packets: 0 };
  readonly egress: Count = { bytes: 0, packets: 0 };
  private activitySeen = 0;

  constructor(private readonly s: Session, private readonly bridge: OffloadBridge) {}

  get active(): boolean {
    return this.state === 'kernel';
  }

  sync(): void {
    if (this.state !== 'kernel' || this.flows === undefined) return;
    let a: FlowCounters | null;
    let b: FlowCounters | null;
    try {
      a = this.bridge.program.read(this.flows.ingress.key);
      b = this.bridge.program.read(this.flows.egress.key);
    } catch (err) {
      this.bridge.fallBack(this, `reading the kernel counters failed: ${(err as Error).message}`);
      return;
    }
    if (a) this.fold(this.ingress, a, 0);
    if (b) this.fold(this.egress, b, 1);
    if (!a || !b) this.bridge.fallBack(this, 'evicted from the kernel flow table');
  }

  private fold(seen: Count, now: FlowCounters, link: number): void {
    const l = this.s.links[link];
    if (l !== undefined) {
      l.bytes += now.bytes - seen.bytes;
      l.packets += now.packets - seen.packets;
    }
    seen.bytes = now.bytes;
    seen.packets = now.packets;
  }

  /** For the UDP idle sweep: kernel-forwarded packets since the last call. */
  readonly activity = (): number => {
    this.sync();
    const total = this.ingress.packets + this.egress.packets;
    const d = total - this.activitySeen;
    this.activitySeen = total;
    return d;
  };

  toJSON(): Record<string, unknown> {
    return {
      state: this.state,
      ...(this.reason !== undefined ? { reason: this.reason } : {}),
      kernel: { ingress: { ...this.ingress }, egress: { ...this.egress } },
    };
  }
}

/** Registered as a session hook (dataplane/hooks.ts) by setupOffload. */
export class OffloadBridge implements SessionHooks {
  /** Pending sessions, with when they became pending (checked every tick while fresh). */
  private readonly pending = new Map<Session, number>();
  /** Pending for longer than FRESH_MS: checked every SLOW_EVERY ticks. */
  private readonly slow = new Set<Session>();
  private ticks = 0;
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;

  /** `owner`: this process's worker index (0 without workers), recorded in every entry it installs. */
  constructor(private readonly gw: Gateway, readonly program: BpfProgram, private readonly log: Logger, private readonly owner = 0) {}

  /** The session is linked (or a stage was relinked): offload it once eligible. */
  onSessionLinked(s: Session): void {
    if (this.stopped || s.status !== 'CONNECTED') return;
    let k = s.kernel as SessionKernel | undefined;
    if (k === undefined) {
      k = new SessionKernel(s, this);
      s.kernel = k;
    }
    if (k.state === 'kernel') return;
    const flows = sessionFlows(this.gw, s);
    if (typeof flows === 'string') {
      const why = flows;
      k.state = 'user';
      k.reason = why;
      this.log.verbose({ session: s.name, reason: why }, 'session not offloaded');
      return;
    }
    k.state = 'pending';
    k.reason = undefined;
    this.slow.delete(s);
    this.pending.set(s, Date.now());
    this.timer ??= setInterval(() => this.poll(), PENDING_POLL_MS).unref();
  }

  /** Both directions established: a datagram each way went through user space. Installs it; true when done with it. */
  private check(s: Session): boolean {
    if (s.status !== 'CONNECTED') return true;
    if ((s.links[0]?.packets ?? 0) > 0 && (s.links[1]?.packets ?? 0) > 0) {
      this.install(s);
      return true;
    }
    return false;
  }

  private poll(): void {
    const now = Date.now();
    for (const [s, since] of this.pending) {
      if (this.check(s)) this.pending.delete(s);
      else if (now - since > FRESH_MS) {
        this.pending.delete(s);
        this.slow.add(s);
      }
    }
    if (++this.ticks % SLOW_EVERY === 0) {
      for (const s of this.slow) if (this.check(s)) this.slow.delete(s);
    }
    if (this.pending.size === 0 && this.slow.size === 0 && this.timer !== undefined) {
      clearInterval(this.timer);
      this.timer = undefined;
    }
  }

  private install(s: Session): void {
    const k = s.kernel as SessionKernel;
    const flows = sessionFlows(this.gw, s); // again: stages may have changed meanwhile
    if (typeof flows === 'string') {
      k.state = 'user';
      k.reason = flows;
      return;
    }
    try {
      this.program.add(flows.ingress.key, { ...flows.ingress.rewrite, owner: this.owner });
      this.program.add(flows.egress.key, { ...flows.egress.rewrite, owner: this.owner });
    } catch (err) {
      this.removeFlows(flows);
      k.state = 'user';
      k.reason = `cannot add the kernel flows: ${(err as Error).message}`;
      this.log.warn({ session: s.name, err: (err as Error).message }, 'session offload failed');
      return;
    }
    k.flows = flows;
    k.ingress.bytes = k.ingress.packets = k.egress.bytes = k.egress.packets = 0;
    k.state = 'kernel';
    flows.source.kernelActivity = k.activity;
    s.event('OFFLOAD', 'UDP forwarding moved to the kernel', { ingress: flows.ingress, egress: flows.egress });
    this.log.verbose({ session: s.name, ingress: flows.ingress, egress: flows.egress }, 'session offloaded to the kernel');
  }

  private removeFlows(flows: SessionFlows): void {
    for (const f of [flows.ingress, flows.egress]) {
      try { this.program.remove(f.key); } catch { /* already gone */ }
    }
  }

  /** Before stages close or change: take the session out of the kernel; its final counts are folded first. */
  onSessionUnlinking(s: Session): void {
    this.pending.delete(s);
    this.slow.delete(s);
    const k = s.kernel as SessionKernel | undefined;
    if (k === undefined) return;
    if (k.state === 'kernel') {
      k.sync();
      this.detachFlows(k);
      k.state = 'released';
      s.event('OFFLOAD', 'UDP forwarding back in user space', { kernel: { ingress: { ...k.ingress }, egress: { ...k.egress } } });
    } else if (k.state === 'pending') {
      k.state = 'released';
    }
  }

  /** The kernel lost the flow (or a read failed): the session goes on in user space. */
  fallBack(k: SessionKernel, reason: string): void {
    if (k.state !== 'kernel') return;
    this.detachFlows(k);
    k.state = 'user';
    k.reason = reason;
    this.log.info({ reason }, 'offloaded session back in user space');
  }

  private detachFlows(k: SessionKernel): void {
    if (k.flows === undefined) return;
    this.removeFlows(k.flows);
    if (k.flows.source.kernelActivity === k.activity) k.flows.source.kernelActivity = undefined;
  }

  /** At shutdown, after the sessions ended. */
  stop(): void {
    this.stopped = true;
    if (this.timer !== undefined) clearInterval(this.timer);
    this.timer = undefined;
    for (const s of this.gw.sessions.values()) this.onSessionUnlinking(s);
  }
}
