// Which data path a case's sessions must show in GET /api/v1/sessions, and
// the check itself (at most one GET per case).
//
// This repository's gateway carries a TCP or Unix stream session on the raw
// socket path (accepted, connected and forwarded in the native addon) when
// both sides can take it and the route needs no user-space bytes; such a
// session shows `"path": "raw"`. With L7MP_TCP_FASTPATH=off it takes the
// net.Socket path and shows no `path`. Which sides can take it is data
// (`rawPath` of a listener or cluster peer, peers.ts); which routes can is
// read from the config the case gives its listener, by the same rule as
// gateway/src/dataplane/raw-route.ts: no ingress or egress stage, no retry
// that relinks a stage (retry_on disconnect or always).
//
// A positive check runs while the case's session is live (before the client
// closes it): the listener's linked sessions (CONNECTED, FINALIZING, or
// ended after a CONNECT event and kept by options.track) must all show the
// expected path, and there must be one. A negative check (a pair with one
// raw-capable side that must not take the path) only asks that no session
// shows `"path": "raw"`. A raw session a compiled listener set up
// (gateway/src/fastpath/compiled.ts) also shows `"splice": {"compiled":
// true}`; the check notes whether all it read were such, for the report.

import { apiOk } from './util.js';

/** How the gateway under test was started: 'on' the raw path is on (the default), 'off' with L7MP_TCP_FASTPATH=off. */
export type TcpFastpath = 'on' | 'off';

/** What a case's sessions must show: `raw`; `socket` (no `path`); `not-raw` (anything but `raw`). */
export type PathExpectation = 'raw' | 'socket' | 'not-raw';

/** The part of a route the raw path's eligibility reads. */
interface RouteLike {
  readonly ingress?: readonly unknown[];
  readonly egress?: readonly unknown[];
  readonly retry?: { readonly retry_on?: string };
}

interface RuleLike {
  readonly action?: { readonly route?: unknown };
}

/** Whether a session on this route may take the raw path (gateway/src/dataplane/raw-route.ts). */
export function routeAllowsRaw(route: unknown): boolean {
  // A route named, not embedded, is not resolved here: the suite embeds every route it writes.
  if (typeof route !== 'object' || route === null) return false;
  const r = route as RouteLike;
  const relinks = r.retry?.retry_on === 'disconnect' || r.retry?.retry_on === 'always';
  return (r.ingress ?? []).length === 0 && (r.egress ?? []).length === 0 && !relinks;
}

/** The routes a listener config can take: its rules, or the rules of the rulelist it names. */
function routesOf(listener: Record<string, unknown>, rulelists: readonly unknown[]): unknown[] {
  let rules = listener.rules;
  if (typeof rules === 'string') {
    rules = (rulelists as { name?: string; rules?: unknown }[]).find((l) => l?.name === rules)?.rules;
  }
  return Array.isArray(rules) ? rules.map((r) => (r as RuleLike)?.action?.route) : [undefined];
}

/**
 * What a listener's sessions must show. `sides`: whether the listener's and
 * the destination cluster's protocols can take the raw path. Undefined (no
 * check) when neither can, or when the gateway under test is not ours.
 */
export function expectPath(fastpath: TcpFastpath | undefined, sides: { listener: boolean; cluster: boolean }, listener: Record<string, unknown>, rulelists: readonly unknown[] = []): PathExpectation | undefined {
  if (fastpath === undefined || (!sides.listener && !sides.cluster)) return undefined;
  const eligible = sides.listener && sides.cluster && routesOf(listener, rulelists).every(routeAllowsRaw);
  if (!eligible) return 'not-raw';
  return fastpath === 'on' ? 'raw' : 'socket';
}

interface SessionLike {
  readonly name?: string;
  readonly status?: string;
  readonly path?: unknown;
  readonly splice?: { readonly compiled?: unknown };
  readonly source?: { readonly origin?: string };
  readonly events?: readonly { readonly event?: string }[];
}

function linked(s: SessionLike): boolean {
  if (s.status === 'CONNECTED' || s.status === 'FINALIZING') return true;
  return s.status === 'DESTROYED' && (s.events ?? []).some((e) => e?.event === 'CONNECT');
}

const shown = (s: SessionLike): string => `${s.name ?? '?'} (${s.status ?? '?'}) ${s.path === undefined ? 'no path' : `path ${JSON.stringify(s.path)}`}`;

/** One case's path check: the first call checks (one GET), later calls return its outcome. */
export class PathCheck {
  private outcome: Promise<void> | undefined;
  /** After a passing `raw` check: whether every session it read was set up by the addon (a compiled listener). */
  compiled = false;

  constructor(private readonly apiBase: string, private readonly listener: string, readonly expect: PathExpectation) {}

  /** Whether the check has run (or is running). */
  get done(): boolean {
    return this.outcome !== undefined;
  }

  /** Check now, while the case's session is live; once per case. Throws naming the sessions that differ. */
  whileLive(): Promise<void> {
    this.outcome ??= this.check();
    return this.outcome;
  }

  private async check(): Promise<void> {
    const list = await apiOk(this.apiBase, 'GET', '/api/v1/sessions');
    if (!Array.isArray(list)) throw new Error('path check: GET /api/v1/sessions did not return an array');
    const mine = (list as SessionLike[]).filter((s) => s?.source?.origin === this.listener);
    if (this.expect === 'not-raw') {
      const raw = mine.filter((s) => s.path === 'raw');
      if (raw.length > 0) throw new Error(`path check: this route needs the bytes in user space, but ${raw.length} session(s) show "path": "raw": ${raw.slice(0, 3).map(shown).join(', ')}`);
      return;
    }
    const live = mine.filter(linked);
    if (live.length === 0) {
      throw new Error(`path check: no linked session of listener ${this.listener} to read the path from (sessions: ${mine.map(shown).join(', ') || 'none'})`);
    }
    const want = this.expect === 'raw' ? 'raw' : undefined;
    const off = live.filter((s) => s.path !== want);
    if (off.length > 0) {
      const what = want === 'raw' ? '"path": "raw" (the raw socket path)' : 'no "path" (the net.Socket path, L7MP_TCP_FASTPATH=off)';
      throw new Error(`path check: expected ${what} on every linked session, ${off.length} of ${live.length} differ: ${off.slice(0, 3).map(shown).join(', ')}`);
    }
    this.compiled = want === 'raw' && live.every((s) => s.splice?.compiled === true);
  }
}

/**
 * --only patterns for the rows and columns of every protocol whose listener
 * or cluster the raw path can take (`rawPath` in peers.ts): `TCP:*,*:TCP,...`.
 */
export function rawPathPatterns(listeners: Readonly<Record<string, { rawPath?: boolean }>>, clusters: Readonly<Record<string, { rawPath?: boolean }>>): string {
  const names = [...new Set([...Object.keys(listeners).filter((n) => listeners[n]!.rawPath === true), ...Object.keys(clusters).filter((n) => clusters[n]!.rawPath === true)])];
  return names.flatMap((n) => [`${n}:*`, `*:${n}`]).join(',');
}
