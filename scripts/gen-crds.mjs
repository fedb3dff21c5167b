#!/usr/bin/env node
// Generates the CustomResourceDefinitions of the l7mp operator (VirtualService,
// Target, Rule; group l7mp.io, version v1) from openapi/l7mp.yaml, so the REST
// spec stays the single source of truth for every field the gateway takes.
//
// The resources use l7mp's Kubernetes form of the shared objects (as l7mp's
// own CRDs did, so an l7mp user's manifests apply unchanged):
//   - a listener or cluster `spec` is keyed by its protocol, `{UDP: {port: 53}}`;
//   - a name-or-object union becomes two fields: destination | destinationRef,
//     route | routeRef, rules | rulesRef, ingress/egress items {cluster} | {clusterRef};
//   - rewrite values are `value` (any JSON) or `valueStr`;
//   - an endpoint is {name, spec: {address | filename, weight}} or {selector}.
// The output is in the Kubernetes structural-schema form: every node has a
// type, no $ref, unions that are not structural become
// x-kubernetes-preserve-unknown-fields (free-form) or x-kubernetes-int-or-string,
// and objects the REST spec leaves open keep their unknown fields.
//
// Usage: node scripts/gen-crds.mjs [--out FILE] [--spec FILE]
// Default FILE: charts/l7mp-operator/crds/l7mp.io-crds.yaml. Deterministic
// output (a test compares a fresh generation with the committed file).

import { readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse, stringify } from 'yaml';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const SPEC_REL = 'openapi/l7mp.yaml';
export const CRD_OUT_REL = 'charts/l7mp-operator/crds/l7mp.io-crds.yaml';

/**
 * The protocol keys a resource may use: the spec's ListenerProtocol or
 * ClusterProtocol enum (generated from the protocol registry), without the
 * static-only ones the REST API refuses; clusters also take `Sdtio`, l7mp's
 * spelling of Stdio.
 */
function protocolKeys(spec, component) {
  const s = spec.components.schemas[component] ?? fail(`the spec has no ${component} (run scripts/gen-protocols.mjs)`);
  // Static-only is a property of the protocol, listed once (on ClusterProtocol): it holds for both roles.
  const staticOnly = new Set(spec.components.schemas.ClusterProtocol?.['x-l7mp-static-only'] ?? []);
  const keys = s.enum.filter((p) => !staticOnly.has(p));
  return component === 'ClusterProtocol' && keys.includes('Stdio') ? [...keys, 'Sdtio'] : keys;
}
const VALUE_KEYS = ['description', 'enum', 'minimum', 'maximum', 'exclusiveMinimum', 'exclusiveMaximum', 'multipleOf',
  'minLength', 'maxLength', 'pattern', 'minItems', 'maxItems', 'uniqueItems', 'minProperties', 'maxProperties', 'default', 'format'];
const PRESERVE = 'x-kubernetes-preserve-unknown-fields';

function fail(msg) {
  throw new Error(`gen-crds: ${msg}`);
}

