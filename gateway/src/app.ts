// Assemble a gateway: logger, object graph, REST API, static config.

import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse as parseYaml } from 'yaml';
import { checkDepth, checkSchema, handleApi } from './api/controller.js';
import { isStaticPath } from './api/static.js';
import { apiGuardFromAdmin, logApiSecurity } from './api/security.js';
import { GatewayError, invalid } from './core/errors.js';
import { Gateway } from './core/gateway.js';
import { parseDrainTimeout } from './core/drain.js';
import { parseAdminListener, startAdminListener } from './observe/admin.js';
import { parseStdioForkAdmin } from './protocols/stdiofork.js';
import { createLogger, isLevelName, type LevelName, type Logger } from './observe/log.js';
import { GatewayMetrics } from './observe/metrics.js';
import { setupOffload, type OffloadCli } from './offload/index.js';

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

export function packageVersion(): string {
  const here = path.dirname(fileURLToPath(import.meta.url));
  for (const rel of ['../../package.json', '../../../package.json']) {
    try {
      return (JSON.parse(fs.readFileSync(path.join(here, rel), 'utf8')) as { version: string }).version;
    } catch { /* try the next */ }
  }
  return '0.0.0';
}

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
  const level = opts.logLevel ?? admin.log_level ?? 'info';
  if (!isLevelName(level)) throw invalid('admin.log_level', `unknown level "${String(level)}"`);
  const logFile = admin.log_file;
  if (logFile !== undefined && typeof logFile !== 'string') throw invalid('admin.log_file', 'must be stdout, stderr or a file path');
  const log = opts.logger ?? createLogger(level, logFile);
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
  const metrics = new GatewayMetrics();
  const gw = new Gateway({
    log,
    observer: metrics,
    version: packageVersion(),
    api: handleApi,
    allowStaticOnly: true,
    ...(stdioForkCommands ? { stdioForkCommands } : {}),
    admitApi: (ex) => apiSecurity.guard.admit(ex, isStaticPath(ex.method, ex.url)), // pages without data need no token
    ...(accessStream ? { accessLog: (line: Record<string, unknown>) => accessStream!.write(JSON.stringify(line) + '\n') } : {}),
  });
  metrics.attach(gw);
  gw.admin.log_level = level;
  gw.admin.strict = opts.strict ?? admin.strict === true;
  if (typeof logFile === 'string') gw.admin.log_file = logFile;
  if (accessPath !== undefined) gw.admin.access_log_path = accessPath;
  if (admin.managed !== undefined && typeof admin.managed !== 'boolean') throw invalid('admin.managed', 'must be a boolean');
  gw.admin.managed = admin.managed === true; // readiness then waits for the operator's generation
  setupOffload(gw, admin, opts.offload); // logs why once and runs without it when it cannot
  const limits = admin.limits as Record<string, unknown> | undefined;
  if (limits !== undefined) {
    if (typeof limits !== 'object' || limits === null) throw invalid('admin.limits', 'must be an object');
    if (limits.max_body_bytes !== undefined) {
      if (typeof limits.max_body_bytes !== 'number' || limits.max_body_bytes < 1) throw invalid('admin.limits.max_body_bytes', 'must be a positive number');
      gw.admin.max_body_bytes = limits.max_body_bytes;
    }
    if (limits.max_sessions !== undefined) {
      if (typeof limits.max_sessions !== 'number' || limits.max_sessions < 1) throw invalid('admin.limits.max_sessions', 'must be a positive number');
      gw.admin.max_sessions = limits.max_sessions;
    }
  }
  gw.admin.drain_timeout = parseDrainTimeout(admin.drain_timeout); // ms for SIGTERM/SIGINT (core/drain.ts)
  if (gw.admin.strict) {
    // Strict mode (-s): the whole file must match the spec's Config schema,
    // not only the parts the gateway reads.
    checkSchema('setConf', cfg);
  }
  // A config that does not apply still ran setupOffload: stop() detaches the program again.
  await gw.applyConfig(cfg, true).catch(async (err: unknown) => { await gw.stop(); throw err; });
  // Metrics, /live and /ready on their own port, once the config is in place.
  await startAdminListener(gw, adminListener).catch(async (err: unknown) => { await gw.stop(); throw err; });
  logApiSecurity(gw, apiSecurity);
  return gw;
}
