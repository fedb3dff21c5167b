// How a Gateway is built: the callbacks and settings app.ts (or a test that
// assembles a gateway by hand) hands to its constructor.

import type { GatewayObserver } from '../dataplane/observer.js';
import type { Logger } from '../observe/log.js';
import type { GatewayServices, HttpExchange } from '../protocols/types.js';
import type { AdmissionLimits } from './admission.js';
import type { Gateway } from './gateway.js';

export interface GatewayOptions {
  log: Logger;
  version: string;
  /** Serves REST exchanges for L7mpController clusters. */
  api?: (gw: Gateway, exchange: HttpExchange, body: Uint8Array, session: string) => Promise<void>;
  /** Called with one line per ended session when access_log_path is set (a session hook: observe/access-log.ts). */
  accessLog?: (line: Record<string, unknown>) => void;
  /** Allow protocols that run programs (static config only). */
  allowStaticOnly?: boolean;
  /** The programs STDIO-fork clusters may run (admin.stdio_fork.commands of the static config). */
  stdioForkCommands?: readonly (readonly string[])[];
  /** Admits a REST call from its head (rate limit, bearer token) before its body is read. */
  admitApi?: GatewayServices['admitApi'];
  /** Metrics (observe/metrics.ts): registered as a session hook after the access log; never called per packet. */
  observer?: GatewayObserver;
  /** admin.file_root (resolved): the only directory REST calls may name files in; none without it. */
  fileRoot?: string;
  /** An API token is required: a REST call may then expose the API beyond loopback. */
  apiTokenSet?: boolean;
  /** Data-plane admission limits (admin.limits); DEFAULT_LIMITS otherwise. */
  limits?: AdmissionLimits;
}
