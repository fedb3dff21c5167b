// The Helm charts. No helm binary exists here, so: every value a template
// references exists in the chart's values.yaml; and the templates, rendered by
// helm-lite (the Go-template subset the charts keep to; anything else fails),
// give manifests that validate against the Kubernetes schemas
// (kubernetes-models), with the security defaults the issue asks for.

import test from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as apps from 'kubernetes-models/apps/v1';
import * as core from 'kubernetes-models/v1';
import * as rbac from 'kubernetes-models/rbac.authorization.k8s.io/v1';
import { Value } from 'typebox/value';
import { parse } from 'yaml';
import { Config } from '../../gateway/src/api/generated/schemas.js';
import { startGateway } from '../../gateway/src/app.js';
import { silentLogger } from '../../gateway/src/observe/log.js';
import { freePort } from '../../gateway/test/helpers.js';
import { Chart, TemplateFailure, referencedValues } from './helm-lite.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
const CHARTS = ['l7mp-ingress', 'l7mp-operator', 'monitoring'].map((c) => path.join(ROOT, 'charts', c));
const chart = (name: string) => new Chart(path.join(ROOT, 'charts', name));

const MODELS: Record<string, new (o: any) => { validate(): void }> = {
  'apps/v1/DaemonSet': apps.DaemonSet, 'apps/v1/Deployment': apps.Deployment,
  'v1/ConfigMap': core.ConfigMap, 'v1/Service': core.Service, 'v1/ServiceAccount': core.ServiceAccount,
  'rbac.authorization.k8s.io/v1/Role': rbac.Role, 'rbac.authorization.k8s.io/v1/ClusterRole': rbac.ClusterRole,
  'rbac.authorization.k8s.io/v1/RoleBinding': rbac.RoleBinding, 'rbac.authorization.k8s.io/v1/ClusterRoleBinding': rbac.ClusterRoleBinding,
};

/** Kubernetes schema validation; monitoring.coreos.com kinds (no model here) get a shape check. */
function validate(t: { notThrows(fn: () => unknown, m?: string): void; truthy(v: unknown, m?: string): void }, docs: Array<Record<string, any>>): void {
  for (const d of docs) {
    const key = `${d.apiVersion}/${d.kind}`;
    if (d.apiVersion === 'monitoring.coreos.com/v1') {
      t.truthy(d.metadata?.name && d.spec?.selector?.matchLabels && Object.keys(d.spec.selector.matchLabels).length > 0, `${key} selects pods`);
      const eps = d.spec.podMetricsEndpoints ?? d.spec.endpoints;
      t.truthy(Array.isArray(eps) && eps.every((e: { port?: string; path?: string }) => typeof e.port === 'string' && e.path?.startsWith('/')), `${key} endpoints name a port and a path`);
      continue;
    }
    const M = MODELS[key];
    t.truthy(M, `a schema for ${key}`);
    t.notThrows(() => new M!(d).validate(), `${key} ${d.metadata?.name}`);
  }
}

function get(o: unknown, p: string): { found: boolean } {
  let cur: unknown = o;
  for (const k of p.split('.')) {
    if (typeof cur !== 'object' || cur === null || !Object.prototype.hasOwnProperty.call(cur, k)) return { found: false };
    cur = (cur as Record<string, unknown>)[k];
  }
  return { found: true };
}

test('every .Values path the templates reference exists in values.yaml (each chart)', (t) => {
  for (const dir of CHARTS) {
    const values = parse(fs.readFileSync(path.join(dir, 'values.yaml'), 'utf8'));
    const refs = referencedValues(dir);
    t.true(refs.length > 3, `${dir} references values`);
    t.deepEqual(refs.filter((r) => !get(values, r).found), [], `${path.basename(dir)}: referenced but not in values.yaml`);
    // And the README documents every top-level value.
    const readme = fs.readFileSync(path.join(dir, 'README.md'), 'utf8');
    t.deepEqual(Object.keys(values).filter((k) => !readme.includes(`\`${k}`)), [], `${path.basename(dir)}: values missing from README.md`);
  }
});

