import test from 'ava';
import { GatewayError } from '../../src/core/errors.js';
import {
  compileMatch,
  compileRewrite,
  deepEqual,
  isMatchAll,
  PREDICATE_OPS,
  PREDICATE_TYPES,
} from '../../src/routing/predicate.js';

const meta = () => ({
  name: 'HTTP:10.0.0.1:40000-10.0.0.2:80',
  IP: { src_addr: '10.0.0.1', dst_addr: '10.0.0.2' },
  UDP: { src_port: 9000, dst_port: 53 },
  HTTP: {
    version: '1.1',
    method: 'GET',
    url: { path: '/metrics/cpu', host: 'Example.COM', query: 'a=b' },
    headers: { 'user-agent': 'curl/8.0', 'x/slash': 'yes', 'x~tilde': 'yes' } as Record<string, string>,
  },
  labels: { app: 'web', tags: ['blue', 'Canary', 3, { k: 'V' }], nothing: null, zero: 0, no: false },
  nums: [1, 2, 3],
  types: {
    num: 1.5,
    str: 'x',
    bool: true,
    obj: { a: 1 },
    arr: [1],
    nul: null,
    date: '2024-02-29',
    badDate: '2023-02-29',
    time: '10:10:10Z',
    timeOffset: '23:59:60.123+05:30',
    dateTime: '2010-10-10T10:10:10.5-01:00',
    lang: 'en-US',
    langScript: 'zh-Hant-TW',
    langRange: 'de-*-DE',
    iri: 'https://例え.jp/パス?q=1#frag',
    relIri: '../up/file.txt?x#y',
    absIri: 'urn:isbn:0451450523',
  },
});

const M = meta();
const check = (pred: unknown, m: object = M) => compileMatch(pred)(m);

/** Assert that compiling `pred` fails with a 400 naming `field` and matching `re`. */
function rejects(t: import('ava').ExecutionContext, pred: unknown, field: string, re?: RegExp) {
  const err = t.throws(() => compileMatch(pred), { instanceOf: GatewayError }, JSON.stringify(pred));
  t.is(err?.code, 'INVALID_INPUT');
  t.is(err?.status, 400);
  t.is(err?.field, field, JSON.stringify(pred));
  if (re) t.regex(err?.message ?? '', re);
}

// ---------------------------------------------------------------------------
// match-all

test('match-all: undefined, null and any string match every session', (t) => {
  for (const m of [undefined, null, '*', '', 'anything']) {
    t.true(isMatchAll(m));
    t.true(compileMatch(m)(M));
    t.true(compileMatch(m)({}));
  }
  t.false(isMatchAll({ op: 'defined', path: '/a' }));
});

test('match: non-object, non-string specs are rejected', (t) => {
  rejects(t, 42, 'match', /predicate object/);
  rejects(t, true, 'match');
  rejects(t, [{ op: 'defined', path: '/a' }], 'match');
});

// ---------------------------------------------------------------------------
// test

test('test: deep equality of primitives, objects and arrays', (t) => {
  t.true(check({ op: 'test', path: '/IP/src_addr', value: '10.0.0.1' }));
  t.false(check({ op: 'test', path: '/IP/src_addr', value: '10.0.0.2' }));
  t.true(check({ op: 'test', path: '/UDP/src_port', value: 9000 }));
  t.false(check({ op: 'test', path: '/UDP/src_port', value: '9000' }));
  t.true(check({ op: 'test', path: '/IP', value: { dst_addr: '10.0.0.2', src_addr: '10.0.0.1' } }));
  t.false(check({ op: 'test', path: '/IP', value: { src_addr: '10.0.0.1' } }));
  t.true(check({ op: 'test', path: '/nums', value: [1, 2, 3] }));
  t.false(check({ op: 'test', path: '/nums', value: [1, 2] }));
  t.false(check({ op: 'test', path: '/nums', value: [1, 2, 3, 4] }));
  t.false(check({ op: 'test', path: '/nums', value: '1,2,3' }));
  t.true(check({ op: 'test', path: '/labels/nothing', value: null }));
  t.true(check({ op: 'test', path: '/labels/no', value: false }));
  t.false(check({ op: 'test', path: '/missing', value: null }));
});

test('test: ignore_case folds strings at any depth', (t) => {
  t.false(check({ op: 'test', path: '/HTTP/method', value: 'get' }));
  t.true(check({ op: 'test', path: '/HTTP/method', value: 'get', ignore_case: true }));
  t.false(check({ op: 'test', path: '/HTTP/method', value: 'get', ignore_case: false }));
  t.true(check({ op: 'test', path: '/labels/tags/3', value: { k: 'v' }, ignore_case: true }));
  t.false(check({ op: 'test', path: '/labels/tags/3', value: { k: 'v' } }));
  t.false(check({ op: 'test', path: '/HTTP/method', value: 'POST', ignore_case: true }));
});

