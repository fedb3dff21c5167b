// The Helm charts. No helm binary exists here, so: every value a template
// references exists in the chart's values.yaml; the values are checked against
// each chart's values.schema.json as helm does; and the templates, rendered by
// helm-lite (the Go-template subset the charts keep to; anything else fails)
// with defaults, with every value set, and with offload on, give manifests
// that validate against the Kubernetes schemas (kubernetes-models), carry the
// standard labels, and have the security defaults the issue asks for.

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
import { freePort } from '../../gateway/test/integration/helpers.js';
import { startHealthServer } from '../src/health.js';
import { Chart, SchemaFailure, TemplateFailure, referencedValues } from './helm-lite.js';

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
    // values.schema.json describes every top-level value (and refuses others).
    const schema = JSON.parse(fs.readFileSync(path.join(dir, 'values.schema.json'), 'utf8'));
    t.deepEqual(Object.keys(schema.properties).sort(), Object.keys(values).sort(), `${path.basename(dir)}: values.schema.json and values.yaml`);
    t.false(schema.additionalProperties, `${path.basename(dir)}: unknown top-level values are refused`);
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
  t.is(c.image, 'l7mp/gateway-offload:0.1.0', 'the tag defaults to the chart appVersion');
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

const APP_VERSION = (dir: string) => String(parse(fs.readFileSync(path.join(ROOT, 'charts', dir, 'Chart.yaml'), 'utf8')).appVersion);

// Every value a user may set, for each chart (the README's values).
const FULL: Record<string, Record<string, unknown>> = {
  'l7mp-ingress': {
    nameOverride: 'edge', fullnameOverride: 'edge-gw',
    image: { registry: 'registry.example.com:5000', repository: 'l7mp/gateway', tag: '1.2.3', pullPolicy: 'Always' },
    imagePullSecrets: [{ name: 'regcred' }],
    controller: { address: '0.0.0.0', port: 1235, token: { existingSecret: 'l7mp-token', secretKey: 'tok' } },
    metrics: { enabled: true, address: '0.0.0.0', port: 8090, path: '/metrics' },
    logLevel: 'warn', managed: false, hostNetwork: true, dnsPolicy: 'ClusterFirstWithHostNet',
    podLabels: { app: 'l7mp-ingress', tier: 'edge' }, podAnnotations: { 'example.com/a': 'b' },
    podSecurityContext: { seccompProfile: { type: 'RuntimeDefault' }, fsGroup: 65534 },
    securityContext: { allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, runAsNonRoot: true, runAsUser: 10001, runAsGroup: 10001, capabilities: { drop: ['ALL'], add: ['NET_BIND_SERVICE'] } },
    resources: { requests: { cpu: '250m', memory: '256Mi' }, limits: { cpu: '2', memory: '1Gi' } },
    nodeSelector: { 'node-role.kubernetes.io/edge': 'true' },
    tolerations: [{ key: 'edge', operator: 'Exists', effect: 'NoSchedule' }],
    affinity: { nodeAffinity: { requiredDuringSchedulingIgnoredDuringExecution: { nodeSelectorTerms: [{ matchExpressions: [{ key: 'kubernetes.io/os', operator: 'In', values: ['linux'] }] }] } } },
    priorityClassName: 'system-node-critical',
    updateStrategy: { type: 'RollingUpdate', rollingUpdate: { maxUnavailable: 2 } },
  },
  'l7mp-operator': {
    nameOverride: 'op', fullnameOverride: 'l7mp-op',
    image: { registry: 'ghcr.io', repository: 'l7mp/operator', digest: `sha256:${'a'.repeat(64)}`, pullPolicy: 'IfNotPresent' },
    imagePullSecrets: [{ name: 'regcred' }],
    watchNamespace: 'edge', logLevel: 'verbose', resyncSeconds: 60, healthPort: 9091,
    gateway: { containerName: 'l7mp', controllerPort: 1235, token: { existingSecret: 'l7mp-token', secretKey: 'tok' } },
    livenessProbe: { periodSeconds: 20, timeoutSeconds: 3, failureThreshold: 5 },
    readinessProbe: { periodSeconds: 3, timeoutSeconds: 1, failureThreshold: 2 },
    serviceAccount: { create: true, name: 'l7mp-operator-sa' }, rbac: { create: true },
    podLabels: { team: 'net' }, podAnnotations: { 'example.com/a': 'b' },
    podSecurityContext: { runAsNonRoot: true, runAsUser: 10001, runAsGroup: 10001, seccompProfile: { type: 'RuntimeDefault' } },
    securityContext: { allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: { drop: ['ALL'] } },
    resources: { requests: { cpu: '100m', memory: '128Mi' }, limits: { memory: '512Mi' } },
    nodeSelector: { 'kubernetes.io/os': 'linux' },
    tolerations: [{ key: 'ops', operator: 'Exists' }],
    affinity: { podAntiAffinity: { preferredDuringSchedulingIgnoredDuringExecution: [{ weight: 1, podAffinityTerm: { topologyKey: 'kubernetes.io/hostname', labelSelector: { matchLabels: { app: 'x' } } } }] } },
    priorityClassName: 'system-cluster-critical',
  },
  monitoring: {
    nameOverride: 'mon', fullnameOverride: 'l7mp-mon',
    gateway: { podLabels: { 'app.kubernetes.io/name': 'l7mp-ingress' }, namespace: 'edge', metricsPort: 'metrics', metricsPath: '/metrics' },
    podMonitor: { enabled: true, interval: '30s', scrapeTimeout: '5s', labels: { release: 'prom' } },
    serviceMonitor: { enabled: true, interval: '30s', scrapeTimeout: '5s', labels: { release: 'prom' } },
    grafanaDashboard: { enabled: true, labels: { grafana_dashboard: '1' }, annotations: { grafana_folder: 'l7mp' } },
  },
};

