// Assemble a gateway: logger, object graph, REST API, static config.

import fs from 'node:fs';
import { parse as parseYaml } from 'yaml';
import { checkDepth, checkSchema, handleApi } from './api/dispatch.js';
import { isStaticPath } from './api/static.js';
import { apiGuardFromAdmin, logApiSecurity } from './api/security.js';
import { parseFileRoot } from './core/confine.js';
import { unknownAdminKeys, knownAdminKeys } from './config/admin-keys.js';
import { danglingClusterRefs, describeDangling } from './config/dangling-routes.js';
import { GatewayError, invalid } from './core/errors.js';
import { Gateway } from './core/gateway.js';
import { parseEdgeLimits } from './core/limits.js';
import { parseAdmissionLimits } from './core/admission.js';
import { parseDrainTimeout } from './core/drain.js';
import { parseAdminListener, startAdminListener } from './observe/probe-listener.js';
import { parseStdioForkAdmin } from './protocols/stdiofork/index.js';
import { createLogger, isLevelName, type LevelName, type Logger } from './observe/log.js';
import { resolveLogFormat } from './observe/log-text.js';
import { GatewayMetrics } from './observe/metrics.js';
import { setupOffload, type OffloadCli } from './fastpath/offload/index.js';
import { setupSplice } from './fastpath/splice.js';
import { packageVersion } from './version.js';

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
}

export async function startGateway(opts: StartOptions): Promise<Gateway> {
  const cfg = opts.config;
  if (typeof cfg !== 'object' || cfg === null || Array.isArray(cfg)) throw invalid('config', 'must be an object');
  const admin = ((cfg as Record<string, unknown>).admin ?? {}) as Record<string, unknown>;
  if (typeof admin !== 'object' || admin === null) throw invalid('admin', 'must be an object');
  const strict = opts.strict ?? admin.strict === true;
  if (strict) {
    // Strict mode (-s): before anything opens, the whole file must match the
    // spec's Config schema, and admin may hold only the keys the spec names
    // (the schema lets unknown admin keys through, as l7mp did).
    const unknown = unknownAdminKeys(admin);
    if (unknown.length > 0) {
      throw invalid(unknown[0]!, `unknown admin setting${unknown.length > 1 ? 's' : ''} ${unknown.join(', ')} (strict mode); the admin settings are ${knownAdminKeys().join(', ')}`);
    }
    checkSchema('setConf', cfg);
  }
  const level = opts.logLevel ?? admin.log_level ?? 'info';
  if (!isLevelName(level)) throw invalid('admin.log_level', `unknown level "${String(level)}"`);
  const logFile = admin.log_file;
  if (logFile !== undefined && typeof logFile !== 'string') throw invalid('admin.log_file', 'must be stdout, stderr or a file path');
  const logFormat = resolveLogFormat(admin.log_format, (opts.env ?? process.env).L7MP_LOG_FORMAT, logFile);
  const log = opts.logger ?? createLogger(level, logFile, logFormat);
  const apiSecurity = apiGuardFromAdmin(admin, opts.env ?? process.env); // api_token(_file), limits.api_rate/api_burst
  const accessPath = admin.access_log_path;
  if (accessPath !== undefined && typeof accessPath !== 'string') throw invalid('admin.access_log_path', 'must be a file path');
  let accessStream: fs.WriteStream | undefined;
  if (accessPath !== undefined) {
    accessStream = fs.createWriteStream(accessPath, { flags: 'a' });
    accessStream.on('error', (err) => log.warn({ err: err.message, file: accessPath }, 'access log write failed'));
  }
  const stdioForkCommands = parseStdioForkAdmin(admin.stdio_fork); // the STDIO-fork allow-list; absent: off
  const adminListener = parseAdminListener(admin.metrics); // admin.metrics: {enabled, address, port, path}
  const fileRoot = parseFileRoot(admin.file_root); // the only directory REST calls may name files in; absent: none
  const metrics = new GatewayMetrics();
  const rawLimits = admin.limits;
  if (rawLimits !== undefined && (typeof rawLimits !== 'object' || rawLimits === null || Array.isArray(rawLimits))) throw invalid('admin.limits', 'must be an object');
  // max_sessions, listener_max_sessions, flow_rate, flow_burst, flow_sources, fd_reserve (core/admission.ts)
  const limits = parseAdmissionLimits(rawLimits as Record<string, unknown> | undefined);
  const gw = new Gateway({
    limits,
    log,
    observer: metrics,
    version: packageVersion(),
    api: handleApi,
    allowStaticOnly: true,
    ...(stdioForkCommands ? { stdioForkCommands } : {}),
    ...(fileRoot !== undefined ? { fileRoot } : {}),
    apiTokenSet: apiSecurity.guard.token !== undefined,
    admitApi: (ex) => apiSecurity.guard.admit(ex, isStaticPath(ex.method, ex.url)), // pages without data need no token
    ...(accessStream ? { accessLog: (line: Record<string, unknown>) => accessStream!.write(JSON.stringify(line) + '\n') } : {}),
  });
  metrics.attach(gw);
  gw.admin.log_level = level;
  gw.admin.strict = strict;
  if (typeof logFile === 'string') gw.admin.log_file = logFile;
  if (accessPath !== undefined) gw.admin.access_log_path = accessPath;
  if (admin.managed !== undefined && typeof admin.managed !== 'boolean') throw invalid('admin.managed', 'must be a boolean');
  gw.admin.managed = admin.managed === true; // readiness then waits for the operator's generation
  setupOffload(gw, admin, opts.offload); // logs why once and runs without it when it cannot
  setupSplice(gw); // splice(2) for bulk stream sessions; none without the addon or with L7MP_SPLICE=off
  const bodyLimit = (rawLimits as Record<string, unknown> | undefined)?.max_body_bytes;
  if (bodyLimit !== undefined) {
    if (typeof bodyLimit !== 'number' || bodyLimit < 1) throw invalid('admin.limits.max_body_bytes', 'must be a positive number');
    gw.admin.max_body_bytes = bodyLimit;
  }
  gw.admin.drain_timeout = parseDrainTimeout(admin.drain_timeout); // ms for SIGTERM/SIGINT (core/drain.ts)
  gw.limits.settings = parseEdgeLimits(rawLimits as Record<string, unknown> | undefined); // JSONSocket header, message buffer, YAML body bounds (core/limits.ts)
  gw.admission.logLimits(log);
  // A config that does not apply still ran setupOffload: stop() detaches the program again.
  await gw.applyConfig(cfg, true).catch(async (err: unknown) => { await gw.stop(); throw err; });
  // Routes to clusters that do not exist: refused in strict mode; otherwise
  // warned about here and named by /ready until they exist (dangling-routes.ts).
  const dangling = danglingClusterRefs(gw);
  if (dangling.length > 0 && strict) {
    await gw.stop();
    throw new GatewayError('INVALID_INPUT', `${dangling.map(describeDangling).join('; ')} (strict mode; without -s the gateway starts and /ready reports it)`);
  }
  for (const d of dangling) log.warn({ route: d.route, cluster: d.cluster, role: d.role }, `${describeDangling(d)}: its sessions will fail; /ready answers 503 until it exists`);
  // Metrics, /live and /ready on their own port, once the config is in place.
  await startAdminListener(gw, adminListener).catch(async (err: unknown) => { await gw.stop(); throw err; });
  logApiSecurity(gw, apiSecurity);
  return gw;
}
