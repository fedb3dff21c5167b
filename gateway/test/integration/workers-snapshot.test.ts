// A worker gateway replays REST changes into a worker it restarts; once that
// log is long, a snapshot of the control plane's graph replaces it
// (workers/snapshot.ts). A worker restarted from the snapshot must be the
// worker it would have been: the same objects, listeners where they were
// placed, and inline objects that still go with a recursive delete.

import test from 'ava';
import net from 'node:net';
import path from 'node:path';
import { startGateway } from '../../src/app.js';
import { captureLogger } from '../capture-log.js';
import { api, echo, freePort, peer, tmpPath, waitFor } from './helpers.js';
import { openEchoed, ready, workersConfig } from './workers-helpers.js';

interface Sup {
  compactAt: number;
  pids(): (number | undefined)[];
  graphs(): Promise<Record<string, unknown>[]>;
}

interface SessionDump { name: string; worker: number }

test('a worker restarted after the change log gave way to a snapshot holds the same graph, placement and inline objects', async (t) => {
  t.timeout(60_000);
  const [apiPort, probes, tcpIn, inl, late, pinned, up] = await Promise.all([freePort(), freePort(), freePort(), freePort(), freePort(), freePort(), freePort()]);
  await peer(t, echo.tcp(up));
  const uds = tmpPath('snap.sock');
  const logs = captureLogger();
  const logText = () => logs.lines.map((l) => String(l.msg)).join('\n');
  const gw = await startGateway({
    config: workersConfig(2, apiPort, probes, {
      listeners: [{ name: 'tcp-in', spec: { protocol: 'TCP', address: '127.0.0.1', port: tcpIn }, rules: [{ action: { route: { destination: 'echo' } } }] }],
      clusters: [{ name: 'echo', spec: { protocol: 'TCP', port: up }, endpoints: [{ name: 'e1', spec: { address: '127.0.0.1' } }] }],
    }, { log_level: 'info', log_file: tmpPath('workers.log'), file_root: path.dirname(uds) }),
    logger: logs.log,
  });
  t.teardown(() => gw.stop());
  const sup = gw.workers as unknown as Sup;
  sup.compactAt = 7;
  const base = `http://127.0.0.1:${apiPort}`;
  const ok = async (method: string, path: string, body?: unknown) => {
    const r = await api(base, method, path, body);
    t.is(r.status, 200, `${method} ${path}: ${r.text}`);
  };
  // Seven changes: the seventh makes the snapshot.
  await ok('POST', '/api/v1/listeners', { listener: { name: 'inl', spec: { protocol: 'TCP', address: '127.0.0.1', port: inl }, rules: [{ action: { route: { destination: { name: 'inl-up', spec: { protocol: 'TCP', port: up }, endpoints: [{ spec: { address: '127.0.0.1' } }] } } } }] } });
  await ok('POST', '/api/v1/listeners', { listener: { name: 'uds', spec: { protocol: 'UnixDomainSocket', filename: uds }, rules: [{ action: { route: { destination: 'echo' } } }] } });
  // Placed on worker 1 for its Sync cluster; its route then changes to one that no longer needs that, and it stays there.
  await ok('POST', '/api/v1/listeners', { listener: { name: 'pinned', spec: { protocol: 'TCP', address: '127.0.0.1', port: pinned }, rules: [{ action: { route: { destination: { name: 'rv', spec: { protocol: 'Sync', query: '/IP/src_addr' } } } } }] } });
  const rulelist = ((await api(base, 'GET', '/api/v1/listeners/pinned')).body as { rules: string }).rules;
  await ok('POST', `/api/v1/rulelists/${rulelist}/rules/0`, { rule: { name: 'to-echo', action: { route: { destination: 'echo' } } } });
  await ok('DELETE', `/api/v1/rulelists/${rulelist}/rules/1?recursive=true`);
  await ok('POST', '/api/v1/clusters/echo/endpoints', { endpoint: { name: 'e2', spec: { address: '127.0.0.1' } } });
  t.false(logText().includes('start from a snapshot'), 'no snapshot before the seventh change');
  await ok('DELETE', '/api/v1/endpoints/e2');
  await waitFor(() => logText().includes('start from a snapshot') || undefined, 5000, 'the snapshot');
  // One change after it, replayed on top of it.
  await ok('POST', '/api/v1/listeners', { listener: { name: 'late', spec: { protocol: 'TCP', address: '127.0.0.1', port: late }, rules: [{ action: { route: { destination: 'echo' } } }] } });

  const pid = sup.pids()[1]!;
  process.kill(pid, 'SIGKILL');
  await waitFor(async () => (await ready(probes)) === 503 || undefined, 5000, '/ready 503 after the kill');
  await waitFor(async () => (await ready(probes)) === 200 || undefined, 15_000, 'worker 2 back with the current configuration');
  t.not(sup.pids()[1], pid, 'worker 2 is a new process');

  const same = async (what: string) => {
    const { admin: _a, sessions: _s, ...graph } = (await api(base, 'GET', '/api/v1/config')).body as Record<string, unknown>;
    const graphs = await sup.graphs();
    t.is(graphs.length, 2);
    for (const g of graphs) t.deepEqual(g, graph, what);
  };
  await same('the restarted worker holds the main process\'s graph');

  // Placement: the shared listeners on both workers, the Unix one on worker 1 only.
  const conns: net.Socket[] = [];
  for (let i = 0; i < 16; i++) conns.push(await openEchoed(inl, t), await openEchoed(late, t), await openEchoed(pinned, t));
  for (let i = 0; i < 8; i++) {
    const c = net.connect(uds);
    t.teardown(() => c.destroy());
    await new Promise<void>((resolve, reject) => { c.once('data', () => resolve()); c.once('error', reject); c.write('x'); });
    conns.push(c);
  }
  const sessions = (await api(base, 'GET', '/api/v1/sessions')).body as SessionDump[];
  const workersOf = (listenerPort: number | string) => [...new Set(sessions.filter((s) => s.name.includes(String(listenerPort))).map((s) => s.worker))].sort();
  t.deepEqual(workersOf(`:${inl}-`), [1, 2], 'inl runs on both workers');
  t.deepEqual(workersOf(`:${late}-`), [1, 2], 'late runs on both workers');
  t.deepEqual(workersOf('UNIX:'), [1], 'uds runs on worker 1 only, as placed');
  t.deepEqual(workersOf(`:${pinned}-`), [1], 'pinned stays on worker 1, where it was placed, in the restarted worker too');
  for (const c of conns) c.destroy();

  // Provenance: the inline route and cluster go with a recursive delete in every process.
  await ok('DELETE', '/api/v1/listeners/inl?recursive=true');
  const clusters = ((await api(base, 'GET', '/api/v1/clusters')).body as { name: string }[]).map((c) => c.name);
  t.false(clusters.includes('inl-up'), 'the inline cluster went with the listener');
  await same('after a recursive delete of an inline-defined listener, every worker still holds the main process\'s graph');
  t.is(await ready(probes), 200);
  t.false(logText().includes('cannot apply a change'), 'no worker refused a change');
});

