// From the watched resources to the configuration each gateway pod should
// have. Pure: a snapshot of the caches in, plain objects out; no I/O.
//
// Per resource (independent of the gateways) a plan:
//   VirtualService -> listener <FQN> (rules: rulelist <FQN>), rulelist <FQN>,
//                     a rule <FQN>/rule/<hash> per inline rule, and a cluster
//                     <FQN>/cluster/<hash> per inline cluster of their routes
//   Target         -> cluster <FQN> with its endpoints
//   Rule           -> rule <FQN>/rule/<hash> at spec.position of spec.rulelist
// and per gateway the union of the plans whose selector picks it.
//
// Endpoints: `{selector}` becomes one endpoint per selected pod IP (l7mp's
// behaviour); an address naming a Service (`<svc>.<ns>.svc` or
// `<svc>.<ns>.svc.<clusterDomain>`) that the operator knows becomes one
// endpoint per ready address of its Endpoints, so the gateway balances over
// the pods itself and an endpoint change is an endpoint call, not a new
// cluster. Any other address goes to the gateway as is (it resolves DNS).

import { ConvertError, convertClusterShell, convertProtocolSpec, convertRule, type RefResolver } from './convert.js';
import type { CustomKind, KubeObject } from './kube/api.js';
import { contentHash, fqn, ownerKey } from './names.js';
import { selects, type Selector } from './selector.js';

type Obj = Record<string, any>;

export interface DesiredEndpoint { name: string; spec: Obj; weight?: number }
export interface DesiredCluster { name: string; owner: string; spec: Obj; loadbalancer?: Obj; outlier_detection?: Obj; health_check?: Obj; dns?: Obj; options?: unknown; endpoints: DesiredEndpoint[] }
export interface DesiredRule { name: string; owner: string; rule: Obj }
export interface DesiredRuleList { name: string; owner: string; rules: string[] }
export interface DesiredListener { name: string; owner: string; spec: Obj; rules: string; options?: Obj }

export interface DesiredConfig {
  listeners: Map<string, DesiredListener>;
  clusters: Map<string, DesiredCluster>;
  rulelists: Map<string, DesiredRuleList>;
  rules: Map<string, DesiredRule>;
  /** Problems found without asking the gateway, by owner key. */
  errors: Map<string, string[]>;
  /** The resources that select this gateway. */
  owners: Set<string>;
}

export interface Snapshot {
  virtualServices: KubeObject[];
  targets: KubeObject[];
  rules: KubeObject[];
  pods: KubeObject[];
  services: KubeObject[];
  endpoints: KubeObject[];
}

export interface DesiredOptions {
  /** The cluster DNS domain (default cluster.local). */
  clusterDomain?: string;
}

interface ResourcePlan {
  owner: string;
  kind: CustomKind;
  namespace: string;
  selector: Selector | undefined;
  listeners: DesiredListener[];
  clusters: DesiredCluster[];
  rulelists: DesiredRuleList[];
  rules: DesiredRule[];
  /** Rule resources: where their rule goes. */
  insert?: { rulelist: string; position: number; rule: string };
  errors: string[];
}

export function emptyConfig(): DesiredConfig {
  return { listeners: new Map(), clusters: new Map(), rulelists: new Map(), rules: new Map(), errors: new Map(), owners: new Set() };
}

const isLive = (o: KubeObject) => o.metadata.deletionTimestamp === undefined;

export class DesiredState {
  private readonly byKey = new Map<string, KubeObject>();
  private readonly plans: ResourcePlan[] = [];
  private readonly domain: string;

  constructor(private readonly snap: Snapshot, opts: DesiredOptions = {}) {
    this.domain = opts.clusterDomain ?? 'cluster.local';
    for (const [kind, list] of [['Service', snap.services], ['Endpoints', snap.endpoints], ['Pod', snap.pods],
      ['VirtualService', snap.virtualServices], ['Target', snap.targets]] as const) {
      for (const o of list) this.byKey.set(`${kind}/${o.metadata.namespace}/${o.metadata.name}`, o);
    }
    for (const vs of snap.virtualServices.filter(isLive)) this.plans.push(this.planVirtualService(vs));
    for (const t of snap.targets.filter(isLive)) this.plans.push(this.planTarget(t));
    for (const r of snap.rules.filter(isLive)) this.plans.push(this.planRule(r));
  }

