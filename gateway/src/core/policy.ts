// What a change may do beyond being well-formed: protocols that run programs
// come from the static config only, and a REST change may neither expose the
// API beyond loopback without a token nor cut off the static config's API.

import { findProtocol } from '../protocols/registry.js';
import type { Spec } from '../protocols/types.js';
import { checkExposure, exposedApiListeners, key, protectedApiObjects, servesApiError, type GraphView } from './apiobjects.js';
import { GatewayError } from './errors.js';
import type { AnyObj, ListenerObj, ObjKind } from './model.js';

/** The live graph as the policy reads it (core/store.ts). */
export interface LiveGraph extends GraphView {
  readonly listeners: ReadonlyMap<string, ListenerObj>;
  /** Listeners of the static config: what carries their REST API is protected from REST deletes. */
  readonly staticListeners: ReadonlySet<string>;
}

/** A change being staged (core/store.ts Transaction). */
export interface StagedChange {
  readonly objects: ReadonlyMap<string, AnyObj>;
  /** Live objects as the commit will change them. */
  readonly preview: ReadonlyMap<string, AnyObj>;
  readonly order: readonly AnyObj[];
}

/**
 * Protocols that run programs come from the static config only. Checked
 * before anything else about the protocol, so a REST call learns nothing
 * more than FORBIDDEN (not even "not supported yet").
 */
export function checkStaticOnly(spec: Spec, field: string, allowed: boolean): void {
  const name = spec.protocol;
  const p = typeof name === 'string' ? findProtocol(name) : undefined;
  if (p?.staticOnly && !allowed) {
    throw new GatewayError('FORBIDDEN', `${field}.protocol: "${p.name}" ${p.staticOnly} and may only be configured in the static config file`, `${field}.protocol`);
  }
  // The spec of an inner protocol (JSONSocket's transport) is checked as that protocol.
  for (const k of p?.nestedSpecs ?? []) {
    const inner = spec[k];
    if (typeof inner === 'object' && inner !== null && !Array.isArray(inner)) checkStaticOnly(inner as Spec, `${field}.${k}`, allowed);
  }
}

/** The live graph with a change's objects staged on top. */
export function withChange(live: GraphView, tx: StagedChange): GraphView {
  return { get: (kind, name) => tx.objects.get(key(kind, name)) ?? tx.preview.get(key(kind, name)) ?? live.get(kind, name) };
}

/** Without an API token, a REST change may not serve the API beyond loopback (apiobjects.ts). */
export function checkApiExposure(live: LiveGraph, tx: StagedChange): void {
  const staged = tx.order.filter((o): o is ListenerObj => o.kind === 'listener');
  const before = exposedApiListeners(live, live.listeners.values());
  const after = withChange(live, tx);
  checkExposure(before, exposedApiListeners(after, [...live.listeners.values(), ...staged]), after);
}

/** 409 when a REST call would delete (or shadow) what carries the static config's API. */
export function guardApi(live: LiveGraph, kind: ObjKind, names: string | readonly string[], what?: string): void {
  const statics = [...live.staticListeners].map((n) => live.listeners.get(n)).filter((l): l is ListenerObj => l !== undefined);
  const carriers = protectedApiObjects(live, statics);
  for (const name of typeof names === 'string' ? [names] : names) {
    const listener = carriers.get(key(kind, name));
    if (listener !== undefined) throw servesApiError(kind, name, listener, what);
  }
}
