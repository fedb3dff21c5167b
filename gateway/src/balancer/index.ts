// Load balancers: pick one endpoint of a cluster for a session.
//
// Policies (the `loadbalancer.policy` of a cluster):
//
// - `Trivial` (default): the first listed endpoint. l7mp always took the first
//   one; we skip endpoints excluded by the caller (they failed on this
//   session's earlier attempts) and endpoints of weight 0, so weight 0 means
//   "drained" under every policy.
// - `WeightedRandom`: each endpoint with probability weight / total weight;
//   weight 0 is never picked. l7mp rejected this policy as unimplemented.
// - `ConsistentHash`, alias `HashRing`: a hash ring with virtual nodes
//   (POINTS_PER_WEIGHT points per unit of weight, hashed from the endpoint
//   NAME). The session key is read from the metadata with l7mp's `getAtPath`
//   (`key: IP/src_addr`, `key: /labels/user`). The same key always lands on
//   the same endpoint while the endpoint set stays the same, and adding or
//   removing one endpoint of N moves only about 1/N of the keys — the ones
//   that move go to (or come from) that endpoint only. With no `key`, or no
//   value at the key, the pick is weighted-random (as in l7mp, which hashed a
//   random number, but without its warning log: logging is the caller's).
//
// Differences from l7mp, on purpose:
// - The ring is keyed by endpoint name, not address: l7mp's ring collapsed two
//   endpoints that shared an address into one.
// - `toJSON()` dumps the policy name the user gave ('ConsistentHash' stays
//   'ConsistentHash'; l7mp always dumped 'HashRing') and no key when none was
//   set (l7mp dumped '<RANDOM>').
// - A ring walk honours `exclude`: a retry moves to the next endpoint
//   clockwise, the same one the key would map to if the excluded endpoint
//   were removed, so retries keep as much stickiness as they can.
//
// Upstream health (gateway/src/health) uses the same `exclude` set for
// endpoints that are ejected or fail their active checks, so under every
// policy an unhealthy endpoint is skipped without rebuilding anything, and
// on the ring only the keys of the skipped endpoints move (to the next
// usable endpoint clockwise), coming back when it does.

import { invalid } from '../core/errors.js';
import { compilePath, splitPath } from '../routing/jsonpath.js';

export interface BalancedEndpoint {
  readonly name: string;
  readonly address: string;
  readonly weight: number;
}

export interface Balancer<E extends BalancedEndpoint = BalancedEndpoint> {
  /** The policy name as configured (canonical for dumps). */
  readonly policy: string;
  readonly key: string | undefined;
  /** Replace the endpoint set; call whenever it changes. Weights must be finite and >= 0. */
  update(endpoints: readonly E[]): void;
  /**
   * Choose an endpoint for a session, avoiding the names in `exclude`.
   * `undefined` when no endpoint is left (none, all excluded, or all weight 0).
   */
  pick(metadata: object, exclude?: ReadonlySet<string>): E | undefined;
  toJSON(): { policy: string; key?: string };
}

export interface BalancerOptions {
  /** A source of uniform numbers in [0, 1); Math.random by default. */
  random?: () => number;
}

export const BALANCER_POLICIES: readonly string[] = ['Trivial', 'WeightedRandom', 'ConsistentHash', 'HashRing'];

/** Virtual nodes per unit of endpoint weight on the hash ring. */
export const POINTS_PER_WEIGHT = 160;

/** Cap on ring size; beyond it all endpoints' point counts are scaled down alike. */
export const MAX_RING_POINTS = 200_000;

/**
 * 32-bit string hash: FNV-1a over UTF-16 code units, then murmur3's fmix32
 * finaliser so that keys differing in one character spread over the ring.
 */