const SCENARIOS: Array<[string, string, Record<string, unknown>]> = [
  ['l7mp-ingress', 'defaults', {}],
  ['l7mp-ingress', 'every value set', FULL['l7mp-ingress']!],
  ['l7mp-ingress', 'offload on', { offload: { enabled: true, interfaces: ['eth0', 'eth1'] } }],
  ['l7mp-operator', 'defaults', {}],
  ['l7mp-operator', 'every value set', FULL['l7mp-operator']!],
  ['monitoring', 'defaults', {}],
  ['monitoring', 'every value set', FULL.monitoring!],
];

test('every chart renders with defaults, with every value set and with offload on; each object validates against the Kubernetes schemas and carries the standard labels', (t) => {
  for (const [dir, what, values] of SCENARIOS) {
    const c = chart(dir);
    const docs = c.render(values, { Name: 'rel', Namespace: 'ns' });
    t.true(docs.length >= 2, `${dir} (${what}) renders objects`);
    validate(t, docs);
    for (const d of docs) {
      const l = d.metadata.labels ?? {};
      const where = `${dir} (${what}): ${d.kind} ${d.metadata.name}`;
      t.is(l['helm.sh/chart'], `${c.meta.Name}-${c.meta.Version}`, where);
      t.is(l['app.kubernetes.io/managed-by'], 'Helm', where);
      t.is(l['app.kubernetes.io/instance'], 'rel', where);
      t.is(l['app.kubernetes.io/version'], APP_VERSION(dir), where);
      t.truthy(l['app.kubernetes.io/name'], where);
      t.true(d.metadata.name.length <= 63 && /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/.test(d.metadata.name), `${where}: a DNS-1123 name`);
    }
  }
});