test('l7mp-ingress: a hostNetwork DaemonSet whose controller and metrics are on loopback by default, with a config the gateway accepts', (t) => {
  const docs = chart('l7mp-ingress').render();
  validate(t, docs);
  const ds = docs.find((d) => d.kind === 'DaemonSet')!;
  t.true(ds.spec.template.spec.hostNetwork);
  t.is(ds.spec.template.spec.dnsPolicy, 'ClusterFirstWithHostNet');
  const c = ds.spec.template.spec.containers[0];
  t.is(c.name, 'l7mp', 'the operator watches the container named l7mp');
  t.is(c.readinessProbe.httpGet.path, '/ready', 'readiness is "operator configuration applied"');
  t.is(c.readinessProbe.httpGet.host, '127.0.0.1');
  t.is(c.securityContext.privileged, undefined);
  t.is(ds.spec.template.metadata.labels.app, 'l7mp-ingress', "l7mp's examples select app: l7mp-ingress");
  t.is(ds.spec.template.metadata.annotations['l7mp.io/controller-port'], '1234');
  const cm = docs.find((d) => d.kind === 'ConfigMap')!;
  const cfg = parse(cm.data['l7mp-ingress.yaml']);
  t.true(Value.Check(Config, cfg), JSON.stringify([...Value.Errors(Config, cfg)].slice(0, 3)));
  t.is(cfg.listeners[0].spec.address, '127.0.0.1');
  t.is(cfg.admin.metrics.address, '127.0.0.1');
  t.true(cfg.admin.managed);
  t.is(cfg.admin.api_token_file, undefined);
});

test('l7mp-ingress: the rendered gateway config starts a real gateway, not ready until the operator applies its configuration', async (t) => {
  const cm = chart('l7mp-ingress').render().find((d) => d.kind === 'ConfigMap')!;
  const cfg = parse(cm.data['l7mp-ingress.yaml']);
  // Free ports instead of 1234/8080, which other processes on this host may hold.
  cfg.listeners[0].spec.port = await freePort();
  cfg.admin.metrics.port = await freePort();
  cfg.admin.log_level = 'silent';
  const gw = await startGateway({ config: cfg, logger: silentLogger() });
  t.teardown(() => gw.stop());
  const ready = await fetch(`http://127.0.0.1:${cfg.admin.metrics.port}/ready`);
  t.is(ready.status, 503);
  t.regex(JSON.stringify(await ready.json()), /operator/);
  const admin = await fetch(`http://127.0.0.1:${cfg.listeners[0].spec.port}/api/v1/admin`).then((r) => r.json()) as { managed?: boolean };
  t.true(admin.managed);
});

test('l7mp-ingress: the controller leaves loopback only with a token; the offload image is a values switch', (t) => {
  const err = t.throws(() => chart('l7mp-ingress').render({ controller: { address: '0.0.0.0' } }));
  t.true(err instanceof TemplateFailure);
  t.regex(err!.message, /token/);
  const docs = chart('l7mp-ingress').render({ controller: { address: '0.0.0.0', token: { existingSecret: 'l7mp-token' } }, offload: { enabled: true, interfaces: ['eth0'] } });
  validate(t, docs);
  const ds = docs.find((d) => d.kind === 'DaemonSet')!;
  const c = ds.spec.template.spec.containers[0];
  t.is(c.image, 'l7mp/gateway-offload:local');
  t.true(c.securityContext.privileged);
  t.true(ds.spec.template.spec.volumes.some((v: { secret?: { secretName: string } }) => v.secret?.secretName === 'l7mp-token'));
  const cfg = parse(docs.find((d) => d.kind === 'ConfigMap')!.data['l7mp-ingress.yaml']);
  t.true(Value.Check(Config, cfg));
  t.is(cfg.admin.api_token_file, '/etc/l7mp/token/token');
  t.is(cfg.admin.offload, 'init');
  const extra = chart('l7mp-ingress').render({
    extraListeners: [{ name: 'dns', spec: { protocol: 'UDP', port: 5353 }, rules: [{ action: { route: { destination: 'dns-upstream' } } }] }],
    extraConfig: { clusters: [{ name: 'dns-upstream', spec: { protocol: 'UDP', port: 53 }, endpoints: [{ spec: { address: '10.96.0.10' } }] }] },
  });
  const extraCfg = parse(extra.find((d) => d.kind === 'ConfigMap')!.data['l7mp-ingress.yaml']);
  t.true(Value.Check(Config, extraCfg));
  t.deepEqual(extraCfg.listeners.map((l: { name: string }) => l.name), ['controller-listener', 'dns']);
  t.is(extraCfg.clusters[0].name, 'dns-upstream');
  t.deepEqual(cfg.admin.offload_ifs, ['eth0']);
});

