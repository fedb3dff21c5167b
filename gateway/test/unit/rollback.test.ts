// A rejected change leaves the object graph exactly as it was: the dump
// before and after a change that fails midway are equal, implicit names are
// not used up, and listeners that bound before a later one failed are
// stopped again. No sockets: the changes fail before anything binds, or run
// on stand-in listeners.

import test from 'ava';
import { dumpConfig } from '../../src/api/dump.js';
import { Gateway } from '../../src/core/gateway.js';
import type { AnyObj, ClusterObj, ListenerObj } from '../../src/core/model.js';
import { Store } from '../../src/core/store.js';
import { silentLogger } from '../../src/observe/log.js';

function gateway(): Gateway {
  return new Gateway({ log: silentLogger(), version: 'test' });
}

/** The dump the REST API serves, as JSON text (what a client would compare). */
function dump(gw: Gateway): string {
  return JSON.stringify(dumpConfig(gw));
}

/** A config with clusters, endpoints, a rulelist with inline (implicitly named) rules and routes, and named rules and routes. */
function config(opts: { badLastRule?: boolean } = {}): Record<string, unknown> {
  return {
    clusters: [
      { name: 'c-tcp', spec: { protocol: 'TCP', port: 9 }, endpoints: [{ spec: { address: '127.0.0.1' } }, { name: 'ep-b', spec: { address: '127.0.0.2' } }] },
      { name: 'c-echo', spec: { protocol: 'Echo' } },
    ],
    rulelists: [
      {
        name: 'rl-main',
        rules: [
          { match: { op: 'starts', path: '/HTTP/url/path', value: '/api' }, action: { route: { destination: 'c-tcp', retry: { retry_on: 'always' } } } },
          { action: { rewrite: [{ path: '/labels/x', value: 1 }], route: { destination: { spec: { protocol: 'Echo' } } } } },
        ],
      },
    ],
    rules: [
      { name: 'r-named', action: { route: 'route-named' } },
      ...(opts.badLastRule ? [{ name: 'r-bad', match: { op: 'no-such-op', path: '/x', value: 1 } }] : []),
    ],
    routes: [{ name: 'route-named', destination: 'c-echo', ingress: [{ spec: { protocol: 'Logger' } }] }],
  };
}

test('a config that fails at its last object leaves the graph as it was, and uses up no implicit names', async (t) => {
  const gw = gateway();
  await gw.applyConfig({ clusters: [{ name: 'existing', spec: { protocol: 'Echo' } }], rulelists: [{ name: 'rl-existing', rules: [{ action: { route: { destination: 'existing' } } }] }] }, false);
  const before = dump(gw);

  const err = await t.throwsAsync(gw.applyConfig(config({ badLastRule: true }), false));
  t.is((err as { code?: string }).code, 'INVALID_INPUT');
  t.is(dump(gw), before);

  // The same change without the bad rule now names its implicit objects as
  // it would have on a gateway that never saw the failed one.
  await gw.applyConfig(config(), false);
  const fresh = gateway();
  await fresh.applyConfig({ clusters: [{ name: 'existing', spec: { protocol: 'Echo' } }], rulelists: [{ name: 'rl-existing', rules: [{ action: { route: { destination: 'existing' } } }] }] }, false);
  await fresh.applyConfig(config(), false);
  t.is(dump(gw), dump(fresh));
  t.true(gw.rules.size > 3, 'the config did add its inline rules');
});

test('a name taken midway (after other objects were staged) changes nothing', async (t) => {
  const gw = gateway();
  await gw.applyConfig(config(), false);
  const before = dump(gw);
  // A new cluster with an implicitly named endpoint is staged, then "c-echo" collides.
  const clash = {
    clusters: [{ name: 'c-new', spec: { protocol: 'TCP', port: 9 }, endpoints: [{ spec: { address: '127.0.0.3' } }] }, { name: 'c-echo', spec: { protocol: 'Echo' } }],
    rules: [{ name: 'r-new', action: { route: 'route-named' } }],
  };
  const err = await t.throwsAsync(gw.applyConfig(clash, false));
  t.is((err as { code?: string }).code, 'NAME_TAKEN');
  t.is((err as { field?: string }).field, 'clusters[1].name');
  t.is(dump(gw), before);
  t.false(gw.clusters.has('c-new'));
});

test('a rule that cannot be inserted into a rulelist leaves the rulelist as it was', async (t) => {
  const gw = gateway();
  await gw.applyConfig(config(), false);
  const before = dump(gw);
  await t.throwsAsync(gw.addRuleToRuleList('rl-main', 1, { action: { route: { destination: { spec: { protocol: 'NoSuchProtocol' } } } } }), { message: /NoSuchProtocol|protocol/ });
  await t.throwsAsync(gw.addRuleToRuleList('rl-main', 7, 'r-named'), { message: /position 7/ });
  t.is(dump(gw), before);
  t.is(gw.rulelists.get('rl-main')!.rules.length, 2);
});

