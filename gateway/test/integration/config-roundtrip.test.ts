// A config dump loads back (core/dumped-endpoints.ts): GET /api/v1/config,
// given to a fresh gateway as its static config or through POST
// /api/v1/config, gives the same configuration, endpoints and all, and the
// restored gateway routes as the one it was taken from.

import test from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import YAML from 'yaml';
import { api, freePort, startGw, tcpRoundTrip, tmpPath, waitFor } from './helpers.js';
import { tcpEchoUpstream } from './edge/edge-helpers.js';
import { startGateway } from '../../src/app.js';
import { silentLogger } from '../../src/observe/log.js';

/** The configuration in a dump: what a restore must reproduce (sessions are state, `version` is the build's). */
function configOf(dump: Record<string, unknown>): Record<string, unknown> {
  const { sessions: _s, admin, ...rest } = dump;
  const { version: _v, ...a } = admin as Record<string, unknown>;
  // An endpoint's `status` is its health as seen at the time: state too.
  const endpoints = (rest.endpoints as Record<string, unknown>[]).map(({ status: _st, ...e }) => e);
  return { admin: a, ...rest, endpoints };
}

async function dump(base: string): Promise<Record<string, unknown>> {
  const r = await api(base, 'GET', '/api/v1/config');
  if (r.status !== 200) throw new Error(r.text);
  return JSON.parse(r.text) as Record<string, unknown>;
}

test.serial('GET /api/v1/config loads back as a static config and through POST /api/v1/config, endpoints and all', async (t) => {
  t.timeout(60_000);
  const up = await tcpEchoUpstream(t);
  const [apiPort, pTcp, pUdp, pHttp] = [await freePort(), await freePort(), await freePort(), await freePort()];
  const controller = { name: 'controller', spec: { protocol: 'HTTP', address: '127.0.0.1', port: apiPort }, rules: [{ action: { route: { destination: { name: 'l7mp-controller', spec: { protocol: 'L7mpController' } } } } }] };
  const first = await startGateway({ config: { admin: { log_level: 'warn' }, listeners: [controller] }, logger: silentLogger() });
  let firstStopped = false;
  t.teardown(() => (firstStopped ? undefined : first.stop()));
  const base = `http://127.0.0.1:${apiPort}`;
  const ok = async (method: string, path: string, body?: unknown) => {
    const r = await api(base, method, path, body);
    t.is(r.status, 200, `${method} ${path}: ${r.text}`);
  };
  // Built over REST, as an operator would: objects inline and by name, endpoints added and removed.
  await ok('POST', '/api/v1/clusters', { cluster: {
    name: 'echo', spec: { protocol: 'TCP', port: up.port },
    loadbalancer: { policy: 'HashRing', key: 'IP/src_addr', panic_threshold: 20 },
    outlier_detection: { consecutive_failures: 3, base_ejection_time: 400, max_ejection_percent: 50 },
    endpoints: [{ name: 'e-a', spec: { address: '127.0.0.1' }, weight: 2 }, { spec: { address: '127.0.0.2' } }],
  } });
  await ok('POST', '/api/v1/clusters/echo/endpoints', { endpoint: { name: 'e-c', spec: { address: '127.0.0.3' }, weight: 0 } });
  await ok('POST', '/api/v1/clusters/echo/endpoints', { endpoint: { name: 'e-d', spec: { address: '127.0.0.4' } } });
  await ok('DELETE', '/api/v1/endpoints/e-c');
  await ok('POST', '/api/v1/clusters', { cluster: { name: 'empty', spec: { protocol: 'UDP', port: 9 } } });
  await ok('POST', '/api/v1/routes', { route: { name: 'to-echo', destination: 'echo', retry: { retry_on: 'always', num_retries: 2, timeout: 500 } } });
  await ok('POST', '/api/v1/listeners', { listener: {
    name: 'tcp-in', spec: { protocol: 'TCP', address: '127.0.0.1', port: pTcp }, options: { track: 5, max_sessions: 100 },
    rules: [
      { match: { op: 'starts', path: '/IP/src_addr', value: '127.0.0.9' }, action: { route: { destination: 'empty' } } },
      { action: { rewrite: [{ path: '/labels/tenant', value: 'a' }], route: 'to-echo' } },
    ],
  } });
  await ok('POST', '/api/v1/listeners', { listener: { name: 'udp-in', spec: { protocol: 'UDP', address: '127.0.0.1', port: pUdp }, rules: [{ action: { route: { destination: { name: 'udp-up', spec: { protocol: 'UDP', port: 9 }, endpoints: [{ spec: { address: '127.0.0.1' } }] }, ingress: [{ name: 'enc', spec: { protocol: 'JSONEncap' } }], egress: [{ name: 'dec', spec: { protocol: 'JSONDecap' } }] } } }] } });
  const rulelist = (JSON.parse((await api(base, 'GET', '/api/v1/listeners/tcp-in')).text) as { rules: string }).rules;
  await ok('POST', '/api/v1/listeners', { listener: { name: 'http-in', spec: { protocol: 'HTTP', address: '127.0.0.1', port: pHttp }, rules: rulelist } });
  await ok('POST', `/api/v1/rulelists/${rulelist}/rules/1`, { rule: { name: 'late', match: { op: 'test', path: '/labels/x', value: 'y' }, action: { route: 'to-echo' } } });
  t.is(String(await tcpRoundTrip(pTcp, Buffer.from('before'))), 'before');
  const before = await dump(base);
  const owners = (before.endpoints as { name: string; cluster: string }[]).map((e) => e.cluster).sort();
  t.deepEqual(owners, ['echo', 'echo', 'echo', 'udp-up'], 'every endpoint is listed with its cluster');
  t.true((before.endpoints as { name: string }[]).some((e) => e.name === 'e-d') && !(before.endpoints as { name: string }[]).some((e) => e.name === 'e-c'));
  await first.stop();
  firstStopped = true;

  // As a static config file (YAML, as an operator keeps one).
  const file = tmpPath('restored.yaml');
  fs.writeFileSync(file, YAML.stringify(before));
  const fromFile = await startGateway({ config: YAML.parse(fs.readFileSync(file, 'utf8')) as Record<string, unknown>, logger: silentLogger() });
  try {
    // The client's kept-alive connection went with the first gateway: the first try may find it closed.
    const restored = await waitFor(() => dump(base).catch(() => undefined), 5000, 'the restored gateway\'s API');
    t.deepEqual(configOf(restored), configOf(before), 'the static config restored from the dump dumps the same');
    t.is(String(await tcpRoundTrip(pTcp, Buffer.from('after'))), 'after', 'and routes the same');
  } finally {
    await fromFile.stop();
  }

  // Through POST /api/v1/config into a gateway that has only its API listener.
  const { base: base2 } = await startGw(t, {});
  const { admin: _a, sessions: _s, ...objects } = before;
  // Less the API listener and its objects: the gateway posted to has its own.
  const keep = (kind: string) => (objects[kind] as { name: string }[]).filter((o) => !/controller/.test(o.name));
  const posted = await api(base2, 'POST', '/api/v1/config', { ...objects, listeners: keep('listeners'), rulelists: keep('rulelists'), rules: keep('rules'), routes: keep('routes'), clusters: keep('clusters') });
  t.is(posted.status, 200, posted.text);
  const after = await dump(base2);
  const strip = (d: Record<string, unknown>) => {
    const c = configOf(d);
    for (const kind of ['listeners', 'rulelists', 'rules', 'routes', 'clusters']) c[kind] = (c[kind] as { name: string }[]).filter((o) => !/controller/.test(o.name));
    return c;
  };
  t.deepEqual(strip(after).endpoints, strip(before).endpoints);
  t.deepEqual(strip(after).clusters, strip(before).clusters);
  t.deepEqual(strip(after).routes, strip(before).routes);
  t.deepEqual(strip(after).rules, strip(before).rules);
  await waitFor(async () => (await tcpRoundTrip(pTcp, Buffer.from('posted')).catch(() => undefined))?.toString() === 'posted' || undefined, 5000, 'the posted listener to echo');
});