  /** Every plan's owner with its conversion errors (also for resources that select no gateway). */
  planErrors(): Map<string, string[]> {
    return new Map(this.plans.map((p) => [p.owner, p.errors]));
  }

  /** The owners whose selector picks `pod`. */
  selecting(pod: KubeObject): string[] {
    return this.plans.filter((p) => this.picks(p, pod)).map((p) => p.owner);
  }

  /** The configuration `pod` should have. */
  forGateway(pod: KubeObject): DesiredConfig {
    const out = emptyConfig();
    const picked = this.plans.filter((p) => this.picks(p, pod));
    const addError = (owner: string, msg: string) => out.errors.set(owner, [...(out.errors.get(owner) ?? []), msg]);
    for (const p of picked) {
      out.owners.add(p.owner);
      for (const e of p.errors) addError(p.owner, e);
      if (p.errors.length > 0) continue; // an unconvertible resource contributes nothing
      for (const c of p.clusters) out.clusters.set(c.name, c);
      for (const r of p.rules) out.rules.set(r.name, r);
      for (const rl of p.rulelists) out.rulelists.set(rl.name, { ...rl, rules: [...rl.rules] });
      for (const l of p.listeners) out.listeners.set(l.name, l);
    }
    // Rule resources go into their rulelists by position, then name: a stable order whatever the event order.
    const inserts = picked.filter((p) => p.insert !== undefined && p.errors.length === 0)
      .sort((a, b) => a.insert!.position - b.insert!.position || (a.owner < b.owner ? -1 : 1));
    for (const p of inserts) {
      const rl = out.rulelists.get(p.insert!.rulelist);
      if (!rl) {
        addError(p.owner, `rulelist "${p.insert!.rulelist}" is not configured on this gateway (no VirtualService here defines it)`);
        for (const c of p.clusters) out.clusters.delete(c.name);
        for (const r of p.rules) out.rules.delete(r.name);
        continue;
      }
      rl.rules.splice(Math.min(Math.max(0, p.insert!.position), rl.rules.length), 0, p.insert!.rule);
    }
    return out;
  }

  private picks(p: ResourcePlan, pod: KubeObject): boolean {
    try {
      return selects(p.selector, pod, p.namespace, (ns, name) => this.byKey.get(`Endpoints/${ns}/${name}`));
    } catch (err) {
      if (!p.errors.includes((err as Error).message)) p.errors.push((err as Error).message);
      return false;
    }
  }

  // ------------------------------------------------------------------ plans

  private newPlan(kind: CustomKind, o: KubeObject): ResourcePlan {
    const ns = o.metadata.namespace ?? 'default';
    return { owner: ownerKey(kind, ns, o.metadata.name), kind, namespace: ns, selector: o.spec?.selector, listeners: [], clusters: [], rulelists: [], rules: [], errors: [] };
  }

  private guard(p: ResourcePlan, fn: () => void): void {
    try {
      fn();
    } catch (err) {
      if (err instanceof ConvertError || err instanceof Error) p.errors.push(err.message);
      else throw err;
      p.listeners = []; p.clusters = []; p.rulelists = []; p.rules = [];
      delete p.insert;
    }
  }

  private resolver(p: ResourcePlan, base: string): RefResolver {
    const ns = p.namespace;
    const inlineEndpoints = new Map<string, string>();
    return {
      cluster: (n) => (n.startsWith('/') ? n : this.byKey.has(`Target/${ns}/${n}`) ? fqn('Target', ns, n) : n),
      rulelist: (n) => (n.startsWith('/') ? n : this.byKey.has(`VirtualService/${ns}/${n}`) ? fqn('VirtualService', ns, n) : n),
      route: (n) => n,
      inlineCluster: (c, field) => {
        const shell = convertClusterShell(c, field);
        // Named by content without the endpoints: an unchanged cluster keeps its name and sessions, and
        // a changed endpoint list is synced through the endpoint API. Two embedded clusters that differ
        // only in their endpoints get the endpoints' hash too.
        const { name: _ignored, endpoints: rawEndpoints, ...content } = c;
        const endpointsKey = contentHash(rawEndpoints ?? null);
        let name = `${base}/cluster/${contentHash(content)}`;
        const taken = inlineEndpoints.get(name);
        if (taken !== undefined && taken !== endpointsKey) name = `${name}-${endpointsKey}`;
        if (!p.clusters.some((x) => x.name === name)) {
          inlineEndpoints.set(name, endpointsKey);
          p.clusters.push({ name, owner: p.owner, ...shell, endpoints: this.endpoints(rawEndpoints, name, ns, `${field}.endpoints`, shell.spec.port) });
        }
        return name;
      },
    };
  }