test('a recursive delete refused as unknown, or of an object still referenced by name, leaves the rest in place', async (t) => {
  const gw = gateway();
  await gw.applyConfig(config(), false);
  const before = dump(gw);
  await t.throwsAsync(gw.deleteCluster('no-such-cluster', true), { message: /Unknown cluster/ });
  t.is(dump(gw), before);
  // Deleting the named route recursively takes its inline ingress cluster, not the named destination.
  const ingress = gw.routes.get('route-named')!.ingress[0]!;
  await gw.deleteRoute('route-named', true);
  t.false(gw.routes.has('route-named'));
  t.false(gw.clusters.has(ingress));
  t.true(gw.clusters.has('c-echo'));
  t.true(gw.rules.has('r-named'), 'the rule that names the route stays (bound late)');
});

// ------------------------------------------------------- the commit phase

interface Probe { started: string[]; stopped: string[]; closed: string[]; activated: string[] }

function listener(name: string, probe: Probe, fail = false): ListenerObj {
  return {
    kind: 'listener', name, spec: {}, rules: 'rl', options: { track: 0 }, inlineRuleList: false,
    impl: {
      start: async () => { if (fail) throw new Error(`cannot bind ${name}`); probe.started.push(name); },
      stop: async () => { probe.stopped.push(name); },
    },
  } as unknown as ListenerObj;
}

function cluster(name: string, probe: Probe, failActivate = false): ClusterObj {
  return {
    kind: 'cluster', name, spec: {}, endpoints: [], autogenerated: false,
    impl: {
      connect: () => Promise.reject(new Error('not used')),
      activate: () => { if (failActivate) throw new Error(`cannot open ${name}'s file`); probe.activated.push(name); },
      close: () => { probe.closed.push(name); },
    },
  } as unknown as ClusterObj;
}

function storeDump(s: Store): string {
  const names = (m: Map<string, AnyObj>) => [...m.keys()];
  return JSON.stringify({
    listeners: names(s.listeners), clusters: names(s.clusters), endpoints: names(s.endpoints),
    rulelists: names(s.rulelists), rules: names(s.rules), routes: names(s.routes), statics: [...s.staticListeners],
    counters: s.counters.snapshot(),
  });
}

test('a listener that cannot bind after another one bound: the first is stopped again, staged clusters closed, nothing committed', async (t) => {
  const store = new Store(silentLogger());
  const probe: Probe = { started: [], stopped: [], closed: [], activated: [] };
  await store.apply(true, (tx) => tx.stage(listener('live', probe), 'listeners[0]'));
  const before = storeDump(store);

  const err = await t.throwsAsync(store.apply(true, (tx) => {
    tx.implicitName('rule', 'x', 'Rule'); // uses up a counter, which the rollback restores
    tx.stage(cluster('c1', probe), 'clusters[0]');
    tx.stage(listener('l1', probe), 'listeners[0]');
    tx.stage(listener('l2', probe, true), 'listeners[1]');
  }));
  t.regex(err!.message, /cannot bind l2/);
  t.deepEqual(probe.started, ['live', 'l1']);
  t.deepEqual(probe.stopped, ['l1']);
  t.deepEqual(probe.closed, ['c1']);
  t.deepEqual(probe.activated, [], 'a refused change opens no cluster resources');
  t.is(storeDump(store), before);
});

test('a cluster that cannot take its resources at commit: bound listeners are stopped again, nothing committed', async (t) => {
  const store = new Store(silentLogger());
  const probe: Probe = { started: [], stopped: [], closed: [], activated: [] };
  const before = storeDump(store);
  await t.throwsAsync(store.apply(false, (tx) => {
    tx.stage(listener('l1', probe), 'listeners[0]');
    tx.stage(cluster('c1', probe, true), 'clusters[0]');
  }), { message: /cannot open c1's file/ });
  t.deepEqual(probe.stopped, ['l1']);
  t.deepEqual(probe.closed, ['c1']);
  t.is(storeDump(store), before);
});

test('a change that fails while building closes the clusters it had staged and restores the name counters', async (t) => {
  const store = new Store(silentLogger());
  const probe: Probe = { started: [], stopped: [], closed: [], activated: [] };
  const before = storeDump(store);
  await t.throwsAsync(store.apply(false, (tx) => {
    tx.implicitName('rulelist', 'l', 'RuleList');
    tx.stage(cluster('c1', probe), 'clusters[0]');
    tx.stage(cluster('c1', probe), 'clusters[1]'); // NAME_TAKEN inside the change itself
  }), { message: /Cluster "c1" already defined/ });
  t.deepEqual(probe.closed, ['c1']);
  t.deepEqual(probe.started, []);
  t.is(storeDump(store), before);
});
