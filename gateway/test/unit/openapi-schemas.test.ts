// What the spec's request schemas (generated into api/generated/schemas.ts)
// accept: every config l7mp accepted (the seed README's examples), and what
// they reject, with the field named.

import test from 'ava';
import { parse } from 'yaml';
import { Value } from 'typebox/value';
import type { TSchema } from 'typebox';

import * as S from '../../src/api/generated/schemas.js';

function errorsOf(schema: TSchema, value: unknown): string[] {
  return Value.Errors(schema, value).map((e) => `${e.instancePath || '/'} ${e.message}`);
}

function body(schema: TSchema | undefined, yamlText: string): { schema: TSchema; value: unknown } {
  if (schema === undefined) throw new Error('missing request body schema');
  return { schema, value: parse(yamlText) as unknown };
}

// ------------------------------------------------------------------------
// (d) schemas accept what l7mp accepted (seed README examples)...

const ACCEPTED: ReadonlyArray<{ title: string; op: keyof typeof S.requestBodySchemas; yaml: string }> = [
  {
    title: 'ws-cluster with one endpoint',
    op: 'addCluster',
    yaml: `
cluster:
  name: ws-cluster
  spec: { protocol: "WebSocket", port: 16000 }
  endpoints:
    - spec: { address:  "127.0.0.1" }
`,
  },
  {
    title: 'weighted endpoints with a ConsistentHash load balancer',
    op: 'addCluster',
    yaml: `
cluster:
  name: ws-cluster-with-sticky-sessions
  spec: { protocol: "WebSocket", port: 16000 }
  endpoints:
    - spec: { address:  "127.0.0.1" }
      weight: 3
    - spec: { address:  "127.0.0.2" }
    - spec: { address:  "127.0.0.3" }
  loadbalancer:
    policy: "ConsistentHash"
    key: "IP/src_addr"
`,
  },
  {
    title: 'udp-listener with an embedded Logger and retry',
    op: 'addListener',
    yaml: `
listener:
  name: udp-listener
  spec: { protocol: UDP, port: 15000, connect: {port: 15001} }
  rules:
    - action:
        route:
          destination: ws-cluster
          ingress:
            - spec: { protocol: Logger }
          retry: {retry_on: always, num_retries: 3, timeout: 2000}
`,
  },
  {
    title: 'a Logger cluster on its own',
    op: 'addCluster',
    yaml: `
cluster:
  name: logger-cluster
  spec: { protocol: "Logger" }
`,
  },
  {
    title: 'a listener that names logger-cluster',
    op: 'addListener',
    yaml: `
listener:
  name: udp-listener-with-no-embedded-cluster-def
  spec: { protocol: UDP, port: 15000, connect: {port: 15001} }
  rules:
    - action:
        route:
          destination: ws-cluster
          ingress:
            - logger-cluster
          retry: {retry_on: always, num_retries: 3, timeout: 2000}
`,
  },
  {
    title: 'the controller-listener static config (legacy `cluster:` key)',
    op: 'setConf',
    yaml: `
admin:
  log_level: info
  log_file: stdout
  access_log_path: /tmp/admin_access.log
listeners:
  - name: controller-listener
    spec: { protocol: HTTP, port: 1234 }
    rules:
      - action:
          route:
            cluster:
              spec: { protocol: L7mpController }
`,
  },
  {
    title: 'a listener whose rules name a rulelist, with match, rewrite and apply',
    op: 'addListener',
    yaml: `
listener:
  name: /l7mp.io/v1/VirtualService/default/foo
  spec: { protocol: JSONSocket, transport: { protocol: UDP, port: 16001 } }
  rules: rl-1
  options: { track: 60 }
`,
  },
  {
    title: 'a rulelist mixing names and inline rules',
    op: 'addRuleList',
    yaml: `
rulelist:
  name: rl-1
  rules:
    - named-rule
    - match: {op: starts, path: /HTTP/url/path, value: /metrics}
      action:
        rewrite: [{path: /labels/x, value: {a: 1}}]
        route: metrics-route
    - match: '*'
      action: { apply: other-rulelist }
`,
  },
  {
    title: 'a rule inserted into a rulelist by name',
    op: 'addRuleToRuleList',
    yaml: 'rule: some-rule',
  },
  {
    title: 'an endpoint with the weight inside spec (l7mp spec form) and a UDS path',
    op: 'addEndPoint',
    yaml: `
endpoint:
  spec: { address: /tmp/sock, weight: 2 }
`,
  },
  {
    title: 'a route with a partial retry policy and a JSONSocket destination',
    op: 'addRoute',
    yaml: `
route:
  name: r1
  destination:
    spec:
      protocol: JSONSocket
      transport: { protocol: UDP, port: 16000, bind: { address: 127.0.0.1, port: 0 } }
      header:
        - path: { from: /IP/src_addr, to: /src }
        - path: /labels
        - set: { key: /x, value: 1 }
    endpoints: [{ spec: { address: 127.0.0.1 } }]
  egress: [ { spec: { protocol: JSONDecap } }, some-cluster ]
  retry: { timeout: 500 }
`,
  },
  {
    title: 'admin settings with offload given as a string and interfaces as a list',
    op: 'applyAdmin',
    yaml: `
admin: { log_level: warn, strict: true, offload: init, offload_ifs: [lo, eth0] }
`,
  },
];

for (const c of ACCEPTED) {
  test(`accepts: ${c.title}`, (t) => {
    const { schema, value } = body(S.requestBodySchemas[c.op], c.yaml);
    t.deepEqual(errorsOf(schema, value), []);
    t.true(Value.Check(schema, value));
  });
}

