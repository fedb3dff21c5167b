// The supervisor: forks the data-plane workers (workers/entry.ts), applies
// every config change to all of them or to none (prepare, then commit or
// abort; workers/protocol.ts), restarts a worker that dies with the current
// config, and answers for them: readiness and the session list. It runs in
// the main process beside the REST API and never blocks it on a worker: every
// wait on a worker is bounded.

import { fork, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { GatewayError } from '../core/errors.js';
import type { Logger } from '../observe/log.js';
import { StickyUdp } from './sticky-udp.js';
import type { SharedFlowTable } from '../fastpath/offload/shared.js';
import { METRICS_POLL_MS, WorkerMetricsLedger, type MetricJson } from './metrics-ledger.js';
import { WORKER_COUNT_ENV, WORKER_INDEX_ENV, type FromWorker, type ToWorker, type WorkerConfig, type WorkerOp } from './protocol.js';

const ENTRY = fileURLToPath(new URL('./entry.js', import.meta.url));
/** How long a worker may take to prepare or commit (binding, building) before the change fails. */
const STEP_TIMEOUT_MS = 10_000;
const SESSIONS_TIMEOUT_MS = 2000;
const RESTART_MIN_MS = 100;
/** A worker that keeps failing is retried at most this often (as a crash-loop back-off does), with its reason in /ready. */
const RESTART_MAX_MS = 30_000;
/**
 * REST changes kept to bring a restarted worker to the current config (the
 * static config, then these in order). At COMPACT_AT a snapshot of the graph
 * replaces them (workers/snapshot.ts); MAX_OPS only bounds a supervisor
 * without one: past it a restart would miss changes, so they are refused.
 */
const COMPACT_AT = 1_000;
const MAX_OPS = 10_000;

interface Slot {
  readonly index: number;
  child: ChildProcess | undefined;
  /** The generation this worker runs; -1: none (starting, restarting). */
  committed: number;
  readonly waiters: Set<(m: FromWorker) => void>;
  startedAt: number;
  backoff: number;
  /** Why its last start or restart failed, for /ready; cleared when it runs the current config. */
  lastError: string | undefined;
}

export class Supervisor {
  private readonly slots: Slot[];
  /** The last generation handed out (prepares of refused changes take one too). */
  private gen = 0;
  /** The generation of the configuration in force: what /ready asks every worker to run. */
  private current = 0;
  private stopping = false;
  private seq = 0;
  /** The REST changes committed since the start (or the last snapshot), replayed into a restarted worker. */
  private readonly ops: WorkerOp[] = [];
  /** The control plane's graph as a worker config (workers/start.ts); without it the log only grows, up to MAX_OPS. */
  snapshot: (() => WorkerConfig) | undefined;
  /** Whether the control plane still has a listener or cluster (workers/start.ts): the ledger's bases retire the others' series. */
  exists: ((kind: 'listener' | 'cluster', name: string) => boolean) | undefined;
  /** How long the log may grow before a snapshot replaces it; a setting for tests. */
  compactAt = COMPACT_AT;
  /** One REST change at a time: prepare holds it until commit or abort. */
  private opLock: Promise<void> = Promise.resolve();
  private releaseOp: (() => void) | undefined;
  private pendingOp: WorkerOp | undefined;
  /** Keeps each UDP flow on its worker while that worker lives. */
  readonly sticky: StickyUdp;
  /** Each worker's last metrics, and what dead workers counted (workers/metrics-ledger.ts). */
  private readonly ledger = new WorkerMetricsLedger();
  private pollTimer: NodeJS.Timeout | undefined;

  /** `flows`: the offload's flow table, handed to every worker (fastpath/offload/shared.ts). */
  constructor(count: number, private config: WorkerConfig, private readonly log: Logger, private readonly flows?: SharedFlowTable) {
    this.slots = Array.from({ length: count }, (_, i) => ({ index: i + 1, child: undefined, committed: -1, waiters: new Set(), startedAt: 0, backoff: RESTART_MIN_MS, lastError: undefined }));
    this.sticky = new StickyUdp(count, log);
  }

  /** Fork every worker and apply the first config; throws (with the worker's error) if one cannot. */
  async start(): Promise<void> {
    for (const s of this.slots) this.spawn(s);
    await this.change(this.config);
    // Between scrapes too, so that a worker's death loses at most this much of its counts.
    this.pollTimer = setInterval(() => void this.metrics(true), METRICS_POLL_MS).unref();
    this.log.info({ workers: this.slots.length, worker_pids: this.slots.map((s) => s.child?.pid) }, 'data-plane workers started');
  }

  /** Apply a config to every worker or to none. */
  async change(config: WorkerConfig): Promise<void> {
    const gen = ++this.gen;
    const live = this.slots.filter((s) => s.child !== undefined);
    const prepared = await Promise.allSettled(live.map((s) => this.step(s, { type: 'prepare', gen, config }, 'prepared', gen)));
    const failed = prepared.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed !== undefined) {
      for (const s of live) this.post(s, { type: 'abort', gen });
      throw failed.reason;
    }
    this.config = config;
    this.current = gen;
    await Promise.all(live.map(async (s) => {
      await this.step(s, { type: 'commit', gen }, 'committed', gen);
      s.committed = gen;
    }));
  }

  /** Prepare a REST change in every live worker; resolves with its generation, rejects (aborted everywhere) if one cannot. */
  async prepareOp(op: WorkerOp): Promise<number> {
    const prev = this.opLock;
    this.opLock = new Promise((r) => { this.releaseOp = r; });
    await prev;
    if (this.ops.length >= MAX_OPS) {
      this.releaseOp?.();
      throw new GatewayError('NOT_SUPPORTED', `more than ${MAX_OPS} changes since the start: a worker gateway replays every change into a worker it restarts, and keeps at most this many; restart it with the objects of GET /api/v1/config in its config file (and the file's own admin section)`);
    }
    const gen = ++this.gen;
    const live = this.slots.filter((s) => s.child !== undefined);
    const prepared = await Promise.allSettled(live.map((s) => this.step(s, { type: 'prepare', gen, op }, 'prepared', gen)));
    const failed = prepared.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed !== undefined) {
      this.abortOp(gen);
      throw failed.reason;
    }
    this.pendingOp = op;
    return gen;
  }

  /** The main process applied the change: every worker applies it; one that cannot is restarted with the current config. */
  async commitOp(gen: number): Promise<void> {
    try {
      if (this.pendingOp !== undefined) this.ops.push(this.pendingOp);
      this.pendingOp = undefined;
      this.current = gen;
      // The main process has applied this change: its graph is the configuration in force.
      if (this.snapshot !== undefined && this.ops.length >= this.compactAt) this.compact(this.snapshot);
      await Promise.all(this.slots.filter((s) => s.child !== undefined).map(async (s) => {
        try {
          await this.step(s, { type: 'commit', gen }, 'committed', gen);
          s.committed = gen;
        } catch (err) {
          this.log.error({ worker: s.index, err: (err as Error).message }, 'worker cannot apply a change the control plane accepted; restarting it with the current configuration');
          s.child?.kill('SIGKILL');
        }
      }));
    } finally {
      this.releaseOp?.();
    }
  }

  /**
   * A restarted worker starts from the graph as it is now, not from the
   * static config and every change since. A restart already under way keeps
   * what it copied, and gets the changes after it posted as before.
   */
  private compact(snapshot: () => WorkerConfig): void {
    const replaced = this.ops.length;
    this.config = snapshot();
    this.ops.length = 0;
    this.log.info({ changes: replaced, listeners: (this.config.objects.listeners as unknown[]).length }, 'worker restarts now start from a snapshot of the current configuration instead of replaying the changes since the last one');
  }

  /** The main process refused the change: every worker drops it. */
  abortOp(gen: number): void {
    this.pendingOp = undefined;
    for (const s of this.slots) this.post(s, { type: 'abort', gen });
    this.releaseOp?.();
  }

  /** Why the data plane is not ready: a worker that has not applied the current config. */
  readinessReasons(): string[] {
    return this.slots.filter((s) => s.committed !== this.current).map((s) => `worker ${s.index} has not applied the current configuration${s.lastError !== undefined ? ` (last attempt: ${s.lastError})` : ''}`);
  }

  /** Every worker's sessions; a worker that does not answer in time is left out and logged. */
  async sessions(): Promise<unknown[]> {
    const id = ++this.seq;
    const lists = await Promise.allSettled(this.slots.filter((s) => s.child !== undefined).map((s) =>
      this.request(s, { type: 'sessions', id }, (m) => m.type === 'sessions' && m.id === id, SESSIONS_TIMEOUT_MS)));
    const out: unknown[] = [];
    for (const r of lists) {
      if (r.status === 'fulfilled' && r.value.type === 'sessions') out.push(...r.value.sessions);
      else if (r.status === 'rejected') this.log.warn({ err: (r.reason as Error).message }, 'a worker did not list its sessions');
    }
    return out;
  }

  /**
   * Every live worker's metrics (prom-client JSON), plus what the dead
   * workers counted before they died (so no counter goes down); a worker that
   * does not answer in time is logged and its last copy stands in. `poll`: the periodic
   * refresh of the ledger (its part only, and a worker that does not
   * answer is not logged every interval: the next scrape logs it).
   */
  async metrics(poll = false): Promise<unknown[][]> {
    const id = ++this.seq;
    const asked = this.slots.filter((s) => s.child !== undefined).map((s) => ({ s, child: s.child }));
    const lists = await Promise.allSettled(asked.map(({ s, child }) =>
      this.request(s, { type: 'metrics', id, ...(poll ? { ledger: true } : {}) }, (m) => m.type === 'metrics' && m.id === id, SESSIONS_TIMEOUT_MS).then((m) => {
        // Recorded before a later exit of this child is handled (that exit folds this copy).
        if (m.type === 'metrics' && s.child === child) this.ledger.record(s.index, m.metrics as MetricJson[]);
        return m;
      })));
    const out: unknown[][] = [];
    lists.forEach((r, i) => {
      const { s, child } = asked[i]!;
      // Died meanwhile: its copy is in the base already, so its answer would count twice.
      if (s.child !== child) return;
      if (r.status === 'fulfilled' && r.value.type === 'metrics') return void out.push(r.value.metrics);
      if (!poll) this.log.warn({ worker: s.index, err: r.status === 'rejected' ? (r.reason as Error).message : 'no metrics' }, 'a worker did not hand over its metrics; its last copy stands in');
      // Its last copy keeps its counters in the sum (stale, but never lower).
      const last = this.ledger.last(s.index);
      if (last !== undefined) out.push(last);
    });
    if (poll && this.exists !== undefined) {
      const dropped = this.ledger.retire(this.exists);
      if (dropped > 0) this.log.info({ series: dropped }, 'metrics: dead workers\' series of deleted listeners and clusters retired');
    }
    return [...out, ...this.ledger.bases()];
  }

  /**
   * One session, asked of the worker its name says owns it (`w<i>-`): one
   * lookup in one worker, not every worker's whole list.
   */
  async session(name: string): Promise<unknown> {
    const { s, inner } = this.owner(name);
    const id = ++this.seq;
    const r = await this.request(s, { type: 'session', id, name: inner }, (x) => x.type === 'sessions' && x.id === id, SESSIONS_TIMEOUT_MS);
    const found = r.type === 'sessions' ? r.sessions[0] : undefined;
    if (found === undefined) throw new GatewayError('NOT_FOUND', 'No such session');
    return found;
  }

  /** The live worker a session name (`w<i>-<name in the worker>`) belongs to, or NOT_FOUND. */
  private owner(name: string): { s: Slot; inner: string } {
    const m = /^w(\d+)-(.+)$/.exec(name);
    const s = m ? this.slots[Number(m[1]) - 1] : undefined;
    if (m === null || s?.child === undefined) throw new GatewayError('NOT_FOUND', 'No such session');
    return { s, inner: m[2]! };
  }

  async deleteSession(name: string): Promise<void> {
    const { s, inner } = this.owner(name);
    const id = ++this.seq;
    const r = await this.request(s, { type: 'deleteSession', id, name: inner }, (x) => x.type === 'deleted' && x.id === id, SESSIONS_TIMEOUT_MS);
    if (r.type === 'deleted' && r.error !== undefined) throw new GatewayError(r.error.code as ConstructorParameters<typeof GatewayError>[0], r.error.message);
  }

  /** Every live worker's object graph, by index; a worker that does not answer in time is left out. */
  async graphs(): Promise<Record<string, unknown>[]> {
    const id = ++this.seq;
    const lists = await Promise.allSettled(this.slots.filter((s) => s.child !== undefined).map((s) =>
      this.request(s, { type: 'graph', id }, (m) => m.type === 'graph' && m.id === id, SESSIONS_TIMEOUT_MS)));
    return lists.flatMap((r) => (r.status === 'fulfilled' && r.value.type === 'graph' ? [r.value.graph] : []));
  }

  /** Hand a message to every live worker, waiting for nothing. */
  broadcast(msg: ToWorker): void {
    for (const s of this.slots) this.post(s, msg);
  }

  /** Worker pids, by index (tests and the log). */
  pids(): (number | undefined)[] {
    return this.slots.map((s) => s.child?.pid);
  }

  /**
   * SIGTERM every worker: each drains its sessions for `drainMs` (its own
   * drain_timeout). The gateway drains as one: a worker whose sessions have
   * ended keeps its connections (a request on a kept-alive one gets 503)
   * until every worker has drained or exited, then all are released to stop.
   * One still running well past the drain is killed.
   */
  async stop(drainMs = 0): Promise<void> {
    this.stopping = true;
    this.sticky.close();
    clearInterval(this.pollTimer);
    const pending = new Set<Slot>();
    const settle = (s: Slot) => {
      if (!pending.delete(s) || pending.size > 0) return;
      for (const o of this.slots) this.post(o, { type: 'release' });
    };
    await Promise.all(this.slots.map((s) => new Promise<void>((resolve) => {
      const c = s.child;
      if (c === undefined || c.exitCode !== null || c.signalCode !== null) return resolve();
      pending.add(s);
      const drained = (m: FromWorker) => { if (m.type === 'drained') settle(s); };
      const t = setTimeout(() => c.kill('SIGKILL'), drainMs + STEP_TIMEOUT_MS).unref();
      c.on('message', drained);
      c.once('exit', () => { clearTimeout(t); c.off('message', drained); settle(s); resolve(); });
      c.kill('SIGTERM');
    })));
  }

  private spawn(s: Slot): ChildProcess {
    const f = this.flows;
    const child = fork(ENTRY, [], {
      env: { ...process.env, [WORKER_INDEX_ENV]: String(s.index), [WORKER_COUNT_ENV]: String(this.slots.length), ...f?.env(s.index) },
      stdio: ['ignore', 'inherit', 'inherit', 'ipc', ...(f !== undefined ? [f.stdio] : [])],
    });
    s.child = child;
    s.committed = -1;
    s.startedAt = Date.now();
    child.on('message', (m: FromWorker) => {
      if (m.type === 'udpShared') this.sticky.add(s.index, child.pid!, m);
      for (const w of [...s.waiters]) w(m);
    });
    child.on('exit', (code, signal) => this.exited(s, child, code, signal));
    child.on('error', (err) => this.log.warn({ worker: s.index, err: err.message }, 'worker IPC error'));
    return child;
  }

  private exited(s: Slot, child: ChildProcess, code: number | null, signal: NodeJS.Signals | null): void {
    if (s.child !== child) return;
    s.child = undefined;
    s.committed = -1;
    if (this.stopping) return;
    const sessions = this.ledger.died(s.index);
    // Its kernel flows go before a new worker (or another one) could get their packets in user space.
    const flows = this.flows?.sweep(s.index);
    // A worker that dies soon after its start would otherwise be forked in a tight loop.
    s.backoff = Date.now() - s.startedAt < 10_000 ? Math.min(s.backoff * 2, RESTART_MAX_MS) : RESTART_MIN_MS;
    this.log.error({ worker: s.index, worker_pid: child.pid, code, signal, sessions_ended: sessions, ...(flows !== undefined ? { kernel_flows_removed: flows } : {}), restart_in_ms: s.backoff }, `data-plane worker died; its ${sessions} live sessions ended with an error; restarting it with the current configuration`);
    setTimeout(() => void this.restart(s), s.backoff).unref();
  }

  private async restart(s: Slot): Promise<void> {
    if (this.stopping || s.child !== undefined) return;
    const child = this.spawn(s);
    const gen = this.current;
    try {
      await this.step(s, { type: 'prepare', gen, config: this.config }, 'prepared', gen);
      await this.step(s, { type: 'commit', gen }, 'committed', gen);
      // Bring it to the current config: the REST changes since the start, in order.
      // (A change committed while this runs is posted to it as well, after these.)
      for (const op of [...this.ops]) {
        await this.step(s, { type: 'prepare', gen, op }, 'prepared', gen);
        await this.step(s, { type: 'commit', gen }, 'committed', gen);
      }
      if (this.current === gen) s.committed = gen;
      s.lastError = undefined;
      this.log.info({ worker: s.index, worker_pid: child.pid }, 'data-plane worker restarted');
    } catch (err) {
      s.lastError = (err as Error).message;
      this.log.error({ worker: s.index, err: s.lastError, retry_within_ms: RESTART_MAX_MS }, 'restarted worker cannot apply the current configuration; stopping it to retry');
      child.kill('SIGKILL');
    }
  }

  /** Send a phase message and wait for its answer; a `failed` answer rejects with the worker's error. */
  private async step(s: Slot, msg: ToWorker, ok: 'prepared' | 'committed', gen: number): Promise<void> {
    const m = await this.request(s, msg, (r) => (r.type === ok || r.type === 'failed') && 'gen' in r && r.gen === gen, STEP_TIMEOUT_MS);
    if (m.type === 'failed') throw new GatewayError(m.error.code as ConstructorParameters<typeof GatewayError>[0], `worker ${s.index}: ${m.error.message}`, m.error.field);
  }

  private request(s: Slot, msg: ToWorker, match: (m: FromWorker) => boolean, timeoutMs: number): Promise<FromWorker> {
    return new Promise((resolve, reject) => {
      const child = s.child;
      const done = (fn: () => void): void => { clearTimeout(t); s.waiters.delete(w); child?.off('exit', gone); fn(); };
      const w = (m: FromWorker): void => { if (match(m)) done(() => resolve(m)); };
      const gone = (): void => done(() => reject(new GatewayError('INTERNAL', `worker ${s.index} exited`)));
      const t = setTimeout(() => done(() => reject(new GatewayError('INTERNAL', `worker ${s.index} did not answer ${msg.type} within ${timeoutMs} ms`))), timeoutMs);
      if (child === undefined) return gone();
      s.waiters.add(w);
      child.once('exit', gone);
      this.post(s, msg);
    });
  }

  private post(s: Slot, msg: ToWorker): void {
    const c = s.child;
    if (c?.connected) c.send(msg);
  }
}
