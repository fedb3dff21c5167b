// The OpenAPI spec is the single source of truth for the REST API. These tests
// keep it compatible with l7mp's operations and make sure every operation is
// served. What its schemas accept and reject: openapi-schemas.test.ts. That
// the generated code matches the spec: integration/openapi-generator.test.ts,
// which runs the generator.

import test from 'ava';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse } from 'yaml';

import { routes, matchRoute } from '../../src/api/generated/routes.js';
import { L7mpClient, L7mpClientError } from '../../src/api/generated/client.js';
import { handlers } from '../../src/api/handlers.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../..');
const SPEC = path.join(ROOT, 'openapi/l7mp.yaml');

// Every operation of l7mp's own spec (openapi/l7mp-openapi.yaml at l7mp
// 0b16fe8), copied here so the test needs nothing outside the repo.
const L7MP_OPERATIONS: ReadonlyArray<readonly [string, string, string]> = [
  ['GET', '/api/v1/config', 'getConf'],
  ['POST', '/api/v1/config', 'setConf'],
  ['GET', '/api/v1/admin', 'getAdmin'],
  ['POST', '/api/v1/admin', 'applyAdmin'],
  ['GET', '/api/v1/listeners', 'getListeners'],
  ['POST', '/api/v1/listeners', 'addListener'],
  ['GET', '/api/v1/listeners/{name}', 'getListener'],
  ['DELETE', '/api/v1/listeners/{name}', 'deleteListener'],
  ['GET', '/api/v1/clusters', 'getClusters'],
  ['POST', '/api/v1/clusters', 'addCluster'],
  ['GET', '/api/v1/clusters/{name}', 'getCluster'],
  ['DELETE', '/api/v1/clusters/{name}', 'deleteCluster'],
  ['GET', '/api/v1/clusters/{name}/endpoints', 'getEndPoints'],
  ['POST', '/api/v1/clusters/{name}/endpoints', 'addEndPoint'],
  ['GET', '/api/v1/endpoints/{name}', 'getEndPoint'],
  ['DELETE', '/api/v1/endpoints/{name}', 'deleteEndPoint'],
  ['GET', '/api/v1/rulelists/{name}/rules/{position}', 'getRuleFromRuleList'],
  ['POST', '/api/v1/rulelists/{name}/rules/{position}', 'addRuleToRuleList'],
  ['DELETE', '/api/v1/rulelists/{name}/rules/{position}', 'deleteRuleFromRuleList'],
  ['GET', '/api/v1/rulelists', 'getRuleLists'],
  ['POST', '/api/v1/rulelists', 'addRuleList'],
  ['GET', '/api/v1/rulelists/{name}', 'getRuleList'],
  ['DELETE', '/api/v1/rulelists/{name}', 'deleteRuleList'],
  ['GET', '/api/v1/rules', 'getRules'],
  ['POST', '/api/v1/rules', 'addRule'],
  ['GET', '/api/v1/rules/{name}', 'getRule'],
  ['DELETE', '/api/v1/rules/{name}', 'deleteRule'],
  ['GET', '/api/v1/routes', 'getRoutes'],
  ['POST', '/api/v1/routes', 'addRoute'],
  ['GET', '/api/v1/routes/{name}', 'getRoute'],
  ['DELETE', '/api/v1/routes/{name}', 'deleteRoute'],
  ['GET', '/api/v1/sessions', 'getSessions'],
  ['GET', '/api/v1/sessions/{name}', 'getSession'],
  ['DELETE', '/api/v1/sessions/{name}', 'deleteSession'],
];

const BODY_MEDIA_TYPES = [
  'application/json',
  'application/yaml',
  'application/x-yaml',
  'text/yaml',
  'text/x-yaml',
];

type Json = Record<string, unknown>;

function loadSpec(): Json {
  return parse(readFileSync(SPEC, 'utf8')) as Json;
}

