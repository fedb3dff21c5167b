// The admin section, parsed in this one module: checked against the spec's
// Admin schema (admin-schema.ts), then turned into one typed settings object
// per consumer, defaults filled in. No other module reads a raw admin object.
//
// The defaults are today's defaults, kept beside their consumers
// (DEFAULT_LIMITS in core/admission.ts, DEFAULT_EDGE_LIMITS in core/limits.ts,
// ADMIN_DEFAULTS in observe/probe-listener.ts, ...) because the gateway also
// runs on them without any config (tests, a Gateway built by hand). The spec
// carries no `default` keywords for them: several are derived (flow_burst is
// at least flow_rate, api_burst at least api_rate) and one depends on whether
// the section was given at all (admin.metrics).

import path from 'node:path';
import fs from 'node:fs';
import os from 'node:os';
import { GatewayError, invalid } from '../core/errors.js';
import { DEFAULT_LIMITS, type AdmissionLimits } from '../core/admission.js';
import { DEFAULT_EDGE_LIMITS, type EdgeLimitSettings } from '../core/limits.js';
import { DEFAULT_DRAIN_TIMEOUT_MS } from '../core/drain.js';
import type { ApiSettings } from '../api/security.js';
import { ADMIN_DEFAULTS, type AdminListenerConfig } from '../observe/probe-listener.js';
import type { LevelName } from '../observe/log.js';
import { resolveLogFormat, type LogFormat } from '../observe/log-text.js';
import { argvOf } from '../protocols/stdiofork/index.js';
import { checkAdminSchema, type AdminInput } from './admin-schema.js';
import { knownAdminKeys, unknownAdminKeys } from './admin-keys.js';
import { resolveApiToken } from './api-token.js';
import { parseLogLevel } from './log-level.js';
import { parseOffloadConfig, type OffloadCli, type OffloadConfig } from './offload.js';
import type { AdminSettings } from './admin-settings.js';
import { isObject } from '../core/is-object.js';

export type { AdminSettings };

export interface LogSettings {
  readonly level: LevelName;
  /** stdout, stderr or a file path; undefined: the logger's default. */
  readonly file: string | undefined;
  readonly format: LogFormat;
}

/** The static config's admin section, one typed part per consumer. */
export interface AdminConfig {
  /** -s or admin.strict: unknown admin keys and routes to missing clusters are errors. */
  readonly strict: boolean;
  readonly log: LogSettings;
  readonly accessLogPath: string | undefined;
  /** The REST API's token and rate limit (api/security.ts). */
  readonly api: ApiSettings;
  /** The probe and metrics listener (observe/probe-listener.ts). */
  readonly probes: AdminListenerConfig;
  /** The programs STDIO-fork clusters may run; undefined: STDIO-fork is off. */
  readonly stdioForkCommands: string[][] | undefined;
  /** The only directory REST calls may name files in (resolved); undefined: none. */
  readonly fileRoot: string | undefined;
  /** Data-plane admission (core/admission.ts). */
  readonly admission: AdmissionLimits;
  /** Bounds on what one client may make the gateway hold (core/limits.ts). */
  readonly edge: EdgeLimitSettings;
  /** Largest REST body; undefined: the gateway's default. */
  readonly maxBodyBytes: number | undefined;
  /** Milliseconds for SIGTERM/SIGINT (core/drain.ts). */
  readonly drainTimeout: number;
  readonly offload: OffloadConfig;
  /** Readiness waits for the operator's admin.generation. */
  readonly managed: boolean;
  /** Data-plane worker processes; 1: the data plane runs in this process (docs/workers.md). */
  readonly workers: number;
}

/** What overrides or completes the admin section: the command line and the environment. */
export interface AdminInputs {
  /** -l */
  readonly logLevel?: LevelName;
  /** -s */
  readonly strict?: boolean;
  /** -o / -i */
  readonly offload?: OffloadCli;
  /** -w */
  readonly workers?: number | 'auto';
  /**
   * In a data-plane worker: how many workers share the gateway-wide limits
   * (max_sessions, and a source's flow rate, whose flows the kernel spreads
   * over the workers); each worker enforces its share.
   */
  readonly limitShares?: number;
  /** L7MP_API_TOKEN, L7MP_LOG_FORMAT; process.env by default. */
  readonly env?: NodeJS.ProcessEnv;
}

/**
 * Settings where an empty YAML value (`metrics:`, read as null) has always
 * meant "not set"; the schema would refuse the null.
 */
const NULL_IS_UNSET = ['log_level', 'metrics', 'stdio_fork', 'file_root', 'offload_ifs'];

