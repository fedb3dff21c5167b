// Path helpers over session metadata.
//
// Two dialects live here, because l7mp has two:
//
// 1. l7mp's own helpers (`getAtPath`, `setAtPath`, `deleteAtPath`,
//    `compilePath`, `compileSetter`), used by `rewrite`, the ConsistentHash
//    key, the JSONSocket header and Sync. Their paths are slash-separated with
//    the leading and trailing '/' optional: 'IP/src_addr', '/IP/src_addr' and
//    '/IP/src_addr/' are the same path, and '/' or '' is the whole object.
//
// 2. Strict RFC 6901 JSON Pointers (`parsePointer`, `compilePointer`), used by
//    match predicates (draft-snell-json-test-07 says `path` is a JSON Pointer).
//
// Where we differ from l7mp, on purpose:
//
// - Both dialects decode the RFC 6901 escapes `~1` ('/') and `~0` ('~') in a
//   segment, so a key holding a slash can be addressed ('/labels/a~1b' is the
//   key "a/b"). l7mp had no escaping; a literal "~0"/"~1" in a key name was
//   the price, and no l7mp metadata key contains one.
// - l7mp-style paths collapse empty segments: '/a//b' is '/a/b'. l7mp stopped
//   reading at an empty segment (returning `a`) and silently wrote nothing.
// - Only own properties are read, so '/constructor' or '/HTTP/headers/toString'
//   do not find inherited members of Object.prototype. A segment `__proto__`
//   is refused when writing (prototype pollution through a REST rewrite).
// - A write through an intermediate that is a primitive (e.g. a string)
//   replaces it with an object; l7mp threw a TypeError in strict mode.
//
// Kept from l7mp, on purpose (compatibility): `getAtPath` stops at the first
// falsy intermediate and returns it, so `getAtPath({a: 0}, '/a/b')` is `0`,
// not `undefined`. `setAtPath` creates missing intermediates as objects (also
// for numeric segments: `setAtPath({}, '/x/0', 1)` makes `{x: {'0': 1}}`),
// while numeric segments index arrays that already exist. Written values are
// deep-cloned, so later changes to the source (a rule's `rewrite` value) never
// leak into a session.

import { invalid } from '../core/errors.js';

/** Reads a value from an object; compiled once, called per session. */
export type PathGetter = (obj: unknown) => unknown;

/** Writes a (deep-cloned) value into an object; compiled once, called per session. */
export type PathSetter = (obj: Record<string, unknown>, value: unknown) => void;

const FORBIDDEN_SEGMENT = '__proto__';

function unescapeSegment(seg: string): string {
  if (seg.indexOf('~') < 0) return seg;
  return seg.replace(/~1/g, '/').replace(/~0/g, '~');
}

/**
 * Split an l7mp-style path into decoded segments. Leading, trailing and
 * repeated slashes are ignored; `[]` means the whole object.
 */
export function splitPath(path: string): string[] {
  const out: string[] = [];
  for (const raw of path.split('/')) {
    if (raw !== '') out.push(unescapeSegment(raw));
  }
  return out;
}

/** Own-property read; anything that is not an object or a string has no members. */
function readOwn(cur: unknown, seg: string): unknown {
  if (cur === null) return undefined;
  const t = typeof cur;
  if (t !== 'object' && t !== 'string') return undefined;
  return Object.hasOwn(cur as object, seg) ? (cur as Record<string, unknown>)[seg] : undefined;
}

/** Walk with l7mp's quirk: stop at a falsy intermediate and return it. */
function walkL7mp(obj: unknown, segs: readonly string[]): unknown {
  if (segs.length === 0) return obj;
  // l7mp never assigned its result when the root itself was falsy.
  if (!obj) return undefined;
  let cur: unknown = obj;
  for (let i = 0; i < segs.length; i++) {
    if (!cur) return cur;
    cur = readOwn(cur, segs[i]!);
  }
  return cur;
}

