// The conformance suite's data-path expectations (conformance/path-check.ts):
// which pairs' sessions must show `"path": "raw"`, which must show no path,
// and which must not show "raw". A wrong expectation would pass a gateway
// that took the wrong path, so the route rule is checked against the
// gateway's own (dataplane/raw-route.ts), without a gateway.

import test from 'ava';
import { buildMatrix } from '../../../conformance/matrix.js';
import { expectPath, rawPathPatterns, routeAllowsRaw } from '../../../conformance/path-check.js';
import { CLUSTER_PEERS, LISTENER_PEERS } from '../../../conformance/peers.js';
import { selectCells } from '../../../conformance/select.js';
import { rawEligible } from '../../src/dataplane/raw-route.js';
import type { Session } from '../../src/dataplane/session.js';

const ROUTES: Record<string, unknown>[] = [
  { destination: 'c' },
  { destination: 'c', ingress: [], egress: [] },
  { destination: 'c', ingress: ['t'] },
  { destination: 'c', egress: ['t'] },
  { destination: 'c', retry: { retry_on: 'never' } },
  { destination: 'c', retry: { retry_on: 'connect-failure', num_retries: 3 } },
  { destination: 'c', retry: { retry_on: 'disconnect' } },
  { destination: 'c', retry: { retry_on: 'always', num_retries: 8, timeout: 250 } },
];

/** A session as rawEligible reads it, for a route, with a client socket still raw. */
function sessionOn(route: Record<string, unknown>): Session {
  const raw = { rawHandle: () => ({}), rawAttach: () => undefined, spliceEnded: () => undefined };
  const stages = (x: unknown) => (Array.isArray(x) ? x.map(() => ({})) : []);
  return { ingress: stages(route.ingress), egress: stages(route.egress), retry: route.retry, source: { channel: raw } } as unknown as Session;
}

test('routeAllowsRaw agrees with the gateway\'s rawEligible on every kind of route the suite writes', (t) => {
  for (const r of ROUTES) t.is(routeAllowsRaw(r), rawEligible(sessionOn(r)), JSON.stringify(r));
  t.false(routeAllowsRaw('a-named-route'), 'a route the suite cannot read is never expected to be raw');
});

test('expectPath: raw with the path on, no path with it off, only when both sides can take it and the route allows it', (t) => {
  const plain = { rules: [{ action: { route: { destination: 'c' } } }] };
  const retrying = { rules: [{ action: { route: { destination: 'c', retry: { retry_on: 'always' } } } }] };
  const both = { listener: true, cluster: true };
  t.is(expectPath('on', both, plain), 'raw');
  t.is(expectPath('off', both, plain), 'socket');
  t.is(expectPath('on', both, retrying), 'not-raw');
  t.is(expectPath('off', both, retrying), 'not-raw');
  t.is(expectPath('on', { listener: true, cluster: false }, plain), 'not-raw');
  t.is(expectPath('on', { listener: false, cluster: true }, plain), 'not-raw');
  t.is(expectPath('on', { listener: false, cluster: false }, plain), undefined, 'no stream side: nothing to check');
  t.is(expectPath(undefined, both, plain), undefined, 'a gateway not ours: nothing to check');
  // A listener that names a rulelist: its rules decide.
  const rl = [{ name: 'rl', rules: [{ action: { route: { destination: 'a' } } }, { action: { route: { destination: 'b', ingress: ['t'] } } }] }];
  t.is(expectPath('on', both, { rules: 'rl' }, rl), 'not-raw');
  t.is(expectPath('on', both, { rules: 'rl' }, [{ name: 'rl', rules: [{ action: { route: { destination: 'a' } } }] }]), 'raw');
});

test('the raw path\'s rows and columns: exactly the pairs with a TCP or UnixDomainSocket side, the raw pairs among them', (t) => {
  const patterns = rawPathPatterns(LISTENER_PEERS, CLUSTER_PEERS);
  t.is(patterns, 'TCP:*,*:TCP,UnixDomainSocket:*,*:UnixDomainSocket');
  const m = buildMatrix();
  const stream = new Set(['TCP', 'UnixDomainSocket']);
  const selected = selectCells(m.cells, patterns).filter((c) => c.type === 'run');
  const expected = m.cells.filter((c) => c.type === 'run' && (stream.has(c.row.id) || stream.has(c.clusterProtocol.name)));
  t.deepEqual(selected, expected);
  // Both sides raw-capable and no transform: the four pairs whose light cases must show "raw".
  const rawPairs = selected.filter((c) => c.type === 'run' && c.listener.rawPath === true && c.cluster.rawPath === true && c.transform === undefined)
    .map((c) => `${c.row.id}:${c.col.id}`);
  t.deepEqual(rawPairs.sort(), ['TCP:TCP', 'TCP:UnixDomainSocket', 'UnixDomainSocket:TCP', 'UnixDomainSocket:UnixDomainSocket']);
});