test('test: the predicate value is snapshotted at compile time', (t) => {
  const value = { src_addr: '10.0.0.1', dst_addr: '10.0.0.2' };
  const p = compileMatch({ op: 'test', path: '/IP', value });
  value.src_addr = 'changed';
  t.true(p(M));
});

// ---------------------------------------------------------------------------
// contains / starts / ends

test('contains: substring of a string target', (t) => {
  t.true(check({ op: 'contains', path: '/HTTP/url/path', value: 'metrics' }));
  t.true(check({ op: 'contains', path: '/HTTP/url/path', value: '' }));
  t.false(check({ op: 'contains', path: '/HTTP/url/path', value: 'METRICS' }));
  t.true(check({ op: 'contains', path: '/HTTP/url/path', value: 'METRICS', ignore_case: true }));
  t.true(check({ op: 'contains', path: '/HTTP/url/host', value: 'example.com', ignore_case: true }));
  t.false(check({ op: 'contains', path: '/missing', value: 'x' }));
  t.false(check({ op: 'contains', path: '/labels/nothing', value: 'x' }));
  t.false(check({ op: 'contains', path: '/UDP/src_port', value: '9' }));
  t.false(check({ op: 'contains', path: '/IP', value: 'src_addr' }));
});

test('contains: element equality for an array target', (t) => {
  t.true(check({ op: 'contains', path: '/labels/tags', value: 'blue' }));
  t.true(check({ op: 'contains', path: '/labels/tags', value: 3 }));
  t.true(check({ op: 'contains', path: '/labels/tags', value: { k: 'V' } }));
  t.false(check({ op: 'contains', path: '/labels/tags', value: 'canary' }));
  t.true(check({ op: 'contains', path: '/labels/tags', value: 'canary', ignore_case: true }));
  t.false(check({ op: 'contains', path: '/labels/tags', value: 'blu' }));
  t.false(check({ op: 'contains', path: '/labels/tags', value: 4 }));
});

test('starts: prefix of a string', (t) => {
  t.true(check({ op: 'starts', path: '/HTTP/url/path', value: '/metrics' }));
  t.false(check({ op: 'starts', path: '/HTTP/url/path', value: 'metrics' }));
  t.false(check({ op: 'starts', path: '/HTTP/url/path', value: '/METRICS' }));
  t.true(check({ op: 'starts', path: '/HTTP/url/path', value: '/METRICS', ignore_case: true }));
  t.false(check({ op: 'starts', path: '/nums', value: '1' }));
  t.false(check({ op: 'starts', path: '/missing', value: '' }));
  t.false(check({ op: 'starts', path: '/UDP/src_port', value: '9' }));
});

test('ends: a true suffix test (json-predicate used indexOf and got these wrong)', (t) => {
  t.true(check({ op: 'ends', path: '/HTTP/url/path', value: '/cpu' }));
  t.false(check({ op: 'ends', path: '/HTTP/url/path', value: '/metrics' }));
  t.true(check({ op: 'ends', path: '/HTTP/url/host', value: '.com', ignore_case: true }));
  t.false(check({ op: 'ends', path: '/HTTP/url/host', value: '.com' }));
  // repeated substring: the last occurrence is the suffix
  t.true(check({ op: 'ends', path: '/s', value: 'ab' }, { s: 'abab' }));
  // a value longer than the target never matches
  t.false(check({ op: 'ends', path: '/s', value: 'ab' }, { s: 'b' }));
  t.false(check({ op: 'ends', path: '/missing', value: 'x' }));
});

// ---------------------------------------------------------------------------
// matches

test('matches: regular expression given as a string, unanchored', (t) => {
  t.true(check({ op: 'matches', path: '/HTTP/url/path', value: '^/metrics/\\w+$' }));
  t.true(check({ op: 'matches', path: '/HTTP/url/path', value: 'cp' }));
  t.false(check({ op: 'matches', path: '/HTTP/url/path', value: '^/METRICS' }));
  t.true(check({ op: 'matches', path: '/HTTP/url/path', value: '^/METRICS', ignore_case: true }));
  t.true(check({ op: 'matches', path: '/IP/src_addr', value: '^10\\.0\\.0\\.\\d+$' }));
});