test('accepts an l7mp-style GET /config dump', (t) => {
  const dump = {
    admin: { log_level: 'info', strict: false, offload: false, version: '0.5.7' },
    listeners: [{ name: 'controller-listener', spec: { protocol: 'HTTP', port: 1234 }, rules: 'controller-listener-RuleList-0', options: { track: 0 } }],
    clusters: [
      { name: 'c1', spec: { protocol: 'UDP', port: 53 }, endpoints: 2, loadbalancer: { policy: 'HashRing', key: '<RANDOM>' } },
    ],
    rulelists: [{ name: 'controller-listener-RuleList-0', rules: ['controller-listener-RuleList-0-Rule-0'] }],
    rules: [{ name: 'controller-listener-RuleList-0-Rule-0', match: { match: '*' }, action: { route: 'r-0' } }],
    routes: [{ name: 'r-0', destination: 'c:<STALE>', ingress: [], egress: [], retry: { retry_on: 'never', num_retries: 1, timeout: 2000 } }],
    endpoints: [{ name: 'c1-EndPoint-0', spec: { address: '127.0.0.1' }, weight: 1 }],
    sessions: [
      {
        name: 'HTTP:127.0.0.1:40000-127.0.0.1:1234-0',
        metadata: { IP: { src_addr: '127.0.0.1' } },
        source: { origin: 'controller-listener', listener: { protocol: 'HTTP', port: 1234 }, status: 'READY' },
        destination: { status: 'PENDING' },
        ingress: [],
        egress: [],
        status: 'INIT',
        events: [{ event: 'INIT', timestamp: '2024-01-01T00:00:00.000Z', message: 'created', content: null }],
        counters: { ingress: { bytes: 0, packets: 0 }, egress: { bytes: 0, packets: 0 } },
        started: '2024-01-01T00:00:00.000Z',
        offloaded: false,
      },
    ],
  };
  const schema = S.responseSchemas.getConf;
  if (schema === undefined) return t.fail('no getConf response schema');
  t.deepEqual(errorsOf(schema, dump), []);
});

test('the Error and Status schemas match the gateway error body', (t) => {
  t.true(Value.Check(S.Status, { status: 200, message: 'OK' }));
  t.true(Value.Check(S.Error, { status: 400, message: 'Bad Request', content: 'listener.spec.port: bad', code: 'INVALID_INPUT', field: 'listener.spec.port' }));
  t.true(Value.Check(S.Error, { status: 404, message: 'Not Found', content: 'Unknown API operation' }));
  t.false(Value.Check(S.Error, { status: 404, message: 'Not Found' }));
});

// ------------------------------------------------------------------------
// ...and reject what makes no sense

const REJECTED: ReadonlyArray<{ title: string; op: keyof typeof S.requestBodySchemas; yaml: string; where: string }> = [
  {
    title: 'a listener without spec',
    op: 'addListener',
    yaml: 'listener: { name: l1, rules: rl }',
    where: '/listener',
  },
  {
    title: 'a port given as a string',
    op: 'addListener',
    yaml: 'listener: { name: l1, spec: { protocol: UDP, port: abc }, rules: rl }',
    where: '/listener/spec/port',
  },
  {
    title: 'a port out of range',
    op: 'addCluster',
    yaml: 'cluster: { name: c1, spec: { protocol: TCP, port: 70000 } }',
    where: '/cluster/spec/port',
  },
  {
    title: 'an unknown retry_on',
    op: 'addRoute',
    yaml: 'route: { name: r1, destination: c1, retry: { retry_on: sometimes } }',
    where: '/route/retry/retry_on',
  },
  {
    title: 'a negative num_retries',
    op: 'addRoute',
    yaml: 'route: { name: r1, destination: c1, retry: { num_retries: -1 } }',
    where: '/route/retry/num_retries',
  },
  {
    title: 'a name with whitespace',
    op: 'addListener',
    yaml: 'listener: { name: "a b", spec: { protocol: UDP, port: 1 }, rules: rl }',
    where: '/listener/name',
  },
  {
    title: 'a top-level cluster without a name',
    op: 'addCluster',
    yaml: 'cluster: { spec: { protocol: Echo } }',
    where: '/cluster',
  },
  {
    title: 'a spec without protocol',
    op: 'addCluster',
    yaml: 'cluster: { name: c1, spec: { port: 80 } }',
    where: '/cluster/spec',
  },
  {
    title: 'a rule without action',
    op: 'addRule',
    yaml: 'rule: { name: r1, match: "*" }',
    where: '/rule',
  },
  {
    title: 'an unwrapped listener',
    op: 'addListener',
    yaml: 'name: l1\nspec: { protocol: UDP, port: 1 }\nrules: rl',
    where: '/',
  },
  {
    title: 'a nested port given as a string',
    op: 'addListener',
    yaml: 'listener: { name: l1, spec: { protocol: UDP, port: 1, connect: { port: "x" } }, rules: rl }',
    where: '/listener/spec/connect/port',
  },
];

for (const c of REJECTED) {
  test(`rejects: ${c.title}`, (t) => {
    const { schema, value } = body(S.requestBodySchemas[c.op], c.yaml);
    t.false(Value.Check(schema, value));
    const errors = errorsOf(schema, value);
    t.true(errors.some((e) => e.startsWith(c.where + ' ')), `expected an error at ${c.where}, got ${JSON.stringify(errors)}`);
  });
}
