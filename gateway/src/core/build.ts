// Raw config -> objects: validates one listener, cluster, endpoint, rulelist,
// rule or route (and everything defined inline in it) and stages the built
// objects in a Transaction; nothing here touches the live graph.

import { createBalancer } from '../balancer/index.js';
import { HealthStats, UpstreamHealth } from '../health/index.js';
import type { Logger } from '../observe/log.js';
import type { Refusals } from '../observe/refusals.js';
import { refuseUnservedTls } from '../protocols/common/tls.js';
import { protocolFor } from '../protocols/registry.js';
import type { CompiledSite, GatewayServices, ListenerContext, ListenerImpl, NewSession, Spec } from '../protocols/types.js';
import { compileMatch, compileRewrite } from '../routing/predicate.js';
import { parseListenerMaxSessions } from './admission.js';
import { confineSpec } from './confine.js';
import { GatewayError, invalid } from './errors.js';
import { DEFAULT_RETRY, type ClusterObj, type EndpointObj, type RetryOn, type RetryPolicy, type RuleObj } from './model.js';
import { checkName } from './names.js';
import { checkStaticOnly } from './policy.js';
import type { Transaction } from './store.js';
import { isObject } from './is-object.js';

const RETRY_ON: readonly RetryOn[] = ['never', 'connect-failure', 'disconnect', 'always'];

function clone<T>(v: T): T {
  return v === undefined ? v : structuredClone(v);
}

/** What building objects needs from the gateway. */
export interface BuildContext {
  readonly log: Logger;
  readonly refusals: Refusals;
  readonly limits: ListenerContext['limits'];
  readonly healthStats: HealthStats;
  /** Services for special clusters (the controller, Prometheus). */
  readonly services: GatewayServices;
  /** Protocols that run programs may be configured (from the static config only). */
  readonly allowStaticOnly: boolean;
  /** admin.file_root: the only directory REST calls may name files in. */
  readonly fileRoot: string | undefined;
  /** A listener emitted a session. */
  emit(listener: string, s: NewSession): void;
  /** A stand-in when this listener's data plane runs in worker processes (workers/start.ts); `tx` is the change that adds it. */
  remoteListener?(raw: Record<string, unknown>, tx: Transaction): ListenerImpl | undefined;
  /** Admission of a new flow before a listener spends a descriptor on it. */
  admit(listener: string, candidate: { readonly metadata: Record<string, unknown> }): boolean;
  /** Where stream listeners attach a Forwarder (fastpath/compiled.ts), read when a listener is built. */
  compiled?(): CompiledSite | undefined;
}

export class Builder {
  constructor(private readonly ctx: BuildContext) {}

  listener(tx: Transaction, raw: unknown, field: string): void {
    if (!isObject(raw)) throw invalid(field, 'must be an object');
    const name = checkName(raw.name, `${field}.name`);
    if (!isObject(raw.spec)) throw invalid(`${field}.spec`, 'is required and must be an object');
    const spec = clone(raw.spec) as Spec;
    checkStaticOnly(spec, `${field}.spec`, this.staticOnlyAllowed(tx));
    const protocol = protocolFor(spec.protocol, 'listener', `${field}.spec.protocol`);
    refuseUnservedTls(protocol, spec, `${field}.spec`);
    if (!tx.fromStaticConfig) confineSpec(this.ctx.fileRoot, protocol, 'listener', spec, `${field}.spec`);
    // The REST controller binds to loopback unless told otherwise.
    if (spec.address === undefined && servesController(raw.rules)) spec.address = '127.0.0.1';
    if (tx.taken('listener', name)) {
      throw new GatewayError('NAME_TAKEN', `Cannot add listener: Listener "${name}" already defined`, `${field}.name`);
    }
    let rules: string;
    let inline = false;
    if (typeof raw.rules === 'string') {
      rules = checkName(raw.rules, `${field}.rules`);
    } else if (Array.isArray(raw.rules)) {
      rules = this.ruleList(tx, { rules: raw.rules }, field, true, name);
      inline = true;
    } else {
      throw invalid(`${field}.rules`, 'is required: an array of rules or the name of a rulelist');
    }
    let track = 0;
    let maxSessions: number | undefined;
    if (raw.options !== undefined) {
      if (!isObject(raw.options)) throw invalid(`${field}.options`, 'must be an object');
      const t = raw.options.track;
      if (t !== undefined && (typeof t !== 'number' || !Number.isFinite(t) || t < 0 || t > 86400)) {
        throw invalid(`${field}.options.track`, 'must be a number of seconds between 0 and 86400');
      }
      track = (t as number | undefined) ?? 0;
      maxSessions = parseListenerMaxSessions(raw.options, `${field}.options`);
    }
    const ctx = this.ctx;
    // Created even where a stand-in replaces it (workers): create() parses and checks the spec.
    const created = protocol.listener!.create(spec, {
      listenerName: name,
      log: ctx.log,
      refusals: ctx.refusals,
      limits: ctx.limits,
      emit: (s) => ctx.emit(name, s),
      admit: (c) => ctx.admit(name, c),
      compiled: ctx.compiled?.(),
    }, `${field}.spec`);
    const impl = ctx.remoteListener?.(raw, tx) ?? created;
    const options = maxSessions === undefined ? { track } : { track, max_sessions: maxSessions };
    tx.stage({ kind: 'listener', name, spec, protocol, rules, options, impl, inlineRuleList: inline }, field);
  }

