// REST API: the seed README's calls, CRUD for every object type, recursive
// deletes, and bad input that must leave the configuration untouched.

import test from 'ava';
import fs from 'node:fs';
import { api, freePort, startTestGateway, tmpPath, udpBound, type TestGateway } from './helpers.js';

const yaml = 'text/x-yaml';

async function withGateway(t: { teardown(fn: () => Promise<void> | void): void }, extra: Record<string, unknown> = {}): Promise<TestGateway> {
  const g = await startTestGateway(extra);
  t.teardown(() => g.stop());
  return g;
}

test('GET /api/v1/config dumps the controller listener with l7mp implicit names', async (t) => {
  const g = await withGateway(t);
  const r = await api(g.base, 'GET', '/api/v1/config');
  t.is(r.status, 200);
  t.deepEqual(Object.keys(r.body).sort(), ['admin', 'clusters', 'endpoints', 'listeners', 'routes', 'rulelists', 'rules', 'sessions']);
  t.is(r.body.listeners[0].name, 'controller-listener');
  t.is(r.body.listeners[0].rules, 'controller-listener-RuleList-0');
  t.is(r.body.rules[0].name, 'controller-listener-RuleList-0-Rule-0');
  t.is(r.body.routes[0].name, 'controller-listener-RuleList-0-Rule-0-Route-0');
  t.deepEqual(r.body.routes[0].retry, { retry_on: 'never', num_retries: 1, timeout: 2000 });
});

test('GET /api/v1/sessions lists the session carrying the request itself', async (t) => {
  const g = await withGateway(t);
  const r = await api(g.base, 'GET', '/api/v1/sessions');
  t.is(r.status, 200);
  t.is(r.body.length, 1);
  t.regex(r.body[0].name, /^HTTP:127\.0\.0\.1-127\.0\.0\.1:\d+-\d+$/);
  t.is(r.body[0].source.origin, 'controller-listener');
  t.is(r.body[0].metadata.HTTP.method, 'GET');
  t.is(r.body[0].metadata.HTTP.url.path, '/api/v1/sessions');
});