  private planVirtualService(vs: KubeObject): ResourcePlan {
    const p = this.newPlan('VirtualService', vs);
    const name = fqn('VirtualService', p.namespace, vs.metadata.name);
    this.guard(p, () => {
      const l = vs.spec?.listener;
      if (typeof l !== 'object' || l === null) throw new ConvertError('spec.listener', 'is required');
      if (p.selector === undefined) throw new ConvertError('spec.selector', 'is required');
      const spec = convertProtocolSpec(l.spec, 'spec.listener.spec');
      const r = this.resolver(p, name);
      let rules: string;
      if (l.rulesRef !== undefined) {
        rules = r.rulelist(String(l.rulesRef));
      } else {
        if (!Array.isArray(l.rules)) throw new ConvertError('spec.listener.rules', 'is required (or rulesRef)');
        rules = name;
        const names: string[] = [];
        l.rules.forEach((raw: unknown, i: number) => {
          const rule = convertRule(raw, `spec.listener.rules[${i}]`, r);
          const ruleName = uniqueName(`${name}/rule/${contentHash(rule)}`, names);
          names.push(ruleName);
          p.rules.push({ name: ruleName, owner: p.owner, rule });
        });
        p.rulelists.push({ name, owner: p.owner, rules: names });
      }
      p.listeners.push({ name, owner: p.owner, spec, rules, ...(l.options !== undefined ? { options: structuredClone(l.options) } : {}) });
    });
    return p;
  }

  private planTarget(t: KubeObject): ResourcePlan {
    const p = this.newPlan('Target', t);
    const name = fqn('Target', p.namespace, t.metadata.name);
    this.guard(p, () => {
      if (p.selector === undefined) throw new ConvertError('spec.selector', 'is required');
      if (t.spec?.cluster !== undefined) {
        const c = t.spec.cluster;
        const shell = convertClusterShell(c, 'spec.cluster');
        p.clusters.push({ name, owner: p.owner, ...shell, endpoints: this.endpoints(c.endpoints, name, p.namespace, 'spec.cluster.endpoints', shell.spec.port) });
      } else if (t.spec?.linkedVirtualService !== undefined) {
        // l7mp: the linked VirtualService's listener spec becomes the cluster spec, its gateways the endpoints.
        const vsName = String(t.spec.linkedVirtualService);
        const vs = this.byKey.get(`VirtualService/${p.namespace}/${vsName}`);
        if (!vs) throw new ConvertError('spec.linkedVirtualService', `VirtualService "${vsName}" not found in namespace ${p.namespace}`);
        const spec = convertProtocolSpec(vs.spec?.listener?.spec, `VirtualService ${vsName}: spec.listener.spec`);
        p.clusters.push({ name, owner: p.owner, spec, endpoints: this.endpoints([{ selector: vs.spec.selector }], name, p.namespace, 'spec.linkedVirtualService') });
      } else {
        throw new ConvertError('spec', 'needs cluster or linkedVirtualService');
      }
    });
    return p;
  }

  private planRule(rr: KubeObject): ResourcePlan {
    const p = this.newPlan('Rule', rr);
    const name = fqn('Rule', p.namespace, rr.metadata.name);
    this.guard(p, () => {
      if (p.selector === undefined) throw new ConvertError('spec.selector', 'is required');
      if (typeof rr.spec?.rulelist !== 'string') throw new ConvertError('spec.rulelist', 'is required');
      const r = this.resolver(p, name);
      const rule = convertRule(rr.spec.rule, 'spec.rule', r);
      const ruleName = `${name}/rule/${contentHash(rule)}`;
      p.rules.push({ name: ruleName, owner: p.owner, rule });
      const pos = rr.spec.position ?? 0;
      if (!Number.isInteger(pos) || pos < 0) throw new ConvertError('spec.position', 'must be a non-negative integer');
      p.insert = { rulelist: r.rulelist(rr.spec.rulelist), position: pos, rule: ruleName };
    });
    return p;
  }

