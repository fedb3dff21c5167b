// What observe/metrics.ts implements: the session hooks (dataplane/hooks.ts)
// plus the REST call and exposition hooks, so the core depends on no metrics
// library. Registered on the gateway's hook list like any other hook.

import type { SessionHooks } from './hooks.js';

export interface GatewayObserver extends SessionHooks {
  /** A REST API call finished with this HTTP status. */
  onApiCall?(operationId: string, status: number, durationMs: number): void;
  /** The metrics text exposition (served by the Prometheus cluster and the admin listener). */
  exposition?(): Promise<{ contentType: string; body: string }>;
}