test('seed README walkthrough (non-WebSocket parts) with YAML bodies', async (t) => {
  const g = await withGateway(t);
  const udpPort = await freePort();
  let r = await api(g.base, 'POST', '/api/v1/clusters', `cluster:
  name: ws-cluster
  spec: { protocol: "WebSocket", port: 16000 }
  endpoints:
    - spec: { address:  "127.0.0.1" }
`, yaml);
  t.is(r.status, 200, r.text);
  r = await api(g.base, 'GET', '/api/v1/endpoints/ws-cluster-EndPoint-0');
  t.deepEqual(r.body, { name: 'ws-cluster-EndPoint-0', spec: { address: '127.0.0.1' }, weight: 1 });

  r = await api(g.base, 'POST', '/api/v1/clusters', `cluster:
  name: logger-cluster
  spec: { protocol: "Logger" }
`, yaml);
  t.is(r.status, 200);
  t.deepEqual(r.body, { status: 200, message: 'OK' });

  // References by name are late-bound: a route may name a cluster that does not exist yet.
  r = await api(g.base, 'POST', '/api/v1/routes', { route: { name: 'late', destination: 'not-yet' } });
  t.is(r.status, 200, r.text);
  r = await api(g.base, 'GET', '/api/v1/routes/late?recursive=true');
  t.is(r.body.destination, 'not-yet:<STALE>');
  t.is((await api(g.base, 'DELETE', '/api/v1/routes/late')).status, 200);
  r = await api(g.base, 'POST', '/api/v1/listeners', `listener:
  name: udp-listener
  spec: { protocol: UDP, port: ${udpPort}, connect: {port: 15001} }
  rules:
    - action:
        route:
          destination: ws-cluster
          ingress:
            - spec: { protocol: Logger }
          retry: {retry_on: always, num_retries: 3, timeout: 2000}
`, yaml);
  t.is(r.status, 200, r.text);
  r = await api(g.base, 'GET', '/api/v1/config');
  const clusters = r.body.clusters.map((c: { name: string }) => c.name);
  t.true(clusters.includes('udp-listener-RuleList-1-Rule-1-Route-1-ingress-Cluster-0'), clusters.join(','));
  const route = r.body.routes.find((x: { name: string }) => x.name === 'udp-listener-RuleList-1-Rule-1-Route-1');
  t.deepEqual(route, {
    name: 'udp-listener-RuleList-1-Rule-1-Route-1',
    destination: 'ws-cluster',
    ingress: ['udp-listener-RuleList-1-Rule-1-Route-1-ingress-Cluster-0'],
    egress: [],
    retry: { retry_on: 'always', num_retries: 3, timeout: 2000 },
  });
  r = await api(g.base, 'GET', '/api/v1/routes/udp-listener-RuleList-1-Rule-1-Route-1?recursive=true');
  t.is(r.body.destination.name, 'ws-cluster');
  t.is(r.body.ingress[0].spec.protocol, 'Logger');

  // The same port again: 409, nothing changes.
  const before = (await api(g.base, 'GET', '/api/v1/config')).text;
  r = await api(g.base, 'POST', '/api/v1/listeners', `listener:
  name: udp-listener-with-no-embedded-cluster-def
  spec: { protocol: UDP, port: ${udpPort}, connect: {port: 15001} }
  rules:
    - action:
        route:
          destination: ws-cluster
          ingress:
            - logger-cluster
          retry: {retry_on: always, num_retries: 3, timeout: 2000}
`, yaml);
  t.is(r.status, 409);
  t.is(r.body.code, 'BIND_FAILED');
  t.is((await api(g.base, 'GET', '/api/v1/config')).text, before);

  // Plain delete leaves the embedded objects behind, as l7mp does.
  r = await api(g.base, 'DELETE', '/api/v1/listeners/udp-listener');
  t.is(r.status, 200);
  r = await api(g.base, 'GET', '/api/v1/rulelists/udp-listener-RuleList-1');
  t.is(r.status, 200);
  await api(g.base, 'DELETE', '/api/v1/rulelists/udp-listener-RuleList-1?recursive=true');
  r = await api(g.base, 'GET', '/api/v1/config');
  t.false(r.body.rules.some((x: { name: string }) => x.name.startsWith('udp-listener')));
  t.false(r.body.routes.some((x: { name: string }) => x.name.startsWith('udp-listener')));
  t.false(r.body.clusters.some((x: { name: string }) => x.name.startsWith('udp-listener')));
  t.false(await udpBound(udpPort));

  // The named alternative now binds; recursive delete removes everything implicit but keeps logger-cluster.
  r = await api(g.base, 'POST', '/api/v1/listeners', {
    listener: {
      name: 'udp-listener-with-no-embedded-cluster-def',
      spec: { protocol: 'UDP', port: udpPort, connect: { port: 15001 } },
      rules: [{ action: { route: { destination: 'ws-cluster', ingress: ['logger-cluster'], retry: { retry_on: 'always', num_retries: 3, timeout: 2000 } } } }],
    },
  });
  t.is(r.status, 200, r.text);
  r = await api(g.base, 'DELETE', '/api/v1/listeners/udp-listener-with-no-embedded-cluster-def?recursive=true');
  t.is(r.status, 200);
  r = await api(g.base, 'GET', '/api/v1/config');
  t.deepEqual(r.body.listeners.map((l: { name: string }) => l.name), ['controller-listener']);
  t.deepEqual(r.body.clusters.map((c: { name: string }) => c.name).sort(), ['controller', 'logger-cluster', 'ws-cluster']);
  t.is(r.body.rulelists.length, 1);
  r = await api(g.base, 'DELETE', '/api/v1/clusters/logger-cluster');
  t.is(r.status, 200);
  r = await api(g.base, 'DELETE', '/api/v1/clusters/ws-cluster?recursive=true');
  t.is(r.status, 200);
  t.deepEqual((await api(g.base, 'GET', '/api/v1/config')).body.endpoints, []);
});

