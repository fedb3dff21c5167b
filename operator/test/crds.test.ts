// The CRDs: generated from openapi/l7mp.yaml (the committed file equals a fresh
// generation), valid CustomResourceDefinitions (kubernetes-models' schema),
// structural in the Kubernetes sense, and they admit l7mp's manifests (the
// seed README's kube-dns example) while refusing malformed ones.

import test from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { CustomResourceDefinition } from 'kubernetes-models/apiextensions.k8s.io/v1';
import { Value } from 'typebox/value';
import { parse, parseAllDocuments } from 'yaml';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
const CRD_FILE = path.join(ROOT, 'charts/l7mp-operator/crds/l7mp.io-crds.yaml');

function crds(): Array<Record<string, any>> {
  return parseAllDocuments(fs.readFileSync(CRD_FILE, 'utf8')).map((d) => d.toJS()).filter(Boolean);
}

function schemaOf(kind: string): Record<string, unknown> {
  const c = crds().find((d) => d.spec.names.kind === kind)!;
  return c.spec.versions[0].schema.openAPIV3Schema;
}

test('the committed CRDs equal a fresh generation from openapi/l7mp.yaml', async (t) => {
  const gen = await import(pathToFileURL(path.join(ROOT, 'scripts/gen-crds.mjs')).href) as { generateCrds(spec?: string): string };
  t.is(fs.readFileSync(CRD_FILE, 'utf8'), gen.generateCrds(), 'run `npm run gen:crds` and commit the result');
});

test('the CRDs are valid CustomResourceDefinitions (kubernetes-models) for l7mp.io/v1 with a status subresource', (t) => {
  const docs = crds();
  t.deepEqual(docs.map((d) => d.metadata.name).sort(), ['rules.l7mp.io', 'targets.l7mp.io', 'virtualservices.l7mp.io']);
  for (const d of docs) {
    t.notThrows(() => new CustomResourceDefinition(d as any).validate(), d.metadata.name);
    t.is(d.spec.group, 'l7mp.io');
    t.is(d.spec.scope, 'Namespaced');
    t.deepEqual(d.spec.versions.map((v: { name: string }) => v.name), ['v1']);
    t.deepEqual(d.spec.versions[0].subresources, { status: {} });
  }
  t.deepEqual(docs.find((d) => d.spec.names.kind === 'VirtualService')!.spec.names.shortNames, ['vsvc']);
});

test('the CRD schemas are structural: every node typed (or explicitly free-form), no $ref, no typed unions', (t) => {
  const problems: string[] = [];
  const walk = (s: any, at: string) => {
    if (typeof s !== 'object' || s === null) return;
    if ('$ref' in s) problems.push(`${at}: $ref`);
    for (const k of ['anyOf', 'oneOf', 'allOf']) if (k in s) problems.push(`${at}: ${k}`);
    const free = s['x-kubernetes-preserve-unknown-fields'] === true || s['x-kubernetes-int-or-string'] === true;
    if (s.type === undefined && !free) problems.push(`${at}: no type`);
    for (const [k, v] of Object.entries(s.properties ?? {})) walk(v, `${at}.${k}`);
    if (s.items) walk(s.items, `${at}[]`);
    if (typeof s.additionalProperties === 'object') walk(s.additionalProperties, `${at}{}`);
    if (s.properties && typeof s.additionalProperties === 'object') problems.push(`${at}: properties and additionalProperties`);
  };
  for (const d of crds()) walk(d.spec.versions[0].schema.openAPIV3Schema, d.spec.names.kind);
  t.deepEqual(problems, []);
});

test('the seed README kube-dns VirtualService validates against the generated schema; malformed ones do not', (t) => {
  const vs = parse(fs.readFileSync(path.join(ROOT, 'operator/e2e/manifests/kube-dns-vsvc.yaml'), 'utf8'));
  const schema = schemaOf('VirtualService');
  t.true(Value.Check(schema, vs), JSON.stringify([...Value.Errors(schema, vs)].slice(0, 3)));
  const noSelector = structuredClone(vs); delete noSelector.spec.selector;
  t.false(Value.Check(schema, noSelector), 'selector is required');
  const twoProtocols = structuredClone(vs); twoProtocols.spec.listener.spec = { UDP: { port: 1 }, TCP: { port: 2 } };
  t.false(Value.Check(schema, twoProtocols), 'exactly one protocol key');
  const badPort = structuredClone(vs); badPort.spec.listener.spec.UDP.port = 70000;
  t.false(Value.Check(schema, badPort), 'the port range comes from openapi/l7mp.yaml');
  const badRetry = structuredClone(vs); badRetry.spec.listener.rules[0].action.route.retry = { retry_on: 'sometimes' };
  t.false(Value.Check(schema, badRetry), 'retry_on enum from openapi/l7mp.yaml');
});

test('Target and Rule manifests in l7mp form validate', (t) => {
  const target = {
    apiVersion: 'l7mp.io/v1', kind: 'Target', metadata: { name: 't' },
    spec: { selector: { matchLabels: { app: 'l7mp-ingress' } }, cluster: { spec: { UDP: { port: 9000 } }, endpoints: [{ selector: { matchLabels: { app: 'worker' } } }, { spec: { address: '10.0.0.1' } }], loadbalancer: { policy: 'ConsistentHash', key: 'IP/src_addr' } } },
  };
  t.true(Value.Check(schemaOf('Target'), target), JSON.stringify([...Value.Errors(schemaOf('Target'), target)].slice(0, 3)));
  const linked = { apiVersion: 'l7mp.io/v1', kind: 'Target', metadata: { name: 'l' }, spec: { selector: { matchLabels: { app: 'x' } }, linkedVirtualService: 'vs' } };
  t.true(Value.Check(schemaOf('Target'), linked));
  const rule = {
    apiVersion: 'l7mp.io/v1', kind: 'Rule', metadata: { name: 'r' },
    spec: { selector: { matchService: 'gw' }, rulelist: 'vs', position: 0, rule: { match: { op: 'starts', path: '/HTTP/url/path', value: '/a' }, action: { rewrite: [{ path: '/labels/x', valueStr: 'y' }], routeRef: 'r1' } } },
  };
  t.true(Value.Check(schemaOf('Rule'), rule), JSON.stringify([...Value.Errors(schemaOf('Rule'), rule)].slice(0, 3)));
  t.false(Value.Check(schemaOf('Rule'), { ...rule, spec: { ...rule.spec, position: -1 } }));
});