test('images: the tag defaults to the chart appVersion (never a tag no registry has); registry, digest and pull secrets are values', (t) => {
  // The appVersion is the project's version: the tag a release of this repository pushes.
  const version = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')).version;
  for (const dir of ['l7mp-ingress', 'l7mp-operator', 'monitoring']) t.is(APP_VERSION(dir), version, `${dir}: appVersion is package.json's version`);
  const podSpec = (docs: Array<Record<string, any>>) => docs.find((d) => d.kind === 'DaemonSet' || d.kind === 'Deployment')!.spec.template.spec;
  t.is(podSpec(chart('l7mp-ingress').render()).containers[0].image, `l7mp/gateway:${APP_VERSION('l7mp-ingress')}`);
  t.is(podSpec(chart('l7mp-operator').render()).containers[0].image, `l7mp/operator:${APP_VERSION('l7mp-operator')}`);
  for (const dir of ['l7mp-ingress', 'l7mp-operator']) {
    const values = parse(fs.readFileSync(path.join(ROOT, 'charts', dir, 'values.yaml'), 'utf8'));
    t.is(values.image.tag, '', `${dir}: no hard-wired tag in values.yaml`);
    t.false(fs.readFileSync(path.join(ROOT, 'charts', dir, 'values.yaml'), 'utf8').includes(':local'));
  }
  const ing = podSpec(chart('l7mp-ingress').render(FULL['l7mp-ingress']));
  t.is(ing.containers[0].image, 'registry.example.com:5000/l7mp/gateway:1.2.3');
  t.is(ing.containers[0].imagePullPolicy, 'Always');
  t.deepEqual(ing.imagePullSecrets, [{ name: 'regcred' }]);
  const off = podSpec(chart('l7mp-ingress').render({ image: { registry: 'ghcr.io' }, offload: { enabled: true, interfaces: ['eth0'] } }));
  t.is(off.containers[0].image, `ghcr.io/l7mp/gateway-offload:${APP_VERSION('l7mp-ingress')}`, 'the offload image takes image.registry');
  const op = podSpec(chart('l7mp-operator').render(FULL['l7mp-operator']));
  t.is(op.containers[0].image, `ghcr.io/l7mp/operator@sha256:${'a'.repeat(64)}`);
  t.deepEqual(op.imagePullSecrets, [{ name: 'regcred' }]);
});

test('every value set reaches the manifests: names, resources, security contexts (seccomp RuntimeDefault by default), scheduling', (t) => {
  for (const dir of ['l7mp-ingress', 'l7mp-operator']) {
    const defaults = chart(dir).render().find((d) => d.kind === 'DaemonSet' || d.kind === 'Deployment')!;
    t.deepEqual(defaults.spec.template.spec.securityContext.seccompProfile, { type: 'RuntimeDefault' }, `${dir}: seccomp RuntimeDefault by default`);
    t.is(defaults.spec.template.spec.containers[0].securityContext.allowPrivilegeEscalation, false);
    t.deepEqual(defaults.spec.template.spec.containers[0].securityContext.capabilities.drop, ['ALL']);
    const v = FULL[dir]!;
    const docs = chart(dir).render(v);
    const w = docs.find((d) => d.kind === 'DaemonSet' || d.kind === 'Deployment')!;
    const spec = w.spec.template.spec;
    t.is(w.metadata.name, v.fullnameOverride);
    t.is(w.spec.selector.matchLabels['app.kubernetes.io/name'], v.nameOverride);
    t.deepEqual(spec.containers[0].resources, v.resources);
    t.deepEqual(spec.containers[0].securityContext, v.securityContext);
    t.deepEqual(spec.securityContext, v.podSecurityContext);
    t.deepEqual(spec.nodeSelector, v.nodeSelector);
    t.deepEqual(spec.tolerations, v.tolerations);
    t.deepEqual(spec.affinity, v.affinity);
    t.is(spec.priorityClassName, v.priorityClassName);
  }
  const cm = chart('l7mp-ingress').render(FULL['l7mp-ingress']).find((d) => d.kind === 'ConfigMap')!;
  t.is(cm.metadata.name, 'edge-gw');
  const mon = chart('monitoring').render(FULL.monitoring);
  t.deepEqual(mon.map((d) => d.metadata.name).sort(), ['l7mp-mon-dashboard', 'l7mp-mon-gateway', 'l7mp-mon-gateway', 'l7mp-mon-gateway-metrics']);
  // A release named like the chart is not doubled.
  t.is(chart('l7mp-operator').render({}, { Name: 'l7mp-operator', Namespace: 'x' }).find((d) => d.kind === 'Deployment')!.metadata.name, 'l7mp-operator');
});