/** Pre-split `path` once and return a fast getter with `getAtPath` semantics. */
export function compilePath(path: string): PathGetter {
  const segs = splitPath(path);
  switch (segs.length) {
    case 0:
      return (obj) => obj;
    case 1: {
      const a = segs[0]!;
      return (obj) => (obj ? readOwn(obj, a) : undefined);
    }
    case 2: {
      const a = segs[0]!;
      const b = segs[1]!;
      return (obj) => {
        if (!obj) return undefined;
        const x = readOwn(obj, a);
        return x ? readOwn(x, b) : x;
      };
    }
    default:
      return (obj) => walkL7mp(obj, segs);
  }
}

/**
 * Read the value at an l7mp-style path. '/' and '' return `obj` itself. The
 * walk stops at the first falsy intermediate value and returns that value
 * (l7mp quirk, kept for compatibility): `getAtPath({a: 0}, 'a/b') === 0`.
 */
export function getAtPath(obj: unknown, path: string): unknown {
  return walkL7mp(obj, splitPath(path));
}

// ---------------------------------------------------------------------------
// Cloning

function isPlainObject(v: object): boolean {
  const proto = Object.getPrototypeOf(v);
  return proto === Object.prototype || proto === null;
}

/**
 * Deep-clone a JSON-like value. Arrays and plain objects are copied
 * recursively (an own `__proto__` key, which JSON.parse can produce, is kept
 * as data and never becomes the prototype); other objects go through
 * structuredClone, or are shared when they cannot be cloned (functions).
 */
export function deepClone<T>(value: T): T {
  if (value === null || typeof value !== 'object') return value;
  if (Array.isArray(value)) {
    const out = new Array(value.length);
    for (let i = 0; i < value.length; i++) out[i] = deepClone(value[i]);
    return out as T;
  }
  if (isPlainObject(value)) {
    const src = value as Record<string, unknown>;
    const out: Record<string, unknown> = Object.getPrototypeOf(value) === null ? Object.create(null) : {};
    for (const k of Object.keys(src)) {
      const v = deepClone(src[k]);
      if (k === FORBIDDEN_SEGMENT) {
        Object.defineProperty(out, k, { value: v, enumerable: true, writable: true, configurable: true });
      } else {
        out[k] = v;
      }
    }
    return out as T;
  }
  try {
    return structuredClone(value);
  } catch {
    return value;
  }
}

// ---------------------------------------------------------------------------
// Writing

function checkWritable(segs: readonly string[], field: string): void {
  for (const s of segs) {
    if (s === FORBIDDEN_SEGMENT) throw invalid(field, `segment "${FORBIDDEN_SEGMENT}" is not allowed`);
  }
}

function isContainer(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object';
}

/** Replace all own enumerable keys of `target` with a clone of `value`'s. */
function replaceContents(target: Record<string, unknown>, value: unknown, field: string): void {
  if (!isContainer(value) || Array.isArray(value)) {
    throw invalid(field, "writing the whole object ('/') needs an object value");
  }
  for (const k of Object.keys(target)) delete target[k];
  const copy = deepClone(value);
  for (const k of Object.keys(copy)) {
    Object.defineProperty(target, k, { value: copy[k], enumerable: true, writable: true, configurable: true });
  }
}

function writeSegments(obj: Record<string, unknown>, segs: readonly string[], value: unknown, field: string): void {
  if (segs.length === 0) {
    replaceContents(obj, value, field);
    return;
  }
  let cur: Record<string, unknown> = obj;
  const last = segs.length - 1;
  for (let i = 0; i < last; i++) {
    const seg = segs[i]!;
    const next = Object.hasOwn(cur, seg) ? cur[seg] : undefined;
    if (isContainer(next)) {
      cur = next;
    } else {
      const made: Record<string, unknown> = {};
      cur[seg] = made;
      cur = made;
    }
  }
  cur[segs[last]!] = deepClone(value);
}

/**
 * Pre-split `path` once and return a setter with `setAtPath` semantics.
 * Throws `invalid(field, …)` for a `__proto__` segment.
 */
export function compileSetter(path: string, field = 'path'): PathSetter {
  const segs = splitPath(path);
  checkWritable(segs, field);
  return (obj, value) => writeSegments(obj, segs, value, field);
}

