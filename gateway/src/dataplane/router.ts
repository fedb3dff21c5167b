// The rule walk: which route a new session takes, from its listener's
// rulelist through `apply` jumps to the first matching rule's route. Pure
// lookups on the object graph, so it is testable without sockets.

import { GatewayError } from '../core/errors.js';
import type { RouteObj, RuleListObj, RuleObj } from '../core/model.js';
import type { Logger } from '../observe/log.js';
import type { Session } from './session.js';

/** How deep `apply` may nest: a loop of rulelists applying each other ends here. */
export const MAX_APPLY_DEPTH = 16;

/** The part of the object graph the walk reads. */
export interface RouteGraph {
  readonly listeners: ReadonlyMap<string, { readonly rules: string }>;
  readonly rulelists: ReadonlyMap<string, Pick<RuleListObj, 'rules'>>;
  readonly rules: ReadonlyMap<string, Pick<RuleObj, 'name' | 'matches' | 'action'>>;
  readonly routes: ReadonlyMap<string, RouteObj>;
}

/** What the walk knows of a session; the matching rule's rewrites change `metadata`. */
export interface RoutedSession {
  readonly name: string;
  readonly listener: string;
  readonly metadata: Record<string, unknown>;
}

/** The route for `s` (its rule's rewrites applied to its metadata), or NO_ROUTE. */
export function lookup(graph: RouteGraph, s: RoutedSession): RouteObj {
  const l = graph.listeners.get(s.listener);
  if (!l) throw new GatewayError('NO_ROUTE', `No route for session "${s.name}": listener "${s.listener}" is gone`);
  let list = graph.rulelists.get(l.rules);
  if (!list) throw new GatewayError('NO_ROUTE', `No route for session "${s.name}": no rulelist "${l.rules}"`);
  for (let depth = 0; depth < MAX_APPLY_DEPTH; depth++) {
    let matched: Pick<RuleObj, 'name' | 'matches' | 'action'> | undefined;
    for (const rn of list.rules) {
      const rule = graph.rules.get(rn);
      if (rule && rule.matches(s.metadata)) {
        matched = rule;
        break;
      }
    }
    if (!matched) throw new GatewayError('NO_ROUTE', `No route for session "${s.name}"`);
    if (matched.action.apply !== undefined) {
      const next = graph.rulelists.get(matched.action.apply);
      if (!next) throw new GatewayError('NO_ROUTE', `No route for session "${s.name}": rule "${matched.name}" applies unknown rulelist "${matched.action.apply}"`);
      list = next;
      continue;
    }
    matched.action.applyRewrite?.(s.metadata);
    const route = graph.routes.get(matched.action.route!);
    if (!route) throw new GatewayError('NO_ROUTE', `Cannot find Route "${matched.action.route}" for session "${s.name}"`);
    return route;
  }
  throw new GatewayError('NO_ROUTE', `No route for session "${s.name}": rulelist "apply" nested deeper than ${MAX_APPLY_DEPTH}`);
}

/** A datagram source routed into a byte-stream stage loses message boundaries: warn once per session. */
export function warnDowngrade(s: Session, log: Logger): void {
  const src = s.source.channel!;
  if (src.kind !== 'datagram') return;
  const chain = [...s.ingress, s.destination!];
  const byte = chain.find((st) => st.channel?.kind === 'byte');
  if (byte) {
    s.warnedDowngrade = true;
    log.warn({ session: s.name, stage: byte.origin }, `datagram stream routed into byte-stream cluster "${byte.origin}": message boundaries are not preserved`);
  }
}
