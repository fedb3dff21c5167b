// Wiring workers into a starting gateway: fork the workers with the static
// config (all of them apply it, or the start fails); the main process then
// applies it too, with stand-ins for the listeners the workers run.

import type { Gateway } from '../core/gateway.js';
import type { ListenerObj } from '../core/model.js';
import { GatewayMetrics } from '../observe/metrics.js';
import { isObject } from '../core/is-object.js';
import { sharedFlowTable } from '../fastpath/offload/shared.js';
import { checkPlacement, placementOf, type Placement } from './split.js';
import { withChange } from '../core/policy.js';
import { snapshotOf } from './snapshot.js';
import { standInListener } from './stand-in.js';
import { Supervisor } from './supervisor.js';

/**
 * The admin settings a worker runs with: the static config's, which confine
 * and bound its data plane as they do a single process (limits, file_root,
 * stdio_fork, drain_timeout, logs), at the log level in force; never the REST
 * API's token, the probe/metrics listener or the worker count (the main
 * process serves those).
 */
function workerAdmin(raw: unknown, logLevel: string): Record<string, unknown> {
  const { workers: _w, api_token: _t, api_token_file: _f, metrics: _m, offload: _o, offload_ifs: _i, ...keep } = isObject(raw) ? raw : {};
  return { ...keep, log_level: logLevel, metrics: false };
}

/** Workers started: the config for the main process to apply, and what to call once it has. */
export interface StartedWorkers {
  readonly config: Record<string, unknown>;
  /** Logs where each data-plane listener of the applied config runs. */
  applied(): void;
}

export async function startWorkers(gw: Gateway, cfg: Record<string, unknown>, count: number, rawAdmin: unknown): Promise<StartedWorkers> {
  const { admin: _admin, ...objects } = cfg;
  const sup = new Supervisor(count, { objects, admin: workerAdmin(rawAdmin, gw.log.level) }, gw.log, sharedFlowTable(gw));
  // The main process builds the data-plane listeners as stand-ins: the workers run them.
  const placed = new WeakMap<object, Placement>(); // stand-in -> where its listener runs
  gw.remoteListener = (raw, graph) => {
    const where = placementOf(raw, graph);
    if (where === 'main') return undefined;
    const impl = standInListener(raw, where === 'every');
    placed.set(impl, where);
    return impl;
  };
  // A live listener stays where it was placed: a change that would need it elsewhere is refused.
  const placeOf = (l: ListenerObj): Placement => placed.get(l.impl) ?? 'main'; // no stand-in: it runs here
  gw.checkChange = (live, tx) => checkPlacement(live.listeners.values(), placeOf, withChange(live, tx));
  gw.workers = sup;
  sup.exists = (kind, name) => (kind === 'listener' ? gw.listeners.has(name) : gw.clusters.has(name));
  // The admin settings as they are then: REST changes log_level and strict, and the snapshot replaces those changes.
  sup.snapshot = () => snapshotOf(gw, placeOf, { ...workerAdmin(rawAdmin, gw.log.level), strict: gw.admin.strict });
  gw.admin.workers = count;
  // Metrics: the workers' summed into this process's exposition, same names and labels.
  if (gw.observer instanceof GatewayMetrics) gw.observer.remote = () => sup.metrics() as ReturnType<NonNullable<GatewayMetrics['remote']>>;
  gw.onStop(() => sup.stop(gw.admin.drain_timeout));
  // Active health checks run here, once; the workers take the results.
  gw.healthStats.share = (cluster, endpoint, ok, reason, timedOut) => sup.broadcast({ type: 'checked', cluster, endpoint, ok, reason, timedOut });
  try {
    await sup.start();
  } catch (err) {
    await sup.stop();
    throw err;
  }
  return {
    config: cfg,
    applied: () => {
      const listeners: Record<string, Placement> = {};
      for (const l of gw.listeners.values()) {
        const where = placeOf(l);
        if (where !== 'main') listeners[l.name] = where;
      }
      gw.log.info({ workers: count, listeners }, 'data-plane listeners run in the workers (every: each worker shares the port; one: worker 1 only)');
    },
  };
}