  // ------------------------------------------------------------- endpoints

  private endpoints(raw: unknown, cluster: string, ns: string, field: string, port?: unknown): DesiredEndpoint[] {
    if (raw === undefined || raw === null) return [];
    if (!Array.isArray(raw)) throw new ConvertError(field, 'must be an array');
    const out = new Map<string, DesiredEndpoint>();
    const add = (e: DesiredEndpoint) => { if (!out.has(e.name)) out.set(e.name, e); };
    raw.forEach((e: Obj, i: number) => {
      const f = `${field}[${i}]`;
      if (typeof e !== 'object' || e === null) throw new ConvertError(f, 'must be an object');
      if (e.selector !== undefined) {
        for (const pod of this.snap.pods) {
          const ip = pod.status?.podIP;
          if (typeof ip !== 'string' || !isLive(pod)) continue;
          if (selects(e.selector, pod, ns, (n, s) => this.byKey.get(`Endpoints/${n}/${s}`))) add({ name: `${cluster}/${ip}`, spec: { address: ip } });
        }
        return;
      }
      if (typeof e.spec !== 'object' || e.spec === null) throw new ConvertError(`${f}.spec`, 'is required (or selector)');
      const address = e.spec.address ?? e.spec.filename;
      if (typeof address !== 'string' || address === '') throw new ConvertError(`${f}.spec.address`, 'is required');
      const weight = e.weight ?? e.spec.weight;
      const w = typeof weight === 'number' ? { weight } : {};
      const ips = this.serviceAddresses(address, port);
      if (ips !== undefined) {
        for (const ip of ips) add({ name: `${cluster}/${ip}`, spec: { address: ip }, ...w });
        return;
      }
      add({ name: `${cluster}/${typeof e.name === 'string' ? e.name : address}`, spec: { address }, ...w });
    });
    return [...out.values()];
  }

  /**
   * The addresses for a Service named by its cluster DNS name, or undefined
   * when it is not one the operator knows: the ready addresses of its
   * Endpoints when the cluster's port reaches the pods unchanged (service
   * port = target port, as for kube-dns), else its ClusterIP (the gateway has
   * one port per cluster, so a remapped port must go through kube-proxy).
   */
  private serviceAddresses(address: string, port: unknown): string[] | undefined {
    const a = address.replace(/\.$/, '');
    const m = new RegExp(`^([a-z0-9-]+)\\.([a-z0-9-]+)\\.svc(?:\\.${this.domain.replace(/\./g, '\\.')})?$`).exec(a);
    if (!m) return undefined;
    const [, svcName, ns] = m;
    const svc = this.byKey.get(`Service/${ns}/${svcName}`);
    if (!svc) return undefined;
    const ep = this.byKey.get(`Endpoints/${ns}/${svcName}`);
    const subsets = (ep?.subsets as Array<{ addresses?: Array<{ ip?: string }>; ports?: Array<{ name?: string; port?: number }> }> | undefined) ?? [];
    const sp = (svc.spec?.ports as Array<{ name?: string; port?: number; targetPort?: number | string }> | undefined)?.find((x) => x.port === port);
    const clusterIP = svc.spec?.clusterIP as string | undefined;
    if (sp !== undefined && clusterIP && clusterIP !== 'None') {
      // The pods' port for this service port: targetPort, by number or through the Endpoints' named ports.
      const target = typeof sp.targetPort === 'number' ? sp.targetPort
        : subsets.flatMap((s) => s.ports ?? []).find((x) => x.name === (sp.name ?? sp.targetPort))?.port ?? sp.targetPort ?? sp.port;
      if (target !== port) return [clusterIP];
    }
    const ips = new Set<string>();
    for (const s of subsets) for (const ad of s.addresses ?? []) if (typeof ad.ip === 'string') ips.add(ad.ip);
    return [...ips].sort();
  }
}

function uniqueName(base: string, taken: string[]): string {
  if (!taken.includes(base)) return base;
  for (let i = 2; ; i++) if (!taken.includes(`${base}-${i}`)) return `${base}-${i}`;
}
