// Upstream health settings of a cluster, parsed once into typed values:
// `outlier_detection` (passive ejection), `health_check` (active probes) and
// `loadbalancer.panic_threshold`. All times are milliseconds.
//
// Both features are opt-in, as in Envoy: a cluster without them uses every
// endpoint, and its endpoints' health shows as "unknown".

import { invalid } from '../core/errors.js';
import { isObject } from '../core/is-object.js';

export interface OutlierSettings {
  /** Failures in a row (connect failure, reset before the first byte, HTTP 5xx) that eject an endpoint. */
  readonly consecutive_failures: number;
  /** An ejection lasts base_ejection_time × (times ejected), at most max_ejection_time. */
  readonly base_ejection_time: number;
  readonly max_ejection_time: number;
  /** At most this share of a cluster's endpoints is ejected at once (at least one may always be). */
  readonly max_ejection_percent: number;
}

export type ProbeKind = 'connect' | 'HTTP';

export interface HealthCheckSettings {
  readonly interval: number;
  readonly timeout: number;
  readonly unhealthy_threshold: number;
  readonly healthy_threshold: number;
  /** Probe kind; undefined: chosen from the cluster protocol (HTTP for HTTP clusters, else a connect). */
  readonly protocol: ProbeKind | undefined;
  /** HTTP probe path. */
  readonly path: string;
  /** Accepted HTTP statuses as inclusive ranges. */
  readonly expect: readonly (readonly [number, number])[];
  /** Bytes sent after connecting, and bytes the answer must contain. */
  readonly send: Uint8Array | undefined;
  readonly receive: Uint8Array | undefined;
}

export const OUTLIER_DEFAULTS: OutlierSettings = {
  consecutive_failures: 5,
  base_ejection_time: 30_000,
  max_ejection_time: 300_000,
  max_ejection_percent: 10,
};

export const HEALTH_CHECK_DEFAULTS = {
  interval: 5000,
  timeout: 1000,
  unhealthy_threshold: 3,
  healthy_threshold: 2,
  path: '/',
  expect: [[200, 399]] as const,
};

/** Envoy's healthy_panic_threshold default: below 50 % usable endpoints, use them all. */
export const DEFAULT_PANIC_THRESHOLD = 50;

/** Bounds that keep probing cheap: a probe at most every 50 ms per endpoint, small payloads. */
const MIN_INTERVAL = 50;
const MAX_TIME = 3_600_000;
const MAX_PAYLOAD = 1024;
const MAX_EXPECT = 32;

function num(raw: Record<string, unknown>, key: string, field: string, def: number, min: number, max: number, integer = true): number {
  const v = raw[key];
  if (v === undefined || v === null) return def;
  if (typeof v !== 'number' || !Number.isFinite(v) || v < min || v > max || (integer && !Number.isInteger(v))) {
    throw invalid(`${field}.${key}`, `must be ${integer ? 'an integer' : 'a number'} between ${min} and ${max}`);
  }
  return v;
}

export function parseOutlier(raw: unknown, field: string): OutlierSettings | undefined {
  if (raw === undefined || raw === null) return undefined;
  if (!isObject(raw)) throw invalid(field, 'must be an object {consecutive_failures, base_ejection_time, max_ejection_percent}');
  const d = OUTLIER_DEFAULTS;
  const base = num(raw, 'base_ejection_time', field, d.base_ejection_time, 1, MAX_TIME);
  return {
    consecutive_failures: num(raw, 'consecutive_failures', field, d.consecutive_failures, 1, 1000),
    base_ejection_time: base,
    max_ejection_time: num(raw, 'max_ejection_time', field, Math.max(base, d.max_ejection_time), base, MAX_TIME),
    max_ejection_percent: num(raw, 'max_ejection_percent', field, d.max_ejection_percent, 0, 100, false),
  };
}

/** A payload: "hex:0a0b..." is hex, any other string is UTF-8 text. */
function payload(raw: Record<string, unknown>, key: string, field: string): Uint8Array | undefined {
  const v = raw[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'string' || v.length === 0) throw invalid(`${field}.${key}`, 'must be a non-empty string (text, or "hex:" and hex digits)');
  let bytes: Uint8Array;
  if (v.startsWith('hex:')) {
    const hex = v.slice(4);
    if (hex.length === 0 || hex.length % 2 !== 0 || !/^[0-9a-fA-F]+$/.test(hex)) {
      throw invalid(`${field}.${key}`, 'after "hex:" needs an even number of hex digits');
    }
    bytes = Buffer.from(hex, 'hex');
  } else {
    bytes = Buffer.from(v, 'utf8');
  }
  if (bytes.byteLength > MAX_PAYLOAD) throw invalid(`${field}.${key}`, `must be at most ${MAX_PAYLOAD} bytes`);
  return bytes;
}

