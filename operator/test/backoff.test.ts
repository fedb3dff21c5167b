// Per-resource backoff: a resource a gateway keeps rejecting waits between its
// retries, and never delays the others. Real gateway process on loopback, the
// Kubernetes side in the InMemoryKubeApiDouble (see harness.ts).

import test from 'ava';
import { KeyedBackoff } from '../src/backoff.js';
import { startHealthServer } from '../src/health.js';
import { InMemoryKubeApiDouble } from '../src/kube/in-memory-double.js';
import { Operator } from '../src/operator.js';
import type { ReconcileResult } from '../src/reconcile.js';
import { condition, freePort, gatewayPod, resource, squatUdp, startGatewayProcess, startOperator, waitFor } from './harness.js';

const SEL = { matchLabels: { app: 'l7mp-ingress' } };

/** Until no pass has run for 300 ms: the operator has settled, and only its retry timer is left. */
async function settled(op: Operator): Promise<void> {
  await waitFor(async () => {
    const n = op.passes;
    await new Promise((r) => setTimeout(r, 300));
    return op.passes === n;
  }, 3000, 'the operator to settle');
}
const BAD = 'VirtualService/default/bad';

test('KeyedBackoff: exponential per key, capped, forgotten on success, due at once when the key\'s inputs change', (t) => {
  const b = new KeyedBackoff(100, 1000);
  t.true(b.due('a', 'x', 0));
  t.deepEqual([1, 2, 3, 4, 5, 6].map(() => b.failed('a', 'x', 0)), [100, 200, 400, 800, 1000, 1000]);
  t.false(b.due('a', 'x', 999));
  t.true(b.due('a', 'x', 1000));
  t.true(b.due('a', 'y', 0), 'changed inputs: due now');
  t.true(b.due('b', 'x', 0), 'another key is not affected');
  t.is(b.nextDue(), 1000);
  t.is(b.failed('a', 'y', 0), 1000, 'the failure count survives a change of inputs');
  b.succeeded('a');
  t.is(b.nextDue(), undefined);
  t.is(b.failed('a', 'y', 0), 100, 'a success resets the count');
  b.retain((k) => k !== 'a');
  t.is(b.get('a'), undefined);
});

test.serial('a resource the gateway keeps rejecting does not delay a new one: it is applied at once, the failing one waits for its backoff (InMemoryKubeApiDouble)', async (t) => {
  const gw = await startGatewayProcess(t);
  const passes: ReconcileResult[] = [];
  // A 10 s first retry: before per-resource backoff, every event in those 10 s waited for it.
  const { kube, op } = await startOperator(t, { retryMs: 10_000, onPass: (p) => { const r = p.gateways.get('default/gw-0'); if (r) passes.push(r); } });
  const { port, release } = await squatUdp(t);
  kube.apply('Pod', gatewayPod('gw-0', gw));
  kube.apply('VirtualService', resource('VirtualService', 'bad', { selector: SEL, listener: { spec: { UDP: { port, address: '127.0.0.1' } }, rules: [] } }));
  await waitFor(() => condition(kube, 'VirtualService', 'bad', 'Degraded')?.status === 'True', 10_000, 'the bad VirtualService Degraded');
  await settled(op);
  const attemptsOfBad = () => passes.filter((r) => r.errors.has(BAD)).length;
  const before = attemptsOfBad();

  // A new, valid Target while the bad one backs off: on the gateway at once (the bound leaves room for a loaded machine), not after the retry.
  const started = Date.now();
  kube.apply('Target', resource('Target', 'fine', { selector: SEL, cluster: { spec: { UDP: { port: 9 } }, endpoints: [{ spec: { address: '127.0.0.1' } }] } }));
  await waitFor(() => gw.client.getCluster('/l7mp.io/v1/Target/default/fine').catch(() => undefined), 6000, 'the new Target on the gateway while another resource backs off');
  const took = Date.now() - started;
  t.true(took < 6000, `applied after ${took} ms`);
  await waitFor(() => condition(kube, 'Target', 'fine', 'Ready')?.status === 'True', 6000, 'the Target Ready');
  // That pass left the failing resource alone: no second attempt before its backoff ran out.
  t.is(attemptsOfBad(), before, 'the bad resource was not retried before its backoff');
  t.true(passes.some((r) => r.deferred.has(BAD)), 'the pass that applied the Target deferred the bad resource');
  t.is(condition(kube, 'VirtualService', 'bad', 'Degraded')?.status, 'True', 'its status still says why');

  // The port is free again: the retry (after its 10 s) applies it.
  await release();
  await waitFor(() => condition(kube, 'VirtualService', 'bad', 'Ready')?.status === 'True', 20_000, 'the bad VirtualService Ready after its retry');
  t.truthy(await gw.client.getListener('/l7mp.io/v1/VirtualService/default/bad'));
});