test('a listener added over REST stays deletable over REST in a worker restarted from a snapshot (static listeners come along)', async (t) => {
  t.timeout(60_000);
  const [apiPort, probes, api2, up] = await Promise.all([freePort(), freePort(), freePort(), freePort()]);
  await peer(t, echo.tcp(up));
  const logs = captureLogger();
  const logText = () => logs.lines.map((l) => String(l.msg)).join('\n');
  const token = 'snapshot-test-token';
  const gw = await startGateway({
    config: workersConfig(2, apiPort, probes, { listeners: [], clusters: [] }, { log_level: 'info', log_file: tmpPath('workers2.log'), api_token: token }),
    logger: logs.log,
  });
  t.teardown(() => gw.stop());
  const sup = gw.workers as unknown as Sup;
  sup.compactAt = 2;
  const call = async (method: string, p: string, body?: unknown) => {
    const r = await fetch(`http://127.0.0.1:${apiPort}${p}`, { method, headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, ...(body !== undefined ? { body: JSON.stringify(body) } : {}) });
    t.is(r.status, 200, `${method} ${p}: ${await r.text()}`);
  };
  // A second API listener, added over REST (allowed with a token): not static, so REST may delete it.
  await call('POST', '/api/v1/listeners', { listener: { name: 'api2', spec: { protocol: 'HTTP', address: '127.0.0.1', port: api2 }, rules: [{ action: { route: { destination: 'controller' } } }] } });
  await call('POST', '/api/v1/clusters', { cluster: { name: 'echo', spec: { protocol: 'TCP', port: up }, endpoints: [{ spec: { address: '127.0.0.1' } }] } });
  await waitFor(() => logText().includes('start from a snapshot') || undefined, 5000, 'the snapshot');
  const pid = sup.pids()[1]!;
  process.kill(pid, 'SIGKILL');
  await waitFor(async () => (await ready(probes)) === 503 || undefined, 5000, '/ready 503 after the kill');
  await waitFor(async () => (await ready(probes)) === 200 || undefined, 15_000, 'worker 2 back');
  await call('DELETE', '/api/v1/listeners/api2');
  t.false(logText().includes('cannot apply a change'), 'no worker refused the delete');
  t.is(await ready(probes), 200);
  const graphs = await sup.graphs();
  t.is(graphs.length, 2);
  for (const g of graphs) t.false(JSON.stringify(g.listeners).includes('api2'), 'every worker deleted it');
});
