import test from 'ava';
import { GatewayError } from '../../src/core/errors.js';
import {
  BALANCER_POLICIES,
  createBalancer,
  hash32,
  type BalancedEndpoint,
} from '../../src/balancer/index.js';

/** mulberry32: a tiny seeded PRNG, so statistical tests cannot flake. */
function seeded(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const ep = (name: string, weight = 1, address = `${name}.local:80`): BalancedEndpoint => ({ name, address, weight });

const A = ep('a', 3);
const B = ep('b', 1);
const C = ep('c', 1);
const Z = ep('z', 0);

function count(picks: Array<BalancedEndpoint | undefined>): Record<string, number | undefined> {
  const out: Record<string, number | undefined> = {};
  for (const p of picks) {
    const k = p === undefined ? '<none>' : p.name;
    out[k] = (out[k] ?? 0) + 1;
  }
  return out;
}

const keyMeta = (i: number) => ({ IP: { src_addr: `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}` } });

// ---------------------------------------------------------------------------
// construction and errors

test('createBalancer: undefined, null and {} give Trivial', (t) => {
  for (const spec of [undefined, null, {}]) {
    const b = createBalancer(spec);
    t.is(b.policy, 'Trivial');
    t.is(b.key, undefined);
    t.deepEqual(b.toJSON(), { policy: 'Trivial' });
  }
});

test('BALANCER_POLICIES lists every accepted name', (t) => {
  t.deepEqual([...BALANCER_POLICIES], ['Trivial', 'WeightedRandom', 'ConsistentHash', 'HashRing']);
  for (const policy of BALANCER_POLICIES) t.is(createBalancer({ policy }).policy, policy);
});

test('createBalancer: unknown policy is a 400 naming the field and the choices', (t) => {
  const err = t.throws(() => createBalancer({ policy: 'RoundRobin' }), { instanceOf: GatewayError });
  t.is(err?.code, 'INVALID_INPUT');
  t.is(err?.status, 400);
  t.is(err?.field, 'loadbalancer.policy');
  t.is(
    err?.message,
    'loadbalancer.policy: unknown load-balancing policy "RoundRobin"; one of Trivial, WeightedRandom, ConsistentHash, HashRing',
  );
  const err2 = t.throws(() => createBalancer({ policy: 'hashring' }, 'cluster.loadbalancer'), { instanceOf: GatewayError });
  t.is(err2?.field, 'cluster.loadbalancer.policy');
});

test('createBalancer: malformed specs are rejected', (t) => {
  const cases: Array<[unknown, string]> = [
    ['ConsistentHash', 'loadbalancer'],
    [[{ policy: 'Trivial' }], 'loadbalancer'],
    [{ policy: 3 }, 'loadbalancer.policy'],
    [{ policy: 'ConsistentHash', key: 5 }, 'loadbalancer.key'],
    [{ policy: 'ConsistentHash', key: '/' }, 'loadbalancer.key'],
    [{ policy: 'ConsistentHash', key: '' }, 'loadbalancer.key'],
  ];
  for (const [spec, field] of cases) {
    const err = t.throws(() => createBalancer(spec), { instanceOf: GatewayError }, JSON.stringify(spec));
    t.is(err?.field, field, JSON.stringify(spec));
  }
});

test('toJSON: dumps the policy name the user gave, and the key only when set', (t) => {
  t.deepEqual(createBalancer({ policy: 'HashRing', key: 'IP/src_addr' }).toJSON(), { policy: 'HashRing', key: 'IP/src_addr' });
  t.deepEqual(createBalancer({ policy: 'ConsistentHash', key: '/labels/u' }).toJSON(), { policy: 'ConsistentHash', key: '/labels/u' });
  t.deepEqual(createBalancer({ policy: 'ConsistentHash' }).toJSON(), { policy: 'ConsistentHash' });
  t.deepEqual(createBalancer({ policy: 'WeightedRandom' }).toJSON(), { policy: 'WeightedRandom' });
  t.deepEqual(createBalancer({ policy: 'Trivial', key: 'x' }).toJSON(), { policy: 'Trivial', key: 'x' });
  t.deepEqual(JSON.parse(JSON.stringify({ lb: createBalancer({ policy: 'HashRing' }) })), { lb: { policy: 'HashRing' } });
});

// ---------------------------------------------------------------------------
// Trivial

test('Trivial: always the first listed endpoint', (t) => {
  const b = createBalancer(undefined);
  b.update([B, A, C]);
  for (let i = 0; i < 100; i++) t.is(b.pick(keyMeta(i)), B);
  b.update([C, B]);
  t.is(b.pick({}), C);
});

test('Trivial: skips excluded endpoints in list order', (t) => {
  const b = createBalancer({ policy: 'Trivial' });
  b.update([A, B, C]);
  t.is(b.pick({}, new Set(['a'])), B);
  t.is(b.pick({}, new Set(['a', 'b'])), C);
  t.is(b.pick({}, new Set(['b'])), A);
  t.is(b.pick({}, new Set()), A);
  t.is(b.pick({}, new Set(['a', 'b', 'c'])), undefined);
});

test('Trivial: weight 0 means drained', (t) => {
  const b = createBalancer({ policy: 'Trivial' });
  b.update([Z, B]);
  t.is(b.pick({}), B);
  b.update([Z]);
  t.is(b.pick({}), undefined);
});

test('every policy: no endpoints means undefined', (t) => {
  for (const policy of BALANCER_POLICIES) {
    const b = createBalancer({ policy, key: 'IP/src_addr' });
    t.is(b.pick(keyMeta(1)), undefined, policy);
    b.update([A]);
    t.is(b.pick(keyMeta(1)), A, policy);
    b.update([]);
    t.is(b.pick(keyMeta(1)), undefined, policy);
  }
});

test('every policy: later changes to the caller’s array do not leak in', (t) => {
  for (const policy of BALANCER_POLICIES) {
    const list = [A];
    const b = createBalancer({ policy, key: 'IP/src_addr' }, 'lb', { random: seeded(1) });
    b.update(list);
    list[0] = B;
    for (let i = 0; i < 20; i++) t.is(b.pick(keyMeta(i)), A, policy);
  }
});

// ---------------------------------------------------------------------------
// WeightedRandom

test('WeightedRandom: 3:1:1 (+ weight 0) over 10,000 picks is within ±3%', (t) => {
  const b = createBalancer({ policy: 'WeightedRandom' }, 'lb', { random: seeded(42) });
  b.update([A, Z, B, C]);
  const N = 10_000;
  const picks = [];
  for (let i = 0; i < N; i++) picks.push(b.pick({}));
  const c = count(picks);
  t.is(c.z, undefined, 'weight 0 is never picked');
  t.is(c['<none>'], undefined);
  t.true(Math.abs((c.a ?? 0) / N - 0.6) <= 0.03, `a: ${c.a}`);
  t.true(Math.abs((c.b ?? 0) / N - 0.2) <= 0.03, `b: ${c.b}`);
  t.true(Math.abs((c.c ?? 0) / N - 0.2) <= 0.03, `c: ${c.c}`);
});

test('WeightedRandom: the result does not depend on list order beyond randomness', (t) => {
  const b = createBalancer({ policy: 'WeightedRandom' }, 'lb', { random: seeded(7) });
  b.update([Z, C, B, A]);
  const N = 10_000;
  const picks = [];
  for (let i = 0; i < N; i++) picks.push(b.pick({}));
  const c = count(picks);
  t.is(c.z, undefined);
  t.true(Math.abs((c.a ?? 0) / N - 0.6) <= 0.03, `a: ${c.a}`);
});

test('WeightedRandom: exclusion renormalises over the rest', (t) => {
  const b = createBalancer({ policy: 'WeightedRandom' }, 'lb', { random: seeded(3) });
  b.update([A, B, C, Z]);
  const N = 10_000;
  const picks = [];
  for (let i = 0; i < N; i++) picks.push(b.pick({}, new Set(['a'])));
  const c = count(picks);
  t.is(c.a, undefined);
  t.is(c.z, undefined);
  t.true(Math.abs((c.b ?? 0) / N - 0.5) <= 0.03, `b: ${c.b}`);
  t.true(Math.abs((c.c ?? 0) / N - 0.5) <= 0.03, `c: ${c.c}`);
  t.is(b.pick({}, new Set(['a', 'b', 'c'])), undefined);
});

test('WeightedRandom: all weights 0 means undefined', (t) => {
  const b = createBalancer({ policy: 'WeightedRandom' }, 'lb', { random: seeded(1) });
  b.update([Z, ep('y', 0)]);
  t.is(b.pick({}), undefined);
  t.is(b.pick({}, new Set(['z'])), undefined);
});

test('WeightedRandom: maps the random source onto cumulative weights', (t) => {
  let r = 0;
  const b = createBalancer({ policy: 'WeightedRandom' }, 'lb', { random: () => r });
  b.update([Z, A, B, C]); // cumulative 0 | 3 | 4 | 5 of 5
  const at = (x: number, exclude?: ReadonlySet<string>) => {
    r = x;
    return b.pick({}, exclude)?.name;
  };
  t.is(at(0), 'a');
  t.is(at(0.59), 'a');
  t.is(at(0.6), 'b');
  t.is(at(0.79), 'b');
  t.is(at(0.8), 'c');
  t.is(at(0.999999), 'c');
  // with exclusions (linear walk): b=1, c=1 of 2
  t.is(at(0, new Set(['a'])), 'b');
  t.is(at(0.49, new Set(['a'])), 'b');
  t.is(at(0.5, new Set(['a'])), 'c');
  t.is(at(0.999999, new Set(['a'])), 'c');
  // a broken source (1, NaN) still yields an endpoint, never a weight-0 one
  t.is(at(1), 'a');
  t.is(at(Number.NaN), 'a');
  t.is(at(1, new Set(['a'])), 'b');
});

// ---------------------------------------------------------------------------
// ConsistentHash

function ring(policy = 'ConsistentHash', random = seeded(99)) {
  return createBalancer({ policy, key: 'IP/src_addr' }, 'lb', { random });
}

test('ConsistentHash: the same key always gets the same endpoint', (t) => {
  const b = ring();
  b.update([A, B, C]);
  for (const i of [1, 77, 1234, 99999]) {
    const first = b.pick(keyMeta(i));
    t.truthy(first);
    for (let j = 0; j < 1000; j++) {
      if (b.pick(keyMeta(i)) !== first) {
        t.fail(`key ${i} moved on pick ${j}`);
        return;
      }
    }
  }
  // and a rebuild with the same set keeps every mapping
  const before = Array.from({ length: 2000 }, (_, i) => b.pick(keyMeta(i))?.name);
  b.update([A, B, C]);
  const after = Array.from({ length: 2000 }, (_, i) => b.pick(keyMeta(i))?.name);
  t.deepEqual(after, before);
});

test('ConsistentHash: the mapping does not depend on endpoint list order', (t) => {
  const b1 = ring();
  const b2 = ring();
  b1.update([A, B, C]);
  b2.update([C, A, B]);
  for (let i = 0; i < 2000; i++) t.is(b1.pick(keyMeta(i))?.name, b2.pick(keyMeta(i))?.name);
});

test('ConsistentHash and HashRing are the same ring', (t) => {
  const b1 = ring('ConsistentHash');
  const b2 = ring('HashRing');
  b1.update([A, B, C]);
  b2.update([A, B, C]);
  for (let i = 0; i < 1000; i++) t.is(b1.pick(keyMeta(i))?.name, b2.pick(keyMeta(i))?.name);
});

test('ConsistentHash: distinct keys spread in proportion to weight (3:1:1)', (t) => {
  const b = ring();
  b.update([A, B, C, Z]);
  const N = 10_000;
  const c = count(Array.from({ length: N }, (_, i) => b.pick(keyMeta(i))));
  t.is(c.z, undefined, 'weight 0 has no ring points');
  t.true(Math.abs((c.a ?? 0) / N - 0.6) <= 0.06, `a: ${c.a}`);
  t.true(Math.abs((c.b ?? 0) / N - 0.2) <= 0.05, `b: ${c.b}`);
  t.true(Math.abs((c.c ?? 0) / N - 0.2) <= 0.05, `c: ${c.c}`);
});

test('ConsistentHash: equal weights spread evenly over string keys', (t) => {
  const b = createBalancer({ policy: 'ConsistentHash', key: '/labels/user' });
  const eps = ['ep1', 'ep2', 'ep3', 'ep4'].map((n) => ep(n));
  b.update(eps);
  const N = 10_000;
  const c = count(Array.from({ length: N }, (_, i) => b.pick({ labels: { user: `user-${i}` } })));
  for (const e of eps) t.true(Math.abs((c[e.name] ?? 0) / N - 0.25) <= 0.05, `${e.name}: ${c[e.name]}`);
});

test('ConsistentHash: adding a 4th endpoint moves few keys, all of them to the new one', (t) => {
  const b = ring();
  const three = [ep('e1'), ep('e2'), ep('e3')];
  b.update(three);
  const N = 10_000;
  const before = Array.from({ length: N }, (_, i) => b.pick(keyMeta(i))?.name);
  b.update([...three, ep('e4')]);
  const after = Array.from({ length: N }, (_, i) => b.pick(keyMeta(i))?.name);
  let moved = 0;
  const movedTo = new Set<string | undefined>();
  for (let i = 0; i < N; i++) {
    if (before[i] !== after[i]) {
      moved++;
      movedTo.add(after[i]);
    }
  }
  t.true(moved <= 0.35 * N, `moved ${moved}`);
  t.true(moved >= 0.15 * N, `the new endpoint got its share: ${moved}`);
  t.deepEqual([...movedTo], ['e4']);
});

test('ConsistentHash: removing an endpoint moves only its own keys', (t) => {
  const b = ring();
  const eps = [ep('e1'), ep('e2'), ep('e3'), ep('e4'), ep('e5')];
  b.update(eps);
  const N = 10_000;
  const before = Array.from({ length: N }, (_, i) => b.pick(keyMeta(i))?.name);
  b.update(eps.filter((e) => e.name !== 'e3'));
  for (let i = 0; i < N; i++) {
    const now = b.pick(keyMeta(i))?.name;
    if (before[i] === 'e3') t.not(now, 'e3');
    else if (now !== before[i]) {
      t.fail(`key ${i} moved from ${before[i]} to ${now}`);
      return;
    }
  }
  t.pass();
});

test('ConsistentHash: changing one weight only moves keys to or from that endpoint', (t) => {
  const b = ring();
  b.update([ep('e1'), ep('e2'), ep('e3')]);
  const N = 10_000;
  const before = Array.from({ length: N }, (_, i) => b.pick(keyMeta(i))?.name);
  b.update([ep('e1'), ep('e2', 2), ep('e3')]);
  let moved = 0;
  for (let i = 0; i < N; i++) {
    const now = b.pick(keyMeta(i))?.name;
    if (now !== before[i]) {
      moved++;
      t.is(now, 'e2');
    }
  }
  t.true(moved > 0.1 * N && moved < 0.35 * N, `moved ${moved}`);
});

test('ConsistentHash: the ring is keyed by name, so endpoints sharing an address both get keys', (t) => {
  const b = ring();
  const x = ep('x', 1, '10.0.0.1:80');
  const y = ep('y', 1, '10.0.0.1:80');
  b.update([x, y]);
  const N = 10_000;
  const c = count(Array.from({ length: N }, (_, i) => b.pick(keyMeta(i))));
  t.true(Math.abs((c.x ?? 0) / N - 0.5) <= 0.06, `x: ${c.x}`);
  t.true(Math.abs((c.y ?? 0) / N - 0.5) <= 0.06, `y: ${c.y}`);
});

test('ConsistentHash: exclusion walks clockwise to the next endpoint', (t) => {
  const b = ring();
  const eps = [ep('e1'), ep('e2'), ep('e3'), ep('e4')];
  b.update(eps);
  const N = 2000;
  for (let i = 0; i < N; i++) {
    const m = keyMeta(i);
    const first = b.pick(m)!;
    const ex = new Set([first.name]);
    const second = b.pick(m, ex)!;
    t.not(second.name, first.name);
    // The walk lands where the key would go if the excluded endpoint were gone.
    const without = ring();
    without.update(eps.filter((e) => e !== first));
    if (without.pick(m)?.name !== second.name) {
      t.fail(`key ${i}: walk gave ${second.name}, removal gives ${without.pick(m)?.name}`);
      return;
    }
    // and it is deterministic
    t.is(b.pick(m, ex), second);
    const third = b.pick(m, new Set([first.name, second.name]))!;
    t.false([first.name, second.name].includes(third.name));
  }
});

test('ConsistentHash: excluding everything gives undefined', (t) => {
  const b = ring();
  b.update([A, B, C, Z]);
  t.is(b.pick(keyMeta(5), new Set(['a', 'b', 'c'])), undefined);
  t.is(b.pick({}, new Set(['a', 'b', 'c'])), undefined, 'fallback path too');
});

test('ConsistentHash: all weights 0 gives undefined', (t) => {
  const b = ring();
  b.update([Z, ep('y', 0)]);
  t.is(b.pick(keyMeta(1)), undefined);
  t.is(b.pick({}), undefined);
});

test('ConsistentHash: a missing key value falls back to weighted random', (t) => {
  let calls = 0;
  const rnd = seeded(5);
  const b = ring('ConsistentHash', () => {
    calls++;
    return rnd();
  });
  b.update([A, B, C, Z]);
  b.pick(keyMeta(1));
  t.is(calls, 0, 'a keyed pick uses no randomness');
  const N = 10_000;
  const c = count(Array.from({ length: N }, () => b.pick({ IP: {} })));
  t.is(calls, N);
  t.is(c.z, undefined);
  t.true(Math.abs((c.a ?? 0) / N - 0.6) <= 0.03, `a: ${c.a}`);
  t.true(Math.abs((c.b ?? 0) / N - 0.2) <= 0.03, `b: ${c.b}`);
  // null values and a missing parent also fall back
  b.pick({ IP: { src_addr: null } });
  b.pick({});
  t.is(calls, N + 2);
  // the fallback honours exclusions
  for (let i = 0; i < 200; i++) t.is(b.pick({}, new Set(['a', 'b']))?.name, 'c');
});

test('ConsistentHash: no key configured means weighted random', (t) => {
  const b = createBalancer({ policy: 'HashRing' }, 'lb', { random: seeded(11) });
  b.update([A, B, C]);
  const N = 10_000;
  const c = count(Array.from({ length: N }, () => b.pick(keyMeta(1))));
  t.true(Math.abs((c.a ?? 0) / N - 0.6) <= 0.03, `a: ${c.a}`);
  t.true((c.b ?? 0) > 0 && (c.c ?? 0) > 0);
});

test('ConsistentHash: key paths use l7mp syntax and non-string values', (t) => {
  const withSlash = createBalancer({ policy: 'ConsistentHash', key: '/UDP/src_port' });
  const without = createBalancer({ policy: 'ConsistentHash', key: 'UDP/src_port/' });
  const eps = [ep('e1'), ep('e2'), ep('e3')];
  withSlash.update(eps);
  without.update(eps);
  const seen = new Set<string | undefined>();
  for (let port = 1000; port < 1300; port++) {
    const m = { UDP: { src_port: port } };
    const p = withSlash.pick(m);
    t.is(without.pick(m), p);
    // a number hashes like its decimal string
    t.is(withSlash.pick({ UDP: { src_port: String(port) } }), p);
    seen.add(p?.name);
  }
  t.is(seen.size, 3);
  // object-valued keys hash by their JSON
  const obj = createBalancer({ policy: 'ConsistentHash', key: 'labels' });
  obj.update(eps);
  const k = { labels: { user: 'u1', zone: 'z' } };
  const first = obj.pick(k);
  for (let i = 0; i < 50; i++) t.is(obj.pick({ labels: { user: 'u1', zone: 'z' } }), first);
});

test('hash32: deterministic 32-bit unsigned values that differ for near-identical keys', (t) => {
  t.is(hash32('abc'), hash32('abc'));
  const values = new Set<number>();
  for (let i = 0; i < 1000; i++) {
    const h = hash32(`10.0.0.${i}`);
    t.true(Number.isInteger(h) && h >= 0 && h < 2 ** 32);
    values.add(h);
  }
  t.is(values.size, 1000);
  // high bits are used too (the ring needs the whole range)
  const high = [...values].filter((h) => h >= 2 ** 31).length;
  t.true(high > 400 && high < 600, `high: ${high}`);
});