test('matches: only strings match', (t) => {
  t.false(check({ op: 'matches', path: '/UDP/src_port', value: '9000' }));
  t.false(check({ op: 'matches', path: '/labels/nothing', value: '.*' }));
  t.false(check({ op: 'matches', path: '/nums', value: '.*' }));
  t.false(check({ op: 'matches', path: '/IP', value: '.*' }));
  t.false(check({ op: 'matches', path: '/missing', value: '.*' }));
});

test('matches: repeated evaluation is stateless', (t) => {
  const p = compileMatch({ op: 'matches', path: '/s', value: 'a' });
  for (let i = 0; i < 5; i++) t.true(p({ s: 'banana' }));
});

// ---------------------------------------------------------------------------
// in

test('in: the target is one of the listed values', (t) => {
  t.true(check({ op: 'in', path: '/HTTP/method', value: ['POST', 'GET'] }));
  t.false(check({ op: 'in', path: '/HTTP/method', value: ['POST', 'PUT'] }));
  t.false(check({ op: 'in', path: '/HTTP/method', value: ['get'] }));
  t.true(check({ op: 'in', path: '/HTTP/method', value: ['get'], ignore_case: true }));
  t.true(check({ op: 'in', path: '/UDP/dst_port', value: [53, 5353] }));
  t.false(check({ op: 'in', path: '/UDP/dst_port', value: ['53'] }));
  t.true(check({ op: 'in', path: '/IP', value: [1, { src_addr: '10.0.0.1', dst_addr: '10.0.0.2' }] }));
  t.true(check({ op: 'in', path: '/labels/tags/3', value: ['x', { k: 'v' }], ignore_case: true }));
  t.false(check({ op: 'in', path: '/labels/tags/3', value: ['x', { k: 'v' }] }));
  t.false(check({ op: 'in', path: '/missing', value: ['x'] }));
  t.false(check({ op: 'in', path: '/HTTP/method', value: [] }));
  t.true(check({ op: 'in', path: '/labels/nothing', value: [null] }));
});

// ---------------------------------------------------------------------------
// less / more

test('less and more: numeric comparisons, false for non-numbers and equality', (t) => {
  t.true(check({ op: 'more', path: '/UDP/src_port', value: 8999 }));
  t.false(check({ op: 'more', path: '/UDP/src_port', value: 9000 }));
  t.false(check({ op: 'more', path: '/UDP/src_port', value: 9001 }));
  t.true(check({ op: 'less', path: '/UDP/src_port', value: 9001 }));
  t.false(check({ op: 'less', path: '/UDP/src_port', value: 9000 }));
  t.false(check({ op: 'less', path: '/UDP/src_port', value: 8999 }));
  t.true(check({ op: 'less', path: '/types/num', value: 2 }));
  t.true(check({ op: 'more', path: '/types/num', value: -Infinity }));
  t.false(check({ op: 'less', path: '/IP/src_addr', value: 100 }));
  t.false(check({ op: 'more', path: '/s', value: 1 }, { s: '5' }));
  t.false(check({ op: 'less', path: '/missing', value: 1 }));
  t.false(check({ op: 'less', path: '/labels/nothing', value: 1 }));
});

// ---------------------------------------------------------------------------
// defined / undefined

test('defined and undefined: null and falsy values are defined', (t) => {
  for (const p of ['/IP/src_addr', '/labels/nothing', '/labels/zero', '/labels/no', '/labels/tags/0']) {
    t.true(check({ op: 'defined', path: p }), p);
    t.false(check({ op: 'undefined', path: p }), p);
  }
  for (const p of ['/missing', '/IP/nope', '/labels/zero/x', '/labels/nothing/x', '/labels/tags/9', '/constructor']) {
    t.false(check({ op: 'defined', path: p }), p);
    t.true(check({ op: 'undefined', path: p }), p);
  }
});

test('defined: value is ignored', (t) => {
  t.true(check({ op: 'defined', path: '/IP', value: 'whatever' }));
});

// ---------------------------------------------------------------------------
// type

test('type: JSON types', (t) => {
  const cases: Array<[string, string]> = [
    ['/types/num', 'number'], ['/types/str', 'string'], ['/types/bool', 'boolean'], ['/types/obj', 'object'],
    ['/types/arr', 'array'], ['/types/nul', 'null'], ['/types/missing', 'undefined'],
  ];
  for (const [path, type] of cases) {
    t.true(check({ op: 'type', path, value: type }), `${path} is ${type}`);
    for (const [, other] of cases) {
      if (other !== type) t.false(check({ op: 'type', path, value: other }), `${path} is not ${other}`);
    }
  }
});

