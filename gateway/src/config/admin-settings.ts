// The admin state of a running gateway, apart from the parser in admin.ts so
// that core/gateway.ts, which holds it, imports nothing that leads back to it.

/** The admin state of a running gateway: what GET /api/v1/admin shows and applyAdmin changes. */
export interface AdminSettings {
  log_level: string;
  log_file?: string;
  access_log_path?: string;
  strict: boolean;
  offload: boolean;
  offload_ifs?: unknown;
  max_body_bytes: number;
  max_sessions: number;
  /** Milliseconds established sessions get to finish on SIGTERM/SIGINT (core/drain.ts); 0 cuts them at once. */
  drain_timeout: number;
  version: string;
  /** Configured by the operator: readiness waits for `generation` (static config only). */
  managed: boolean;
  /** The configuration generation the operator applied last (applyAdmin). */
  generation?: string;
  /** Data-plane worker processes, when more than one run (workers/start.ts). */
  workers?: number;
}
