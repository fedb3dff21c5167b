import test from 'ava';
import { GatewayError } from '../../src/core/errors.js';
import {
  compilePath,
  compilePointer,
  compileSetter,
  compileTokens,
  deepClone,
  deleteAtPath,
  getAtPath,
  parsePointer,
  setAtPath,
  splitPath,
} from '../../src/routing/jsonpath.js';

const meta = () => ({
  name: 'UDP:127.0.0.1:5000-127.0.0.1:6000',
  IP: { src_addr: '127.0.0.1', dst_addr: '127.0.0.2' },
  UDP: { src_port: 5000, dst_port: 0 },
  HTTP: { headers: { host: 'example.com', 'x/y': 'slash', 'a~b': 'tilde' }, url: { path: '/metrics' } },
  list: ['zero', { deep: 'one' }, 2],
  flags: { off: false, empty: '', nil: null, zero: 0 },
});

// ---------------------------------------------------------------------------
// splitPath

test('splitPath: leading, trailing and repeated slashes are optional', (t) => {
  t.deepEqual(splitPath('/IP/src_addr'), ['IP', 'src_addr']);
  t.deepEqual(splitPath('IP/src_addr'), ['IP', 'src_addr']);
  t.deepEqual(splitPath('/IP/src_addr/'), ['IP', 'src_addr']);
  t.deepEqual(splitPath('IP//src_addr'), ['IP', 'src_addr']);
  t.deepEqual(splitPath('/'), []);
  t.deepEqual(splitPath(''), []);
  t.deepEqual(splitPath('//'), []);
});

test('splitPath: decodes RFC 6901 escapes ~1 and ~0, in that order', (t) => {
  t.deepEqual(splitPath('/a~1b/c~0d'), ['a/b', 'c~d']);
  // "~01" is "~" followed by "1", not "/".
  t.deepEqual(splitPath('/~01'), ['~1']);
  // A lone '~' is left alone in the l7mp dialect.
  t.deepEqual(splitPath('/a~b'), ['a~b']);
});

// ---------------------------------------------------------------------------
// getAtPath

test('getAtPath: reads nested values with or without the leading slash', (t) => {
  const m = meta();
  t.is(getAtPath(m, '/IP/src_addr'), '127.0.0.1');
  t.is(getAtPath(m, 'IP/src_addr'), '127.0.0.1');
  t.is(getAtPath(m, '/IP/src_addr/'), '127.0.0.1');
  t.is(getAtPath(m, 'name'), m.name);
  t.is(getAtPath(m, '/UDP/src_port'), 5000);
});

test("getAtPath: '/' and '' return the whole object", (t) => {
  const m = meta();
  t.is(getAtPath(m, '/'), m);
  t.is(getAtPath(m, ''), m);
  t.is(getAtPath(null, '/'), null);
});

test('getAtPath: missing keys are undefined', (t) => {
  const m = meta();
  t.is(getAtPath(m, '/nope'), undefined);
  t.is(getAtPath(m, '/IP/nope'), undefined);
  t.is(getAtPath(m, '/nope/deeper/still'), undefined);
});

test('getAtPath: quirk kept — the first falsy intermediate is returned', (t) => {
  t.is(getAtPath({ a: 0 }, '/a/b'), 0);
  t.is(getAtPath({ a: '' }, '/a/b/c'), '');
  t.is(getAtPath({ a: false }, 'a/b'), false);
  t.is(getAtPath({ a: null }, '/a/b'), null);
  t.is(getAtPath({ a: { b: 0 } }, '/a/b/c/d'), 0);
  const m = meta();
  t.is(getAtPath(m, '/flags/zero/x'), 0);
  t.is(getAtPath(m, '/flags/nil/x'), null);
});

test('getAtPath: a falsy leaf is returned as is', (t) => {
  const m = meta();
  t.is(getAtPath(m, '/flags/off'), false);
  t.is(getAtPath(m, '/flags/empty'), '');
  t.is(getAtPath(m, '/flags/nil'), null);
  t.is(getAtPath(m, '/UDP/dst_port'), 0);
});

test('getAtPath: a falsy root gives undefined for any non-root path (as in l7mp)', (t) => {
  t.is(getAtPath(null, '/a'), undefined);
  t.is(getAtPath(undefined, 'a/b'), undefined);
  t.is(getAtPath(0, '/a'), undefined);
});

test('getAtPath: numeric segments index arrays', (t) => {
  const m = meta();
  t.is(getAtPath(m, '/list/0'), 'zero');
  t.is(getAtPath(m, '/list/1/deep'), 'one');
  t.is(getAtPath(m, '/list/2'), 2);
  t.is(getAtPath(m, '/list/3'), undefined);
  t.is(getAtPath(m, '/list/length'), 3);
});