  ruleList(tx: Transaction, raw: unknown, field: string, autogenerated: boolean, parent?: string): string {
    if (!isObject(raw)) throw invalid(field, 'must be an object');
    const name = raw.name !== undefined ? checkName(raw.name, `${field}.name`)
      : autogenerated ? tx.implicitName('rulelist', parent!, 'RuleList')
      : checkName(raw.name, `${field}.name`);
    if (!Array.isArray(raw.rules)) throw invalid(`${field}.rules`, 'must be an array of rules or rule names');
    if (tx.taken('rulelist', name)) {
      throw new GatewayError('NAME_TAKEN', `Cannot add rulelist: RuleList "${name}" already defined`, `${field}.name`);
    }
    const rules = raw.rules.map((r, i) => {
      if (typeof r === 'string') return checkName(r, `${field}.rules[${i}]`);
      return this.rule(tx, r, `${field}.rules[${i}]`, true, name);
    });
    tx.stage({ kind: 'rulelist', name, rules, autogenerated }, field);
    return name;
  }

  rule(tx: Transaction, raw: unknown, field: string, autogenerated: boolean, parent?: string): string {
    if (!isObject(raw)) throw invalid(field, 'must be an object');
    const name = raw.name !== undefined ? checkName(raw.name, `${field}.name`)
      : autogenerated ? tx.implicitName('rule', parent!, 'Rule')
      : checkName(raw.name, `${field}.name`);
    if (tx.taken('rule', name)) {
      throw new GatewayError('NAME_TAKEN', `Cannot add rule: Rule "${name}" already defined`, `${field}.name`);
    }
    const matches = compileMatch(raw.match, `${field}.match`);
    const a = raw.action;
    if (!isObject(a)) throw invalid(`${field}.action`, 'is required and must be an object with route, apply and/or rewrite');
    let route: string | undefined;
    if (a.route !== undefined) {
      route = typeof a.route === 'string' ? checkName(a.route, `${field}.action.route`)
        : this.route(tx, a.route, `${field}.action.route`, true, name);
    }
    const apply = a.apply !== undefined ? checkName(a.apply, `${field}.action.apply`) : undefined;
    if (route === undefined && apply === undefined) {
      throw invalid(`${field}.action`, 'needs a route or an apply (the rulelist to continue with)');
    }
    const applyRewrite = a.rewrite !== undefined ? compileRewrite(a.rewrite, `${field}.action.rewrite`) : undefined;
    const action: RuleObj['action'] = {
      ...(a.rewrite !== undefined ? { rewrite: clone(a.rewrite), applyRewrite } : {}),
      ...(route !== undefined ? { route } : {}),
      ...(apply !== undefined ? { apply } : {}),
    };
    tx.stage({ kind: 'rule', name, match: clone(raw.match), matches, action, autogenerated }, field);
    return name;
  }

