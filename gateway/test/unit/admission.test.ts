// The admission pieces without sockets: which listeners are the control
// plane, the order of the checks, that a full listener evicts before it
// refuses (which flow goes is unit/flows.test.ts), the descriptor
// estimate between samples, and the settings' validation.

import fs from 'node:fs';
import test from 'ava';
import { Admission, parseListenerMaxSessions, DEFAULT_LIMITS, type AdmissionGraph } from '../../src/core/admission.js';
import { parseAdmin } from '../../src/config/admin.js';
import { FdBudget, defaultReserve, readFdLimit } from '../../src/core/fd-budget.js';
import { Refusals } from '../../src/observe/refusals.js';
import { silentLogger } from '../../src/observe/log.js';

function graph(evict?: () => boolean): AdmissionGraph & { listeners: Map<string, any> } {
  return {
    listeners: new Map<string, any>([
      ['rest', { rules: 'rest-rules', options: {}, impl: {} }],
      ['nested', { rules: 'outer', options: {}, impl: {} }],
      ['udp', { rules: 'udp-rules', options: { max_sessions: 2 }, impl: evict ? { evictIdle: evict } : {} }],
    ]),
    rulelists: new Map([['rest-rules', { rules: ['r1'] }], ['outer', { rules: ['r2'] }], ['inner', { rules: ['r1'] }], ['udp-rules', { rules: ['r3'] }]]),
    rules: new Map([['r1', { action: { route: 'to-api' } }], ['r2', { action: { apply: 'inner' } }], ['r3', { action: { route: 'to-echo' } }]]),
    routes: new Map([['to-api', { destination: 'api' }], ['to-echo', { destination: 'echo' }]]),
    clusters: new Map([['api', { protocol: { name: 'L7mpController' } }], ['echo', { protocol: { name: 'UDP' } }]]),
  };
}

const md = (src: string) => ({ metadata: { IP: { src_addr: src } } });

test('the control plane (a route to L7mpController, also through apply) is never counted nor refused', (t) => {
  const refusals = new Refusals(silentLogger());
  const a = new Admission(graph(), refusals, { ...DEFAULT_LIMITS, maxSessions: 1, flowRate: 1, flowBurst: 1 }, undefined);
  t.true(a.servesControlPlane('rest'));
  t.true(a.servesControlPlane('nested'));
  t.false(a.servesControlPlane('udp'));
  for (let i = 0; i < 10; i++) {
    t.true(a.admit('rest', md('10.0.0.1')));
    t.is(a.opened('rest'), undefined);
  }
  t.is(a.dataPlaneSessions, 0);
  t.true(a.admit('udp', md('10.0.0.1')));
  a.opened('udp');
  t.false(a.admit('udp', md('10.0.0.2')), 'the data plane is at max_sessions');
  t.is(refusals.total('max_sessions'), 1);
  t.false(a.admit('udp', md('10.0.0.1')), 'and 10.0.0.1 has no token left');
  t.is(refusals.total('flow_rate'), 1);
});

test('a full listener evicts through evictIdle before it refuses; the count comes back when sessions end', (t) => {
  const refusals = new Refusals(silentLogger());
  let room = 1;
  const a = new Admission(graph(() => room-- > 0), refusals, { ...DEFAULT_LIMITS, flowRate: 0 }, undefined);
  const c1 = a.opened('udp')!;
  a.opened('udp');
  t.true(a.admit('udp', md('10.0.0.1')), 'one idle flow evicted');
  t.is(refusals.total('flow_evicted'), 1);
  t.false(a.admit('udp', md('10.0.0.1')), 'nothing idle left: refused');
  t.is(refusals.total('listener_sessions'), 1);
  a.closed(c1);
  t.true(a.admit('udp', md('10.0.0.1')));
});

test('the descriptor budget refuses at limit minus reserve, counts sessions admitted between samples, and samples at most every 100 ms', (t) => {
  t.true((new FdBudget(100_000, 100).usage()) > 0, 'descriptors are counted from /proc/self/fd');
  t.is(new FdBudget(100_000, 100).usage(), fs.readdirSync('/proc/self/fd').length - 1, 'the count is the descriptors open (stat of /proc/self/fd where the kernel reports it, else a scan)');
  let now = 0;
  let open = 50;
  let samples = 0;
  const b = new FdBudget(200, 146, () => now, () => { samples++; return open; }); // ceiling 54
  t.false(b.exhausted());
  b.opened();
  t.false(b.exhausted(), '50 + 2');
  b.opened();
  t.true(b.exhausted(), '50 + 4: at the ceiling');
  b.closed();
  t.false(b.exhausted());
  t.is(samples, 1, 'no second scan within 100 ms');
  now = 100;
  open = 60;
  t.true(b.exhausted(), 'a new sample replaces the estimate');
  t.is(samples, 2);
  const emfile = new FdBudget(200, 10, () => 0, (limit) => limit);
  t.true(emfile.exhausted(), 'EMFILE while counting counts as all in use');
  t.false(new FdBudget(undefined, 0).exhausted(), 'no limit known: the budget is off');
  t.is(defaultReserve(256), 64);
  t.is(defaultReserve(4096), 512);
  t.is(defaultReserve(1 << 20), 1024);
  t.true((readFdLimit() ?? 1) > 0);
  t.is(readFdLimit('/nonexistent'), undefined);
});

function parseAdmissionLimits(limits: Record<string, unknown> | undefined): typeof DEFAULT_LIMITS {
  return parseAdmin(limits === undefined ? {} : { limits }, { env: {} }).admission;
}

test('admin.limits and options.max_sessions are validated', (t) => {
  t.deepEqual(parseAdmissionLimits(undefined), DEFAULT_LIMITS);
  const l = parseAdmissionLimits({ max_sessions: 10, listener_max_sessions: 5, flow_rate: 0, fd_reserve: 0 });
  t.is(l.maxSessions, 10);
  t.is(l.listenerMaxSessions, 5);
  t.is(l.flowRate, 0);
  t.is(l.fdReserve, 0);
  t.is(parseAdmissionLimits({ flow_rate: 5000 }).flowBurst, 5000, 'the burst is at least the rate');
  t.throws(() => parseAdmissionLimits({ max_sessions: 0 }), { message: /admin\.limits\.max_sessions/ });
  t.throws(() => parseAdmissionLimits({ flow_rate: 'fast' }), { message: /admin\.limits\.flow_rate/ });
  t.throws(() => parseListenerMaxSessions({ max_sessions: 1.5 }, 'listeners[0].options'), { message: /listeners\[0\]\.options\.max_sessions/ });
  t.is(parseListenerMaxSessions({}, 'x'), undefined);
});
