// l7mp's pod selector: matchLabels, matchExpressions (In, NotIn, Exists,
// DoesNotExist), matchFields (a dotted path into the pod object, same
// operators), matchNamespace, and matchService (the pod is an address of that
// Service's Endpoints, matched by targetRef uid). All given terms must hold.
// An empty selector selects nothing: an ingress mesh should not configure
// every pod of the cluster by accident.

import type { KubeObject } from './kube/api.js';

export interface Requirement {
  key: string;
  operator: 'In' | 'NotIn' | 'Exists' | 'DoesNotExist' | string;
  values?: string[];
}

export interface Selector {
  matchLabels?: Record<string, string>;
  matchExpressions?: Requirement[];
  matchFields?: Requirement[];
  matchNamespace?: string;
  matchService?: string;
}

/** Looks up Endpoints by namespace/name (the operator's cache). */
export type EndpointsLookup = (namespace: string, name: string) => KubeObject | undefined;

function requirementHolds(r: Requirement, present: boolean, value: string | undefined): boolean {
  switch (r.operator) {
    case 'In': return present && (r.values ?? []).includes(String(value));
    case 'NotIn': return !present || !(r.values ?? []).includes(String(value));
    case 'Exists': return present;
    case 'DoesNotExist': return !present;
    default: throw new Error(`unsupported selector operator "${r.operator}" (In, NotIn, Exists, DoesNotExist)`);
  }
}

function fieldValue(obj: unknown, path: string): { present: boolean; value: string | undefined } {
  let cur: unknown = obj;
  for (const p of path.split('.')) {
    if (typeof cur !== 'object' || cur === null || !(p in cur)) return { present: false, value: undefined };
    cur = (cur as Record<string, unknown>)[p];
  }
  return { present: true, value: typeof cur === 'object' ? JSON.stringify(cur) : String(cur) };
}

/** Whether `pod` is selected. `ownerNamespace` applies to matchService (a Service in the resource's namespace). */
export function selects(sel: Selector | undefined, pod: KubeObject, ownerNamespace: string, endpoints: EndpointsLookup): boolean {
  if (sel === undefined || sel === null || typeof sel !== 'object') return false;
  const keys = ['matchLabels', 'matchExpressions', 'matchFields', 'matchNamespace', 'matchService'].filter((k) => (sel as Record<string, unknown>)[k] !== undefined);
  if (keys.length === 0) return false;
  const labels = pod.metadata.labels ?? {};
  for (const [k, v] of Object.entries(sel.matchLabels ?? {})) if (labels[k] !== v) return false;
  for (const r of sel.matchExpressions ?? []) if (!requirementHolds(r, r.key in labels, labels[r.key])) return false;
  for (const r of sel.matchFields ?? []) {
    const f = fieldValue(pod, r.key);
    if (!requirementHolds(r, f.present, f.value)) return false;
  }
  if (sel.matchNamespace !== undefined && pod.metadata.namespace !== sel.matchNamespace) return false;
  if (sel.matchService !== undefined) {
    const ep = endpoints(ownerNamespace, sel.matchService);
    const uid = pod.metadata.uid;
    const listed = (ep?.subsets as Array<{ addresses?: Array<{ targetRef?: { uid?: string } }> }> | undefined ?? [])
      .some((s) => (s.addresses ?? []).some((a) => a.targetRef?.uid !== undefined && a.targetRef.uid === uid));
    if (!listed) return false;
  }
  return true;
}
