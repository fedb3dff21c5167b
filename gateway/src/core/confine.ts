// Where a REST call may name files. The static config is the operator's and
// may name any path; a REST client may name files (log files, socket paths,
// FIFOs, TLS files) only under admin.file_root, and none at all without it.
//
// The protocols declare which spec keys name files (ProtocolDef.files, and
// nestedSpecs for specs of an inner protocol); this module resolves each such
// path and refuses it with 403 when it leaves the root, lexically (`..`) or
// through a symbolic link. The spec is rewritten to the resolved path, so the
// protocol opens exactly what was checked (the dump shows it too).

import fs from 'node:fs';
import path from 'node:path';
import { findProtocol } from '../protocols/registry.js';
import type { FileKey, ProtocolDef, Spec } from '../protocols/types.js';
import { GatewayError, invalid } from './errors.js';
import { isObject } from './is-object.js';

export type FilePlace = 'listener' | 'cluster' | 'endpoint';

function inside(root: string, p: string): boolean {
  return p === root || p.startsWith(root.endsWith('/') ? root : `${root}/`);
}

function forbidden(field: string, why: string): GatewayError {
  return new GatewayError('FORBIDDEN', `${field}: ${why}`, field);
}

/**
 * The path `raw` names, resolved under `root`, or a 403. A path that exists
 * is resolved whole (a symbolic link as its last part is followed: opening it
 * would follow it); one that does not is its parent's real path plus its name.
 */
export function resolveUnder(root: string | undefined, raw: string, field: string): string {
  if (root === undefined) {
    throw forbidden(field, 'a REST call may not name files: set admin.file_root in the static config to the directory REST-created objects may use');
  }
  if (raw.includes('\0')) throw invalid(field, 'must not contain NUL');
  const abs = path.resolve(root, raw);
  if (!inside(root, abs)) throw forbidden(field, `"${raw}" is outside admin.file_root (${root})`);
  let real: string;
  let exists = true;
  try {
    fs.lstatSync(abs);
  } catch {
    exists = false;
  }
  try {
    real = exists ? fs.realpathSync(abs) : path.join(fs.realpathSync(path.dirname(abs)), path.basename(abs));
  } catch (err) {
    // A dangling link would be followed on create, to wherever it points.
    if (exists) throw forbidden(field, `"${raw}" is a symbolic link that cannot be resolved`);
    throw invalid(field, `the directory of "${raw}" does not exist: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  if (!inside(root, real)) throw forbidden(field, `"${raw}" leads outside admin.file_root (${root}) through a symbolic link`);
  return real;
}

/** The object holding the last part of a dotted key, and that part; undefined when absent. */
function holder(spec: Spec, key: string): [Record<string, unknown>, string] | undefined {
  const parts = key.split('.');
  let obj: Record<string, unknown> = spec;
  for (const p of parts.slice(0, -1)) {
    const next = obj[p];
    if (!isObject(next)) return undefined;
    obj = next;
  }
  return [obj, parts[parts.length - 1]!];
}

function confineKeys(root: string | undefined, keys: readonly FileKey[], spec: Spec, field: string): void {
  for (const k of keys) {
    const h = holder(spec, k.key);
    if (!h) continue;
    const [obj, last] = h;
    const v = obj[last];
    // Non-strings are the protocol's to refuse, with its own message.
    if (typeof v !== 'string' || v === '' || k.streams?.includes(v)) continue;
    obj[last] = resolveUnder(root, v, `${field}.${k.key}`);
  }
}

function innerProtocol(v: unknown): ProtocolDef | undefined {
  return isObject(v) && typeof v.protocol === 'string' ? findProtocol(v.protocol) : undefined;
}

/**
 * Confine the file paths of a REST-added listener or cluster spec (place
 * 'listener' / 'cluster') or endpoint spec ('endpoint', with the spec of its
 * cluster), rewriting them to their resolved form; throws 403 or 400.
 */
export function confineSpec(root: string | undefined, p: ProtocolDef, place: FilePlace, spec: Spec, field: string, clusterSpec?: Spec): void {
  confineKeys(root, p.files?.[place] ?? [], spec, field);
  for (const key of p.nestedSpecs ?? []) {
    if (place === 'endpoint') {
      const inner = clusterSpec?.[key];
      const ip = innerProtocol(inner);
      if (ip) confineSpec(root, ip, 'endpoint', spec, field, inner as Spec);
    } else {
      const inner = spec[key];
      const ip = innerProtocol(inner);
      if (ip) confineSpec(root, ip, place, inner as Spec, `${field}.${key}`);
    }
  }
}
