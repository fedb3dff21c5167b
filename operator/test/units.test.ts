// Pure parts of the operator: l7mp's Kubernetes form to the REST form, pod
// selectors, the desired configuration, and the InMemoryKubeApiDouble's
// list/watch contract that the operator's informers rely on.

import test from 'ava';
import { ConvertError, convertClusterShell, convertProtocolSpec, convertRule, type RefResolver } from '../src/convert.js';
import { DesiredState } from '../src/desired.js';
import type { KubeObject, WatchEvent } from '../src/kube/api.js';
import { InMemoryKubeApiDouble, KubeApiDoubleError } from '../src/kube/in-memory-double.js';
import { ownerOf } from '../src/names.js';
import { selects } from '../src/selector.js';

const refs: RefResolver = {
  cluster: (n) => `C:${n}`, rulelist: (n) => `RL:${n}`, route: (n) => `R:${n}`, inlineCluster: (c) => `inline:${Object.keys(c.spec)[0]}`,
};

test('convert: protocol-keyed specs, Sdtio refused with Stdio, nested transports, and the REST form passes through', (t) => {
  t.deepEqual(convertProtocolSpec({ UDP: { port: 53 } }, 's'), { protocol: 'UDP', port: 53 });
  // Stdio (l7mp's Sdtio) writes into the gateway's own stdout: static config only, so the operator refuses both spellings.
  for (const k of ['Stdio', 'Sdtio']) t.throws(() => convertProtocolSpec({ [k]: {} }, 's'), { instanceOf: ConvertError, message: /unknown protocol/ });
  t.deepEqual(convertProtocolSpec({ JSONSocket: { transport: { UDP: { port: 1 } } } }, 's'), { protocol: 'JSONSocket', transport: { protocol: 'UDP', port: 1 } });
  t.deepEqual(convertProtocolSpec({ protocol: 'TCP', port: 2 }, 's'), { protocol: 'TCP', port: 2 });
  t.throws(() => convertProtocolSpec({ UDP: {}, TCP: {} }, 'spec'), { instanceOf: ConvertError, message: /exactly one protocol key/ });
});

test('convert: rules with routeRef, destinationRef, clusterRef, inline clusters, valueStr and apply', (t) => {
  t.deepEqual(convertRule({
    match: { op: 'test', path: '/a', value: 1 },
    action: { rewrite: [{ path: '/x', valueStr: 'y' }, { path: '/z', value: { a: 1 } }], route: { destinationRef: 't', ingress: [{ clusterRef: 'i' }, { cluster: { spec: { Logger: {} } } }], retry: { retry_on: 'always' } }, apply: 'vs2' },
  }, 'r', refs), {
    match: { op: 'test', path: '/a', value: 1 },
    action: { rewrite: [{ path: '/x', value: 'y' }, { path: '/z', value: { a: 1 } }], route: { destination: 'C:t', ingress: ['C:i', 'inline:Logger'], retry: { retry_on: 'always' } }, apply: 'RL:vs2' },
  });
  t.deepEqual(convertRule({ action: { routeRef: 'r1' } }, 'r', refs), { action: { route: 'R:r1' } });
});

const pod = (labels: Record<string, string>, ns = 'default', uid = 'u1'): KubeObject => ({ metadata: { name: 'p', namespace: ns, labels, uid }, status: { podIP: '10.0.0.1', phase: 'Running' } });

test('selector: matchLabels, matchExpressions, matchFields, matchNamespace, matchService; an empty selector selects nothing', (t) => {
  const none = () => undefined;
  t.true(selects({ matchLabels: { app: 'a' } }, pod({ app: 'a', x: 'y' }), 'default', none));
  t.false(selects({ matchLabels: { app: 'a' } }, pod({ app: 'b' }), 'default', none));
  t.true(selects({ matchExpressions: [{ key: 'tier', operator: 'In', values: ['edge', 'core'] }, { key: 'old', operator: 'DoesNotExist' }] }, pod({ tier: 'edge' }), 'default', none));
  t.false(selects({ matchExpressions: [{ key: 'tier', operator: 'NotIn', values: ['edge'] }] }, pod({ tier: 'edge' }), 'default', none));
  t.true(selects({ matchFields: [{ key: 'status.podIP', operator: 'In', values: ['10.0.0.1'] }] }, pod({}), 'default', none));
  t.false(selects({ matchNamespace: 'edge', matchLabels: { app: 'a' } }, pod({ app: 'a' }), 'default', none));
  const ep: KubeObject = { metadata: { name: 'gw', namespace: 'default' }, subsets: [{ addresses: [{ ip: '10.0.0.1', targetRef: { uid: 'u1' } }] }] };
  t.true(selects({ matchService: 'gw' }, pod({}), 'default', (ns, n) => (ns === 'default' && n === 'gw' ? ep : undefined)));
  t.false(selects({ matchService: 'gw' }, pod({}, 'default', 'u2'), 'default', () => ep));
  t.false(selects({}, pod({ app: 'a' }), 'default', none));
  t.throws(() => selects({ matchExpressions: [{ key: 'a', operator: 'Gt', values: ['1'] }] }, pod({ a: '2' }), 'default', none), { message: /unsupported selector operator/ });
});