export function hash32(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

function unitRandom(random: () => number): number {
  const r = random();
  // Guard against a source that returns 1 (or garbage): keep r in [0, 1).
  return r >= 0 && r < 1 ? r : 0;
}

/** Weighted-random choice, honouring exclusions; shared by two policies. */
class WeightedPicker<E extends BalancedEndpoint> {
  private endpoints: readonly E[] = [];
  private cumulative = new Float64Array(0);
  private total = 0;

  constructor(private readonly random: () => number) {}

  update(endpoints: readonly E[]): void {
    this.endpoints = endpoints;
    this.cumulative = new Float64Array(endpoints.length);
    let sum = 0;
    for (let i = 0; i < endpoints.length; i++) {
      const w = endpoints[i]!.weight;
      if (w > 0) sum += w;
      this.cumulative[i] = sum;
    }
    this.total = sum;
  }

  pick(exclude: ReadonlySet<string> | undefined): E | undefined {
    const eps = this.endpoints;
    if (exclude === undefined || exclude.size === 0) {
      if (this.total <= 0) return undefined;
      const r = unitRandom(this.random) * this.total;
      // First index whose cumulative weight exceeds r: weight-0 entries have
      // cumulative equal to their predecessor and can never be chosen.
      let lo = 0;
      let hi = eps.length - 1;
      while (lo < hi) {
        const mid = (lo + hi) >>> 1;
        if (this.cumulative[mid]! > r) hi = mid;
        else lo = mid + 1;
      }
      return eps[lo];
    }
    let total = 0;
    for (const e of eps) if (e.weight > 0 && !exclude.has(e.name)) total += e.weight;
    if (total <= 0) return undefined;
    const r = unitRandom(this.random) * total;
    let acc = 0;
    let last: E | undefined;
    for (const e of eps) {
      if (e.weight <= 0 || exclude.has(e.name)) continue;
      acc += e.weight;
      last = e;
      if (r < acc) return e;
    }
    return last; // floating-point rounding at the very top of the range
  }
}

class TrivialBalancer<E extends BalancedEndpoint> implements Balancer<E> {
  readonly key: string | undefined;
  private endpoints: readonly E[] = [];

  constructor(readonly policy: string, key: string | undefined) {
    this.key = key;
  }

  update(endpoints: readonly E[]): void {
    this.endpoints = endpoints.slice();
  }

  pick(_metadata: object, exclude?: ReadonlySet<string>): E | undefined {
    for (const e of this.endpoints) {
      if (e.weight > 0 && (exclude === undefined || !exclude.has(e.name))) return e;
    }
    return undefined;
  }

  toJSON(): { policy: string; key?: string } {
    return dump(this.policy, this.key);
  }
}

class WeightedRandomBalancer<E extends BalancedEndpoint> implements Balancer<E> {
  readonly key: string | undefined;
  private readonly picker: WeightedPicker<E>;

  constructor(readonly policy: string, key: string | undefined, random: () => number) {
    this.key = key;
    this.picker = new WeightedPicker<E>(random);
  }

  update(endpoints: readonly E[]): void {
    this.picker.update(endpoints.slice());
  }

  pick(_metadata: object, exclude?: ReadonlySet<string>): E | undefined {
    return this.picker.pick(exclude);
  }

  toJSON(): { policy: string; key?: string } {
    return dump(this.policy, this.key);
  }
}

/** Turn a metadata value into the string that is hashed; undefined = no key. */
function keyString(v: unknown): string | undefined {
  switch (typeof v) {
    case 'string':
      return v;
    case 'number':
    case 'boolean':
    case 'bigint':
      return String(v);
    case 'object':
      if (v === null) return undefined;
      try {
        return JSON.stringify(v);
      } catch {
        return undefined; // cyclic: treat as no key
      }
    default:
      return undefined;
  }
}

class ConsistentHashBalancer<E extends BalancedEndpoint> implements Balancer<E> {
  readonly key: string | undefined;
  private readonly getKey: ((obj: unknown) => unknown) | undefined;
  private readonly fallback: WeightedPicker<E>;
  private endpoints: readonly E[] = [];
  /** Sorted point positions on the ring, and the endpoint index at each. */
  private positions = new Uint32Array(0);
  private owners = new Uint32Array(0);

  constructor(readonly policy: string, key: string | undefined, random: () => number) {
    this.key = key;
    this.getKey = key === undefined ? undefined : compilePath(key);
    this.fallback = new WeightedPicker<E>(random);
  }

  update(endpoints: readonly E[]): void {
    const eps = endpoints.slice();
    this.endpoints = eps;
    this.fallback.update(eps);

    let totalWeight = 0;
    for (const e of eps) if (e.weight > 0) totalWeight += e.weight;
    const perWeight = Math.min(POINTS_PER_WEIGHT, totalWeight > 0 ? MAX_RING_POINTS / totalWeight : 0);
    const counts = eps.map((e) => (e.weight > 0 ? Math.max(1, Math.round(e.weight * perWeight)) : 0));
    const n = counts.reduce((a, b) => a + b, 0);

    // Sort (position, owner) pairs together: position * 2^20 + owner is exact
    // in a double for fewer than 2^20 endpoints; ties in position (rare) are
    // broken by list order.
    const packed = new Float64Array(n);
    let k = 0;
    for (let i = 0; i < eps.length; i++) {
      const name = eps[i]!.name;
      for (let j = 0; j < counts[i]!; j++) packed[k++] = hash32(`${name}#${j}`) * 0x100000 + i;
    }
    packed.sort();
    this.positions = new Uint32Array(n);
    this.owners = new Uint32Array(n);
    for (let p = 0; p < n; p++) {
      const v = packed[p]!;
      const owner = v % 0x100000;
      this.owners[p] = owner;
      this.positions[p] = (v - owner) / 0x100000;
    }
  }

  pick(metadata: object, exclude?: ReadonlySet<string>): E | undefined {
    const n = this.positions.length;
    if (n === 0) return undefined;
    const key = this.getKey === undefined ? undefined : keyString(this.getKey(metadata));
    if (key === undefined) return this.fallback.pick(exclude);
    const h = hash32(key);
    // First point at or clockwise after h, wrapping around.
    let lo = 0;
    let hi = n;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.positions[mid]! < h) lo = mid + 1;
      else hi = mid;
    }
    const start = lo === n ? 0 : lo;
    const first = this.endpoints[this.owners[start]!]!;
    if (exclude === undefined || exclude.size === 0 || !exclude.has(first.name)) return first;
    for (let step = 1; step < n; step++) {
      const e = this.endpoints[this.owners[(start + step) % n]!]!;
      if (!exclude.has(e.name)) return e;
    }
    return undefined;
  }

  toJSON(): { policy: string; key?: string } {
    return dump(this.policy, this.key);
  }
}