test('type: date, time and date-time follow RFC 3339', (t) => {
  t.true(check({ op: 'type', path: '/types/date', value: 'date' }));
  t.false(check({ op: 'type', path: '/types/badDate', value: 'date' }));
  t.false(check({ op: 'type', path: '/types/dateTime', value: 'date' }));
  t.true(check({ op: 'type', path: '/types/time', value: 'time' }));
  t.true(check({ op: 'type', path: '/types/timeOffset', value: 'time' }));
  t.false(check({ op: 'type', path: '/types/dateTime', value: 'time' }));
  t.true(check({ op: 'type', path: '/types/dateTime', value: 'date-time' }));
  t.false(check({ op: 'type', path: '/types/date', value: 'date-time' }));
  t.false(check({ op: 'type', path: '/types/num', value: 'date' }));
  const bad = ['2020-13-01', '2020-00-10', '2020-04-31', '20-01-01', '2020-1-01'];
  for (const s of bad) t.false(check({ op: 'type', path: '/s', value: 'date' }, { s }), s);
  const badTimes = ['24:00:00Z', '10:60:00Z', '10:10:10', '10:10Z', '10:10:10+5:30'];
  for (const s of badTimes) t.false(check({ op: 'type', path: '/s', value: 'time' }, { s }), s);
  t.true(check({ op: 'type', path: '/s', value: 'date-time' }, { s: '2010-10-10t10:10:10z' }));
  t.false(check({ op: 'type', path: '/s', value: 'date-time' }, { s: '2010-10-10 10:10:10Z' }));
});

test('type: lang (RFC 5646) and lang-range (RFC 4647)', (t) => {
  t.true(check({ op: 'type', path: '/types/lang', value: 'lang' }));
  t.true(check({ op: 'type', path: '/types/langScript', value: 'lang' }));
  for (const s of ['en', 'de-CH-1996', 'sr-Latn-RS', 'es-419', 'x-private', 'i-klingon', 'en-a-bbb-x-a-ccc', 'zh-min-nan']) {
    t.true(check({ op: 'type', path: '/s', value: 'lang' }, { s }), s);
  }
  for (const s of ['', 'e', 'en-', 'toolonglanguage', 'en_US', '123', 'en--US']) {
    t.false(check({ op: 'type', path: '/s', value: 'lang' }, { s }), s);
  }
  t.true(check({ op: 'type', path: '/types/langRange', value: 'lang-range' }));
  for (const s of ['*', 'de', 'de-CH', 'CH-*', '*-CH']) {
    t.true(check({ op: 'type', path: '/s', value: 'lang-range' }, { s }), s);
  }
  for (const s of ['', 'de_CH', 'de-', 'abcdefghi']) {
    t.false(check({ op: 'type', path: '/s', value: 'lang-range' }, { s }), s);
  }
  t.false(check({ op: 'type', path: '/types/num', value: 'lang' }));
});

test('type: iri (IRI-reference) and absolute-iri (with a scheme)', (t) => {
  t.true(check({ op: 'type', path: '/types/iri', value: 'iri' }));
  t.true(check({ op: 'type', path: '/types/relIri', value: 'iri' }));
  t.true(check({ op: 'type', path: '/types/absIri', value: 'iri' }));
  t.true(check({ op: 'type', path: '/types/iri', value: 'absolute-iri' }));
  t.true(check({ op: 'type', path: '/types/absIri', value: 'absolute-iri' }));
  t.false(check({ op: 'type', path: '/types/relIri', value: 'absolute-iri' }));
  t.true(check({ op: 'type', path: '/s', value: 'absolute-iri' }, { s: 'http://[::1]:8080/x' }));
  for (const s of ['has space', 'a<b', 'http://x/%zz', 'a#b#c', '1:relative', 'http://x/[y]']) {
    t.false(check({ op: 'type', path: '/s', value: 'iri' }, { s }), s);
  }
  t.false(check({ op: 'type', path: '/types/num', value: 'iri' }));
  t.false(check({ op: 'type', path: '/missing', value: 'absolute-iri' }));
});

test('type: every listed type name compiles', (t) => {
  for (const type of PREDICATE_TYPES) t.notThrows(() => compileMatch({ op: 'type', path: '/x', value: type }));
});

// ---------------------------------------------------------------------------
// contained / intersects

test('contained: the value is an element of the target array', (t) => {
  t.true(check({ op: 'contained', path: '/labels/tags', value: 'blue' }));
  t.true(check({ op: 'contained', path: '/labels/tags', value: { k: 'V' } }));
  t.false(check({ op: 'contained', path: '/labels/tags', value: { k: 'v' } }));
  t.true(check({ op: 'contained', path: '/labels/tags', value: { k: 'v' }, ignore_case: true }));
  t.false(check({ op: 'contained', path: '/labels/tags', value: 'BLUE' }));
  t.true(check({ op: 'contained', path: '/labels/tags', value: 'BLUE', ignore_case: true }));
  t.false(check({ op: 'contained', path: '/HTTP/method', value: 'G' }));
  t.false(check({ op: 'contained', path: '/missing', value: 'x' }));
});

