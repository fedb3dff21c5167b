// What the gateway's core reads of compiled listeners (fastpath/compiled.ts,
// registered from app.ts): sessions the addon set up itself, which are not
// Session objects, for the REST view, deletes, drain, cuts and metrics. The
// no-op stands in where nothing is compiled (tests, workers' stand-ins).

import type { EndKind } from './drain.js';
import type { SessionCuts } from './store.js';

/** A live compiled session, as the metrics scrape reads it. */
export interface CompiledLive {
  readonly listener: string;
  readonly cluster: string;
  readonly rx: number;
  readonly tx: number;
  readonly rxPackets: number;
  readonly txPackets: number;
}

export interface CompiledSessions extends SessionCuts {
  /** After every change of the graph: plan each listener again. */
  refresh(): void;
  /** Live compiled sessions as GET /api/v1/sessions shows them. */
  dump(): Record<string, unknown>[];
  get(name: string): Record<string, unknown> | undefined;
  /** DELETE: false when no live compiled session has that name. */
  delete(name: string): boolean;
  /** How many are live (drain waits for them). */
  live(): number;
  /** Cut every live one. */
  cutAll(kind: EndKind): void;
  /** Fold their counts into the metrics, then each live one (a metrics scrape). */
  scrape(live: (p: CompiledLive) => void): void;
}

export const NO_COMPILED: CompiledSessions = {
  refresh() {},
  dump: () => [],
  get: () => undefined,
  delete: () => false,
  live: () => 0,
  cutAll() {},
  scrape() {},
  cutListener() {},
  cutCluster() {},
  disconnectEndpoint() {},
};
