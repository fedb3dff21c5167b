// The guard in front of the REST API: a per-client request rate limit and an
// optional bearer token. It runs when an L7mpController session starts, on the
// request head only, so a rejected call is answered before its body is read.
//
// Order: rate limit first (so token guessing is rate limited too), then the
// token. Configuration (static config only, never REST; config/admin.ts parses it):
//
//   admin:
//     api_token: "..."            # or api_token_file: /run/secrets/l7mp-token
//     limits: { api_rate: 50, api_burst: 100, max_body_bytes: 1048576 }
//
// The environment variable L7MP_API_TOKEN, when set and non-empty, wins over
// admin.api_token/api_token_file (config/api-token.ts).

import { createHash, timingSafeEqual } from 'node:crypto';
import { isIP } from 'node:net';
import { GatewayError, invalid } from '../core/errors.js';
import type { Gateway } from '../core/gateway.js';
import type { RefusalReason } from '../observe/refusals.js';

export const TOKEN_ENV = 'L7MP_API_TOKEN';
export const DEFAULT_API_RATE = 50;
export const DEFAULT_API_BURST = 100;
/** Clients tracked at once; beyond that idle (full) buckets go first, then the least recently seen. */
export const DEFAULT_MAX_CLIENTS = 10_000;

// ------------------------------------------------------------------ token

function sha256(s: string): Buffer {
  return createHash('sha256').update(s, 'utf8').digest();
}

/**
 * Whether a presented token equals the expected one, in time that does not
 * depend on where they differ or on their lengths: both are hashed to 32
 * bytes first, and the digests are compared with timingSafeEqual.
 */
export function tokenMatches(presented: string | undefined, expected: string): boolean {
  const a = sha256(presented ?? '');
  const b = sha256(expected);
  // Evaluate both: a missing token costs the same as a wrong one.
  const same = timingSafeEqual(a, b);
  return same && presented !== undefined;
}

/** The token of an `Authorization: Bearer <token>` header (scheme case-insensitive), or undefined. */
export function bearerToken(header: string | string[] | undefined): string | undefined {
  const v = Array.isArray(header) ? header[0] : header;
  if (v === undefined) return undefined;
  const m = /^\s*bearer\s+(\S+)\s*$/i.exec(v);
  return m ? m[1] : undefined;
}

// ------------------------------------------------------------- rate limit

interface Bucket {
  tokens: number;
  /** ms, from the limiter's clock. */
  last: number;
}

export type Take = { ok: true } | { ok: false; retryAfterSec: number };

/** The one answer for an admitted take: no object per request or new flow. */
const TAKEN: Take = Object.freeze({ ok: true });

/**
 * Token buckets keyed by client address: each holds up to `burst` requests and
 * refills at `rate` per second. The map is bounded: when it is full, buckets
 * that have refilled completely (idle clients, indistinguishable from new
 * ones) are dropped first, then the least recently seen client.
 */
export class RateLimiter {
  private readonly buckets = new Map<string, Bucket>();
  private lastSweep = -Infinity;

  constructor(
    readonly rate: number,
    readonly burst: number,
    readonly maxClients = DEFAULT_MAX_CLIENTS,
    private readonly now: () => number = () => performance.now(),
  ) {}

  get size(): number {
    return this.buckets.size;
  }

  take(key: string): Take {
    const t = this.now();
    let b = this.buckets.get(key);
    if (b) {
      b.tokens = Math.min(this.burst, b.tokens + ((t - b.last) / 1000) * this.rate);
      b.last = t;
      this.buckets.delete(key); // re-insert: the map's order is least recently seen first
    } else {
      this.makeRoom(t);
      b = { tokens: this.burst, last: t };
    }
    this.buckets.set(key, b);
    if (b.tokens >= 1) {
      b.tokens -= 1;
      return TAKEN;
    }
    return { ok: false, retryAfterSec: Math.max(1, Math.ceil((1 - b.tokens) / this.rate)) };
  }

