// Rule matching and rewriting over session metadata.
//
// `match` follows JSON Predicates (draft-snell-json-test-07) as l7mp evaluated
// them through the `json-predicate` npm package (0.9.5): the same operators,
// the same `ignore_case`, the same second-order `path` prefix, the same truth
// values for well-formed predicates. What changes is *when* mistakes surface:
// l7mp evaluated a malformed predicate to `false` on every session, forever;
// we compile each predicate once, when the rule is added, and reject a bad one
// with a 400 that names the field. The compiled form is a tree of closures
// whose evaluation does no parsing and (except for `ignore_case` string
// folding and object comparisons) no allocation.
//
// Deliberate differences from json-predicate 0.9.5, each a fix:
//
// - Compile-time validation: unknown `op`, missing `value`, a `value` of the
//   wrong type (`less`/`more` need a number, `in`/`intersects` an array,
//   `starts`/`ends`/`matches` a string, `type` a known type name), a regex
//   that does not compile, `apply` that is not an array, a non-boolean
//   `ignore_case`, and a `path` that is not a JSON pointer are all rejected.
// - `path` is an RFC 6901 JSON Pointer: it must be '' (the whole document) or
//   start with '/'. l7mp silently never matched 'IP/src_addr'; we reject it.
//   Escapes `~1` and `~0` work; a path through a missing or primitive value
//   is `undefined` (json-predicate returned the falsy intermediate instead),
//   and only own properties are seen (so '/HTTP/headers/constructor' is not
//   Object's constructor).
// - A first-order predicate inside a second-order one may omit `path`; it then
//   tests the parent's target, as in the draft's examples
//   (`{op: and, path: /a, apply: [{op: type, value: string}, …]}`).
//   json-predicate evaluated such children to false. At the top level, and
//   under parents without a `path`, `path` stays required.
// - `ends` is a real suffix test (json-predicate used indexOf, so 'abab' did
//   not end with 'ab', and 'a' ended with 'ab').
// - `contains` tests substrings of strings and, for an array target, whether
//   an element equals the value (json-predicate did the latter by accident,
//   with ===, and threw a TypeError on numbers and null).
// - `type: object` is a JSON object (not null, not an array); `type` checks of
//   date/time/lang/iri follow RFC 3339, RFC 5646, RFC 4647 and RFC 3987
//   syntax more closely; `absolute-iri` accepts any scheme, not only http(s).
//
// Kept: empty `apply` lists are true for `and`, `or` (json-predicate 0.9.4)
// and `not`; `not` is true when none of its children is true; `test`, `in`,
// `contained` and `intersects` use deep equality (NaN equals NaN) with
// `ignore_case` folding strings at any depth; `less`/`more` are false for
// non-numbers; `defined` is true for null.

import { invalid } from '../core/errors.js';
import { compileSetter, compileTokens, deepClone, parsePointer, splitPath } from './jsonpath.js';

/** A compiled `match`: true when the session's metadata satisfies it. */
export type MetadataPredicate = (metadata: object) => boolean;

/** A compiled `rewrite`: applies its `{path, value}` list in order, in place. */
export type MetadataRewriter = (metadata: Record<string, unknown>) => void;

export const FIRST_ORDER_OPS = [
  'test', 'contains', 'starts', 'ends', 'matches', 'in', 'less', 'more',
  'defined', 'undefined', 'type', 'contained', 'intersects',
] as const;

export const SECOND_ORDER_OPS = ['and', 'or', 'not'] as const;

export const PREDICATE_OPS: readonly string[] = [...FIRST_ORDER_OPS, ...SECOND_ORDER_OPS];

export const PREDICATE_TYPES = [
  'number', 'string', 'boolean', 'object', 'array', 'null', 'undefined',
  'date', 'date-time', 'time', 'lang', 'lang-range', 'iri', 'absolute-iri',
] as const;

/** Deeper nesting is refused, so a hostile body cannot exhaust the stack. */
const MAX_DEPTH = 32;

const MATCH_ALL: MetadataPredicate = () => true;
const NO_REWRITE: MetadataRewriter = () => {};

type Getter = (obj: unknown) => unknown;
type Test = (x: unknown) => boolean;

// ---------------------------------------------------------------------------
// Equality