/** A component schema as a structural schema (inlined, typed). */
function structural(spec, s, depth = 0) {
  if (depth > 40) fail('schema nesting too deep (a reference cycle?)');
  if (s === undefined || s === true || (typeof s === 'object' && Object.keys(s).length === 0)) return { [PRESERVE]: true };
  if (s.$ref) {
    const name = /^#\/components\/schemas\/(.+)$/.exec(s.$ref)?.[1] ?? fail(`unsupported $ref ${s.$ref}`);
    const target = spec.components.schemas[name] ?? fail(`dangling $ref ${s.$ref}`);
    return structural(spec, target, depth + 1);
  }
  if (s.allOf) {
    const parts = s.allOf.map((x) => structural(spec, x, depth + 1));
    const out = { type: 'object', properties: {}, required: [] };
    for (const p of parts) {
      Object.assign(out.properties, p.properties ?? {});
      out.required.push(...(p.required ?? []));
      if (p[PRESERVE]) out[PRESERVE] = true;
      if (p.description && !out.description) out.description = p.description;
    }
    if (s.description) out.description = s.description;
    out.required = [...new Set(out.required)].sort();
    if (out.required.length === 0) delete out.required;
    return out;
  }
  const alts = s.anyOf ?? s.oneOf;
  if (alts) {
    const types = alts.map((a) => structural(spec, a, depth + 1));
    const kinds = [...new Set(types.map((x) => x.type))];
    const base = s.description ? { description: clean(s.description) } : {};
    if (kinds.length === 1 && kinds[0] !== undefined && kinds[0] !== 'object' && kinds[0] !== 'array') return { ...base, type: kinds[0] };
    if (kinds.length === 2 && kinds.includes('integer') && kinds.includes('string')) return { ...base, 'x-kubernetes-int-or-string': true };
    // Not structural as a union: free-form, checked by the gateway on apply.
    return { ...base, [PRESERVE]: true };
  }
  const out = {};
  for (const k of VALUE_KEYS) if (s[k] !== undefined) out[k] = k === 'description' ? clean(s[k]) : s[k];
  const type = s.type ?? (s.properties || s.additionalProperties !== undefined ? 'object' : undefined);
  if (type === undefined) return { ...out, [PRESERVE]: true };
  out.type = type;
  if (type === 'array') out.items = structural(spec, s.items, depth + 1);
  if (type === 'object') {
    if (s.properties) {
      out.properties = {};
      for (const [k, v] of Object.entries(s.properties)) {
        if (v?.readOnly) continue; // output only
        out.properties[k] = structural(spec, v, depth + 1);
      }
    }
    if (s.required?.length) out.required = [...s.required];
    if (s.additionalProperties === true || (s.additionalProperties === undefined && !s.properties)) out[PRESERVE] = true;
    else if (s.additionalProperties && typeof s.additionalProperties === 'object') {
      if (out.properties) out[PRESERVE] = true;
      else out.additionalProperties = structural(spec, s.additionalProperties, depth + 1);
    }
  }
  return out;
}

function clean(text) {
  return String(text).replace(/\s+/g, ' ').trim();
}

function obj(properties, extra = {}) {
  return { type: 'object', ...extra, properties };
}

const str = (description) => ({ type: 'string', ...(description ? { description } : {}) });

/**
 * `{<Protocol>: {...}}`, keyed by protocol, from a REST spec schema without its
 * `protocol`. One additionalProperties schema, not one copy per protocol, keeps
 * the CRDs small; the operator checks that there is exactly one key.
 */
function protocolKeyed(spec, componentName, protocols, what) {
  const base = structural(spec, { $ref: `#/components/schemas/${componentName}` });
  const inner = { ...base, properties: { ...base.properties } };
  delete inner.properties.protocol;
  delete inner.required;
  delete inner.description;
  return {
    type: 'object',
    description: (`The ${what} spec keyed by its protocol, e.g. {UDP: {port: 53}} (l7mp's form), exactly one of ${protocols.join(', ')}` +
      `${protocols.includes('Sdtio') ? " (Sdtio is l7mp's spelling of Stdio)" : ''}. ${base.description ? clean(base.description) : ''}`).trim(),
    minProperties: 1,
    maxProperties: 1,
    additionalProperties: inner,
  };
}

function selector() {
  const requirement = obj({
    key: str('A label key (matchExpressions) or a dotted path into the pod object (matchFields).'),
    operator: { type: 'string', enum: ['In', 'NotIn', 'Exists', 'DoesNotExist'] },
    values: { type: 'array', items: { type: 'string' } },
  }, { required: ['key', 'operator'] });
  return obj({
    matchLabels: { type: 'object', additionalProperties: { type: 'string' } },
    matchExpressions: { type: 'array', items: requirement },
    matchFields: { type: 'array', items: requirement },
    matchNamespace: str('Only pods in this namespace.'),
    matchService: str('Only pods listed in the Endpoints of this Service (same namespace as the resource).'),
  }, { description: 'Which gateway pods (or, in an endpoint, which backend pods) this applies to. All given terms must hold; an empty selector selects nothing.' });
}