  route(tx: Transaction, raw: unknown, field: string, autogenerated: boolean, parent?: string): string {
    if (!isObject(raw)) throw invalid(field, 'must be an object');
    const name = raw.name !== undefined ? checkName(raw.name, `${field}.name`)
      : autogenerated ? tx.implicitName('route', parent!, 'Route')
      : checkName(raw.name, `${field}.name`);
    if (tx.taken('route', name)) {
      throw new GatewayError('NAME_TAKEN', `Cannot add route: Route "${name}" already defined`, `${field}.name`);
    }
    const destRaw = raw.destination ?? raw.cluster; // `cluster` is l7mp's legacy alias
    const destField = raw.destination !== undefined ? `${field}.destination` : `${field}.cluster`;
    if (destRaw === undefined) throw invalid(`${field}.destination`, 'is required: a cluster or the name of one');
    const ref = (v: unknown, f: string, implicit: string): string => {
      if (typeof v === 'string') return checkName(v, f);
      if (!isObject(v)) throw invalid(f, 'must be a cluster or the name of one');
      const c = { ...v };
      if (c.name === undefined) c.name = tx.implicitName('cluster', implicit);
      return this.cluster(tx, c, f, true);
    };
    const destination = ref(destRaw, destField, `${name}-Cluster-0`);
    const chain = (key: 'ingress' | 'egress'): string[] => {
      const v = raw[key];
      if (v === undefined || v === null) return [];
      if (!Array.isArray(v)) throw invalid(`${field}.${key}`, 'must be an array of clusters or cluster names');
      return v.map((c, i) => ref(c, `${field}.${key}[${i}]`, `${name}-${key}-Cluster-${i}`));
    };
    const ingress = chain('ingress');
    const egress = chain('egress');
    const retry = parseRetry(raw.retry, `${field}.retry`);
    tx.stage({ kind: 'route', name, destination, ingress, egress, retry, autogenerated }, field);
    return name;
  }

  cluster(tx: Transaction, raw: unknown, field: string, autogenerated: boolean): string {
    if (!isObject(raw)) throw invalid(field, 'must be an object');
    const name = checkName(raw.name, `${field}.name`);
    if (tx.taken('cluster', name)) {
      throw new GatewayError('NAME_TAKEN', `Cannot add cluster: Cluster "${name}" already defined`, `${field}.name`);
    }
    if (!isObject(raw.spec)) throw invalid(`${field}.spec`, 'is required and must be an object');
    const spec = clone(raw.spec) as Spec;
    checkStaticOnly(spec, `${field}.spec`, this.staticOnlyAllowed(tx));
    const protocol = protocolFor(spec.protocol, 'cluster', `${field}.spec.protocol`);
    refuseUnservedTls(protocol, spec, `${field}.spec`, 'cluster');
    const ctx = this.ctx;
    if (!tx.fromStaticConfig) confineSpec(ctx.fileRoot, protocol, 'cluster', spec, `${field}.spec`);
    const balancer = createBalancer(raw.loadbalancer, `${field}.loadbalancer`);
    const health = UpstreamHealth.parse(raw, field, name, protocol, ctx.healthStats, ctx.log);
    const impl = protocol.cluster!.create(spec, {
      clusterName: name, log: ctx.log, refusals: ctx.refusals, limits: ctx.limits, services: ctx.services, ...(health ? { outcomes: health.state } : {}),
    }, `${field}.spec`);
    health?.attach({ name, protocol, spec, impl });
    const cluster: ClusterObj = {
      kind: 'cluster', name, spec, protocol, impl, endpoints: [], balancer, autogenerated, ...(health ? { health } : {}),
      ...(isObject(raw.options) ? { options: clone(raw.options) } : {}),
    };
    // Stage the cluster before its endpoints so that an endpoint error names the right field.
    const stagedEndpoints: EndpointObj[] = [];
    if (raw.endpoints !== undefined && raw.endpoints !== null) {
      if (!Array.isArray(raw.endpoints)) throw invalid(`${field}.endpoints`, 'must be an array');
      if (protocol.cluster!.virtual) {
        if (raw.endpoints.length > 0) ctx.log.warn({ cluster: name }, `${protocol.name} clusters ignore endpoints`);
      } else {
        raw.endpoints.forEach((e, i) => stagedEndpoints.push(this.buildEndpoint(tx, e, `${field}.endpoints[${i}]`, cluster, true)));
      }
    }
    tx.stage(cluster, field);
    // Endpoints are staged after their cluster: the commit appends them to it in order.
    stagedEndpoints.forEach((e, i) => tx.stage(e, `${field}.endpoints[${i}]`));
    return name;
  }

