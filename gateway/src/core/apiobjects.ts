// The objects that carry the REST API, found by walking the graph from a
// listener through its rulelists (and `apply`) to an L7mpController cluster.
//
// Two rules follow from it (policy.ts applies them to REST calls only):
// - what carries the API of a static-config listener cannot be deleted or
//   shadowed over REST (409): doing so would cut the API off until a restart;
// - a REST change may not make the API reachable beyond loopback without an
//   API token (403): anyone who can reach it could reconfigure the gateway.

import { isLoopback } from '../api/security.js';
import { GatewayError } from './errors.js';
import type { AnyObj, ListenerObj, ObjKind, RuleListObj } from './model.js';

export const CONTROLLER_PROTOCOL = 'L7mpController';

/** Read access to a graph: the live one, or the live one plus a transaction's staged objects. */
export interface GraphView {
  get(kind: ObjKind, name: string): AnyObj | undefined;
}

export function key(kind: ObjKind, name: string): string {
  return `${kind}\0${name}`;
}

/**
 * The objects on the way from `listener` to an L7mpController cluster (the
 * listener, its rulelists, the rules and routes that lead there and the
 * clusters of those routes), or undefined when it does not serve the API.
 */
export function apiPath(view: GraphView, listener: ListenerObj): Set<string> | undefined {
  const out = new Set<string>();
  const seen = new Set<string>();
  const walk = (listName: string): boolean => {
    if (seen.has(listName)) return false;
    seen.add(listName);
    const list = view.get('rulelist', listName) as RuleListObj | undefined;
    let found = false;
    for (const rn of list?.rules ?? []) {
      const rule = view.get('rule', rn);
      if (rule?.kind !== 'rule') continue;
      let leads = rule.action.apply !== undefined && walk(rule.action.apply);
      const route = rule.action.route !== undefined ? view.get('route', rule.action.route) : undefined;
      if (route?.kind === 'route') {
        const dest = view.get('cluster', route.destination);
        if (dest?.kind === 'cluster' && dest.protocol.name === CONTROLLER_PROTOCOL) {
          leads = true;
          out.add(key('route', route.name));
          for (const c of [route.destination, ...route.ingress, ...route.egress]) out.add(key('cluster', c));
        }
      }
      if (leads) {
        found = true;
        out.add(key('rule', rn));
      }
    }
    if (found) out.add(key('rulelist', listName));
    return found;
  };
  if (!walk(listener.rules)) return undefined;
  out.add(key('listener', listener.name));
  return out;
}

function listenerAddress(l: ListenerObj): string {
  const a = (l.spec as Record<string, unknown>).address;
  return typeof a === 'string' ? a : '0.0.0.0';
}

/** The listeners that serve the API on a non-loopback address. */
export function exposedApiListeners(view: GraphView, listeners: Iterable<ListenerObj>): Set<string> {
  const out = new Set<string>();
  for (const l of listeners) if (!isLoopback(listenerAddress(l)) && apiPath(view, l)) out.add(l.name);
  return out;
}

/** Refuse a REST change after which the API is served beyond loopback by a listener that did not before. */
export function checkExposure(before: Set<string>, after: Set<string>, view: GraphView): void {
  for (const name of after) {
    if (before.has(name)) continue;
    const l = view.get('listener', name) as ListenerObj;
    throw new GatewayError('FORBIDDEN', `listener "${name}" would serve the REST API on ${listenerAddress(l)}, beyond loopback, and no API token is set: set admin.api_token (or api_token_file, or L7MP_API_TOKEN) in the static config, or bind the listener to 127.0.0.1`, 'listener.spec.address');
  }
}

/** Objects serving the API of the static config's listeners, each with the listener it serves. */
export function protectedApiObjects(view: GraphView, staticListeners: Iterable<ListenerObj>): Map<string, string> {
  const out = new Map<string, string>();
  for (const l of staticListeners) {
    for (const k of apiPath(view, l) ?? []) if (!out.has(k)) out.set(k, l.name);
  }
  return out;
}

const TITLE: Record<ObjKind, string> = {
  listener: 'Listener', cluster: 'Cluster', endpoint: 'EndPoint', rulelist: 'RuleList', rule: 'Rule', route: 'Route',
};

/** The 409 for a REST call that would delete or shadow what carries the API. */
export function servesApiError(kind: ObjKind, name: string, listener: string, what = 'deleted'): GatewayError {
  return new GatewayError('IN_USE', `${TITLE[kind]} "${name}" carries the REST API (of listener "${listener}" from the static config): it cannot be ${what} over REST`);
}