test('getAtPath: a truthy primitive intermediate yields undefined below it', (t) => {
  const m = meta();
  t.is(getAtPath(m, '/IP/src_addr/x'), undefined);
  t.is(getAtPath(m, '/UDP/src_port/x'), undefined);
  t.is(getAtPath(m, '/IP/src_addr/length'), 9);
});

test('getAtPath: only own properties are visible', (t) => {
  const m = meta();
  t.is(getAtPath(m, '/constructor'), undefined);
  t.is(getAtPath(m, '/HTTP/headers/toString'), undefined);
  t.is(getAtPath(m, '/__proto__'), undefined);
  t.is(getAtPath(m, '/IP/hasOwnProperty'), undefined);
  // null-prototype objects (Node's IncomingMessage.headers) work.
  const headers = Object.assign(Object.create(null), { host: 'h' });
  t.is(getAtPath({ HTTP: { headers } }, '/HTTP/headers/host'), 'h');
});

test('getAtPath: escaped segments address keys with / and ~', (t) => {
  const m = meta();
  t.is(getAtPath(m, '/HTTP/headers/x~1y'), 'slash');
  t.is(getAtPath(m, '/HTTP/headers/a~0b'), 'tilde');
  // Without the escape, '/' splits.
  t.is(getAtPath(m, '/HTTP/headers/x/y'), undefined);
});

// ---------------------------------------------------------------------------
// compilePath

test('compilePath: same answers as getAtPath for every path shape', (t) => {
  const m = meta();
  const paths = [
    '/', '', 'name', '/IP', '/IP/src_addr', 'IP/src_addr/', '/HTTP/url/path', '/HTTP/headers/x~1y',
    '/flags/zero/x', '/flags/nil/x', '/flags/off', '/nope', '/nope/a/b', '/list/1/deep', '/a/b/c/d/e',
    '/IP/src_addr/x', '/constructor',
  ];
  const zero = { a: 0 };
  for (const p of paths) {
    const get = compilePath(p);
    t.is(get(m), getAtPath(m, p), p);
    t.is(get(null), getAtPath(null, p), `${p} on null`);
    t.is(get(zero), getAtPath(zero, p), `${p} on {a:0}`);
  }
  t.is(compilePath('/a/b')({ a: 0 }), 0);
  t.is(compilePath('/a/b/c')({ a: { b: false } }), false);
  t.is(compilePath('/a')(undefined), undefined);
});

test('compilePath: the getter is reusable across objects', (t) => {
  const get = compilePath('IP/src_addr');
  t.is(get({ IP: { src_addr: 'a' } }), 'a');
  t.is(get({ IP: { src_addr: 'b' } }), 'b');
  t.is(get({}), undefined);
});

// ---------------------------------------------------------------------------
// setAtPath

test('setAtPath: sets a new key, leading slash optional', (t) => {
  const m: Record<string, unknown> = {};
  setAtPath(m, '/a', 1);
  setAtPath(m, 'b', 'two');
  setAtPath(m, '/c/', true);
  t.deepEqual(m, { a: 1, b: 'two', c: true });
});

test('setAtPath: creates missing intermediates as objects', (t) => {
  const m: Record<string, unknown> = { labels: { keep: 1 } };
  setAtPath(m, '/labels/app/tier', 'web');
  setAtPath(m, 'x/y/z', null);
  t.deepEqual(m, { labels: { keep: 1, app: { tier: 'web' } }, x: { y: { z: null } } });
});

test('setAtPath: overwrites an existing value', (t) => {
  const m = meta() as Record<string, unknown>;
  setAtPath(m, '/IP/src_addr', '10.0.0.1');
  t.is(getAtPath(m, '/IP/src_addr'), '10.0.0.1');
  t.is(getAtPath(m, '/IP/dst_addr'), '127.0.0.2');
});

test('setAtPath: numeric segments index existing arrays', (t) => {
  const m: Record<string, unknown> = { arr: ['a', 'b', { c: 1 }] };
  setAtPath(m, '/arr/1', 'B');
  setAtPath(m, '/arr/2/c', 2);
  setAtPath(m, '/arr/3', 'd');
  t.deepEqual(m, { arr: ['a', 'B', { c: 2 }, 'd'] });
  t.true(Array.isArray(m.arr));
});

test('setAtPath: numeric segments create objects (not arrays) when missing', (t) => {
  const m: Record<string, unknown> = {};
  setAtPath(m, '/x/0', 'first');
  setAtPath(m, '/x/1/y', 'second');
  t.false(Array.isArray(m.x));
  t.deepEqual(m, { x: { '0': 'first', '1': { y: 'second' } } });
});