function specOperations(spec: Json): Map<string, { method: string; path: string; op: Json }> {
  const out = new Map<string, { method: string; path: string; op: Json }>();
  for (const [p, item] of Object.entries(spec['paths'] as Record<string, Json>)) {
    for (const m of ['get', 'put', 'post', 'delete', 'patch']) {
      const op = item[m] as Json | undefined;
      if (op) out.set(op['operationId'] as string, { method: m.toUpperCase(), path: p, op });
    }
  }
  return out;
}

function deref(spec: Json, obj: Json): Json {
  const ref = obj['$ref'];
  if (typeof ref !== 'string') return obj;
  let cur: unknown = spec;
  for (const part of ref.replace(/^#\//, '').split('/')) cur = (cur as Json)[part];
  return cur as Json;
}

// ------------------------------------------------------------------------
// (b) compatible with l7mp's operations

test('every l7mp operation is in the spec with the same method and path', (t) => {
  const ops = specOperations(loadSpec());
  for (const [method, p, id] of L7MP_OPERATIONS) {
    const op = ops.get(id);
    if (op === undefined) {
      t.fail(`operation ${id} is missing from openapi/l7mp.yaml`);
      continue;
    }
    t.is(op.method, method, `${id} method`);
    t.is(op.path, p, `${id} path`);
  }
  t.is(ops.size, L7MP_OPERATIONS.length, 'the spec has operations l7mp did not have');
});

test('the route table covers exactly the spec operations', (t) => {
  const ops = specOperations(loadSpec());
  t.deepEqual(routes.map((r) => r.operationId).sort(), [...ops.keys()].sort());
  for (const r of routes) {
    const op = ops.get(r.operationId);
    t.is(op?.method, r.method);
    t.is(op?.path, r.path);
  }
});

test('every request body is accepted as JSON and as YAML, and errors use the Error schema', (t) => {
  const spec = loadSpec();
  for (const [id, { op }] of specOperations(spec)) {
    if (op['requestBody'] !== undefined) {
      const rb = deref(spec, op['requestBody'] as Json);
      const types = Object.keys(rb['content'] as Json);
      for (const mt of BODY_MEDIA_TYPES) t.true(types.includes(mt), `${id} does not accept ${mt}`);
    }
    const responses = op['responses'] as Record<string, Json>;
    t.truthy(responses['200'], `${id} has no 200 response`);
    for (const [code, r] of Object.entries(responses)) {
      if (code === '200') continue;
      const schema = ((deref(spec, r)['content'] as Json)['application/json'] as Json)['schema'] as Json;
      t.is(schema['$ref'], '#/components/schemas/Error', `${id} ${code}`);
    }
  }
});

// ------------------------------------------------------------------------
// (c) every operation has a handler

test('every operation has a handler', (t) => {
  const table = handlers as Record<string, unknown>;
  for (const r of routes) {
    t.is(typeof table[r.operationId], 'function', `no handler for ${r.operationId} (${r.method} ${r.path})`);
  }
});

// ------------------------------------------------------------------------
// route table behaviour

test('route patterns capture URL-encoded names as one segment', (t) => {
  const m = matchRoute('GET', '/api/v1/listeners/%2Fl7mp.io%2Fv1%2FVirtualService%2Fdefault%2Ffoo');
  t.is(m.route?.operationId, 'getListener');
  if (m.route !== undefined) {
    t.is(decodeURIComponent(m.params['name'] ?? ''), '/l7mp.io/v1/VirtualService/default/foo');
  }
  const r = matchRoute('DELETE', '/api/v1/rulelists/rl%201/rules/my-rule');
  t.is(r.route?.operationId, 'deleteRuleFromRuleList');
  if (r.route !== undefined) t.deepEqual({ ...r.params }, { name: 'rl%201', position: 'my-rule' });
  t.is(matchRoute('POST', '/api/v1/clusters/c1/endpoints').route?.operationId, 'addEndPoint');
  t.is(matchRoute('GET', '/api/v1/clusters/c1').route?.operationId, 'getCluster');
  t.is(matchRoute('GET', '/api/v1/listeners/a/b').route, undefined);
  t.is(matchRoute('GET', '/io.l7mp.api.v1/api/v1/config').route, undefined);
});

test('an unsupported method reports the allowed ones', (t) => {
  const m = matchRoute('PUT', '/api/v1/listeners/x');
  t.is(m.route, undefined);
  if (m.route === undefined && 'allowed' in m) t.deepEqual([...m.allowed].sort(), ['DELETE', 'GET']);
  const unknown = matchRoute('GET', '/api/v1/nothing');
  if (unknown.route === undefined && 'allowed' in unknown) t.deepEqual([...unknown.allowed], []);
});

test('routes list more specific paths first', (t) => {
  const seg = (p: string): number => p.split('/').filter(Boolean).length;
  for (let i = 1; i < routes.length; i++) {
    const prev = routes[i - 1];
    const cur = routes[i];
    if (prev === undefined || cur === undefined) continue;
    t.true(seg(prev.path) >= seg(cur.path), `${prev.path} before ${cur.path}`);
  }
  const get = routes.find((r) => r.operationId === 'getListener');
  t.deepEqual(get?.params, ['name']);
  t.deepEqual(get?.query, ['recursive', 'format']);
  t.false(get?.hasBody);
  t.true(routes.find((r) => r.operationId === 'addListener')?.hasBody);
});

// ------------------------------------------------------------------------
// generated client

test('the client encodes names and queries, sends the token and JSON, and throws on errors', async (t) => {
  const calls: Array<{ url: string; method: string; headers: Record<string, string>; body: unknown }> = [];
  const replies: Array<[number, string]> = [
    [200, '{"name":"x"}'],
    [200, '{"status":200,"message":"OK"}'],
    [200, '{"status":200,"message":"OK"}'],
    [404, '{"status":404,"message":"Not Found","content":"Unknown cluster \\"nope\\"","code":"NOT_FOUND"}'],
    [200, 'not json'],
  ];
  const fakeFetch = (async (input: string | URL | Request, init?: RequestInit) => {
    calls.push({
      url: String(input),
      method: init?.method ?? 'GET',
      headers: { ...(init?.headers as Record<string, string> | undefined) },
      body: typeof init?.body === 'string' ? JSON.parse(init.body) : undefined,
    });
    const [status, text] = replies.shift() ?? [500, ''];
    return new Response(text, { status });
  }) as typeof fetch;
  const client = new L7mpClient('http://gw:1234/', { token: 's3cret', fetch: fakeFetch });

  t.deepEqual(await client.getListener('/l7mp.io/v1/x y', { recursive: true, format: 'terse' }), { name: 'x' });
  t.is(calls[0]?.url, 'http://gw:1234/api/v1/listeners/%2Fl7mp.io%2Fv1%2Fx%20y?recursive=true&format=terse');
  t.is(calls[0]?.method, 'GET');
  t.is(calls[0]?.headers['authorization'], 'Bearer s3cret');

  const ok = await client.addCluster({ cluster: { name: 'c1', spec: { protocol: 'Echo' } } });
  t.deepEqual(ok, { status: 200, message: 'OK' });
  t.is(calls[1]?.method, 'POST');
  t.is(calls[1]?.headers['content-type'], 'application/json');
  t.deepEqual(calls[1]?.body, { cluster: { name: 'c1', spec: { protocol: 'Echo' } } });

  await client.deleteRuleFromRuleList('rl', 3);
  t.is(calls[2]?.url, 'http://gw:1234/api/v1/rulelists/rl/rules/3');
  t.is(calls[2]?.method, 'DELETE');

  const err = await t.throwsAsync(client.getCluster('nope'), { instanceOf: L7mpClientError });
  t.is(err?.status, 404);
  t.is(err?.code, 'NOT_FOUND');
  t.is(err?.operationId, 'getCluster');
  t.regex(err?.message ?? '', /Unknown cluster "nope"/);

  const bad = await t.throwsAsync(client.getSessions(), { instanceOf: L7mpClientError });
  t.is(bad?.status, 200);
  t.is(bad?.body, 'not json');
});
