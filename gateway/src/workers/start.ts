// Wiring workers into a starting gateway: fork the workers with the static
// config (all of them apply it, or the start fails); the main process then
// applies it too, with stand-ins for the listeners the workers run.

import type { Gateway } from '../core/gateway.js';
import { GatewayMetrics } from '../observe/metrics.js';
import { isObject } from '../core/is-object.js';
import { sharedFlowTable } from '../fastpath/offload/shared.js';
import { dataPlaneListeners, isControlPlaneListener } from './split.js';
import { standInListener } from './stand-in.js';
import { Supervisor } from './supervisor.js';

/** The admin settings a worker keeps: its log level and the data-plane limits; never the API, metrics or workers. */
function workerAdmin(raw: unknown): Record<string, unknown> {
  const a = isObject(raw) ? raw : {};
  return {
    metrics: false,
    ...(a.log_level !== undefined ? { log_level: a.log_level } : {}),
    ...(a.limits !== undefined ? { limits: a.limits } : {}),
    ...(a.drain_timeout !== undefined ? { drain_timeout: a.drain_timeout } : {}),
  };
}

export async function startWorkers(gw: Gateway, cfg: Record<string, unknown>, count: number, rawAdmin: unknown): Promise<Record<string, unknown>> {
  const { admin: _admin, ...objects } = cfg;
  const sup = new Supervisor(count, { objects, admin: workerAdmin(rawAdmin) }, gw.log, sharedFlowTable(gw));
  // The main process builds the data-plane listeners as stand-ins: the workers run them.
  gw.remoteListener = (raw) => (isControlPlaneListener(raw, gw, cfg) ? undefined : standInListener(raw, true));
  gw.workers = sup;
  // Metrics: the workers' summed into this process's exposition, same names and labels.
  if (gw.observer instanceof GatewayMetrics) gw.observer.remote = () => sup.metrics() as ReturnType<NonNullable<GatewayMetrics['remote']>>;
  gw.onStop(() => sup.stop());
  try {
    await sup.start();
  } catch (err) {
    await sup.stop();
    throw err;
  }
  gw.log.info({ workers: count, listeners: dataPlaneListeners(cfg) }, 'data-plane listeners run in the workers');
  return cfg;
}