test('setAtPath: falsy or primitive intermediates are replaced by objects', (t) => {
  const m: Record<string, unknown> = { a: 0, b: null, c: 'str', d: false };
  setAtPath(m, '/a/x', 1);
  setAtPath(m, '/b/x', 2);
  setAtPath(m, '/c/x', 3);
  setAtPath(m, '/d/x', 4);
  t.deepEqual(m, { a: { x: 1 }, b: { x: 2 }, c: { x: 3 }, d: { x: 4 } });
});

test('setAtPath: object values are deep-cloned', (t) => {
  const value = { nested: { n: 1 }, list: [1, { two: 2 }] };
  const m: Record<string, unknown> = {};
  setAtPath(m, '/labels', value);
  t.deepEqual(m.labels, value);
  t.not(m.labels, value);
  value.nested.n = 99;
  (value.list[1] as { two: number }).two = 99;
  t.deepEqual(m.labels, { nested: { n: 1 }, list: [1, { two: 2 }] });
  // and the other way round
  const m2: Record<string, unknown> = {};
  setAtPath(m2, '/x', value);
  (m2.x as { nested: { n: number } }).nested.n = -1;
  t.is(value.nested.n, 99);
});

test("setAtPath: '/' replaces the whole target's contents", (t) => {
  const m: Record<string, unknown> = { old: 1, IP: { src_addr: 'a' } };
  const before = m;
  const value = { fresh: { v: true } };
  setAtPath(m, '/', value);
  t.is(m, before);
  t.deepEqual(m, { fresh: { v: true } });
  value.fresh.v = false;
  t.deepEqual(m, { fresh: { v: true } });
  setAtPath(m, '', { again: 1 });
  t.deepEqual(m, { again: 1 });
});

test("setAtPath: '/' with a non-object value is refused", (t) => {
  const m: Record<string, unknown> = { keep: 1 };
  for (const v of [1, 'x', null, [1, 2]]) {
    const err = t.throws(() => setAtPath(m, '/', v), { instanceOf: GatewayError });
    t.is(err?.code, 'INVALID_INPUT');
  }
  t.deepEqual(m, { keep: 1 });
});

test('setAtPath: escaped segments write keys with / and ~', (t) => {
  const m: Record<string, unknown> = {};
  setAtPath(m, '/h/x~1y', 1);
  setAtPath(m, '/h/a~0b', 2);
  t.deepEqual(m, { h: { 'x/y': 1, 'a~b': 2 } });
});

test('setAtPath: a __proto__ segment is refused (no prototype pollution)', (t) => {
  const m: Record<string, unknown> = {};
  const err = t.throws(() => setAtPath(m, '/__proto__/polluted', 'yes'), { instanceOf: GatewayError });
  t.is(err?.status, 400);
  t.throws(() => setAtPath(m, '/a/__proto__', {}), { instanceOf: GatewayError });
  t.is(({} as Record<string, unknown>).polluted, undefined);
  t.deepEqual(m, {});
});

test('setAtPath: constructor/prototype segments stay ordinary own keys', (t) => {
  const m: Record<string, unknown> = {};
  setAtPath(m, '/constructor/prototype/polluted', 'yes');
  t.is(({} as Record<string, unknown>).polluted, undefined);
  t.is(getAtPath(m, '/constructor/prototype/polluted'), 'yes');
  t.true(Object.hasOwn(m, 'constructor'));
});

test('setAtPath: then getAtPath reads back what was written', (t) => {
  const m: Record<string, unknown> = {};
  const cases: Array<[string, unknown]> = [
    ['/a', 1], ['/b/c', 'x'], ['d/e/f', { g: [1, 2] }], ['/h', null], ['/i', false], ['/j/k~1l', 3],
  ];
  for (const [p, v] of cases) setAtPath(m, p, v);
  for (const [p, v] of cases) t.deepEqual(getAtPath(m, p), v, p);
});

test('compileSetter: reusable, clones on each call, names the field on error', (t) => {
  const set = compileSetter('/labels/app', 'rule.action.rewrite[0].path');
  const value = { tier: 'web' };
  const a: Record<string, unknown> = {};
  const b: Record<string, unknown> = {};
  set(a, value);
  set(b, value);
  t.deepEqual(a, { labels: { app: { tier: 'web' } } });
  t.not((a.labels as Record<string, unknown>).app, (b.labels as Record<string, unknown>).app);
  const err = t.throws(() => compileSetter('/__proto__/x', 'rw.path'), { instanceOf: GatewayError });
  t.is(err?.field, 'rw.path');
});

// ---------------------------------------------------------------------------
// deleteAtPath