test('intersects: the target array shares an element with the value', (t) => {
  t.true(check({ op: 'intersects', path: '/labels/tags', value: ['zzz', 'blue'] }));
  t.true(check({ op: 'intersects', path: '/nums', value: [3, 4] }));
  t.false(check({ op: 'intersects', path: '/nums', value: [4, 5] }));
  t.false(check({ op: 'intersects', path: '/nums', value: [] }));
  t.false(check({ op: 'intersects', path: '/labels/tags', value: ['canary'] }));
  t.true(check({ op: 'intersects', path: '/labels/tags', value: ['canary'], ignore_case: true }));
  t.true(check({ op: 'intersects', path: '/labels/tags', value: [{ k: 'V' }] }));
  t.false(check({ op: 'intersects', path: '/HTTP/method', value: ['GET'] }));
  t.false(check({ op: 'intersects', path: '/missing', value: ['x'] }));
});

// ---------------------------------------------------------------------------
// paths

test('path: RFC 6901 escapes address keys containing / and ~', (t) => {
  t.true(check({ op: 'test', path: '/HTTP/headers/x~1slash', value: 'yes' }));
  t.true(check({ op: 'test', path: '/HTTP/headers/x~0tilde', value: 'yes' }));
  t.false(check({ op: 'defined', path: '/HTTP/headers/x/slash' }));
});

test("path: '' is the whole document", (t) => {
  t.true(check({ op: 'type', path: '', value: 'object' }));
  t.true(check({ op: 'test', path: '', value: { a: 1 } }, { a: 1 }));
});

test('path: array indices', (t) => {
  t.true(check({ op: 'test', path: '/labels/tags/1', value: 'Canary' }));
  t.true(check({ op: 'undefined', path: '/labels/tags/01' }));
});

test('path: a path through a falsy value is undefined (no getAtPath quirk here)', (t) => {
  t.false(check({ op: 'test', path: '/labels/zero/x', value: 0 }));
  t.true(check({ op: 'undefined', path: '/labels/zero/x' }));
});

test('path: inherited members are not visible', (t) => {
  t.true(check({ op: 'undefined', path: '/HTTP/headers/constructor' }));
  t.true(check({ op: 'undefined', path: '/__proto__' }));
  t.true(check({ op: 'undefined', path: '/IP/src_addr/length' }));
});

// ---------------------------------------------------------------------------
// second order

const T = { op: 'defined', path: '/IP' };
const F = { op: 'defined', path: '/missing' };

test('and: true only when every child is true', (t) => {
  t.true(check({ op: 'and', apply: [T] }));
  t.true(check({ op: 'and', apply: [T, T] }));
  t.true(check({ op: 'and', apply: [T, T, T] }));
  t.false(check({ op: 'and', apply: [T, F] }));
  t.false(check({ op: 'and', apply: [F, T] }));
  t.false(check({ op: 'and', apply: [T, T, F] }));
  t.false(check({ op: 'and', apply: [F] }));
});

test('or: true when any child is true', (t) => {
  t.true(check({ op: 'or', apply: [T] }));
  t.true(check({ op: 'or', apply: [F, T] }));
  t.true(check({ op: 'or', apply: [F, F, T] }));
  t.false(check({ op: 'or', apply: [F] }));
  t.false(check({ op: 'or', apply: [F, F] }));
});

test('not: true when none of the children is true', (t) => {
  t.true(check({ op: 'not', apply: [F] }));
  t.true(check({ op: 'not', apply: [F, F] }));
  t.false(check({ op: 'not', apply: [T] }));
  t.false(check({ op: 'not', apply: [F, T] }));
  t.false(check({ op: 'not', apply: [T, T] }));
});

test('empty apply lists are true for and, or and not (json-predicate 0.9.5)', (t) => {
  t.true(check({ op: 'and', apply: [] }));
  t.true(check({ op: 'or', apply: [] }));
  t.true(check({ op: 'not', apply: [] }));
});

test('second order: the k8s example from l7mp docs', (t) => {
  const pred = {
    op: 'and',
    apply: [
      { op: 'test', path: '/IP/src_addr', value: '10.0.0.1' },
      { op: 'more', path: '/UDP/src_port', value: 8999 },
    ],
  };
  t.true(check(pred));
  t.false(check(pred, { ...M, UDP: { src_port: 8000 } }));
  t.false(check(pred, { ...M, IP: { src_addr: '10.0.0.9' } }));
});