test('cluster with weighted endpoints and ConsistentHash as in the README', async (t) => {
  const g = await withGateway(t);
  const r = await api(g.base, 'POST', '/api/v1/clusters', `cluster:
  name: tcp-cluster-with-sticky-sessions
  spec: { protocol: "TCP", port: 16000 }
  endpoints:
    - spec: { address:  "127.0.0.1" }
      weight: 3
    - spec: { address:  "127.0.0.2" }
    - spec: { address:  "127.0.0.3" }
  loadbalancer:
    policy: "ConsistentHash"
    key: "IP/src_addr"
`, yaml);
  t.is(r.status, 200, r.text);
  const c = await api(g.base, 'GET', '/api/v1/clusters/tcp-cluster-with-sticky-sessions?recursive=true');
  t.is(c.body.endpoints.length, 3);
  t.deepEqual(c.body.endpoints.map((e: { weight: number }) => e.weight), [3, 1, 1]);
  t.deepEqual(c.body.loadbalancer, { policy: 'ConsistentHash', key: 'IP/src_addr' });
  const nr = await api(g.base, 'GET', '/api/v1/clusters/tcp-cluster-with-sticky-sessions');
  t.is(nr.body.endpoints, 3);
});

test('CRUD for clusters, endpoints, rulelists, rules (by name and position), routes', async (t) => {
  const g = await withGateway(t);
  let r = await api(g.base, 'POST', '/api/v1/clusters', { cluster: { name: 'c1', spec: { protocol: 'TCP', port: 9 }, endpoints: [{ name: 'e1', spec: { address: '127.0.0.1' } }] } });
  t.is(r.status, 200, r.text);
  r = await api(g.base, 'POST', '/api/v1/clusters/c1/endpoints', { endpoint: { name: 'e2', spec: { address: '127.0.0.2' }, weight: 2 } });
  t.is(r.status, 200, r.text);
  r = await api(g.base, 'POST', '/api/v1/clusters/c1/endpoints', { endpoint: { spec: { address: 'localhost' } } });
  t.is(r.status, 200, r.text);
  r = await api(g.base, 'GET', '/api/v1/clusters/c1/endpoints');
  t.deepEqual(r.body.map((e: { name: string }) => e.name), ['e1', 'e2', 'c1-EndPoint-0']);
  r = await api(g.base, 'GET', '/api/v1/endpoints/e2');
  t.deepEqual(r.body, { name: 'e2', spec: { address: '127.0.0.2' }, weight: 2 });
  r = await api(g.base, 'DELETE', '/api/v1/endpoints/e2');
  t.is(r.status, 200);
  r = await api(g.base, 'GET', '/api/v1/endpoints/e2');
  t.is(r.status, 404);

  r = await api(g.base, 'POST', '/api/v1/routes', { route: { name: 'rt1', destination: 'c1', ingress: [{ spec: { protocol: 'Echo' } }] } });
  t.is(r.status, 200, r.text);
  r = await api(g.base, 'GET', '/api/v1/routes/rt1');
  t.deepEqual(r.body.ingress, ['rt1-ingress-Cluster-0']);
  r = await api(g.base, 'POST', '/api/v1/rules', { rule: { name: 'r1', match: { op: 'starts', path: '/HTTP/url/path', value: '/admin' }, action: { route: 'rt1' } } });
  t.is(r.status, 200, r.text);
  r = await api(g.base, 'POST', '/api/v1/rules', { rule: { name: 'r2', action: { route: 'rt1', rewrite: [{ path: '/labels/x', value: 1 }] } } });
  t.is(r.status, 200, r.text);
  r = await api(g.base, 'POST', '/api/v1/rulelists', { rulelist: { name: 'rl1', rules: ['r1', { name: 'r-inline', action: { route: 'rt1' } }] } });
  t.is(r.status, 200, r.text);
  r = await api(g.base, 'POST', '/api/v1/rulelists/rl1/rules/1', { rule: 'r2' });
  t.is(r.status, 200, r.text);
  r = await api(g.base, 'GET', '/api/v1/rulelists/rl1');
  t.deepEqual(r.body.rules, ['r1', 'r2', 'r-inline']);
  r = await api(g.base, 'GET', '/api/v1/rulelists/rl1/rules/1');
  t.is(r.body.name, 'r2');
  r = await api(g.base, 'GET', '/api/v1/rulelists/rl1/rules/0?recursive=true');
  t.is(r.body.action.route.name, 'rt1');
  t.is(r.body.action.route.destination.name, 'c1');
  r = await api(g.base, 'POST', '/api/v1/rulelists/rl1/rules/9', { rule: 'r2' });
  t.is(r.status, 400);
  r = await api(g.base, 'DELETE', '/api/v1/rulelists/rl1/rules/r2');
  t.is(r.status, 200);
  r = await api(g.base, 'DELETE', '/api/v1/rulelists/rl1/rules/5');
  t.is(r.status, 404);
  r = await api(g.base, 'GET', '/api/v1/rulelists/rl1');
  t.deepEqual(r.body.rules, ['r1', 'r-inline']);
  t.is((await api(g.base, 'GET', '/api/v1/rules/r2')).status, 200, 'unlinking keeps the rule');

  // Recursive rulelist delete removes inline rules only (l7mp also removed named ones).
  r = await api(g.base, 'DELETE', '/api/v1/rulelists/rl1?recursive=true');
  t.is(r.status, 200);
  t.is((await api(g.base, 'GET', '/api/v1/rules/r1')).status, 200);
  t.is((await api(g.base, 'GET', '/api/v1/rules/r-inline')).status, 404);

  // Recursive route delete removes the inline Echo cluster but not the named destination.
  r = await api(g.base, 'DELETE', '/api/v1/routes/rt1?recursive=true');
  t.is(r.status, 200);
  t.is((await api(g.base, 'GET', '/api/v1/clusters/rt1-ingress-Cluster-0')).status, 404);
  t.is((await api(g.base, 'GET', '/api/v1/clusters/c1')).status, 200);
  for (const [kind, name] of [['rules', 'r1'], ['rules', 'r2'], ['clusters', 'c1']] as const) {
    r = await api(g.base, 'DELETE', `/api/v1/${kind}/${name}`);
    t.is(r.status, 200, `${kind}/${name}`);
    r = await api(g.base, 'DELETE', `/api/v1/${kind}/${name}`);
    t.is(r.status, 404, `${kind}/${name} again`);
  }
  t.is((await api(g.base, 'GET', '/api/v1/endpoints/e1')).status, 404, 'cluster delete removes its endpoints');
});