/**
 * Deep equality of JSON-like values: SameValueZero for primitives (so NaN
 * equals NaN), element-wise for arrays, own enumerable keys for objects
 * (prototypes are ignored, so a null-prototype header object equals a plain
 * one). With `ignoreCase`, strings at any depth compare case-insensitively.
 */
export function deepEqual(a: unknown, b: unknown, ignoreCase = false): boolean {
  if (a === b) return true;
  const ta = typeof a;
  const tb = typeof b;
  if (ta === 'string' && tb === 'string') {
    return ignoreCase && (a as string).toLowerCase() === (b as string).toLowerCase();
  }
  if (ta === 'number' && tb === 'number') return a !== a && b !== b;
  if (a === null || b === null || ta !== 'object' || tb !== 'object') return false;
  const aIsArray = Array.isArray(a);
  if (aIsArray !== Array.isArray(b)) return false;
  if (aIsArray) {
    const x = a as unknown[];
    const y = b as unknown[];
    if (x.length !== y.length) return false;
    for (let i = 0; i < x.length; i++) if (!deepEqual(x[i], y[i], ignoreCase)) return false;
    return true;
  }
  if (a instanceof Date || b instanceof Date) {
    return a instanceof Date && b instanceof Date && a.getTime() === b.getTime();
  }
  const x = a as Record<string, unknown>;
  const y = b as Record<string, unknown>;
  const keys = Object.keys(x);
  if (keys.length !== Object.keys(y).length) return false;
  for (const k of keys) {
    if (!Object.hasOwn(y, k) || !deepEqual(x[k], y[k], ignoreCase)) return false;
  }
  return true;
}

// ---------------------------------------------------------------------------
// `type` checks

const DATE = /^(\d{4})-(\d{2})-(\d{2})$/;
const TIME = /^(?:[01]\d|2[0-3]):[0-5]\d:(?:[0-5]\d|60)(?:\.\d+)?(?:z|[+-](?:[01]\d|2[0-3]):[0-5]\d)$/i;

function isLeap(y: number): boolean {
  return (y % 4 === 0 && y % 100 !== 0) || y % 400 === 0;
}

/** RFC 3339 full-date, with month and day-of-month ranges checked. */
function isDate(s: string): boolean {
  const m = DATE.exec(s);
  if (m === null) return false;
  const year = Number(m[1]);
  const month = Number(m[2]);
  const day = Number(m[3]);
  if (month < 1 || month > 12 || day < 1) return false;
  const days = month === 2 ? (isLeap(year) ? 29 : 28) : [4, 6, 9, 11].includes(month) ? 30 : 31;
  return day <= days;
}

/** RFC 3339 full-time: partial-time plus a 'Z' or ±hh:mm offset. */
function isTime(s: string): boolean {
  return TIME.test(s);
}

/** RFC 3339 date-time: full-date 'T' full-time. */
function isDateTime(s: string): boolean {
  const t = s.search(/[Tt]/);
  return t === 10 && isDate(s.slice(0, 10)) && isTime(s.slice(11));
}

// RFC 5646 Language-Tag (case-insensitive): langtag / privateuse / grandfathered.
const LANGTAG =
  '(?:[a-z]{2,3}(?:-[a-z]{3}){0,3}|[a-z]{4}|[a-z]{5,8})' + // language, extlang
  '(?:-[a-z]{4})?' + // script
  '(?:-(?:[a-z]{2}|\\d{3}))?' + // region
  '(?:-(?:[a-z\\d]{5,8}|\\d[a-z\\d]{3}))*' + // variants
  '(?:-[\\da-wyz](?:-[a-z\\d]{2,8})+)*' + // extensions
  '(?:-x(?:-[a-z\\d]{1,8})+)?'; // private use
const IRREGULAR =
  'en-gb-oed|i-ami|i-bnn|i-default|i-enochian|i-hak|i-klingon|i-lux|i-mingo|i-navajo|' +
  'i-pwn|i-tao|i-tay|i-tsu|sgn-be-fr|sgn-be-nl|sgn-ch-de';
const LANG = new RegExp(`^(?:${LANGTAG}|x(?:-[a-z\\d]{1,8})+|${IRREGULAR})$`, 'i');

// RFC 4647 extended-language-range (a superset of the basic language-range).
const LANG_RANGE = /^(?:\*|[a-z]{1,8})(?:-(?:\*|[a-z\d]{1,8}))*$/i;