function schemas(spec) {
  const c = spec.components.schemas;
  const endpointSpec = structural(spec, c.EndPointSpec);
  const cluster = obj({
    name: str('Ignored on the gateway: the operator names objects after their resource.'),
    spec: protocolKeyed(spec, 'ClusterSpec', protocolKeys(spec, 'ClusterProtocol'), 'cluster'),
    endpoints: {
      type: 'array',
      items: obj({
        name: str(),
        spec: endpointSpec,
        weight: structural(spec, c.EndPoint.properties.weight),
        selector: selector(),
      }, { description: 'A static endpoint {spec: {address}} (an address <svc>.<ns>.svc[.cluster.local] of a known Service becomes its ready endpoints), or {selector}: one endpoint per selected pod.' }),
    },
    endpointNum: { type: 'integer', minimum: 0, description: 'Accepted for compatibility with l7mp; not used.' },
    loadbalancer: structural(spec, c.LoadBalancer),
    outlier_detection: structural(spec, c.OutlierDetection),
    health_check: structural(spec, c.HealthCheck),
    dns: structural(spec, c.ClusterDns),
    options: { [PRESERVE]: true, description: 'Accepted for compatibility; not used.' },
  }, { required: ['spec'], description: clean(c.Cluster.description) });
  const clusterItem = obj({ cluster, clusterRef: str('The name of a Target (same namespace) or of a gateway cluster.') });
  const route = obj({
    name: str(),
    destination: cluster,
    destinationRef: str('The name of a Target in the same namespace, or of a cluster on the gateway.'),
    ingress: { type: 'array', items: clusterItem },
    egress: { type: 'array', items: clusterItem },
    retry: structural(spec, c.RetryPolicy),
  }, { description: clean(c.Route.description) });
  const rule = obj({
    name: str(),
    match: { [PRESERVE]: true, description: clean(c.Match.description) },
    action: obj({
      route,
      routeRef: str('The name of a route on the gateway.'),
      rewrite: { type: 'array', items: obj({ path: str(), value: { [PRESERVE]: true }, valueStr: str() }, { required: ['path'] }) },
      apply: str('A rulelist to continue with: the name of a VirtualService (same namespace) or of a gateway rulelist.'),
    }, { description: clean(c.Action.description) }),
  }, { required: ['action'], description: clean(c.Rule.description) });
  const listener = obj({
    name: str('Ignored on the gateway: the listener is named /l7mp.io/v1/VirtualService/<namespace>/<name>.'),
    spec: protocolKeyed(spec, 'ListenerSpec', protocolKeys(spec, 'ListenerProtocol'), 'listener'),
    rules: { type: 'array', items: rule },
    rulesRef: str('Instead of rules: a VirtualService (same namespace) whose rulelist to use, or a gateway rulelist.'),
    options: structural(spec, c.ListenerOptions),
  }, { required: ['spec'], description: clean(c.Listener.description) });
  const updateOwners = { type: 'boolean', default: false, description: 'Accepted for compatibility with l7mp; not used.' };
  return {
    VirtualService: obj({ selector: selector(), listener, updateOwners }, { required: ['selector', 'listener'] }),
    Target: obj({ selector: selector(), cluster, linkedVirtualService: str('A VirtualService (same namespace): its listener spec becomes the cluster spec, its gateways the endpoints.'), updateOwners }, { required: ['selector'] }),
    Rule: obj({ selector: selector(), rulelist: str('A VirtualService (same namespace) whose rulelist takes the rule, or a gateway rulelist name.'), position: { type: 'integer', minimum: 0, default: 0 }, rule, updateOwners }, { required: ['selector', 'rulelist', 'rule'] }),
  };
}

