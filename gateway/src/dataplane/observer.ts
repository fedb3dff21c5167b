// The gateway's observation hooks. Core code calls these at session and
// connection milestones (never per packet); observe/metrics.ts implements them
// with prom-client, so the core does not depend on any metrics library.
//
// Every hook is optional and must be cheap and synchronous: it runs inline in
// the session lifecycle. Byte and packet counts are not pushed through here;
// an observer reads them from the live sessions when it is scraped, and from
// the session handed to onSessionEnd once it is over.

import type { Session, Stage } from './session.js';

export interface GatewayObserver {
  /** A listener emitted a session and the gateway accepted it (before routing). */
  onSessionStart?(session: Session): void;
  /**
   * The session is over (status DESTROYED, `ended` set): its link counters are
   * final. Called exactly once per started session.
   */
  onSessionEnd?(session: Session): void;
  /** A cluster stage connected; `reconnect` is true after a disconnect (retry_on disconnect/always). */
  onStageConnect?(session: Session, stage: Stage, reconnect: boolean): void;
  /** One connect attempt to a cluster failed (every attempt counts, retries included). */
  onConnectFailure?(session: Session, stage: Stage, err: unknown): void;
  /** A connect attempt is about to be retried: a setup retry or a reconnect after a disconnect. */
  onRetry?(session: Session, stage: Stage, phase: 'connect' | 'reconnect'): void;
  /** A REST API call finished with this HTTP status. */
  onApiCall?(operationId: string, status: number, durationMs: number): void;
  /** The metrics text exposition (served by the Prometheus cluster and the admin listener). */
  exposition?(): Promise<{ contentType: string; body: string }>;
}