test('l7mp-operator: a single-replica Deployment with least-privilege RBAC (cluster-wide or one namespace)', (t) => {
  for (const [over, roleKind, bindingKind] of [[{}, 'ClusterRole', 'ClusterRoleBinding'], [{ watchNamespace: 'edge' }, 'Role', 'RoleBinding']] as const) {
    const docs = chart('l7mp-operator').render(over);
    validate(t, docs);
    t.deepEqual(docs.map((d) => d.kind).sort(), ['Deployment', roleKind, bindingKind, 'ServiceAccount'].sort());
    const role = docs.find((d) => d.kind === roleKind)!;
    const verbs = new Set(role.rules.flatMap((r: { verbs: string[] }) => r.verbs));
    t.deepEqual([...verbs].sort(), ['get', 'list', 'patch', 'watch'], 'no create, update, delete or *');
    t.false(role.rules.some((r: { resources: string[] }) => r.resources.includes('*') || r.resources.includes('secrets')));
    const binding = docs.find((d) => d.kind === bindingKind)!;
    t.is(binding.roleRef.kind, roleKind);
    t.is(binding.subjects[0].name, docs.find((d) => d.kind === 'ServiceAccount')!.metadata.name);
    const dep = docs.find((d) => d.kind === 'Deployment')!;
    t.is(dep.spec.replicas, 1);
    t.is(dep.spec.template.spec.serviceAccountName, binding.subjects[0].name);
  }
});

test('monitoring: a PodMonitor (or ServiceMonitor) that selects the l7mp-ingress pods and port, and a dashboard of metrics the gateway exports', (t) => {
  const ingress = chart('l7mp-ingress').render();
  const ds = ingress.find((d) => d.kind === 'DaemonSet')!;
  const podLabels = ds.spec.template.metadata.labels;
  const portNames = ds.spec.template.spec.containers[0].ports.map((p: { name: string }) => p.name);
  const docs = chart('monitoring').render();
  validate(t, docs);
  const pm = docs.find((d) => d.kind === 'PodMonitor')!;
  for (const [k, v] of Object.entries(pm.spec.selector.matchLabels)) t.is(podLabels[k], v, `PodMonitor label ${k} matches the DaemonSet pods`);
  t.true(portNames.includes(pm.spec.podMetricsEndpoints[0].port));
  t.is(pm.spec.podMetricsEndpoints[0].path, ds.spec.template.spec.containers[0].readinessProbe ? '/metrics' : '/metrics');
  const sm = chart('monitoring').render({ podMonitor: { enabled: false }, serviceMonitor: { enabled: true } });
  validate(t, sm);
  t.deepEqual(sm.map((d) => d.kind).sort(), ['ConfigMap', 'Service', 'ServiceMonitor']);

  const dashboard = JSON.parse(docs.find((d) => d.kind === 'ConfigMap')!.data['l7mp-gateway.json']);
  const exported = fs.readFileSync(path.join(ROOT, 'gateway/src/observe/metrics.ts'), 'utf8');
  const used = new Set<string>();
  for (const p of dashboard.panels) for (const tg of p.targets) for (const m of String(tg.expr).matchAll(/\b(l7mp_[a-z_]+?)(?:_bucket)?\{/g)) used.add(m[1]!);
  t.true(used.size >= 6);
  t.deepEqual([...used].filter((m) => !exported.includes(`'${m}'`)), [], 'every dashboard metric is one the gateway exports');
});