/** The admin section without the nulls that mean "unset". */
function withoutUnsetNulls(raw: unknown): unknown {
  if (raw === undefined || raw === null) return {};
  if (!isObject(raw)) return raw;
  const out = { ...raw };
  for (const k of NULL_IS_UNSET) if (out[k] === null) delete out[k];
  return out;
}

/** Parse the static config's admin section; throws invalid(field) naming the first bad setting. */
export function parseAdmin(raw: unknown, inputs: AdminInputs = {}): AdminConfig {
  const admin = withoutUnsetNulls(raw);
  if (!isObject(admin)) throw invalid('admin', 'must be an object');
  const strict = inputs.strict ?? admin.strict === true;
  if (strict) {
    // The schema lets unknown admin keys through, as l7mp did; strict mode does not.
    const unknown = unknownAdminKeys(admin);
    if (unknown.length > 0) {
      throw invalid(unknown[0]!, `unknown admin setting${unknown.length > 1 ? 's' : ''} ${unknown.join(', ')} (strict mode); the admin settings are ${knownAdminKeys().join(', ')}`);
    }
  }
  checkAdminSchema(admin);
  const env = inputs.env ?? process.env;
  const level = inputs.logLevel ?? parseLogLevel(admin.log_level ?? 'info', 'admin.log_level');
  return {
    strict,
    log: { level, file: admin.log_file, format: resolveLogFormat(admin.log_format, env.L7MP_LOG_FORMAT, admin.log_file) },
    accessLogPath: admin.access_log_path,
    api: apiSettings(admin, env),
    probes: parseProbeListener(admin.metrics),
    stdioForkCommands: stdioForkCommands(admin.stdio_fork),
    fileRoot: fileRoot(admin.file_root),
    admission: admissionLimits(admin.limits, inputs.limitShares ?? 1),
    edge: edgeLimits(admin.limits),
    maxBodyBytes: admin.limits?.max_body_bytes,
    drainTimeout: admin.drain_timeout ?? DEFAULT_DRAIN_TIMEOUT_MS,
    offload: parseOffloadConfig(admin, inputs.offload),
    managed: admin.managed === true,
    workers: workerCount(inputs.workers ?? admin.workers),
  };
}

/** admin.workers / -w: a count, or "auto" for one per available core. */
export function workerCount(v: number | 'auto' | undefined, cores = os.availableParallelism()): number {
  if (v === undefined) return 1;
  if (v === 'auto') return Math.max(1, cores);
  if (!Number.isInteger(v) || v < 1 || v > 1024) throw invalid('admin.workers', 'must be an integer from 1 to 1024 or "auto"');
  return v;
}

function edgeLimits(l: AdminInput['limits']): EdgeLimitSettings {
  const d = DEFAULT_EDGE_LIMITS;
  return {
    jsonsocket_header_bytes: l?.jsonsocket_header_bytes ?? d.jsonsocket_header_bytes,
    jsonsocket_header_depth: l?.jsonsocket_header_depth ?? d.jsonsocket_header_depth,
    message_buffer_bytes: l?.message_buffer_bytes ?? d.message_buffer_bytes,
    yaml_body_bytes: l?.yaml_body_bytes ?? d.yaml_body_bytes,
    yaml_aliases: l?.yaml_aliases ?? d.yaml_aliases,
  };
}

function apiSettings(admin: AdminInput, env: NodeJS.ProcessEnv): ApiSettings {
  const { token, source } = resolveApiToken(admin, env);
  const l = admin.limits;
  return {
    token,
    tokenSource: source,
    ...(l?.api_rate !== undefined ? { rate: l.api_rate } : {}),
    ...(l?.api_burst !== undefined ? { burst: l.api_burst } : {}),
  };
}

function admissionLimits(l: AdminInput['limits'], shares: number): AdmissionLimits {
  const flowRate = l?.flow_rate ?? DEFAULT_LIMITS.flowRate;
  // A rate above the default burst would otherwise be capped by the burst.
  const flowBurst = l?.flow_burst ?? Math.max(DEFAULT_LIMITS.flowBurst, flowRate);
  return {
    maxSessions: Math.ceil((l?.max_sessions ?? DEFAULT_LIMITS.maxSessions) / shares),
    // A listener's cap holds in each worker that runs it (docs/workers.md).
    listenerMaxSessions: l?.listener_max_sessions ?? DEFAULT_LIMITS.listenerMaxSessions,
    flowRate: flowRate / shares,
    flowBurst: Math.ceil(flowBurst / shares),
    flowSources: l?.flow_sources ?? DEFAULT_LIMITS.flowSources,
    fdReserve: l?.fd_reserve ?? DEFAULT_LIMITS.fdReserve,
  };
}

