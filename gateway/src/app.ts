// Assemble a gateway: logger, object graph, REST API, static config.

import fs from 'node:fs';
import { parse as parseYaml } from 'yaml';
import { checkDepth, checkSchema, handleApi } from './api/dispatch.js';
import { isStaticPath } from './api/static.js';
import { apiGuardFor, logApiSecurity } from './api/security.js';
import { parseAdmin } from './config/admin.js';
import { danglingClusterRefs, describeDangling } from './config/dangling-routes.js';
import type { OffloadCli } from './config/offload.js';
import { GatewayError, invalid } from './core/errors.js';
import { Gateway } from './core/gateway.js';
import { startAdminListener } from './observe/probe-listener.js';
import { createLogger, type LevelName, type Logger } from './observe/log.js';
import { CompiledListeners } from './fastpath/compiled.js';
import { GatewayMetrics } from './observe/metrics.js';
import { setupOffload } from './fastpath/offload/index.js';
import { setupRawPath } from './fastpath/raw.js';
import { setupSplice } from './fastpath/splice.js';
import { packageVersion } from './version.js';
import { startWorkers } from './workers/start.js';

export const DEFAULT_CONFIG = {
  admin: { log_level: 'info', log_file: 'stdout' },
  listeners: [
    {
      name: 'controller-listener',
      spec: { protocol: 'HTTP', address: '127.0.0.1', port: 1234 },
      rules: [{ action: { route: { destination: { name: 'l7mp-controller', spec: { protocol: 'L7mpController' } } } } }],
    },
  ],
};

export { packageVersion };

/** Read a config file: YAML for .yaml/.yml, JSON otherwise (as l7mp, plus .yml). */
export function readConfigFile(file: string): unknown {
  const value = parseConfigText(file);
  // A self-referencing YAML alias or absurd nesting would hang or overflow
  // the recursive validator: refuse it as the REST API does.
  try {
    checkDepth(value, `config file "${file}"`);
  } catch (err) {
    throw new GatewayError('INVALID_INPUT', (err as Error).message);
  }
  return value;
}

function parseConfigText(file: string): unknown {

  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    throw new GatewayError('INVALID_INPUT', `cannot read config file "${file}": ${(err as Error).message}`);
  }
  if (/\.ya?ml$/i.test(file)) {
    try {
      return parseYaml(text, { logLevel: 'error' });
    } catch (err) {
      throw new GatewayError('INVALID_INPUT', `config file "${file}" is not valid YAML: ${(err as Error).message.split('\n')[0]}`);
    }
  }
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new GatewayError('INVALID_INPUT', `config file "${file}" is not valid JSON: ${(err as Error).message}`);
  }
}

export interface StartOptions {
  config: unknown;
  /** Overrides admin.log_level. */
  logLevel?: LevelName;
  strict?: boolean;
  logger?: Logger;
  /** Where L7MP_API_TOKEN is read from; process.env by default. */
  env?: NodeJS.ProcessEnv;
  /** -o / -i: override admin.offload / admin.offload_ifs. */
  offload?: OffloadCli;
  /** -w: overrides admin.workers. */
  workers?: number | 'auto';
  /** A data-plane worker: the main process serves the REST API and checks what exposes it. */
  servesNoApi?: boolean;
  /** In a data-plane worker: the number of workers sharing the gateway-wide limits. */
  limitShares?: number;
  /** Called with the gateway before the config is applied (a worker's stand-ins, workers/entry.ts). */
  beforeApply?: (gw: Gateway) => void;
}