// Characters RFC 3987 never allows unescaped (controls, space, and the
// delimiters RFC 3986 excludes), and a '%' not starting a pct-encoding.
const IRI_FORBIDDEN = /[\u0000-\u0020\u007f-\u009f<>"{}|\\^`]|%(?![\da-f]{2})/i;
const SCHEME = /^[a-z][a-z\d+.-]*:/i;
const IP_LITERAL_AUTHORITY = /^[a-z][a-z\d+.-]*:\/\/(?:[^@/?#[\]]*@)?\[[\da-z:.]+\]/i;

/** RFC 3987 IRI-reference: an IRI or a relative reference. */
function isIriReference(s: string): boolean {
  if (IRI_FORBIDDEN.test(s)) return false;
  const hash = s.indexOf('#');
  if (hash >= 0 && s.indexOf('#', hash + 1) >= 0) return false;
  let rest = s;
  const lit = IP_LITERAL_AUTHORITY.exec(s);
  if (lit !== null) rest = s.slice(lit[0].length);
  if (rest.indexOf('[') >= 0 || rest.indexOf(']') >= 0) return false;
  if (SCHEME.test(s)) return true;
  // A relative reference's first segment cannot contain ':' (RFC 3986 4.2).
  const end = s.search(/[/?#]/);
  return (end < 0 ? s : s.slice(0, end)).indexOf(':') < 0;
}

/** RFC 3987 IRI: an IRI-reference with a scheme. */
function isAbsoluteIri(s: string): boolean {
  return SCHEME.test(s) && isIriReference(s);
}

function stringCheck(check: (s: string) => boolean): Test {
  return (x) => typeof x === 'string' && check(x);
}

const TYPE_TESTS: Record<(typeof PREDICATE_TYPES)[number], Test> = {
  number: (x) => typeof x === 'number',
  string: (x) => typeof x === 'string',
  boolean: (x) => typeof x === 'boolean',
  object: (x) => x !== null && typeof x === 'object' && !Array.isArray(x),
  array: (x) => Array.isArray(x),
  null: (x) => x === null,
  undefined: (x) => x === undefined,
  date: stringCheck(isDate),
  'date-time': stringCheck(isDateTime),
  time: stringCheck(isTime),
  lang: stringCheck((s) => LANG.test(s)),
  'lang-range': stringCheck((s) => LANG_RANGE.test(s)),
  iri: stringCheck(isIriReference),
  'absolute-iri': stringCheck(isAbsoluteIri),
};

// ---------------------------------------------------------------------------
// Compilation

function isRecord(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

function describe(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  return `a ${typeof v}`;
}

function requireValue(node: Record<string, unknown>, field: string, op: string): unknown {
  if (node.value === undefined) throw invalid(`${field}.value`, `required for operator "${op}"`);
  return node.value;
}

function requireString(node: Record<string, unknown>, field: string, op: string): string {
  const v = requireValue(node, field, op);
  if (typeof v !== 'string') throw invalid(`${field}.value`, `must be a string for operator "${op}", not ${describe(v)}`);
  return v;
}

function requireArray(node: Record<string, unknown>, field: string, op: string): readonly unknown[] {
  const v = requireValue(node, field, op);
  if (!Array.isArray(v)) throw invalid(`${field}.value`, `must be an array for operator "${op}", not ${describe(v)}`);
  return deepClone(v);
}

function requireNumber(node: Record<string, unknown>, field: string, op: string): number {
  const v = requireValue(node, field, op);
  if (typeof v !== 'number' || Number.isNaN(v)) {
    throw invalid(`${field}.value`, `must be a number for operator "${op}", not ${describe(v)}`);
  }
  return v;
}

/** Resolve a node's `path` against the enclosing prefix (undefined = none given). */
function resolvePath(
  node: Record<string, unknown>,
  field: string,
  prefix: readonly string[] | undefined,
): readonly string[] | undefined {
  const path = node.path;
  if (path === undefined) return prefix;
  if (typeof path !== 'string') throw invalid(`${field}.path`, `must be a string, not ${describe(path)}`);
  const tokens = parsePointer(path, `${field}.path`);
  return prefix === undefined ? tokens : [...prefix, ...tokens];
}

/** The test a first-order operator applies to its target value. */
function firstOrderTest(node: Record<string, unknown>, field: string, op: string, ic: boolean): Test {
  switch (op) {
    case 'test': {
      const want = deepClone(requireValue(node, field, op));
      if (!ic && (want === null || typeof want !== 'object') && want === want) return (x) => x === want;
      return (x) => deepEqual(x, want, ic);
    }
    case 'contains': {
      const want = deepClone(requireValue(node, field, op));
      const inArray: Test = (x) => {
        if (!Array.isArray(x)) return false;
        for (let i = 0; i < x.length; i++) if (deepEqual(x[i], want, ic)) return true;
        return false;
      };
      if (typeof want !== 'string') return inArray;
      if (ic) {
        const lw = want.toLowerCase();
        return (x) => (typeof x === 'string' ? x.toLowerCase().includes(lw) : inArray(x));
      }
      return (x) => (typeof x === 'string' ? x.includes(want) : inArray(x));
    }
    case 'starts': {
      const want = requireString(node, field, op);
      if (ic) {
        const lw = want.toLowerCase();
        return (x) => typeof x === 'string' && x.toLowerCase().startsWith(lw);
      }
      return (x) => typeof x === 'string' && x.startsWith(want);
    }
    case 'ends': {
      const want = requireString(node, field, op);
      if (ic) {
        const lw = want.toLowerCase();
        return (x) => typeof x === 'string' && x.toLowerCase().endsWith(lw);
      }
      return (x) => typeof x === 'string' && x.endsWith(want);
    }
    case 'matches': {
      const source = requireString(node, field, op);
      let re: RegExp;
      try {
        re = new RegExp(source, ic ? 'i' : '');
      } catch (err) {
        throw invalid(`${field}.value`, `invalid regular expression: ${(err as Error).message}`);
      }
      return (x) => typeof x === 'string' && re.test(x);
    }
    case 'in': {
      const list = requireArray(node, field, op);
      const allPrimitive = list.every((v) => v === null || typeof v !== 'object');
      if (!ic && allPrimitive) {
        const set = new Set(list);
        return (x) => set.has(x);
      }
      return (x) => {
        for (let i = 0; i < list.length; i++) if (deepEqual(x, list[i], ic)) return true;
        return false;
      };
    }
    case 'less': {
      const bound = requireNumber(node, field, op);
      return (x) => typeof x === 'number' && x < bound;
    }
    case 'more': {
      const bound = requireNumber(node, field, op);
      return (x) => typeof x === 'number' && x > bound;
    }
    case 'defined':
      return (x) => x !== undefined;
    case 'undefined':
      return (x) => x === undefined;
    case 'type': {
      const t = requireString(node, field, op);
      if (!Object.hasOwn(TYPE_TESTS, t)) {
        throw invalid(`${field}.value`, `unknown type "${t}"; one of ${PREDICATE_TYPES.join(', ')}`);
      }
      return TYPE_TESTS[t as keyof typeof TYPE_TESTS];
    }
    case 'contained': {
      const want = deepClone(requireValue(node, field, op));
      return (x) => {
        if (!Array.isArray(x)) return false;
        for (let i = 0; i < x.length; i++) if (deepEqual(x[i], want, ic)) return true;
        return false;
      };
    }
    case 'intersects': {
      const list = requireArray(node, field, op);
      return (x) => {
        if (!Array.isArray(x)) return false;
        for (let i = 0; i < x.length; i++) {
          for (let j = 0; j < list.length; j++) if (deepEqual(x[i], list[j], ic)) return true;
        }
        return false;
      };
    }
    default:
      throw invalid(`${field}.op`, `unknown operator "${op}"`);
  }
}

function compileNode(
  node: unknown,
  field: string,
  prefix: readonly string[] | undefined,
  depth: number,
): MetadataPredicate {
  if (!isRecord(node)) throw invalid(field, `must be a predicate object, not ${describe(node)}`);
  if (depth > MAX_DEPTH) throw invalid(field, `predicates nest deeper than ${MAX_DEPTH} levels`);
  const op = node.op;
  if (op === undefined) throw invalid(`${field}.op`, 'required');
  if (typeof op !== 'string') throw invalid(`${field}.op`, `must be a string, not ${describe(op)}`);

  if (op === 'and' || op === 'or' || op === 'not') {
    const inner = resolvePath(node, field, prefix);
    const apply = node.apply;
    if (!Array.isArray(apply)) {
      throw invalid(`${field}.apply`, `must be an array of predicates for operator "${op}"`);
    }
    const children = apply.map((child, i) => compileNode(child, `${field}.apply[${i}]`, inner, depth + 1));
    return combine(op, children);
  }

  if (!(FIRST_ORDER_OPS as readonly string[]).includes(op)) {
    throw invalid(`${field}.op`, `unknown operator "${op}"`);
  }
  const ic = node.ignore_case;
  if (ic !== undefined && typeof ic !== 'boolean') {
    throw invalid(`${field}.ignore_case`, `must be a boolean, not ${describe(ic)}`);
  }
  const tokens = resolvePath(node, field, prefix);
  if (tokens === undefined) throw invalid(`${field}.path`, `required for operator "${op}"`);
  const test = firstOrderTest(node, field, op, ic === true);
  const get: Getter = compileTokens(tokens);
  return (metadata) => test(get(metadata));
}

function combine(op: 'and' | 'or' | 'not', children: MetadataPredicate[]): MetadataPredicate {
  const n = children.length;
  // json-predicate: an empty list is true for all three (or: since 0.9.4).
  if (n === 0) return MATCH_ALL;
  if (op === 'and') {
    if (n === 1) return children[0]!;
    if (n === 2) {
      const [a, b] = children as [MetadataPredicate, MetadataPredicate];
      return (m) => a(m) && b(m);
    }
    return (m) => {
      for (let i = 0; i < n; i++) if (!children[i]!(m)) return false;
      return true;
    };
  }
  if (op === 'or') {
    if (n === 1) return children[0]!;
    return (m) => {
      for (let i = 0; i < n; i++) if (children[i]!(m)) return true;
      return false;
    };
  }
  // not: true when none of the children holds.
  return (m) => {
    for (let i = 0; i < n; i++) if (children[i]!(m)) return false;
    return true;
  };
}

/** True for the `match` values that match every session (absent, null, or any string such as '*'). */
export function isMatchAll(match: unknown): boolean {
  return match === undefined || match === null || typeof match === 'string';
}

/**
 * Compile a rule's `match`. `undefined`, `null` and any string (l7mp's
 * wildcard '*') match everything; an object is a JSON predicate. Throws a
 * GatewayError (400) whose `field` names the offending member, e.g.
 * `match.apply[1].op`.
 */
export function compileMatch(match: unknown, field = 'match'): MetadataPredicate {
  if (isMatchAll(match)) return MATCH_ALL;
  return compileNode(match, field, undefined, 0);
}

// ---------------------------------------------------------------------------
// Rewrite

/**
 * Compile an `action.rewrite` list of `{path, value}`. Paths use l7mp's
 * helper syntax (leading '/' optional; '/' is the whole metadata, and then the
 * value must be an object). Each application writes a fresh deep clone of the
 * value, so sessions never share (or mutate) the rule's copy.
 */
export function compileRewrite(rewrite: unknown, field = 'rewrite'): MetadataRewriter {
  if (rewrite === undefined || rewrite === null) return NO_REWRITE;
  if (!Array.isArray(rewrite)) throw invalid(field, `must be an array of {path, value}, not ${describe(rewrite)}`);
  const steps = rewrite.map((item, i) => {
    const f = `${field}[${i}]`;
    if (!isRecord(item)) throw invalid(f, `must be an object with "path" and "value", not ${describe(item)}`);
    const { path, value } = item;
    if (path === undefined) throw invalid(`${f}.path`, 'required');
    if (typeof path !== 'string') throw invalid(`${f}.path`, `must be a string, not ${describe(path)}`);
    if (value === undefined) throw invalid(`${f}.value`, 'required');
    if (splitPath(path).length === 0 && !isRecord(value)) {
      throw invalid(`${f}.value`, "must be an object when path is '/' (it replaces the whole metadata)");
    }
    return { set: compileSetter(path, `${f}.path`), value: deepClone(value) };
  });
  if (steps.length === 0) return NO_REWRITE;
  if (steps.length === 1) {
    const { set, value } = steps[0]!;
    return (metadata) => set(metadata, value);
  }
  return (metadata) => {
    for (let i = 0; i < steps.length; i++) steps[i]!.set(metadata, steps[i]!.value);
  };
}