const NAMES = {
  VirtualService: { plural: 'virtualservices', singular: 'virtualservice', shortNames: ['vsvc'] },
  Target: { plural: 'targets', singular: 'target', shortNames: ['tr'] },
  Rule: { plural: 'rules', singular: 'rule', shortNames: [] },
};

function statusSchema() {
  const condition = obj({
    type: str(), status: { type: 'string', enum: ['True', 'False', 'Unknown'] }, reason: str(), message: str(),
    observedGeneration: { type: 'integer' }, lastTransitionTime: { type: 'string', format: 'date-time' },
  }, { required: ['type', 'status'] });
  return obj({
    observedGeneration: { type: 'integer' },
    gateways: obj({
      selected: { type: 'array', items: { type: 'string' } },
      applied: { type: 'array', items: { type: 'string' } },
      failed: { type: 'array', items: obj({ pod: str(), error: str() }) },
    }),
    conditions: { type: 'array', items: condition, 'x-kubernetes-list-type': 'map', 'x-kubernetes-list-map-keys': ['type'] },
  }, { description: 'Written by the operator: Ready and Degraded conditions, and the gateways that failed with their errors.', [PRESERVE]: true });
}

function crd(kind, specSchema, version) {
  const n = NAMES[kind];
  return {
    apiVersion: 'apiextensions.k8s.io/v1',
    kind: 'CustomResourceDefinition',
    metadata: { name: `${n.plural}.l7mp.io`, labels: { 'app.kubernetes.io/part-of': 'l7mp' }, annotations: { 'l7mp.io/generated-from': `${SPEC_REL} ${version}` } },
    spec: {
      group: 'l7mp.io',
      scope: 'Namespaced',
      names: { kind, listKind: `${kind}List`, ...n, ...(n.shortNames.length ? {} : { shortNames: undefined }) },
      versions: [{
        name: 'v1',
        served: true,
        storage: true,
        subresources: { status: {} },
        additionalPrinterColumns: [
          { name: 'Ready', type: 'string', jsonPath: '.status.conditions[?(@.type=="Ready")].status' },
          { name: 'Reason', type: 'string', jsonPath: '.status.conditions[?(@.type=="Ready")].reason' },
          { name: 'Age', type: 'date', jsonPath: '.metadata.creationTimestamp' },
        ],
        schema: { openAPIV3Schema: obj({ apiVersion: str(), kind: str(), metadata: { type: 'object' }, spec: specSchema, status: statusSchema() }, { required: ['spec'] }) },
      }],
    },
  };
}

export function generateCrds(specFile = path.join(ROOT, SPEC_REL)) {
  const spec = parse(readFileSync(specFile, 'utf8'));
  const s = schemas(spec);
  const docs = ['VirtualService', 'Target', 'Rule'].map((k) => crd(k, s[k], spec.info?.version ?? ''));
  const header = `# generated by scripts/gen-crds.mjs from ${SPEC_REL} — do not edit\n`;
  return header + docs.map((d) => `---\n${stringify(JSON.parse(JSON.stringify(d)), { lineWidth: 0 })}`).join('');
}

function main() {
  let out = path.join(ROOT, CRD_OUT_REL);
  let specFile = path.join(ROOT, SPEC_REL);
  const argv = process.argv.slice(2);
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--out') out = path.resolve(argv[++i]);
    else if (argv[i] === '--spec') specFile = path.resolve(argv[++i]);
    else fail(`unknown argument ${argv[i]}`);
  }
  mkdirSync(path.dirname(out), { recursive: true });
  writeFileSync(out, generateCrds(specFile));
  process.stdout.write(`gen-crds: wrote ${path.relative(process.cwd(), out)}\n`);
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  try {
    main();
  } catch (err) {
    process.stderr.write(`${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  }
}
