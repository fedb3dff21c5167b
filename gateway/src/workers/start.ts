// Wiring workers into a starting gateway: split the static config, fork the
// workers with its data-plane part (all of them apply it, or the start
// fails), and return what the main process applies itself.

import type { Gateway } from '../core/gateway.js';
import { isObject } from '../core/is-object.js';
import { splitConfig } from './split.js';
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
  const split = splitConfig(cfg);
  const sup = new Supervisor(count, { objects: split.data, admin: workerAdmin(rawAdmin) }, gw.log);
  gw.workers = sup;
  gw.onStop(() => sup.stop());
  try {
    await sup.start();
  } catch (err) {
    await sup.stop();
    throw err;
  }
  gw.log.info({ workers: count, listeners: split.dataListeners }, 'data-plane listeners run in the workers');
  return split.control;
}