test('desired: names are namespaced and stable; an unchanged rule keeps its name when another changes; Rules merge by position', (t) => {
  const gw = pod({ app: 'gw' });
  const vs = (rules: unknown[]): KubeObject => ({ metadata: { name: 'v', namespace: 'ns1' }, spec: { selector: { matchLabels: { app: 'gw' } }, listener: { spec: { UDP: { port: 1 } }, rules } } });
  const r1 = { match: { a: 1 }, action: { route: { destination: { spec: { UDP: { port: 2 } }, endpoints: [{ spec: { address: '127.0.0.1' } }] } } } };
  const r2 = (port: number) => ({ action: { route: { destination: { spec: { UDP: { port } } } } } });
  const snap = (v: KubeObject, extra: KubeObject[] = []) => ({ virtualServices: [v], targets: [], rules: extra, pods: [gw], services: [], endpoints: [] });
  const a = new DesiredState(snap(vs([r1, r2(3)]))).forGateway(gw);
  const b = new DesiredState(snap(vs([r1, r2(4)]))).forGateway(gw);
  t.deepEqual([...a.listeners.keys()], ['/l7mp.io/v1/VirtualService/ns1/v']);
  const [a1, a2] = a.rulelists.get('/l7mp.io/v1/VirtualService/ns1/v')!.rules;
  const [b1, b2] = b.rulelists.get('/l7mp.io/v1/VirtualService/ns1/v')!.rules;
  t.is(a1, b1, 'the unchanged rule keeps its name');
  t.not(a2, b2, 'the changed rule gets a new name (added before the old one goes)');
  t.is(ownerOf(a2!), 'VirtualService/ns1/v');
  const rule: KubeObject = { metadata: { name: 'extra', namespace: 'ns1' }, spec: { selector: { matchLabels: { app: 'gw' } }, rulelist: 'v', position: 1, rule: r2(9) } };
  const c = new DesiredState(snap(vs([r1, r2(3)]), [rule])).forGateway(gw);
  const order = c.rulelists.get('/l7mp.io/v1/VirtualService/ns1/v')!.rules;
  t.is(order.length, 3);
  t.regex(order[1]!, /^\/l7mp\.io\/v1\/Rule\/ns1\/extra\/rule\//);
  const bad = new DesiredState(snap({ metadata: { name: 'v', namespace: 'ns1' }, spec: { selector: { matchLabels: { app: 'gw' } }, listener: { spec: { UDP: {}, TCP: {} }, rules: [] } } }));
  t.regex(bad.planErrors().get('VirtualService/ns1/v')![0]!, /exactly one protocol key/);
  t.is(bad.forGateway(gw).listeners.size, 0);
});

test('InMemoryKubeApiDouble: list returns a resourceVersion, watch replays from it in order, 410 after compaction, finalizers hold deletes', async (t) => {
  const kube = new InMemoryKubeApiDouble();
  kube.apply('Target', { metadata: { name: 'a', namespace: 'default' }, spec: { x: 1 } });
  const listed = await kube.list('Target', undefined);
  t.is(listed.items.length, 1);
  kube.apply('Target', { metadata: { name: 'b', namespace: 'default' }, spec: {} });
  kube.apply('Target', { metadata: { name: 'a', namespace: 'default' }, spec: { x: 2 } });
  const events: WatchEvent[] = [];
  let done!: () => void;
  const got = new Promise<void>((r) => { done = r; });
  const h = await kube.watch('Target', undefined, listed.resourceVersion, (e) => { events.push(e); if (events.length === 2) done(); }, () => undefined);
  await got;
  h.stop();
  t.deepEqual(events.map((e) => `${e.type} ${e.object.metadata.name}`), ['ADDED b', 'MODIFIED a']);
  t.is(events[1]!.object.metadata.generation, 2);

  await kube.patchStatus('Target', 'default', 'a', { conditions: [] });
  t.is(kube.get('Target', 'default', 'a')!.metadata.generation, 2, 'a status write is not a spec change');
  const cur = kube.get('Target', 'default', 'a')!;
  await t.throwsAsync(kube.setFinalizers('Target', 'default', 'a', ['f'], '1'), { instanceOf: KubeApiDoubleError, message: /stale/ });
  await kube.setFinalizers('Target', 'default', 'a', ['f'], cur.metadata.resourceVersion!);
  kube.delete('Target', 'default', 'a');
  const marked = kube.get('Target', 'default', 'a')!;
  t.truthy(marked.metadata.deletionTimestamp, 'held by its finalizer');
  await kube.setFinalizers('Target', 'default', 'a', [], marked.metadata.resourceVersion!);
  t.is(kube.get('Target', 'default', 'a'), undefined);

  kube.compact();
  const gone = await new Promise<Error>((resolve) => { void kube.watch('Target', undefined, '1', () => undefined, resolve); });
  t.is((gone as KubeApiDoubleError).status, 410);
});

test('desired: a Service address becomes its ready endpoints when the port reaches the pods unchanged, else its ClusterIP', (t) => {
  const gw = pod({ app: 'gw' });
  const target = (port: number): KubeObject => ({ metadata: { name: 't', namespace: 'default' }, spec: { selector: { matchLabels: { app: 'gw' } }, cluster: { spec: { UDP: { port } }, endpoints: [{ spec: { address: 'dns.kube-system.svc.cluster.local' } }, { spec: { address: 'example.com' } }] } } });
  const svc: KubeObject = { metadata: { name: 'dns', namespace: 'kube-system' }, spec: { clusterIP: '10.96.0.10', ports: [{ name: 'dns', port: 53 }, { name: 'alt', port: 54, targetPort: 5454 }] } };
  const ep: KubeObject = { metadata: { name: 'dns', namespace: 'kube-system' }, subsets: [{ addresses: [{ ip: '10.1.0.3' }, { ip: '10.1.0.2' }], notReadyAddresses: [{ ip: '10.1.0.9' }], ports: [{ name: 'dns', port: 53 }, { name: 'alt', port: 5454 }] }] };
  const addrs = (port: number) => new DesiredState({ virtualServices: [], targets: [target(port)], rules: [], pods: [gw], services: [svc], endpoints: [ep] })
    .forGateway(gw).clusters.get('/l7mp.io/v1/Target/default/t')!.endpoints.map((e) => `${e.name} ${e.spec.address}`);
  t.deepEqual(addrs(53), [
    '/l7mp.io/v1/Target/default/t/10.1.0.2 10.1.0.2', '/l7mp.io/v1/Target/default/t/10.1.0.3 10.1.0.3', '/l7mp.io/v1/Target/default/t/example.com example.com',
  ]);
  t.deepEqual(addrs(54).slice(0, 1), ['/l7mp.io/v1/Target/default/t/10.96.0.10 10.96.0.10'], 'a remapped port goes through the ClusterIP');
});

test('desired: a Target with linkedVirtualService takes the VirtualService listener spec and its gateways as endpoints', (t) => {
  const gw1: KubeObject = { metadata: { name: 'g1', namespace: 'default', labels: { app: 'gw' } }, status: { podIP: '10.0.0.1', phase: 'Running' } };
  const gw2: KubeObject = { metadata: { name: 'g2', namespace: 'default', labels: { app: 'gw' } }, status: { podIP: '10.0.0.2', phase: 'Running' } };
  const client: KubeObject = { metadata: { name: 'c', namespace: 'default', labels: { app: 'client' } }, status: { podIP: '10.0.1.1', phase: 'Running' } };
  const vs: KubeObject = { metadata: { name: 'v', namespace: 'default' }, spec: { selector: { matchLabels: { app: 'gw' } }, listener: { spec: { JSONSocket: { transport: { UDP: { port: 9001 } } } }, rules: [] } } };
  const tr: KubeObject = { metadata: { name: 'to-v', namespace: 'default' }, spec: { selector: { matchLabels: { app: 'client' } }, linkedVirtualService: 'v' } };
  const d = new DesiredState({ virtualServices: [vs], targets: [tr], rules: [], pods: [gw1, gw2, client], services: [], endpoints: [] }).forGateway(client);
  const c = d.clusters.get('/l7mp.io/v1/Target/default/to-v')!;
  t.deepEqual(c.spec, { protocol: 'JSONSocket', transport: { protocol: 'UDP', port: 9001 } });
  t.deepEqual(c.endpoints.map((e) => e.spec.address), ['10.0.0.1', '10.0.0.2']);
  t.is(d.listeners.size, 0, 'the VirtualService does not select the client pod');
});

test('a Target cluster passes its upstream health settings through to the gateway', (t) => {
  const health_check = { interval: 1000, path: '/healthz', expect: [200] };
  const outlier_detection = { consecutive_failures: 3 };
  const dns = { interval: 5000 };
  const shell = convertClusterShell({ spec: { protocol: 'HTTP', port: 80 }, health_check, outlier_detection, dns }, 'spec.cluster');
  t.deepEqual(shell.dns, dns);
  t.deepEqual(shell.health_check, health_check);
  t.deepEqual(shell.outlier_detection, outlier_detection);
  t.is(convertClusterShell({ spec: { protocol: 'TCP', port: 80 } }, 'spec.cluster').health_check, undefined);
});