test('names with slashes work URL-encoded (operator-style names)', async (t) => {
  const g = await withGateway(t);
  const name = '/l7mp.io/v1/Target/default/dns';
  let r = await api(g.base, 'POST', '/api/v1/clusters', { cluster: { name, spec: { protocol: 'UDP', port: 53 }, endpoints: [{ spec: { address: '127.0.0.1' } }] } });
  t.is(r.status, 200, r.text);
  r = await api(g.base, 'GET', `/api/v1/clusters/${encodeURIComponent(name)}`);
  t.is(r.body.name, name);
  r = await api(g.base, 'DELETE', `/api/v1/clusters/${encodeURIComponent(name)}`);
  t.is(r.status, 200);
});

test('unknown operation answers 404 in l7mp form', async (t) => {
  const g = await withGateway(t);
  const r = await api(g.base, 'PUT', '/api/v1/listeners/x', {});
  t.is(r.status, 404);
  t.is(r.body.content, 'Unknown API operation');
});

interface BadCase {
  title: string;
  method: string;
  path: string;
  body: string;
  type: string;
  status: number;
  content: RegExp;
  field?: string;
}

test('bad input gets its status and message and leaves the configuration byte-identical', async (t) => {
  const g = await withGateway(t, {
    clusters: [{ name: 'existing', spec: { protocol: 'Echo' } }],
  });
  const busy = await freePort();
  const logfile = tmpPath('x.log');
  fs.writeFileSync(logfile, '');
  const cases: BadCase[] = [
    { title: 'malformed JSON', method: 'POST', path: '/api/v1/clusters', body: '{"cluster": {', type: 'application/json', status: 400, content: /Invalid JSON format/ },
    { title: 'malformed YAML', method: 'POST', path: '/api/v1/clusters', body: 'cluster:\n  name: [x\n  spec: {', type: yaml, status: 400, content: /Invalid YAML format/ },
    { title: 'wrong type: port as string', method: 'POST', path: '/api/v1/clusters', body: JSON.stringify({ cluster: { name: 'c', spec: { protocol: 'TCP', port: 'abc' } } }), type: 'application/json', status: 400, content: /port/, field: 'cluster.spec.port' },
    { title: 'wrong type: rules as number', method: 'POST', path: '/api/v1/listeners', body: JSON.stringify({ listener: { name: 'l', spec: { protocol: 'TCP', port: busy }, rules: 5 } }), type: 'application/json', status: 400, content: /rules/ },
    { title: 'unknown protocol', method: 'POST', path: '/api/v1/clusters', body: JSON.stringify({ cluster: { name: 'c', spec: { protocol: 'Carrier-Pigeon' } } }), type: 'application/json', status: 400, content: /unknown protocol "Carrier-Pigeon"/, field: 'cluster.spec.protocol' },
    { title: 'bad retry policy', method: 'POST', path: '/api/v1/routes', body: JSON.stringify({ route: { name: 'r', destination: 'existing', retry: { retry_on: 'sometimes' } } }), type: 'application/json', status: 400, content: /retry_on/ },
    { title: 'bad predicate operator', method: 'POST', path: '/api/v1/rules', body: JSON.stringify({ rule: { name: 'r', match: { op: 'frobnicate', path: '/a', value: 1 }, action: { route: 'x' } } }), type: 'application/json', status: 400, content: /frobnicate/ },
    { title: 'duplicate name', method: 'POST', path: '/api/v1/clusters', body: JSON.stringify({ cluster: { name: 'existing', spec: { protocol: 'Echo' } } }), type: 'application/json', status: 409, content: /Cluster "existing" already defined/ },
    { title: 'duplicate name inside one request', method: 'POST', path: '/api/v1/listeners', body: JSON.stringify({ listener: { name: 'l2', spec: { protocol: 'TCP', port: busy }, rules: [{ name: 'dup', action: { route: 'x' } }, { name: 'dup', action: { route: 'y' } }] } }), type: 'application/json', status: 409, content: /Rule "dup" already defined/ },
    { title: 'port already in use', method: 'POST', path: '/api/v1/listeners', body: JSON.stringify({ listener: { name: 'l3', spec: { protocol: 'TCP', port: g.port }, rules: [{ action: { route: { destination: { spec: { protocol: 'Echo' } } } } }] } }), type: 'application/json', status: 409, content: /address already in use/ },
    { title: 'unknown rulelist for a rule insert', method: 'POST', path: '/api/v1/rulelists/nope/rules/0', body: JSON.stringify({ rule: 'x' }), type: 'application/json', status: 404, content: /No such rule list/ },
    { title: 'endpoint for an unknown cluster', method: 'POST', path: '/api/v1/clusters/nope/endpoints', body: JSON.stringify({ endpoint: { spec: { address: '127.0.0.1' } } }), type: 'application/json', status: 404, content: /Unknown cluster "nope"/ },
    { title: 'endpoint without address', method: 'POST', path: '/api/v1/clusters', body: JSON.stringify({ cluster: { name: 'u', spec: { protocol: 'UDP', port: 5 }, endpoints: [{ spec: {} }] } }), type: 'application/json', status: 400, content: /address/ },
    { title: 'unsupported content type', method: 'POST', path: '/api/v1/clusters', body: 'cluster=x', type: 'application/x-www-form-urlencoded', status: 415, content: /Content-Type/ },
    { title: 'body over the limit', method: 'POST', path: '/api/v1/clusters', body: JSON.stringify({ cluster: { name: 'big', spec: { protocol: 'Echo', pad: 'x'.repeat(1_100_000) } } }), type: 'application/json', status: 413, content: /exceeds the limit/ },
    { title: 'unknown listener on delete', method: 'DELETE', path: '/api/v1/listeners/nope', body: '', type: '', status: 404, content: /Cannot delete listener: Unknown listener "nope"/ },
    { title: 'unknown session on delete', method: 'DELETE', path: '/api/v1/sessions/nope', body: '', type: '', status: 404, content: /No such session/ },
  ];
  const before = (await api(g.base, 'GET', '/api/v1/config')).text;
  for (const c of cases) {
    const r = c.method === 'DELETE'
      ? await api(g.base, 'DELETE', c.path)
      : await api(g.base, c.method, c.path, c.body, c.type);
    t.is(r.status, c.status, `${c.title}: ${r.text.slice(0, 300)}`);
    t.is(r.body?.status, c.status, `${c.title}: body.status`);
    t.regex(String(r.body?.content), c.content, c.title);
    if (c.field) t.is(r.body.field, c.field, `${c.title}: field`);
    t.is((await api(g.base, 'GET', '/api/v1/config')).text, before, `${c.title}: config unchanged`);
  }
  t.false(await new Promise<boolean>((resolve) => {
    import('node:net').then(({ default: net }) => {
      const c = net.connect(busy, '127.0.0.1');
      c.once('connect', () => { c.destroy(); resolve(true); });
      c.once('error', () => resolve(false));
    });
  }), 'a rejected listener left no socket bound');
});

