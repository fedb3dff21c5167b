// The admin listener: metrics, liveness and readiness on a port of their own,
// apart from the data-plane listeners and the REST controller, so that a
// probe or a scrape never goes through routing and never needs the API token.
//
//   GET <path> (default /metrics)  the Prometheus text exposition
//   GET /live                      200 while the process serves requests
//   GET /ready                     200 once the static configuration is applied
//                                  and every listener holds its socket, no route
//                                  names a cluster that does not exist (and, with
//                                  admin.managed, once the operator has set
//                                  admin.generation through applyAdmin); else
//                                  503 with {"ready":false,"reasons":[...]}
//
// Configured in the static config (parsed by config/admin.ts) as
//   admin: { metrics: { enabled: true, address: 127.0.0.1, port: 8080, path: /metrics } }
// `enabled: false` or `port: 0` turns it off. When the section is absent the
// defaults apply, and a default port that is taken only logs a warning (l7mp
// configs often run their own Prometheus listener on 8080); a port configured
// explicitly must bind, or the gateway does not start.

import type * as U from '@trufflesuite/uws-js-unofficial';
import { reasonPhrase } from '../core/errors.js';
import { danglingReasons } from '../config/dangling-routes.js';
import type { Gateway } from '../core/gateway.js';
import { listenUws, requireUws, type Uws } from '../protocols/common/uws.js';

export interface AdminListenerConfig {
  enabled: boolean;
  address: string;
  port: number;
  path: string;
  /** The section was given in the config (a bind failure is then fatal). */
  explicit: boolean;
}

export const ADMIN_DEFAULTS = { address: '127.0.0.1', port: 8080, path: '/metrics' } as const;

export interface Readiness {
  ready: boolean;
  reasons: string[];
}

/** Ready: the static config is applied, the gateway is not stopping, and every listener is bound. */
export function readiness(gw: Gateway): Readiness {
  const reasons: string[] = [];
  // Draining listeners are unbound on purpose: one reason says it all.
  if (gw.draining) return { ready: false, reasons: ['draining'] };
  if (gw.isStopping) reasons.push('the gateway is shutting down');
  if (!gw.configApplied) reasons.push('the configuration is not applied yet');
  if (gw.admin.managed && gw.admin.generation === undefined) reasons.push('waiting for the operator to apply its configuration (admin.generation)');
  for (const l of gw.listeners.values()) {
    if (l.impl.bound && !l.impl.bound()) reasons.push(`listener "${l.name}" is not bound`);
  }
  reasons.push(...danglingReasons(gw)); // a route whose cluster does not exist fails every session it takes
  if (gw.workers !== undefined) reasons.push(...gw.workers.readinessReasons()); // every worker runs the current config
  return { ready: reasons.length === 0, reasons };
}

export class AdminListener {
  private readonly uws: Uws;
  /** Held for the listener's lifetime: uWS closes an App that is garbage-collected. */
  private app: U.TemplatedApp | undefined;
  private token: U.us_listen_socket | undefined;
  private boundPort = 0;

  constructor(private readonly gw: Gateway, private readonly cfg: AdminListenerConfig) {
    this.uws = requireUws();
  }

  /** The port actually bound (0 before start). */
  get port(): number {
    return this.boundPort;
  }

  async start(): Promise<void> {
    const app = this.uws.App();
    app.get('/live', (res) => {
      json(res, 200, { status: 'live' });
    });
    app.get('/ready', (res) => {
      const r = readiness(this.gw);
      if (r.ready) json(res, 200, this.gw.admin.generation === undefined ? { ready: true } : { ready: true, generation: this.gw.admin.generation });
      else json(res, 503, { ready: false, reason: r.reasons.join('; '), reasons: r.reasons });
    });
    app.get(this.cfg.path, (res) => this.serveMetrics(res));
    app.any('/*', (res, req) => {
      const p = req.getUrl();
      const known = p === '/live' || p === '/ready' || p === this.cfg.path;
      if (known) json(res, 405, { status: 405, message: 'Method Not Allowed', content: 'use GET' }, { allow: 'GET' });
      else json(res, 404, { status: 404, message: 'Not Found', content: `the admin listener serves GET ${this.cfg.path}, /live and /ready` });
    });
    this.app = app;
    this.token = await listenUws(this.uws, app, this.cfg.address, this.cfg.port, 'admin listener (admin.metrics)');
    this.boundPort = this.uws.us_socket_local_port(this.token);
  }

  private serveMetrics(res: U.HttpResponse): void {
    let aborted = false;
    res.onAborted(() => { aborted = true; });
    this.gw.exposition().then(({ contentType, body }) => {
      if (aborted) return;
      res.cork(() => res.writeStatus('200 OK').writeHeader('content-type', contentType).end(body));
    }, (err: unknown) => {
      if (aborted) return;
      res.cork(() => json(res, 500, { status: 500, message: 'Internal Server Error', content: (err as Error).message }));
    });
  }

  async stop(): Promise<void> {
    if (this.token) this.uws.us_listen_socket_close(this.token);
    this.token = undefined;
    // Also end kept-alive connections (scrapers reuse theirs): uWS keeps them
    // after the listen socket closes. close() is in the binaries, not the typings.
    (this.app as unknown as { close?: () => void } | undefined)?.close?.();
    this.app = undefined;
  }
}

function json(res: U.HttpResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  res.writeStatus(`${status} ${reasonPhrase(status)}`).writeHeader('content-type', 'application/json');
  for (const [k, v] of Object.entries(headers)) res.writeHeader(k, v);
  res.end(JSON.stringify(body));
}

/**
 * Start the admin listener described by `admin.metrics` and stop it with the
 * gateway. Returns undefined when it is disabled, or when the default port was
 * taken (logged).
 */
export async function startAdminListener(gw: Gateway, cfg: AdminListenerConfig): Promise<AdminListener | undefined> {
  if (!cfg.enabled) return undefined;
  const admin = new AdminListener(gw, cfg);
  try {
    await admin.start();
  } catch (err) {
    if (cfg.explicit) throw err;
    gw.log.warn({ address: cfg.address, port: cfg.port, err: (err as Error).message },
      'admin listener not started: the default port is taken; set admin.metrics.port (or enabled: false)');
    return undefined;
  }
  gw.onStop(() => admin.stop());
  gw.log.info({ address: cfg.address, port: admin.port, path: cfg.path }, 'admin listener (metrics, /live, /ready) started');
  return admin;
}