export async function startGateway(opts: StartOptions): Promise<Gateway> {
  const cfg = opts.config;
  if (typeof cfg !== 'object' || cfg === null || Array.isArray(cfg)) throw invalid('config', 'must be an object');
  // Everything is checked before anything opens: the admin section here
  // (config/admin.ts; strict mode also refuses unknown admin keys), the rest
  // against the spec's Config schema, as every setConf over REST is.
  const { admin: rawAdmin, ...objects } = cfg as Record<string, unknown>;
  // Sessions in a config saved from GET /config are run-time state, never
  // applied; l7mp's session JSON does not match the schema (null chain
  // stages, '<INVALID>' placeholders), and l7mp loads such a file.
  delete objects.sessions;
  const admin = parseAdmin(rawAdmin, {
    ...(opts.logLevel !== undefined ? { logLevel: opts.logLevel } : {}),
    ...(opts.strict !== undefined ? { strict: opts.strict } : {}),
    ...(opts.offload !== undefined ? { offload: opts.offload } : {}),
    ...(opts.workers !== undefined ? { workers: opts.workers } : {}),
    ...(opts.limitShares !== undefined ? { limitShares: opts.limitShares } : {}),
    ...(opts.env !== undefined ? { env: opts.env } : {}),
  });
  checkSchema('setConf', objects);
  const log = opts.logger ?? createLogger(admin.log.level, admin.log.file, admin.log.format);
  const apiSecurity = apiGuardFor(admin.api);
  const accessPath = admin.accessLogPath;
  let accessStream: fs.WriteStream | undefined;
  if (accessPath !== undefined) {
    accessStream = fs.createWriteStream(accessPath, { flags: 'a' });
    accessStream.on('error', (err) => log.warn({ err: err.message, file: accessPath }, 'access log write failed'));
  }
  const metrics = new GatewayMetrics();
  const gw = new Gateway({
    limits: admin.admission,
    log,
    observer: metrics,
    version: packageVersion(),
    api: handleApi,
    allowStaticOnly: true,
    ...(admin.stdioForkCommands ? { stdioForkCommands: admin.stdioForkCommands } : {}),
    ...(admin.fileRoot !== undefined ? { fileRoot: admin.fileRoot } : {}),
    // A data-plane worker serves no API: the main process, which holds the token, judges exposure.
    apiTokenSet: apiSecurity.guard.token !== undefined || opts.servesNoApi === true,
    admitApi: (ex) => apiSecurity.guard.admit(ex, isStaticPath(ex.method, ex.url)), // pages without data need no token
    ...(accessStream ? { accessLog: (line: Record<string, unknown>) => accessStream!.write(JSON.stringify(line) + '\n') } : {}),
  });
  metrics.attach(gw);
  const compiled = new CompiledListeners(gw, gw.admission, log, accessStream ? (line) => accessStream!.write(JSON.stringify(line) + '\n') : undefined);
  compiled.observers.add(metrics);
  gw.useCompiled(compiled);
  gw.admin.log_level = admin.log.level;
  gw.admin.strict = admin.strict;
  if (admin.log.file !== undefined) gw.admin.log_file = admin.log.file;
  if (accessPath !== undefined) gw.admin.access_log_path = accessPath;
  gw.admin.managed = admin.managed; // readiness then waits for the operator's generation
  if (admin.maxBodyBytes !== undefined) gw.admin.max_body_bytes = admin.maxBodyBytes;
  gw.admin.drain_timeout = admin.drainTimeout; // ms for SIGTERM/SIGINT (core/drain.ts)
  gw.limits.settings = admin.edge; // JSONSocket header, message buffer, YAML body bounds (core/limits.ts)
  setupOffload(gw, admin.offload); // logs why once and runs without it when it cannot
  setupRawPath(gw); // TCP/Unix stream sessions below net.Socket; none without the addon or with L7MP_TCP_FASTPATH=off
  setupSplice(gw); // splice(2) for bulk stream sessions; none without the addon or with L7MP_SPLICE=off
  gw.admission.logLimits(log);
  opts.beforeApply?.(gw);
  // With workers the data-plane listeners run in them, the rest here (workers/start.ts).
  const workers = admin.workers > 1 ? await startWorkers(gw, cfg as Record<string, unknown>, admin.workers, rawAdmin) : undefined;
  // A config that does not apply still ran setupOffload: stop() detaches the program again.
  await gw.applyConfig(workers?.config ?? cfg, true).catch(async (err: unknown) => { await gw.stop(); throw err; });
  workers?.applied();
  // Routes to clusters that do not exist: refused in strict mode; otherwise
  // warned about here and named by /ready until they exist (dangling-routes.ts).
  const dangling = danglingClusterRefs(gw);
  if (dangling.length > 0 && admin.strict) {
    await gw.stop();
    throw new GatewayError('INVALID_INPUT', `${dangling.map(describeDangling).join('; ')} (strict mode; without -s the gateway starts and /ready reports it)`);
  }
  for (const d of dangling) log.warn({ route: d.route, cluster: d.cluster, role: d.role }, `${describeDangling(d)}: its sessions will fail; /ready answers 503 until it exists`);
  // Metrics, /live and /ready on their own port, once the config is in place.
  await startAdminListener(gw, admin.probes).catch(async (err: unknown) => { await gw.stop(); throw err; });
  logApiSecurity(gw, apiSecurity);
  return gw;
}