test('a dump whose endpoints do not name their cluster (l7mp\'s) is refused with the reason, and nothing changes', async (t) => {
  const { base } = await startGw(t, {});
  const before = await api(base, 'GET', '/api/v1/config');
  const r = await api(base, 'POST', '/api/v1/config', {
    clusters: [{ name: 'c', spec: { protocol: 'TCP', port: 9 }, endpoints: 2 }],
    endpoints: [{ name: 'c-EndPoint-0', spec: { address: '127.0.0.1' }, weight: 1 }, { name: 'c-EndPoint-1', spec: { address: '127.0.0.2' }, weight: 1 }],
  });
  t.is(r.status, 400);
  t.regex(r.text, /clusters\[0\]\.endpoints.*is a count \(2\).*name this cluster 0 times/);
  t.is((await api(base, 'GET', '/api/v1/config')).text, before.text);
});

test('endpoints taken from a dump\'s top-level list are confined as if given in their cluster: a path outside file_root is refused', async (t) => {
  const root = path.dirname(tmpPath('root.sock'));
  const { base } = await startGw(t, { admin: { file_root: root } });
  const before = await api(base, 'GET', '/api/v1/config');
  const dumped = (address: string) => ({
    clusters: [{ name: 'uds', spec: { protocol: 'UnixDomainSocket' }, endpoints: 1 }],
    endpoints: [{ name: 'uds-EndPoint-0', cluster: 'uds', spec: { address }, weight: 1 }],
  });
  const outside = await api(base, 'POST', '/api/v1/config', dumped('/run/outside-the-root.sock'));
  t.is(outside.status, 403, outside.text);
  t.regex(outside.text, /clusters\[0\]\.endpoints\[0\]/, 'the error names the endpoint where it landed');
  t.is((await api(base, 'GET', '/api/v1/config')).text, before.text, 'nothing changed');
  const inside = await api(base, 'POST', '/api/v1/config', dumped(path.join(root, 'up.sock')));
  t.is(inside.status, 200, inside.text);
});