test('second order: path prefixes apply to children', (t) => {
  t.true(check({
    op: 'and',
    path: '/HTTP',
    apply: [
      { op: 'test', path: '/method', value: 'GET' },
      { op: 'starts', path: '/url/path', value: '/metrics' },
    ],
  }));
  t.false(check({ op: 'and', path: '/HTTP', apply: [{ op: 'defined', path: '/IP' }] }));
  t.true(check({ op: 'or', path: '/IP', apply: [F, { op: 'test', path: '/src_addr', value: '10.0.0.1' }] }));
  t.true(check({ op: 'not', path: '/IP', apply: [{ op: 'defined', path: '/HTTP' }] }));
});

test('second order: nested path prefixes compose', (t) => {
  const pred = {
    op: 'and',
    path: '/HTTP',
    apply: [
      {
        op: 'or',
        path: '/url',
        apply: [
          { op: 'test', path: '/host', value: 'nope' },
          {
            op: 'not',
            path: '/path',
            apply: [{ op: 'ends', value: '/mem' }],
          },
        ],
      },
      { op: 'and', apply: [{ op: 'test', path: '/headers/user-agent', value: 'CURL/8.0', ignore_case: true }] },
    ],
  };
  t.true(check(pred));
  const m2 = meta();
  m2.HTTP.url.path = '/metrics/mem';
  t.false(check(pred, m2));
  const m3 = meta();
  m3.HTTP.headers['user-agent'] = 'wget';
  t.false(check(pred, m3));
});

test('second order: a child without path tests the parent target (draft example)', (t) => {
  const pred = {
    op: 'and',
    path: '/HTTP/url/path',
    apply: [
      { op: 'type', value: 'string' },
      { op: 'starts', value: '/metrics' },
      { op: 'not', apply: [{ op: 'contains', value: '..' }] },
    ],
  };
  t.true(check(pred));
  const m2 = meta();
  m2.HTTP.url.path = '/metrics/../etc';
  t.false(check(pred, m2));
});

test('second order: a prefix that does not resolve makes child targets undefined', (t) => {
  t.true(check({ op: 'and', path: '/missing', apply: [{ op: 'undefined', path: '/x' }] }));
  t.false(check({ op: 'and', path: '/missing', apply: [{ op: 'defined', path: '/x' }] }));
  t.false(check({ op: 'and', path: '/labels/zero', apply: [{ op: 'defined', path: '/x' }] }));
});

test("second order: path '' keeps the root as the prefix", (t) => {
  t.true(check({ op: 'and', path: '', apply: [{ op: 'test', path: '/HTTP/method', value: 'GET' }, { op: 'type', value: 'object' }] }));
});

test('every operator in PREDICATE_OPS compiles', (t) => {
  const values: Record<string, unknown> = {
    test: 1, contains: 'a', starts: 'a', ends: 'a', matches: 'a', in: [1], less: 1, more: 1,
    type: 'string', contained: 1, intersects: [1],
  };
  for (const op of PREDICATE_OPS) {
    const pred = ['and', 'or', 'not'].includes(op)
      ? { op, apply: [T] }
      : { op, path: '/x', value: values[op] };
    t.notThrows(() => compileMatch(pred), op);
  }
  t.is(PREDICATE_OPS.length, 16);
});

// ---------------------------------------------------------------------------
// compile-time errors

test('errors: unknown operator', (t) => {
  rejects(t, { op: 'equals', path: '/a', value: 1 }, 'match.op', /unknown operator "equals"/);
  rejects(t, { op: 'Starts', path: '/a', value: 'x' }, 'match.op', /unknown operator "Starts"/);
  rejects(t, { op: 'and', apply: [T, { op: 'nope', path: '/a' }] }, 'match.apply[1].op', /unknown operator "nope"/);
});

test('errors: missing or non-string op', (t) => {
  rejects(t, {}, 'match.op', /required/);
  rejects(t, { path: '/a', value: 1 }, 'match.op', /required/);
  rejects(t, { op: 5, path: '/a' }, 'match.op', /must be a string/);
});

test('errors: path must be a JSON pointer starting with /', (t) => {
  rejects(t, { op: 'test', path: 'IP/src_addr', value: 'x' }, 'match.path', /must be a JSON pointer starting with '\/'/);
  rejects(t, { op: 'and', path: 'HTTP', apply: [T] }, 'match.path', /starting with '\/'/);
  rejects(t, { op: 'or', apply: [{ op: 'defined', path: 'a' }] }, 'match.apply[0].path', /starting with '\/'/);
  rejects(t, { op: 'defined', path: 7 }, 'match.path', /must be a string/);
  rejects(t, { op: 'defined', path: '/a~2' }, 'match.path', /escape/);
});