test('deleteAtPath: removes keys and reports whether anything was removed', (t) => {
  const m = meta() as Record<string, unknown>;
  t.true(deleteAtPath(m, '/IP/src_addr'));
  t.is(getAtPath(m, '/IP/src_addr'), undefined);
  t.is(getAtPath(m, '/IP/dst_addr'), '127.0.0.2');
  t.false(deleteAtPath(m, '/IP/src_addr'));
  t.false(deleteAtPath(m, '/nope/deeper'));
  t.false(deleteAtPath(m, '/IP/dst_addr/x'));
  t.true(deleteAtPath(m, 'UDP'));
  t.false(Object.hasOwn(m, 'UDP'));
  t.true(deleteAtPath(m, '/HTTP/headers/x~1y'));
  t.false(Object.hasOwn((m.HTTP as { headers: object }).headers, 'x/y'));
});

test('deleteAtPath: array elements are spliced out', (t) => {
  const m: Record<string, unknown> = { arr: ['a', 'b', 'c'] };
  t.true(deleteAtPath(m, '/arr/1'));
  t.deepEqual(m.arr, ['a', 'c']);
  t.false(deleteAtPath(m, '/arr/5'));
  t.false(deleteAtPath(m, '/arr/01'));
  t.false(deleteAtPath(m, '/arr/x'));
  t.deepEqual(m.arr, ['a', 'c']);
});

test("deleteAtPath: '/' empties the object; inherited members are not touched", (t) => {
  const m: Record<string, unknown> = { a: 1, b: 2 };
  t.false(deleteAtPath(m, '/toString'));
  t.true(deleteAtPath(m, '/'));
  t.deepEqual(m, {});
  t.false(deleteAtPath(m, '/'));
});

// ---------------------------------------------------------------------------
// deepClone

test('deepClone: copies JSON values and keeps an own __proto__ key as data', (t) => {
  const src = JSON.parse('{"a":[1,{"b":2}],"__proto__":{"polluted":true},"n":null}') as Record<string, unknown>;
  const copy = deepClone(src);
  t.deepEqual(copy, src);
  t.not(copy.a, src.a);
  t.is(Object.getPrototypeOf(copy), Object.prototype);
  t.true(Object.hasOwn(copy, '__proto__'));
  t.is((copy as { polluted?: unknown }).polluted, undefined);
  t.is(deepClone(5), 5);
  t.is(deepClone(null), null);
  const d = new Date(1000);
  const dc = deepClone({ d }).d;
  t.not(dc, d);
  t.is(dc.getTime(), 1000);
});

// ---------------------------------------------------------------------------
// RFC 6901 pointers

test('parsePointer: RFC 6901 tokens', (t) => {
  t.deepEqual(parsePointer(''), []);
  t.deepEqual(parsePointer('/'), ['']);
  t.deepEqual(parsePointer('/a/b'), ['a', 'b']);
  t.deepEqual(parsePointer('/a/'), ['a', '']);
  t.deepEqual(parsePointer('/a~1b/~0'), ['a/b', '~']);
  t.deepEqual(parsePointer('/~01'), ['~1']);
});

test('parsePointer: rejects paths without a leading slash and bad escapes', (t) => {
  const e1 = t.throws(() => parsePointer('IP/src_addr', 'match.path'), { instanceOf: GatewayError });
  t.is(e1?.field, 'match.path');
  t.regex(e1?.message ?? '', /must be a JSON pointer starting with '\/'/);
  const e2 = t.throws(() => parsePointer('/a~2b', 'p'), { instanceOf: GatewayError });
  t.is(e2?.field, 'p');
  t.throws(() => parsePointer('/a~'), { instanceOf: GatewayError });
});

test('compilePointer: strict resolution (no falsy quirk, arrays by canonical index)', (t) => {
  const m = meta();
  t.is(compilePointer('')(m), m);
  t.is(compilePointer('/IP/src_addr')(m), '127.0.0.1');
  t.is(compilePointer('/flags/zero/x')(m), undefined);
  t.is(compilePointer('/flags/nil/x')(m), undefined);
  t.is(compilePointer('/flags/zero')(m), 0);
  t.is(compilePointer('/list/1/deep')(m), 'one');
  t.is(compilePointer('/list/01')(m), undefined);
  t.is(compilePointer('/list/-')(m), undefined);
  t.is(compilePointer('/list/length')(m), undefined);
  t.is(compilePointer('/IP/src_addr/length')(m), undefined);
  t.is(compilePointer('/HTTP/headers/x~1y')(m), 'slash');
  t.is(compilePointer('/constructor')(m), undefined);
  t.is(compilePointer('/a/b/c/d')(undefined), undefined);
  t.is(compilePointer('/')({ '': 'empty key' }), 'empty key');
});

test('compileTokens: works on pre-joined token lists of any length', (t) => {
  const m = { a: { b: { c: { d: 'deep' } } } };
  t.is(compileTokens(['a', 'b', 'c', 'd'])(m), 'deep');
  t.deepEqual(compileTokens(['a', 'b'])(m), { c: { d: 'deep' } });
  t.is(compileTokens(['a', 'x', 'c', 'd'])(m), undefined);
});