test('values.schema.json: each chart\'s defaults validate; offload on without interfaces, typos and bad values are refused, and the template refuses offload without interfaces even when the schema is skipped', (t) => {
  for (const dir of ['l7mp-ingress', 'l7mp-operator', 'monitoring']) {
    const c = chart(dir);
    t.truthy(c.schema, `${dir} has a values.schema.json`);
    t.notThrows(() => c.check(c.values), `${dir}: values.yaml matches its schema`);
    t.throws(() => c.render({ imagePulSecrets: [] }), { instanceOf: SchemaFailure, message: /imagePulSecrets/ }, `${dir}: a misspelt value is refused`);
  }
  const ingress = chart('l7mp-ingress');
  for (const offload of [{ enabled: true }, { enabled: true, interfaces: [] }]) {
    const err = t.throws(() => ingress.render({ offload }), { instanceOf: SchemaFailure });
    t.regex(err!.message, /\/offload\/interfaces/);
  }
  t.notThrows(() => ingress.render({ offload: { enabled: false, interfaces: [] } }), 'interfaces are required only with offload on');
  const skipped = t.throws(() => ingress.render({ offload: { enabled: true } }, undefined, { skipSchemaValidation: true }), { instanceOf: TemplateFailure });
  t.regex(skipped!.message, /offload\.interfaces/);
  for (const bad of [
    { image: { pullPolicy: 'Sometimes' } }, { image: { digest: 'md5:abc' } }, { image: { tag: 'a b' } }, { controller: { port: 70000 } },
    { logLevel: 'chatty' }, { offload: { enabled: true, interfaces: ['an-interface-name-too-long'] } }, { imagePullSecrets: ['regcred'] },
    { resources: { requests: { cpu: true } } }, { nameOverride: 'Not_DNS' },
  ]) {
    t.throws(() => ingress.render(bad), { instanceOf: SchemaFailure }, JSON.stringify(bad));
  }
  t.throws(() => chart('l7mp-operator').render({ healthPort: 0 }), { instanceOf: SchemaFailure });
  t.throws(() => chart('monitoring').render({ podMonitor: { interval: '15 seconds' } }), { instanceOf: SchemaFailure });
});

test('l7mp-operator: liveness and readiness probes on the paths and port the operator serves', async (t) => {
  const docs = chart('l7mp-operator').render({ healthPort: 9091 });
  const c = docs.find((d) => d.kind === 'Deployment')!.spec.template.spec.containers[0];
  t.is(c.ports.find((p: { name: string }) => p.name === 'health').containerPort, 9091);
  t.is(c.env.find((e: { name: string }) => e.name === 'L7MP_HEALTH_PORT').value, '9091');
  t.is(c.livenessProbe.httpGet.port, 'health');
  t.is(c.readinessProbe.httpGet.port, 'health');
  // The operator's health server answers exactly those paths (a ready source: 200 on both).
  const srv = await startHealthServer({ health: () => ({ live: true, ready: true, reason: 'ok' }) }, 0, '127.0.0.1');
  t.teardown(() => srv.close());
  for (const probe of [c.livenessProbe, c.readinessProbe]) {
    t.is((await fetch(`http://127.0.0.1:${srv.port}${probe.httpGet.path}`)).status, 200, probe.httpGet.path);
  }
});