/**
 * Write a deep clone of `value` at an l7mp-style path, creating missing (or
 * primitive) intermediates as objects. Numeric segments index arrays that
 * already exist. '/' replaces the whole contents of `obj` (the value must then
 * be an object). Throws a GatewayError (400) for a `__proto__` segment.
 */
export function setAtPath(obj: Record<string, unknown>, path: string, value: unknown): void {
  const segs = splitPath(path);
  checkWritable(segs, 'path');
  writeSegments(obj, segs, value, 'path');
}

const ARRAY_INDEX = /^(?:0|[1-9][0-9]*)$/;

/**
 * Remove the value at an l7mp-style path. An array element is spliced out (the
 * later elements shift down, as in JSON Patch `remove`). '/' empties `obj`.
 * Returns whether anything was removed; a missing path is not an error.
 */
export function deleteAtPath(obj: Record<string, unknown>, path: string): boolean {
  const segs = splitPath(path);
  if (segs.length === 0) {
    const keys = Object.keys(obj);
    for (const k of keys) delete obj[k];
    return keys.length > 0;
  }
  let cur: unknown = obj;
  for (let i = 0; i < segs.length - 1; i++) {
    cur = readOwn(cur, segs[i]!);
    if (!isContainer(cur)) return false;
  }
  if (!isContainer(cur)) return false;
  const seg = segs[segs.length - 1]!;
  if (Array.isArray(cur)) {
    if (!ARRAY_INDEX.test(seg)) return false;
    const idx = Number(seg);
    if (idx >= cur.length) return false;
    cur.splice(idx, 1);
    return true;
  }
  if (!Object.hasOwn(cur, seg)) return false;
  delete cur[seg];
  return true;
}

// ---------------------------------------------------------------------------
// Strict RFC 6901 JSON Pointers

/**
 * Parse an RFC 6901 JSON Pointer into decoded reference tokens. '' is the
 * whole document; anything else must start with '/'. '/' is the key "" and
 * '/a/' is the key "" under "a", exactly as RFC 6901 says. A '~' not followed
 * by '0' or '1' is an error.
 */
export function parsePointer(pointer: string, field = 'path'): string[] {
  if (pointer === '') return [];
  if (pointer.charCodeAt(0) !== 0x2f /* '/' */) {
    throw invalid(field, "must be a JSON pointer starting with '/'");
  }
  const parts = pointer.slice(1).split('/');
  for (let i = 0; i < parts.length; i++) {
    const p = parts[i]!;
    if (p.indexOf('~') >= 0) {
      if (/~(?![01])/.test(p)) throw invalid(field, `invalid escape in JSON pointer segment "${p}"; use ~0 for '~' and ~1 for '/'`);
      parts[i] = unescapeSegment(p);
    }
  }
  return parts;
}

/**
 * A getter over already-decoded pointer tokens with strict JSON semantics:
 * objects are indexed by own key, arrays by a canonical decimal index, and
 * anything missing (including a walk through a primitive) is `undefined`.
 */
export function compileTokens(tokens: readonly string[]): PathGetter {
  const n = tokens.length;
  if (n === 0) return (obj) => obj;
  const keys = tokens.slice();
  const indices = keys.map((k) => (ARRAY_INDEX.test(k) ? Number(k) : -1));
  const step = (cur: unknown, i: number): unknown => {
    if (cur === null || typeof cur !== 'object') return undefined;
    if (Array.isArray(cur)) {
      const idx = indices[i]!;
      return idx >= 0 && idx < cur.length ? cur[idx] : undefined;
    }
    const k = keys[i]!;
    return Object.hasOwn(cur, k) ? (cur as Record<string, unknown>)[k] : undefined;
  };
  if (n === 1) return (obj) => step(obj, 0);
  if (n === 2) return (obj) => step(step(obj, 0), 1);
  return (obj) => {
    let cur = obj;
    for (let i = 0; i < n; i++) {
      cur = step(cur, i);
      if (cur === undefined) return undefined;
    }
    return cur;
  };
}

/** `compileTokens(parsePointer(pointer, field))`. */
export function compilePointer(pointer: string, field = 'path'): PathGetter {
  return compileTokens(parsePointer(pointer, field));
}