test('POST /api/v1/config adds a whole configuration in one transaction', async (t) => {
  const g = await withGateway(t);
  const before = (await api(g.base, 'GET', '/api/v1/config')).text;
  let r = await api(g.base, 'POST', '/api/v1/config', {
    clusters: [{ name: 'a', spec: { protocol: 'Echo' } }, { name: 'a', spec: { protocol: 'Echo' } }],
  });
  t.is(r.status, 409);
  t.is((await api(g.base, 'GET', '/api/v1/config')).text, before);
  r = await api(g.base, 'POST', '/api/v1/config', { clusters: [{ name: 'a', spec: { protocol: 'Echo' } }], routes: [{ name: 'ra', destination: 'a' }] });
  t.is(r.status, 200, r.text);
  t.is((await api(g.base, 'GET', '/api/v1/routes/ra')).body.destination, 'a');
});

test('admin: GET and POST log level', async (t) => {
  const g = await withGateway(t);
  let r = await api(g.base, 'GET', '/api/v1/admin');
  t.is(r.body.log_level, 'silent');
  r = await api(g.base, 'POST', '/api/v1/admin', { admin: { log_level: 'warn' } });
  t.is(r.status, 200, r.text);
  t.is((await api(g.base, 'GET', '/api/v1/admin')).body.log_level, 'warn');
  r = await api(g.base, 'POST', '/api/v1/admin', { admin: { log_level: 'chatty' } });
  t.is(r.status, 400);
});

test('admin: offload is static (a POST may repeat it, not change it); the read-only version is ignored', async (t) => {
  const g = await withGateway(t);
  const before = (await api(g.base, 'GET', '/api/v1/admin')).body;
  t.is(before.offload, false);
  let r = await api(g.base, 'POST', '/api/v1/admin', { admin: { offload: true } });
  t.true(r.status >= 400 && r.status < 500, r.text);
  t.regex(r.text, /admin\.offload can only be set in the static config or with -o\/-i/);
  r = await api(g.base, 'POST', '/api/v1/admin', { admin: { offload_ifs: ['lo'] } });
  t.true(r.status >= 400 && r.status < 500, r.text);
  t.deepEqual((await api(g.base, 'GET', '/api/v1/admin')).body, before);
  // What GET returned can be posted back.
  r = await api(g.base, 'POST', '/api/v1/admin', { admin: { log_level: before.log_level, strict: before.strict, offload: before.offload, version: 'other' } });
  t.is(r.status, 200, r.text);
  t.deepEqual((await api(g.base, 'GET', '/api/v1/admin')).body, before);
});