/** `expect`: status codes and "lo-hi" ranges, e.g. [200, "300-399"]. */
function expectList(raw: Record<string, unknown>, field: string): (readonly [number, number])[] {
  const v = raw.expect;
  if (v === undefined || v === null) return HEALTH_CHECK_DEFAULTS.expect.map((r) => [r[0], r[1]] as const);
  const items = Array.isArray(v) ? v : [v];
  if (items.length === 0 || items.length > MAX_EXPECT) throw invalid(`${field}.expect`, `must list 1 to ${MAX_EXPECT} statuses or ranges`);
  return items.map((it, i) => {
    const f = `${field}.expect[${i}]`;
    const status = (n: number): number => {
      if (!Number.isInteger(n) || n < 100 || n > 599) throw invalid(f, 'statuses are integers 100..599');
      return n;
    };
    if (typeof it === 'number') return [status(it), status(it)] as const;
    const m = typeof it === 'string' ? /^(\d{3})(?:-(\d{3}))?$/.exec(it) : null;
    if (!m) throw invalid(f, 'must be a status (200) or a range ("200-299")');
    const lo = status(Number(m[1]));
    const hi = status(Number(m[2] ?? m[1]));
    if (hi < lo) throw invalid(f, 'range must go from low to high');
    return [lo, hi] as const;
  });
}

export function parseHealthCheck(raw: unknown, field: string): HealthCheckSettings | undefined {
  if (raw === undefined || raw === null) return undefined;
  if (!isObject(raw)) throw invalid(field, 'must be an object {interval, timeout, unhealthy_threshold, healthy_threshold, ...}');
  const d = HEALTH_CHECK_DEFAULTS;
  const interval = num(raw, 'interval', field, d.interval, MIN_INTERVAL, MAX_TIME);
  const timeout = num(raw, 'timeout', field, Math.min(d.timeout, interval), 10, interval);
  const p = raw.protocol;
  let protocol: ProbeKind | undefined;
  if (p !== undefined && p !== null) {
    if (p === 'HTTP' || p === 'http') protocol = 'HTTP';
    else if (p === 'connect' || p === 'TCP') protocol = 'connect';
    else throw invalid(`${field}.protocol`, 'must be "HTTP" or "connect"');
  }
  const path = raw.path ?? d.path;
  if (typeof path !== 'string' || path.length > 1024 || !/^\/[\x21-\x7e]*$/.test(path)) {
    throw invalid(`${field}.path`, 'must be a path starting with "/" without spaces or control characters');
  }
  const send = payload(raw, 'send', field);
  const receive = payload(raw, 'receive', field);
  if (receive !== undefined && send === undefined) throw invalid(`${field}.receive`, 'needs a `send` to answer');
  return {
    interval,
    timeout,
    unhealthy_threshold: num(raw, 'unhealthy_threshold', field, d.unhealthy_threshold, 1, 100),
    healthy_threshold: num(raw, 'healthy_threshold', field, d.healthy_threshold, 1, 100),
    protocol,
    path,
    expect: expectList(raw, field),
    send,
    receive,
  };
}

/** `loadbalancer.panic_threshold` (percent, 0 turns panic mode off). */
export function parsePanicThreshold(lb: unknown, field: string): number {
  if (!isObject(lb)) return DEFAULT_PANIC_THRESHOLD;
  return num(lb, 'panic_threshold', field, DEFAULT_PANIC_THRESHOLD, 0, 100, false);
}

/** The settings as the user could give them back (cluster dumps). */
export function dumpHealthCheck(h: HealthCheckSettings): Record<string, unknown> {
  const text = (b: Uint8Array): string => {
    const s = Buffer.from(b).toString('utf8');
    return Buffer.from(s, 'utf8').equals(b) && !s.startsWith('hex:') ? s : `hex:${Buffer.from(b).toString('hex')}`;
  };
  return {
    interval: h.interval,
    timeout: h.timeout,
    unhealthy_threshold: h.unhealthy_threshold,
    healthy_threshold: h.healthy_threshold,
    ...(h.protocol !== undefined ? { protocol: h.protocol } : {}),
    path: h.path,
    expect: h.expect.map(([lo, hi]) => (lo === hi ? lo : `${lo}-${hi}`)),
    ...(h.send !== undefined ? { send: text(h.send) } : {}),
    ...(h.receive !== undefined ? { receive: text(h.receive) } : {}),
  };
}
