// ClientNodeKubeApi (the @kubernetes/client-node implementation) against a
// loopback HTTP server that answers like the Kubernetes API server for the
// few requests the operator makes: discovery, list, watch (a stream of JSON
// lines), and merge patches of status and finalizers. It checks the wire
// shapes; the API server's semantics are the InMemoryKubeApiDouble's part.

import test from 'ava';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import * as k8s from '@kubernetes/client-node';
import { ClientNodeKubeApi } from '../src/kube/client-node.js';
import type { WatchEvent } from '../src/kube/api.js';

interface Seen { method: string; url: string; contentType: string | undefined; body: string }

async function fakeApiServer(t: { teardown(fn: () => unknown): void }) {
  const seen: Seen[] = [];
  const watches: http.ServerResponse[] = [];
  const target = { apiVersion: 'l7mp.io/v1', kind: 'Target', metadata: { name: 'a', namespace: 'default', resourceVersion: '7' }, spec: {} };
  const server = http.createServer((req, res) => {
    let body = '';
    req.on('data', (d) => { body += d; });
    req.on('end', () => {
      seen.push({ method: req.method!, url: req.url!, contentType: req.headers['content-type'], body });
      const url = new URL(req.url!, 'http://x');
      const json = (o: unknown) => { res.writeHead(200, { 'content-type': 'application/json' }); res.end(JSON.stringify(o)); };
      if (url.pathname === '/apis/l7mp.io/v1') {
        return json({ kind: 'APIResourceList', groupVersion: 'l7mp.io/v1', resources: [
          { name: 'targets', singularName: 'target', namespaced: true, kind: 'Target', verbs: ['get', 'list', 'watch', 'patch'] },
          { name: 'targets/status', singularName: '', namespaced: true, kind: 'Target', verbs: ['get', 'patch'] },
        ] });
      }
      if (url.pathname === '/api/v1') {
        return json({ kind: 'APIResourceList', groupVersion: 'v1', resources: [{ name: 'pods', singularName: 'pod', namespaced: true, kind: 'Pod', verbs: ['list', 'watch'] }] });
      }
      if (req.method === 'GET' && url.pathname === '/apis/l7mp.io/v1/targets' && url.searchParams.get('watch') === 'true') {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.write(`${JSON.stringify({ type: 'MODIFIED', object: { ...target, metadata: { ...target.metadata, resourceVersion: '8' } } })}\n`);
        watches.push(res);
        return;
      }
      if (req.method === 'GET' && url.pathname === '/apis/l7mp.io/v1/targets') return json({ kind: 'TargetList', apiVersion: 'l7mp.io/v1', metadata: { resourceVersion: '7' }, items: [target] });
      if (req.method === 'GET' && url.pathname === '/api/v1/namespaces/edge/pods') return json({ kind: 'PodList', apiVersion: 'v1', metadata: { resourceVersion: '3' }, items: [] });
      if (req.method === 'PATCH') return json(target);
      res.writeHead(404, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ kind: 'Status', code: 404, message: `not here: ${req.method} ${req.url}` }));
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  t.teardown(() => new Promise<void>((r) => { for (const w of watches) w.destroy(); server.closeAllConnections(); server.close(() => r()); }));
  const kc = new k8s.KubeConfig();
  kc.loadFromOptions({
    clusters: [{ name: 'fake', server: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, skipTLSVerify: true }],
    users: [{ name: 'u', token: 'secret-token' }],
    contexts: [{ name: 'fake', cluster: 'fake', user: 'u' }],
    currentContext: 'fake',
  });
  return { api: new ClientNodeKubeApi(kc), seen, endWatches: () => { for (const w of watches) w.end(); } };
}

test('ClientNodeKubeApi: list returns items with their kind and the collection resourceVersion', async (t) => {
  const { api, seen } = await fakeApiServer(t);
  const res = await api.list('Target', undefined);
  t.is(res.resourceVersion, '7');
  t.deepEqual(res.items.map((o) => `${o.kind} ${o.metadata.name}`), ['Target a']);
  t.true(seen.some((s) => s.method === 'GET' && s.url.startsWith('/apis/l7mp.io/v1/targets')));
  const pods = await api.list('Pod', 'edge');
  t.is(pods.resourceVersion, '3');
});

test('ClientNodeKubeApi: watch streams events from the resourceVersion and reports the end of the stream', async (t) => {
  const { api, seen, endWatches } = await fakeApiServer(t);
  const events: WatchEvent[] = [];
  let ended!: (e: Error) => void;
  const end = new Promise<Error>((r) => { ended = r; });
  let first!: () => void;
  const got = new Promise<void>((r) => { first = r; });
  const h = await api.watch('Target', undefined, '7', (e) => { events.push(e); first(); }, ended);
  await got;
  t.is(events[0]!.type, 'MODIFIED');
  t.is(events[0]!.object.metadata.resourceVersion, '8');
  const w = seen.find((s) => s.url.includes('watch=true'))!;
  t.regex(w.url, /resourceVersion=7/);
  endWatches();
  t.truthy(await end, 'the informer hears that the watch ended and relists');
  h.stop();
});

test('ClientNodeKubeApi: status and finalizers are merge patches on the right paths', async (t) => {
  const { api, seen } = await fakeApiServer(t);
  await api.patchStatus('Target', 'default', 'a', { conditions: [{ type: 'Ready', status: 'True' }] });
  await api.setFinalizers('Target', 'default', 'a', ['l7mp.io/gateway-cleanup'], '7');
  const patches = seen.filter((s) => s.method === 'PATCH');
  t.deepEqual(patches.map((p) => p.url), ['/apis/l7mp.io/v1/namespaces/default/targets/a/status', '/apis/l7mp.io/v1/namespaces/default/targets/a']);
  t.true(patches.every((p) => p.contentType === 'application/merge-patch+json'));
  t.deepEqual(JSON.parse(patches[0]!.body), { status: { conditions: [{ type: 'Ready', status: 'True' }] } });
  t.deepEqual(JSON.parse(patches[1]!.body), { metadata: { finalizers: ['l7mp.io/gateway-cleanup'], resourceVersion: '7' } });
});
