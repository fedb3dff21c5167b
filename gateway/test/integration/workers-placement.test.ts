// A listener runs where it was placed when it was added (docs/workers.md,
// workers/split.ts): on every worker when its protocol shares the port, on
// one when a cluster it reaches keeps its sessions in one process (Sync,
// PIPE, AF_PACKET). A REST change that would need a live shared listener on
// one worker is refused and changes nothing; a listener added together with
// such a cluster is placed on one worker from the start.
import test from 'ava';
import net from 'node:net';
import { startGateway } from '../../src/app.js';
import { api, echo, freePort, peer, waitFor } from './helpers.js';
import { openEchoed, ready, workersConfig } from './workers-helpers.js';

interface SessionDump { name: string; worker?: number }

const withoutSessions = (c: unknown) => ({ ...(c as Record<string, unknown>), sessions: undefined });

test('2 workers: a change that would put a shared listener behind a Sync cluster is refused; one added with it runs on one worker', async (t) => {
  const [apiPort, probes, sharedPort, latePort, pairPort, tcpEcho] = await Promise.all([freePort(), freePort(), freePort(), freePort(), freePort(), freePort()]);
  await peer(t, echo.tcp(tcpEcho));
  const cfg = workersConfig(2, apiPort, probes, {
    listeners: [
      { name: 'shared', spec: { protocol: 'TCP', address: '127.0.0.1', port: sharedPort }, rules: 'shared-rules' },
      // Its route is named before it exists (bound late).
      { name: 'late', spec: { protocol: 'TCP', address: '127.0.0.1', port: latePort }, rules: [{ action: { route: 'late-route' } }] },
    ],
    clusters: [
      { name: 'tcp-echo', spec: { protocol: 'TCP', port: tcpEcho }, endpoints: [{ spec: { address: '127.0.0.1' } }] },
      { name: 'rv', spec: { protocol: 'Sync', query: '/IP/src_addr' } },
    ],
  });
  cfg.rulelists = [{ name: 'shared-rules', rules: [{ name: 'to-echo', action: { route: { destination: 'tcp-echo' } } }] }];
  const gw = await startGateway({ config: cfg });
  t.teardown(() => gw.stop());
  const base = `http://127.0.0.1:${apiPort}`;
  t.is(await ready(probes), 200);
  const before = withoutSessions((await api(base, 'GET', '/api/v1/config')).body);

  // A rule inserted into a shared listener's rulelist, routing to Sync.
  let r = await api(base, 'POST', '/api/v1/rulelists/shared-rules/rules/0', { rule: { name: 'to-rv', action: { route: { destination: 'rv' } } } });
  t.is(r.status, 400, JSON.stringify(r.body));
  t.regex(String(r.body.content), /listener "shared" runs on every worker; after this change it would reach cluster "rv" \(Sync\), which keeps its sessions in one process/);
  t.regex(String(r.body.content), /delete it and add it again/);
  // The late-bound route, defined to go to Sync.
  r = await api(base, 'POST', '/api/v1/routes', { route: { name: 'late-route', destination: 'rv' } });
  t.is(r.status, 400, JSON.stringify(r.body));
  t.regex(String(r.body.content), /listener "late" runs on every worker/);
  t.deepEqual(withoutSessions((await api(base, 'GET', '/api/v1/config')).body), before, 'the refused changes changed nothing');
  t.is(await ready(probes), 200);

  // What keeps the placement goes through.
  t.is((await api(base, 'POST', '/api/v1/routes', { route: { name: 'late-route', destination: 'tcp-echo' } })).status, 200);
  await openEchoed(latePort, t);

  // A listener that comes with its Sync cluster in one body is placed on one
  // worker: every connection lands on worker 1, and all of them meet in one group.
  r = await api(base, 'POST', '/api/v1/config', {
    clusters: [{ name: 'rv2', spec: { protocol: 'Sync', query: '/IP/src_addr' } }],
    listeners: [{ name: 'pair', spec: { protocol: 'TCP', address: '127.0.0.1', port: pairPort }, rules: [{ action: { route: { destination: 'rv2' } } }] }],
  });
  t.is(r.status, 200, JSON.stringify(r.body));
  const conns: net.Socket[] = [];
  for (let i = 0; i < 12; i++) {
    const c = net.connect(pairPort, '127.0.0.1');
    t.teardown(() => c.destroy());
    await new Promise<void>((resolve, reject) => { c.once('connect', resolve); c.once('error', reject); });
    conns.push(c);
  }
  const pair = await waitFor(async () => {
    const all = (await api(base, 'GET', '/api/v1/sessions')).body as SessionDump[];
    const mine = all.filter((s) => s.name.includes(`:${pairPort}-`));
    return mine.length === 12 ? mine : undefined;
  }, 5000, '12 sessions of the pair listener');
  t.deepEqual([...new Set(pair.map((s) => s.worker))], [1], 'every session on worker 1');
  const got = conns.slice(1).map((c) => new Promise<string>((resolve) => c.once('data', (d: Buffer) => resolve(d.toString()))));
  conns[0]!.write('hello');
  t.deepEqual(await Promise.all(got), Array(11).fill('hello'), 'one group: every other member got it');
});