function dump(policy: string, key: string | undefined): { policy: string; key?: string } {
  return key === undefined ? { policy } : { policy, key };
}

/**
 * Build a balancer from a cluster's `loadbalancer` spec (`{policy?, key?}`;
 * `undefined` or `null` gives Trivial). Throws a GatewayError (400) for an
 * unknown policy or a malformed key.
 */
export function createBalancer<E extends BalancedEndpoint = BalancedEndpoint>(
  spec: unknown,
  field = 'loadbalancer',
  options: BalancerOptions = {},
): Balancer<E> {
  const random = options.random ?? Math.random;
  if (spec === undefined || spec === null) return new TrivialBalancer<E>('Trivial', undefined);
  if (typeof spec !== 'object' || Array.isArray(spec)) {
    throw invalid(field, 'must be an object like {policy: ConsistentHash, key: IP/src_addr}');
  }
  const { policy = 'Trivial', key } = spec as { policy?: unknown; key?: unknown };
  if (typeof policy !== 'string') throw invalid(`${field}.policy`, 'must be a string');
  if (key !== undefined && key !== null) {
    if (typeof key !== 'string') throw invalid(`${field}.key`, 'must be a string');
    if (splitPath(key).length === 0) {
      throw invalid(`${field}.key`, 'must name a metadata path, e.g. "IP/src_addr"');
    }
  }
  const k = typeof key === 'string' ? key : undefined;
  switch (policy) {
    case 'Trivial':
      return new TrivialBalancer<E>(policy, k);
    case 'WeightedRandom':
      return new WeightedRandomBalancer<E>(policy, k, random);
    case 'ConsistentHash':
    case 'HashRing':
      return new ConsistentHashBalancer<E>(policy, k, random);
    default:
      throw invalid(`${field}.policy`, `unknown load-balancing policy "${policy}"; one of ${BALANCER_POLICIES.join(', ')}`);
  }
}
