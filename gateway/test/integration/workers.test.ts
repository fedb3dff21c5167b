// admin.workers: 2 (docs/workers.md). Real sockets: a TCP and a UDP listener
// share their port across two worker processes, connections reach both, and a
// worker killed under load (every connection in ping-pong) takes only its own
// connections down: the other worker's keep echoing, the killed one is
// restarted with the config while /ready goes 503 then 200.

import test from 'ava';
import net from 'node:net';
import type dgram from 'node:dgram';
import { startGateway } from '../../src/app.js';
import { api, echo, freePort, nextMessage, peer, udpClient, waitFor } from './helpers.js';
import { openEchoed, ready, workersConfig } from './workers-helpers.js';

interface SessionDump { name: string; worker?: number }

function cluster(name: string, protocol: string, port: number) {
  return { name, spec: { protocol, port }, endpoints: [{ spec: { address: '127.0.0.1' } }] };
}

test('two workers share a TCP and a UDP port; a worker killed under load takes only its own connections down and comes back', async (t) => {
  const [api1, probes, tcpIn, udpIn, tcpEcho, udpEcho, tcpRest] = await Promise.all([freePort(), freePort(), freePort(), freePort(), freePort(), freePort(), freePort()]);
  await peer(t, echo.tcp(tcpEcho));
  await peer(t, echo.udp(udpEcho));
  const gw = await startGateway({
    config: workersConfig(2, api1, probes, {
      listeners: [
        { name: 'tcp-in', spec: { protocol: 'TCP', address: '127.0.0.1', port: tcpIn }, rules: [{ action: { route: { destination: 'tcp-echo' } } }] },
        { name: 'udp-in', spec: { protocol: 'UDP', address: '127.0.0.1', port: udpIn }, rules: [{ action: { route: { destination: 'udp-echo' } } }] },
      ],
      clusters: [cluster('tcp-echo', 'TCP', tcpEcho), cluster('udp-echo', 'UDP', udpEcho)],
    }),
  });
  t.teardown(() => gw.stop());
  const base = `http://127.0.0.1:${api1}`;
  t.is(await ready(probes), 200);

  // 24 connections from distinct source ports: the kernel hash puts each on one worker.
  const conns: net.Socket[] = [];
  for (let i = 0; i < 24; i++) conns.push(await openEchoed(tcpIn, t));
  const closed = new Set<net.Socket>();
  for (const c of conns) c.on('close', () => closed.add(c)).on('error', () => undefined);
  const udp: dgram.Socket[] = [];
  for (let i = 0; i < 24; i++) {
    const c = await udpClient();
    t.teardown(() => c.close());
    const reply = nextMessage(c);
    c.send('hello', udpIn, '127.0.0.1');
    t.is(String(await reply), 'hello');
    udp.push(c);
  }
  const sessions = (await api(base, 'GET', '/api/v1/sessions')).body as SessionDump[];
  const byWorker = (prefix: string) => new Set(sessions.filter((s) => s.name.includes(prefix)).map((s) => s.worker));
  t.deepEqual([...byWorker('-TCP:')].sort(), [1, 2], 'TCP connections reach both workers');
  t.deepEqual([...byWorker('-UDP:')].sort(), [1, 2], 'UDP flows reach both workers');
  t.is(new Set(sessions.map((s) => s.name)).size, sessions.length, 'session names are unique across workers');
  const one = sessions.find((s) => s.worker === 2)!;
  t.is((await api(base, 'GET', `/api/v1/sessions/${encodeURIComponent(one.name)}`)).body.name, one.name);
  // The name routes the lookup to its worker: an unknown name there, a worker that does not exist, no prefix: 404.
  for (const missing of ['w2-no-such-session', 'w9-' + one.name.slice(3), 'no-such-session']) {
    t.is((await api(base, 'GET', `/api/v1/sessions/${encodeURIComponent(missing)}`)).status, 404, missing);
  }

  // The main process holds the whole graph: the data-plane listeners too.
  const names = ((await api(base, 'GET', '/api/v1/listeners')).body as { name: string }[]).map((l) => l.name).sort();
  t.deepEqual(names, ['controller-listener', 'tcp-in', 'udp-in']);
  // A listener added over REST runs in every worker.
  const added = await api(base, 'POST', '/api/v1/listeners', { listener: { name: 'tcp-rest', spec: { protocol: 'TCP', address: '127.0.0.1', port: tcpRest }, rules: [{ action: { route: { destination: 'tcp-echo' } } }] } });
  t.is(added.status, 200, added.text);
  for (let i = 0; i < 24; i++) await openEchoed(tcpRest, t);
  // Port 0 would give each worker a port of its own: refused, nothing changed anywhere.
  const configBefore = (await api(base, 'GET', '/api/v1/config')).body as Record<string, unknown>;
  const anyPort = await api(base, 'POST', '/api/v1/listeners', { listener: { name: 'tcp-any', spec: { protocol: 'TCP', address: '127.0.0.1', port: 0 }, rules: [{ action: { route: { destination: 'tcp-echo' } } }] } });
  t.is(anyPort.status, 400, anyPort.text);
  t.regex(anyPort.text, /port 0/);
  const configAfter = (await api(base, 'GET', '/api/v1/config')).body as Record<string, unknown>;
  t.deepEqual({ ...configAfter, sessions: [] }, { ...configBefore, sessions: [] });
  const graphs = await (gw.workers as unknown as { graphs(): Promise<Record<string, unknown>[]> }).graphs();
  for (const g of graphs) t.false(JSON.stringify(g.listeners).includes('tcp-any'), 'no worker kept the refused listener');
  t.is(await ready(probes), 200, 'a refused change leaves every worker ready');
  // A port another listener of this gateway holds is refused before any worker binds it (SO_REUSEPORT
  // would share it silently), whatever the protocol name's case: the registry says which socket it takes.
  const taken = await api(base, 'POST', '/api/v1/listeners', { listener: { name: 'tcp-taken', spec: { protocol: 'tcp', address: '127.0.0.1', port: tcpRest }, rules: [{ action: { route: { destination: 'tcp-echo' } } }] } });
  t.is(taken.status, 409, taken.text);
  t.regex((taken.body as { content: string }).content, /listener "tcp-rest" holds it/);
  const restSessions = ((await api(base, 'GET', '/api/v1/sessions')).body as SessionDump[]).filter((s) => s.name.includes(`:${tcpRest}-`));
  t.deepEqual([...new Set(restSessions.map((s) => s.worker))].sort(), [1, 2], 'the REST-added listener runs in both workers');

  // Which worker holds which client connection: a session's name carries the client's port.
  const workerOf = (c: net.Socket) => sessions.find((x) => x.name.includes(`TCP:127.0.0.1:${c.localPort}-`))?.worker;
  const onW1 = conns.filter((c) => workerOf(c) === 1);
  const onW2 = conns.filter((c) => workerOf(c) === 2);
  t.is(onW1.length + onW2.length, conns.length);

  // Metrics are summed over the workers under today's names and labels.
  const metrics = await (await fetch(`http://127.0.0.1:${probes}/metrics`)).text();
  const sample = (name: string, labels: string) => Number(new RegExp(`^${name}\\{${labels}\\} (\\S+)$`, 'm').exec(metrics)?.[1]);
  t.is(sample('l7mp_listener_sessions_total', 'listener="tcp-in",protocol="TCP"'), 24, metrics.split('\n').filter((l) => l.includes('tcp-in')).join('\n'));
  t.is(sample('l7mp_listener_sessions_total', 'listener="udp-in",protocol="UDP"'), 24);

  // DELETE reaches the worker that owns the session: its client sees the connection end.
  const victim = onW2[0]!;
  const victimName = sessions.find((x) => x.name.includes(`TCP:127.0.0.1:${victim.localPort}-`))!.name;
  t.is((await api(base, 'DELETE', `/api/v1/sessions/${encodeURIComponent(victimName)}`)).status, 200);
  await waitFor(() => closed.has(victim), 5000, 'the deleted session\'s connection ends');
  onW2.shift();
  t.is((await api(base, 'DELETE', `/api/v1/sessions/${encodeURIComponent(victimName)}`)).status, 404);
  t.is((await api(base, 'DELETE', '/api/v1/sessions/w9-nope')).status, 404);

  // Kill worker 1 under load: every connection runs ping-pong until it
  // ends (bounded in count and time). Worker 1's connections end; worker 2's
  // keep echoing through the kill and after it.
  const rounds = new Map<net.Socket, number>();
  const deadline = Date.now() + 20_000;
  const pingPong = async (c: net.Socket): Promise<void> => {
    rounds.set(c, 0);
    while (!closed.has(c) && Date.now() < deadline && rounds.get(c)! < 100_000) {
      const echoed = await new Promise<boolean>((resolve) => {
        const done = (ok: boolean) => { c.off('data', onData); c.off('close', onClose); resolve(ok); };
        const onData = () => done(true);
        const onClose = () => done(false);
        c.on('data', onData).on('close', onClose);
        c.write('x');
      });
      if (!echoed) break;
      rounds.set(c, rounds.get(c)! + 1);
    }
  };
  const loops = [...onW1, ...onW2].map((c) => pingPong(c));
  await waitFor(() => [...onW1, ...onW2].every((c) => (rounds.get(c) ?? 0) >= 20), 5000, 'every connection echoes under load');
  const pid = (gw.workers as unknown as { pids(): (number | undefined)[] }).pids()[0]!;
  process.kill(pid, 'SIGKILL');
  await waitFor(() => onW1.every((c) => closed.has(c)), 5000, 'worker 1\'s connections end');
  const atKill = new Map(onW2.map((c) => [c, rounds.get(c)!]));
  await waitFor(() => onW2.every((c) => rounds.get(c)! >= atKill.get(c)! + 50), 5000, 'worker 2\'s connections keep echoing after the kill');
  for (const c of onW2) t.false(closed.has(c), 'a connection of worker 2 survives the kill of worker 1');
  await waitFor(async () => (await ready(probes)) === 503, 5000, '/ready 503 after the kill');
  await waitFor(async () => (await ready(probes)) === 200, 15000, '/ready 200 after the restart');
  // Worker 2's connections echoed all along, through the restart too.
  const atReady = new Map(onW2.map((c) => [c, rounds.get(c)!]));
  await waitFor(() => onW2.every((c) => rounds.get(c)! >= atReady.get(c)! + 50), 5000, 'worker 2\'s connections echo after the restart');
  for (const c of onW2) c.destroy();
  await Promise.all(loops);
  const newPid = (gw.workers as unknown as { pids(): (number | undefined)[] }).pids()[0];
  t.true(newPid !== undefined && newPid !== pid, 'worker 1 is a new process');
  // Both workers serve again: new connections land on both.
  for (let i = 0; i < 24; i++) await openEchoed(tcpIn, t);
  const after = (await api(base, 'GET', '/api/v1/sessions')).body as SessionDump[];
  t.true(after.some((s) => s.name.startsWith('w1-TCP:')), 'the restarted worker takes connections');
  // The restarted worker got the REST change too (replayed after the static config).
  for (let i = 0; i < 24; i++) await openEchoed(tcpRest, t);
  const restAfter = ((await api(base, 'GET', '/api/v1/sessions')).body as SessionDump[]).filter((s) => s.name.includes(`:${tcpRest}-`) && s.worker === 1);
  t.true(restAfter.length > 0, 'the restarted worker runs the REST-added listener');
  // The REST API answered throughout; it never depended on a worker.
  t.is((await api(base, 'GET', '/api/v1/listeners')).status, 200);
});