/** admin.metrics: absent, the defaults (a taken default port is only a warning); false, off. */
export function parseProbeListener(m: AdminInput['metrics']): AdminListenerConfig {
  const field = 'admin.metrics';
  if (m === undefined) return { enabled: true, ...ADMIN_DEFAULTS, explicit: false };
  if (m === false) return { enabled: false, ...ADMIN_DEFAULTS, explicit: true };
  if (m === true) throw invalid(field, 'must be an object {enabled, address, port, path} or false');
  const address = m.address ?? ADMIN_DEFAULTS.address;
  if (address === '') throw invalid(`${field}.address`, 'must be an IP address or host name');
  const port = m.port ?? ADMIN_DEFAULTS.port;
  const p = m.path ?? ADMIN_DEFAULTS.path;
  if (!p.startsWith('/') || p.length > 256) throw invalid(`${field}.path`, 'must be a URL path starting with "/"');
  if (p === '/live' || p === '/ready') throw invalid(`${field}.path`, `"${p}" is taken by the health checks`);
  return { enabled: (m.enabled ?? true) && port !== 0, address, port, path: p, explicit: true };
}

function stdioForkCommands(s: AdminInput['stdio_fork']): string[][] | undefined {
  if (s === undefined) return undefined;
  if (s.commands === undefined) throw invalid('admin.stdio_fork.commands', 'must be a list of commands');
  return s.commands.map((c, i) => argvOf(c, `admin.stdio_fork.commands[${i}]`));
}

/** admin.file_root, resolved: symbolic links in it cannot later lead REST paths elsewhere. */
function fileRoot(v: string | undefined): string | undefined {
  const field = 'admin.file_root';
  if (v === undefined) return undefined;
  if (v === '' || !path.isAbsolute(v)) throw invalid(field, 'must be the absolute path of a directory');
  let real: string;
  try {
    real = fs.realpathSync(v);
  } catch (err) {
    throw invalid(field, `cannot resolve "${v}": ${(err as Error).message}`);
  }
  if (!fs.statSync(real).isDirectory()) throw invalid(field, `"${v}" is not a directory`);
  return real;
}

// ------------------------------------------------------------ applyAdmin

/** What applyAdmin may change at run time. */
export interface AdminUpdate {
  readonly log_level?: LevelName;
  readonly strict?: boolean;
  readonly generation?: string;
}

/** Settings REST may name but never set: the control plane's own security and what is fixed at start. */
const STATIC_ONLY = ['api_token', 'api_token_file', 'limits', 'managed', 'file_root', 'drain_timeout', 'workers'];
const UPDATABLE = ['log_level', 'strict', 'log_file', 'access_log_path', 'offload', 'offload_ifs', 'version', 'generation'];

/** Parse an applyAdmin body's admin object against the running settings; throws what the call answers. */
export function parseAdminUpdate(a: unknown, current: Pick<AdminSettings, 'offload' | 'offload_ifs'>): AdminUpdate {
  if (!isObject(a)) throw invalid('admin', 'must be an object');
  const log_level = a.log_level === undefined ? undefined : parseLogLevel(a.log_level, 'admin.log_level');
  for (const k of STATIC_ONLY) {
    if (a[k] !== undefined) throw new GatewayError('FORBIDDEN', `admin.${k} can only be set in the static config`, `admin.${k}`);
  }
  for (const k of Object.keys(a)) if (!UPDATABLE.includes(k)) throw invalid(`admin.${k}`, 'unknown setting');
  if (a.strict !== undefined && typeof a.strict !== 'boolean') throw invalid('admin.strict', 'must be a boolean');
  if (a.generation !== undefined && (typeof a.generation !== 'string' || !/^\S{1,256}$/.test(a.generation))) {
    throw invalid('admin.generation', 'must be a string of 1 to 256 visible characters');
  }
  // The offload's BPF programs are attached at start: a POST may repeat the
  // current setting (a GET read back), never change it.
  for (const k of ['offload', 'offload_ifs'] as const) {
    if (a[k] !== undefined && JSON.stringify(a[k]) !== JSON.stringify(current[k])) {
      throw new GatewayError('NOT_SUPPORTED', `admin.${k} can only be set in the static config or with -o/-i (the kernel offload is attached at start); it is ${JSON.stringify(current[k] ?? null)}`, `admin.${k}`);
    }
  }
  if (a.log_file !== undefined || a.access_log_path !== undefined) {
    throw new GatewayError('NOT_SUPPORTED', 'admin.log_file and admin.access_log_path can only be set in the static config', 'admin');
  }
  return {
    ...(log_level !== undefined ? { log_level } : {}),
    ...(a.strict !== undefined ? { strict: a.strict as boolean } : {}),
    ...(a.generation !== undefined ? { generation: a.generation as string } : {}),
  };
}