test('errors: first-order path is required unless a parent gives one', (t) => {
  rejects(t, { op: 'test', value: 'x' }, 'match.path', /required/);
  rejects(t, { op: 'and', apply: [{ op: 'defined' }] }, 'match.apply[0].path', /required/);
  t.notThrows(() => compileMatch({ op: 'and', path: '/a', apply: [{ op: 'defined' }] }));
});

test('errors: missing value where required', (t) => {
  for (const op of ['test', 'contains', 'starts', 'ends', 'matches', 'in', 'less', 'more', 'type', 'contained', 'intersects']) {
    rejects(t, { op, path: '/a' }, 'match.value', new RegExp(`required for operator "${op}"`));
  }
  t.notThrows(() => compileMatch({ op: 'defined', path: '/a' }));
  t.notThrows(() => compileMatch({ op: 'undefined', path: '/a' }));
  t.notThrows(() => compileMatch({ op: 'test', path: '/a', value: null }));
});

test('errors: value of the wrong type', (t) => {
  rejects(t, { op: 'less', path: '/a', value: '5' }, 'match.value', /must be a number/);
  rejects(t, { op: 'more', path: '/a', value: Number.NaN }, 'match.value', /must be a number/);
  rejects(t, { op: 'in', path: '/a', value: 'abc' }, 'match.value', /must be an array/);
  rejects(t, { op: 'intersects', path: '/a', value: 1 }, 'match.value', /must be an array/);
  rejects(t, { op: 'starts', path: '/a', value: 1 }, 'match.value', /must be a string/);
  rejects(t, { op: 'ends', path: '/a', value: ['x'] }, 'match.value', /must be a string/);
  rejects(t, { op: 'matches', path: '/a', value: {} }, 'match.value', /must be a string/);
  rejects(t, { op: 'type', path: '/a', value: 'integer' }, 'match.value', /unknown type "integer"/);
  rejects(t, { op: 'type', path: '/a', value: 3 }, 'match.value', /must be a string/);
});

test('errors: a regex that does not compile', (t) => {
  rejects(t, { op: 'matches', path: '/a', value: '\\' }, 'match.value', /invalid regular expression/);
  rejects(t, { op: 'matches', path: '/a', value: '([a-z]' }, 'match.value', /invalid regular expression/);
});

test('errors: apply must be an array of predicate objects', (t) => {
  rejects(t, { op: 'and' }, 'match.apply', /must be an array/);
  rejects(t, { op: 'or', apply: T }, 'match.apply', /must be an array/);
  rejects(t, { op: 'not', apply: 'x' }, 'match.apply', /must be an array/);
  rejects(t, { op: 'and', apply: [T, 'x'] }, 'match.apply[1]', /predicate object/);
  rejects(t, { op: 'and', apply: [null] }, 'match.apply[0]', /predicate object/);
});

test('errors: ignore_case must be a boolean', (t) => {
  rejects(t, { op: 'test', path: '/a', value: 'x', ignore_case: 'yes' }, 'match.ignore_case', /boolean/);
});

test('errors: deeply nested errors name the full location, with a custom field', (t) => {
  const pred = { op: 'and', apply: [T, { op: 'or', path: '/x', apply: [F, { op: 'less', path: '/y', value: 'a' }] }] };
  const err = t.throws(() => compileMatch(pred, 'rule.match'), { instanceOf: GatewayError });
  t.is(err?.field, 'rule.match.apply[1].apply[1].value');
  t.regex(err?.message ?? '', /^rule\.match\.apply\[1\]\.apply\[1\]\.value: /);
});

test('errors: absurd nesting is refused instead of overflowing the stack', (t) => {
  let pred: unknown = T;
  for (let i = 0; i < 100; i++) pred = { op: 'not', apply: [pred] };
  const err = t.throws(() => compileMatch(pred), { instanceOf: GatewayError });
  t.regex(err?.message ?? '', /nest deeper/);
  let ok: unknown = T;
  for (let i = 0; i < 10; i++) ok = { op: 'not', apply: [ok] };
  t.true(compileMatch(ok)(M)); // even number of nots
});

// ---------------------------------------------------------------------------
// deepEqual