  endpoint(tx: Transaction, raw: unknown, field: string, cluster: ClusterObj, autogenerated: boolean): void {
    if (cluster.protocol.cluster!.virtual) {
      throw new GatewayError('INVALID_INPUT', `Adding an endpoint to a cluster of type "${cluster.protocol.name}" is not supported`, field);
    }
    tx.stage(this.buildEndpoint(tx, raw, field, cluster, autogenerated), field);
  }

  private buildEndpoint(tx: Transaction, raw: unknown, field: string, cluster: ClusterObj, autogenerated: boolean): EndpointObj {
    if (!isObject(raw)) throw invalid(field, 'must be an object');
    const name = raw.name !== undefined ? checkName(raw.name, `${field}.name`)
      : tx.implicitName('endpoint', cluster.name, 'EndPoint');
    if (tx.taken('endpoint', name)) {
      throw new GatewayError('NAME_TAKEN', `Cannot add endpoint: EndPoint "${name}" already defined`, `${field}.name`);
    }
    if (!isObject(raw.spec)) throw invalid(`${field}.spec`, 'is required and must be an object with an address');
    const spec = clone(raw.spec) as Spec;
    if (spec.address === undefined && typeof spec.filename === 'string') spec.address = spec.filename;
    if (!tx.fromStaticConfig) confineSpec(this.ctx.fileRoot, cluster.protocol, 'endpoint', spec, `${field}.spec`, cluster.spec);
    cluster.protocol.cluster!.checkEndpoint?.(spec, `${field}.spec`, cluster.spec);
    const w = raw.weight ?? spec.weight ?? 1;
    if (typeof w !== 'number' || !Number.isFinite(w) || w < 0 || w > 1e6) {
      throw invalid(`${field}.weight`, 'must be a number between 0 and 1000000');
    }
    return { kind: 'endpoint', name, spec, address: String(spec.address), weight: w, cluster: cluster.name, autogenerated };
  }

  private staticOnlyAllowed(tx: Transaction): boolean {
    return tx.fromStaticConfig && this.ctx.allowStaticOnly;
  }
}

/**
 * Retry policy with per-field defaults. l7mp replaced the default whole when a
 * partial policy was given (a missing num_retries meant none, a missing
 * timeout meant 0 ms); we fill each missing field from the default instead.
 */
export function parseRetry(raw: unknown, field: string): RetryPolicy {
  if (raw === undefined || raw === null) return DEFAULT_RETRY;
  if (!isObject(raw)) throw invalid(field, 'must be an object {retry_on, num_retries, timeout}');
  const retry_on = raw.retry_on ?? DEFAULT_RETRY.retry_on;
  if (typeof retry_on !== 'string' || !RETRY_ON.includes(retry_on as RetryOn)) {
    throw invalid(`${field}.retry_on`, `must be one of ${RETRY_ON.join(', ')}`);
  }
  const num = raw.num_retries ?? DEFAULT_RETRY.num_retries;
  if (typeof num !== 'number' || !Number.isInteger(num) || num < 0 || num > 1000) {
    throw invalid(`${field}.num_retries`, 'must be an integer between 0 and 1000');
  }
  const timeout = raw.timeout ?? DEFAULT_RETRY.timeout;
  if (typeof timeout !== 'number' || !Number.isFinite(timeout) || timeout < 0 || timeout > 3_600_000) {
    throw invalid(`${field}.timeout`, 'must be a number of milliseconds between 0 and 3600000');
  }
  return { retry_on: retry_on as RetryOn, num_retries: num, timeout };
}

/** Does an inline rule list route straight to an L7mpController cluster? */
function servesController(rules: unknown): boolean {
  if (!Array.isArray(rules)) return false;
  return rules.some((r) => {
    const route = isObject(r) && isObject(r.action) ? r.action.route : undefined;
    if (!isObject(route)) return false;
    const dest = route.destination ?? route.cluster;
    return isObject(dest) && isObject(dest.spec) && dest.spec.protocol === 'L7mpController';
  });
}