test.serial('an unreachable gateway backs off on its own: a resource for another gateway is applied at once (InMemoryKubeApiDouble)', async (t) => {
  const gw = await startGatewayProcess(t);
  const attemptsOnDead = new Set<ReconcileResult>();
  const { kube, op } = await startOperator(t, { retryMs: 10_000, onPass: (p) => { const r = p.gateways.get('default/gw-dead'); if (r) attemptsOnDead.add(r); } });
  // A gateway pod whose REST port nothing listens on.
  kube.apply('Pod', gatewayPod('gw-dead', { controllerPort: await freePort() }, { labels: { app: 'dead' } }));
  kube.apply('Pod', gatewayPod('gw-0', gw));
  kube.apply('Target', resource('Target', 'on-dead', { selector: { matchLabels: { app: 'dead' } }, cluster: { spec: { UDP: { port: 9 } }, endpoints: [{ spec: { address: '127.0.0.1' } }] } }));
  await waitFor(() => /unreachable/.test(condition(kube, 'Target', 'on-dead', 'Degraded')?.message ?? ''), 10_000, 'the Target on the dead gateway Degraded');
  await settled(op);
  const attempts = attemptsOnDead.size;

  const started = Date.now();
  kube.apply('Target', resource('Target', 'fine', { selector: SEL, cluster: { spec: { UDP: { port: 9 } }, endpoints: [{ spec: { address: '127.0.0.1' } }] } }));
  await waitFor(() => gw.client.getCluster('/l7mp.io/v1/Target/default/fine').catch(() => undefined), 6000, 'the new Target on the live gateway while the dead one backs off');
  t.true(Date.now() - started < 6000);
  await waitFor(() => condition(kube, 'Target', 'fine', 'Ready')?.status === 'True', 6000, 'the Target Ready');
  t.is(attemptsOnDead.size, attempts, 'the dead gateway was not tried again before its backoff');
  t.regex(condition(kube, 'Target', 'on-dead', 'Degraded')!.message, /unreachable/, 'its resource still says why');
});

test.serial('a changed spec of a resource that backs off is tried at once (InMemoryKubeApiDouble)', async (t) => {
  const gw = await startGatewayProcess(t);
  const { kube, op } = await startOperator(t, { retryMs: 30_000, retryCapMs: 30_000 });
  const { port } = await squatUdp(t);
  kube.apply('Pod', gatewayPod('gw-0', gw));
  kube.apply('VirtualService', resource('VirtualService', 'bad', { selector: SEL, listener: { spec: { UDP: { port, address: '127.0.0.1' } }, rules: [] } }));
  await waitFor(() => condition(kube, 'VirtualService', 'bad', 'Degraded')?.status === 'True', 10_000, 'Degraded');
  await settled(op);
  // The user fixes the port: no 30 s wait.
  const free = await freePort();
  kube.apply('VirtualService', resource('VirtualService', 'bad', { selector: SEL, listener: { spec: { UDP: { port: free, address: '127.0.0.1' } }, rules: [] } }));
  const l = await waitFor(() => gw.client.getListener('/l7mp.io/v1/VirtualService/default/bad').catch(() => undefined), 8000, 'the fixed VirtualService applied at once');
  t.is(l.spec.port, free);
});

test.serial('operator probes: /readyz 503 until the caches are listed and a pass ran, then 200; /healthz 200; nothing else served', async (t) => {
  const fresh = new Operator({ kube: new InMemoryKubeApiDouble(), resyncMs: 60_000 });
  const srv = await startHealthServer(fresh, 0, '127.0.0.1');
  t.teardown(() => { fresh.stop(); return srv.close(); });
  const get = (p: string, method = 'GET') => fetch(`http://127.0.0.1:${srv.port}${p}`, { method }).then(async (r) => ({ status: r.status, body: await r.text() }));
  const notYet = await get('/readyz');
  t.is(notYet.status, 503);
  t.regex(notYet.body, /listing/);
  t.is((await get('/healthz')).status, 200);
  await fresh.start();
  await waitFor(async () => (await get('/readyz')).status === 200, 5000, '/readyz 200');
  t.is((await get('/metrics')).status, 404);
  t.is((await get('/readyz', 'POST')).status, 405);
  fresh.stop();
  t.is((await get('/healthz')).status, 503, 'a stopped operator is not live');
});
