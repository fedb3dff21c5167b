// Object names on the gateways. Every object the operator creates carries the
// name of the resource it comes from, l7mp's form `/l7mp.io/v1/<Kind>/<ns>/<name>`
// (the gateway accepts any name without whitespace; the typed client
// URL-encodes the slashes in paths). The listener of a VirtualService, its
// rulelist, and the cluster of a Target have exactly that name; objects
// derived from inline definitions (rules, clusters embedded in routes) get a
// suffix with a hash of their content, `<FQN>/rule/<hash>`, so that a changed
// definition is a new object added before the old one goes (make before
// break), and an unchanged one keeps its name and its sessions.

import { createHash } from 'node:crypto';
import type { CustomKind } from './kube/api.js';

export const NAME_PREFIX = '/l7mp.io/v1/';

export function fqn(kind: CustomKind, namespace: string, name: string): string {
  return `${NAME_PREFIX}${kind}/${namespace}/${name}`;
}

/** The resource an object name belongs to (`Kind/ns/name`), or undefined for objects the operator does not manage. */
export function ownerOf(objectName: string): string | undefined {
  if (!objectName.startsWith(NAME_PREFIX)) return undefined;
  const parts = objectName.slice(NAME_PREFIX.length).split('/');
  if (parts.length < 3 || !['VirtualService', 'Target', 'Rule'].includes(parts[0]!)) return undefined;
  // Endpoint and route names extend the owner's names with "/..." or "-...": cut at the resource name.
  const name = parts[2]!.split('-Route-')[0]!;
  return `${parts[0]}/${parts[1]}/${name}`;
}

export function ownerKey(kind: CustomKind, namespace: string, name: string): string {
  return `${kind}/${namespace}/${name}`;
}

/** JSON with sorted keys: equal values give equal text. */
export function canonical(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonical).join(',')}]`;
  if (typeof v === 'object' && v !== null) {
    return `{${Object.keys(v).sort().filter((k) => (v as Record<string, unknown>)[k] !== undefined)
      .map((k) => `${JSON.stringify(k)}:${canonical((v as Record<string, unknown>)[k])}`).join(',')}}`;
  }
  return JSON.stringify(v) ?? 'null';
}

export function contentHash(v: unknown, len = 10): string {
  return createHash('sha256').update(canonical(v)).digest('hex').slice(0, len);
}