test('deepEqual: semantics', (t) => {
  t.true(deepEqual(Number.NaN, Number.NaN));
  t.true(deepEqual(0, -0));
  t.false(deepEqual(1, '1'));
  t.false(deepEqual(null, undefined));
  t.false(deepEqual({}, []));
  t.false(deepEqual({ a: undefined }, {}));
  t.true(deepEqual(Object.assign(Object.create(null), { a: 1 }), { a: 1 }));
  t.true(deepEqual({ a: ['X', { b: 'Y' }] }, { a: ['x', { b: 'y' }] }, true));
  t.false(deepEqual({ a: ['X', { b: 'Y' }] }, { a: ['x', { b: 'y' }] }));
  t.true(deepEqual(new Date(5), new Date(5)));
  t.false(deepEqual(new Date(5), new Date(6)));
  t.false(deepEqual(new Date(5), {}));
});

// ---------------------------------------------------------------------------
// rewrite

test('rewrite: applies {path, value} in order, l7mp path syntax', (t) => {
  const rw = compileRewrite([
    { path: '/labels/app', value: 'api' },
    { path: 'labels/tier/', value: { level: 1 } },
    { path: '/labels/tier/level', value: 2 },
    { path: '/IP/src_addr', value: '192.168.0.1' },
  ]);
  const m = meta() as unknown as Record<string, unknown>;
  rw(m);
  t.is((m.labels as Record<string, unknown>).app, 'api');
  t.deepEqual((m.labels as Record<string, unknown>).tier, { level: 2 });
  t.is((m.IP as Record<string, unknown>).src_addr, '192.168.0.1');
  t.is((m.IP as Record<string, unknown>).dst_addr, '10.0.0.2');
});

test('rewrite: values are deep-cloned per application', (t) => {
  const value = { a: { b: 1 } };
  const rw = compileRewrite([{ path: '/labels/x', value }]);
  value.a.b = 99; // the spec changing later does not change the rule
  const m1: Record<string, unknown> = {};
  const m2: Record<string, unknown> = {};
  rw(m1);
  rw(m2);
  t.deepEqual(m1, { labels: { x: { a: { b: 1 } } } });
  ((m1.labels as Record<string, { a: { b: number } }>).x).a.b = 5;
  t.deepEqual(m2, { labels: { x: { a: { b: 1 } } } });
  const m3: Record<string, unknown> = {};
  rw(m3);
  t.deepEqual(m3, { labels: { x: { a: { b: 1 } } } });
});

test("rewrite: '/' replaces the whole metadata", (t) => {
  const rw = compileRewrite([{ path: '/', value: { only: true } }]);
  const m: Record<string, unknown> = { IP: {}, name: 'x' };
  rw(m);
  t.deepEqual(m, { only: true });
});

test('rewrite: then match sees the rewritten metadata', (t) => {
  const rw = compileRewrite([{ path: '/labels/canary', value: true }]);
  const p = compileMatch({ op: 'test', path: '/labels/canary', value: true });
  const m = meta() as unknown as Record<string, unknown>;
  t.false(p(m));
  rw(m);
  t.true(p(m));
});

test('rewrite: undefined, null and [] are no-ops', (t) => {
  for (const spec of [undefined, null, []]) {
    const m: Record<string, unknown> = { a: 1 };
    compileRewrite(spec)(m);
    t.deepEqual(m, { a: 1 });
  }
});

test('rewrite: validation errors name the field', (t) => {
  const cases: Array<[unknown, string, RegExp]> = [
    [{ path: '/a', value: 1 }, 'rewrite', /must be an array/],
    ['x', 'rewrite', /must be an array/],
    [[1], 'rewrite[0]', /must be an object/],
    [[{ path: '/a', value: 1 }, null], 'rewrite[1]', /must be an object/],
    [[{ value: 1 }], 'rewrite[0].path', /required/],
    [[{ path: 5, value: 1 }], 'rewrite[0].path', /must be a string/],
    [[{ path: '/a' }], 'rewrite[0].value', /required/],
    [[{ path: '/', value: 'x' }], 'rewrite[0].value', /must be an object/],
    [[{ path: '', value: [1] }], 'rewrite[0].value', /must be an object/],
    [[{ path: '/__proto__/x', value: 1 }], 'rewrite[0].path', /__proto__/],
  ];
  for (const [spec, field, re] of cases) {
    const err = t.throws(() => compileRewrite(spec), { instanceOf: GatewayError }, JSON.stringify(spec));
    t.is(err?.field, field, JSON.stringify(spec));
    t.is(err?.status, 400);
    t.regex(err?.message ?? '', re);
  }
  const err = t.throws(() => compileRewrite([{ path: 1, value: 1 }], 'rule.action.rewrite'), { instanceOf: GatewayError });
  t.is(err?.field, 'rule.action.rewrite[0].path');
});