  private makeRoom(t: number): void {
    if (this.buckets.size < this.maxClients) return;
    // A full sweep at most once a second keeps a flood of new addresses O(1) each.
    if (t - this.lastSweep >= 1000) {
      this.lastSweep = t;
      const refill = (this.burst / this.rate) * 1000;
      for (const [k, b] of this.buckets) if (t - b.last >= refill) this.buckets.delete(k);
    }
    while (this.buckets.size >= this.maxClients) {
      const oldest = this.buckets.keys().next().value as string;
      this.buckets.delete(oldest);
    }
  }
}

// ------------------------------------------------------------------ guard

/** What the controller answers instead of serving the call. */
export interface ApiRejection {
  readonly error: GatewayError;
  readonly headers: Record<string, string>;
  /** Counted as a refusal at the edge (observe/refusals.ts) rather than logged per call. */
  readonly refusal?: RefusalReason;
}

export interface ApiRequestHead {
  readonly headers: Record<string, string | string[] | undefined>;
  readonly remoteAddress: string;
  /** The address the controller's listener is bound to. */
  readonly localAddress?: string;
}

export interface ApiGuardOptions {
  token?: string | undefined;
  /** Requests per second per client; 0 turns the limit off. */
  rate?: number;
  burst?: number;
  maxClients?: number;
  now?: () => number;
}

export class ApiGuard {
  readonly token: string | undefined;
  readonly limiter: RateLimiter | undefined;

  constructor(opts: ApiGuardOptions = {}) {
    this.token = opts.token;
    const rate = opts.rate ?? DEFAULT_API_RATE;
    this.limiter = rate > 0 ? new RateLimiter(rate, opts.burst ?? Math.max(DEFAULT_API_BURST, rate), opts.maxClients, opts.now) : undefined;
  }

  /**
   * undefined: serve the call; otherwise the rejection to send. A `tokenFree`
   * request (a static page that carries no data, see api/static.ts) is rate
   * limited but needs no token.
   */
  admit(req: ApiRequestHead, tokenFree = false): ApiRejection | undefined {
    if (this.limiter) {
      const r = this.limiter.take(req.remoteAddress);
      if (!r.ok) {
        return {
          error: new GatewayError('RATE_LIMITED', `too many REST requests from ${req.remoteAddress}: the limit is ${this.limiter.rate}/s (burst ${this.limiter.burst}); retry in ${r.retryAfterSec} s`),
          headers: { 'retry-after': String(r.retryAfterSec) },
        };
      }
    }
    // Without a token, a loopback API trusts whoever can reach loopback, which
    // a browser can, for any web page, through DNS rebinding: such requests
    // carry the page's own host name. Only loopback names are served then.
    if (this.token === undefined && req.localAddress !== undefined && isLoopback(req.localAddress) && !isLoopbackHost(req.headers.host)) {
      const host = String(req.headers.host).slice(0, 100);
      return {
        error: new GatewayError('FORBIDDEN', `Host "${host}" is not a loopback name: a loopback API without an API token answers only requests for localhost, 127.x.x.x or [::1] (a defence against DNS rebinding); set an API token to use other names`),
        headers: {},
        refusal: 'api_host',
      };
    }
    if (this.token !== undefined && !tokenFree) {
      const presented = bearerToken(req.headers.authorization);
      if (!tokenMatches(presented, this.token)) {
        return presented === undefined
          ? {
            error: new GatewayError('UNAUTHORIZED', 'this controller requires a bearer token: send "Authorization: Bearer <token>"'),
            headers: { 'www-authenticate': 'Bearer realm="l7mp"' },
          }
          : {
            error: new GatewayError('UNAUTHORIZED', 'invalid bearer token'),
            headers: { 'www-authenticate': 'Bearer realm="l7mp", error="invalid_token"' },
          };
      }
    }
    return undefined;
  }
}

/** The API's settings, parsed from the static config and the environment by config/admin.ts. */
export interface ApiSettings {
  token: string | undefined;
  /** Where the token came from, for the startup log (never the token itself). */
  tokenSource: string | undefined;
  /** admin.limits.api_rate / api_burst; absent: the defaults. */
  rate?: number;
  burst?: number;
}

