// Object names and the implicit names of embedded objects.
//
// l7mp names an embedded object after its parent plus a per-class counter:
// `<listener>-RuleList-<N>`, `<rulelist>-Rule-<N>`, `<rule>-Route-<N>`,
// `<cluster>-EndPoint-<N>`. Clusters embedded in a route are named after their
// place in it: `<route>-Cluster-0` for the destination and
// `<route>-ingress-Cluster-<i>` / `<route>-egress-Cluster-<i>` for the chains,
// which is what l7mp users see (e.g. udp-listener-RuleList-1-Rule-1-Route-1-ingress-Cluster-0
// after the controller listener took the 0s). A name that is taken gets `_1`, `_2`, ...

import { invalid } from './errors.js';

export type CountedKind = 'RuleList' | 'Rule' | 'Route' | 'EndPoint';

export class NameCounters {
  private counts: Record<CountedKind, number> = { RuleList: 0, Rule: 0, Route: 0, EndPoint: 0 };

  next(kind: CountedKind): number {
    return this.counts[kind]++;
  }

  snapshot(): Record<CountedKind, number> {
    return { ...this.counts };
  }

  restore(s: Record<CountedKind, number>): void {
    this.counts = { ...s };
  }
}

/**
 * A user-given object name: a non-empty string without white space (as in
 * l7mp) or control characters, and not `.` or `..`. A name is a path segment
 * of the REST API (`/api/v1/listeners/<name>`): URL parsers resolve `.` and
 * `..` (also percent-encoded) away, so such an object could never be read or
 * deleted again. `/` stays allowed: URL-encoded as %2F it is one segment, and
 * l7mp's operator (and ours, operator/src/names.ts) names every object
 * `/l7mp.io/v1/<Kind>/<ns>/<name>`.
 */
export function checkName(v: unknown, field: string): string {
  if (typeof v !== 'string' || v.length === 0) throw invalid(field, 'must be a non-empty string');
  if (/\s/.test(v)) throw invalid(field, 'must not contain white space');
  // eslint-disable-next-line no-control-regex
  if (/[\x00-\x1f\x7f]/.test(v)) throw invalid(field, 'must not contain control characters');
  if (v === '.' || v === '..') throw invalid(field, `must not be "${v}" (URL parsers resolve it away: the object could never be deleted)`);
  if (v.length > 512) throw invalid(field, 'must be at most 512 characters');
  return v;
}

/** Append _1, _2, ... until `taken` says no. */
export function dedupe(base: string, taken: (n: string) => boolean): string {
  if (!taken(base)) return base;
  for (let i = 1; i < 10_000; i++) {
    const n = `${base}_${i}`;
    if (!taken(n)) return n;
  }
  throw invalid('name', `cannot find a free name for "${base}"`);
}
