// The supervisor <-> worker messages (process IPC, JSON). A config change is
// two-phase: `prepare` in every worker, `commit` once all prepared, `abort`
// everywhere if one failed, so a change reaches every worker or none.

export interface WorkerConfig {
  /** The data-plane objects (workers/split.ts). */
  readonly objects: Record<string, unknown>;
  /** What the worker's own admin section keeps: log level and the data-plane limits. */
  readonly admin: Record<string, unknown>;
  /** Set when `objects` is the control plane's graph rather than the static config (workers/snapshot.ts). */
  readonly snapshot?: {
    readonly provenance: Provenance;
    /** Where each listener runs, as placed when it was added. */
    readonly placement: Readonly<Record<string, Placement>>;
  };
}

import type { RemoteOp } from '../core/gateway.js';
import type { Provenance } from '../core/provenance.js';
import type { Placement } from './split.js';

export type WorkerOp = RemoteOp;

export type ToWorker =
  | { type: 'prepare'; gen: number; config: WorkerConfig }
  | { type: 'prepare'; gen: number; op: WorkerOp }
  | { type: 'commit'; gen: number }
  | { type: 'abort'; gen: number }
  | { type: 'sessions'; id: number }
  /** One session, by its name inside the worker (no `w<i>-` prefix): GET /api/v1/sessions/{name}. */
  | { type: 'session'; id: number; name: string }
  | { type: 'deleteSession'; id: number; name: string }
  /** `ledger`: only what the main process keeps of a worker (workers/metrics-ledger.ts), for its periodic poll. */
  | { type: 'metrics'; id: number; ledger?: boolean }
  /** The worker's object graph (api/dump.ts dumpConfig without admin and sessions): tests compare it with the main process's. */
  | { type: 'graph'; id: number }
  /** An active health check result of the main process (HealthStats.share, health/cluster-health.ts). */
  | { type: 'checked'; cluster: string; endpoint: string; ok: boolean; reason: string; timedOut: boolean }
  /** Every worker has drained its sessions (or exited): stop now (core/drain.ts `hold`). */
  | { type: 'release' };

/** A worker's GatewayError, with the field it names, so the API answers as a single process would. */
export interface WorkerError { readonly code: string; readonly message: string; readonly field?: string }

export type FromWorker =
  | { type: 'prepared'; gen: number }
  | { type: 'failed'; gen: number; error: WorkerError }
  | { type: 'committed'; gen: number }
  | { type: 'sessions'; id: number; sessions: unknown[] }
  | { type: 'deleted'; id: number; error?: WorkerError }
  /** prom-client's getMetricsAsJSON(), merged by the main process (observe/metrics.ts). */
  | { type: 'metrics'; id: number; metrics: unknown[] }
  | { type: 'graph'; id: number; graph: Record<string, unknown> }
  /** A shared UDP socket this worker bound: the main process slots it in the port's selector (workers/sticky-udp.ts). */
  | { type: 'udpShared'; fd: number; address: string; port: number }
  /** During a drain: this worker's own sessions have ended; it keeps its connections open until `release`. */
  | { type: 'drained' };

/** The environment variable that carries a worker's index (1-based). */
export const WORKER_INDEX_ENV = 'L7MP_WORKER_INDEX';
/** The environment variable that carries the number of workers. */
export const WORKER_COUNT_ENV = 'L7MP_WORKER_COUNT';