export interface ApiGuardSetting {
  guard: ApiGuard;
  tokenSource: string | undefined;
}

export function apiGuardFor(s: ApiSettings): ApiGuardSetting {
  return { guard: new ApiGuard({ token: s.token, ...(s.rate !== undefined ? { rate: s.rate } : {}), ...(s.burst !== undefined ? { burst: s.burst } : {}) }), tokenSource: s.tokenSource };
}

// --------------------------------------------------------------- exposure

export function isLoopback(address: string): boolean {
  const a = address.toLowerCase().replace(/^\[|\]$/g, '');
  if (a === 'localhost' || a === '::1' || a === '0:0:0:0:0:0:0:1') return true;
  const v4 = a.startsWith('::ffff:') ? a.slice(7) : a;
  return isIP(v4) === 4 && v4.startsWith('127.');
}

/**
 * Whether a Host header names loopback: localhost, 127.x.x.x or [::1], with
 * an optional port. No Host at all (HTTP/1.0 tools) is not a browser's request: allowed.
 */
export function isLoopbackHost(header: string | string[] | undefined): boolean {
  if (header === undefined) return true;
  const h = (Array.isArray(header) ? header[0] ?? '' : header).trim().toLowerCase();
  let name: string;
  if (h.startsWith('[')) {
    const end = h.indexOf(']');
    if (end < 0 || !/^(:\d{1,5})?$/.test(h.slice(end + 1))) return false;
    name = h.slice(1, end);
  } else {
    const m = /^([^:]+)(:\d{1,5})?$/.exec(h);
    if (!m) return false;
    name = m[1]!.replace(/\.$/, '');
  }
  return isLoopback(name);
}

export interface ControllerBinding {
  listener: string;
  address: string;
  port: unknown;
  tls: boolean;
}

/** The warnings a controller binding deserves: reachable from other hosts without a token, or a token in clear text. */
export function exposureWarnings(bindings: readonly ControllerBinding[], hasToken: boolean): string[] {
  const out: string[] = [];
  for (const b of bindings) {
    if (isLoopback(b.address)) continue;
    const where = `controller listener "${b.listener}" on ${b.address}:${String(b.port)}`;
    if (!hasToken) {
      out.push(`${where} is reachable from other hosts and no API token is set: anyone who can reach it can reconfigure the gateway; set admin.api_token(_file) or ${TOKEN_ENV}, or bind 127.0.0.1`);
    } else if (!b.tls) {
      out.push(`${where} is reachable from other hosts without TLS: the API token travels in clear text; add spec.tls {cert_file, key_file}`);
    }
  }
  return out;
}

/** The listeners whose rules (following `apply`) can route to an L7mpController cluster, with where they bind. */
export function controllerBindings(gw: Gateway): ControllerBinding[] {
  const out: ControllerBinding[] = [];
  for (const l of gw.listeners.values()) {
    const seen = new Set<string>();
    const servesController = (list: string): boolean => {
      if (seen.has(list)) return false;
      seen.add(list);
      for (const rn of gw.rulelists.get(list)?.rules ?? []) {
        const rule = gw.rules.get(rn);
        if (!rule) continue;
        if (rule.action.apply !== undefined && servesController(rule.action.apply)) return true;
        const route = rule.action.route !== undefined ? gw.routes.get(rule.action.route) : undefined;
        if (route && gw.clusters.get(route.destination)?.protocol.name === 'L7mpController') return true;
      }
      return false;
    };
    if (!servesController(l.rules)) continue;
    const spec = l.spec as Record<string, unknown>;
    out.push({ listener: l.name, address: typeof spec.address === 'string' ? spec.address : '0.0.0.0', port: spec.port, tls: spec.tls !== undefined });
  }
  return out;
}

/** The startup lines: where the token came from, and a warning per exposed controller. */
export function logApiSecurity(gw: Gateway, setting: ApiGuardSetting): void {
  if (setting.tokenSource !== undefined) gw.log.info({ source: setting.tokenSource }, 'REST API requires a bearer token');
  for (const w of exposureWarnings(controllerBindings(gw), setting.guard.token !== undefined)) gw.log.warn(w);
}
