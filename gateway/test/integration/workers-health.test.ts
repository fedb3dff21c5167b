// Active health checks with admin.workers: 2 (docs/workers.md): the main
// process probes each endpoint once per interval, however many workers run,
// and its verdicts steer the workers' sessions. Real sockets: two TCP
// endpoints (127.0.0.1 and 127.0.0.2 on one port) that count connections and
// say who they are.

import test from 'ava';
import net from 'node:net';
import { startGw, freePort, waitFor } from './helpers.js';

/** A TCP server on host:port that answers every connection with its name and counts them. */
async function namedServer(t: { teardown(fn: () => unknown): void }, host: string, port: number, name: string): Promise<{ connections: () => number; close: () => Promise<void> }> {
  let n = 0;
  const sockets = new Set<net.Socket>();
  const srv = net.createServer((s) => {
    n++;
    sockets.add(s);
    s.on('close', () => sockets.delete(s)).on('error', () => undefined);
    s.end(name);
  });
  await new Promise<void>((resolve) => srv.listen(port, host, resolve));
  const close = () => new Promise<void>((resolve) => {
    for (const s of sockets) s.destroy();
    srv.close(() => resolve());
  });
  t.teardown(close);
  return { connections: () => n, close };
}

/** Connect through the gateway and read who answered. */
function whoAnswers(port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const c = net.connect(port, '127.0.0.1');
    let got = '';
    c.on('data', (d) => { got += String(d); });
    c.on('end', () => resolve(got));
    c.on('error', reject);
    c.setTimeout(3000, () => { c.destroy(); reject(new Error('no answer')); });
  });
}

test('2 workers: active checks run once, in the main process, and their verdicts steer every worker\'s sessions', async (t) => {
  const [port, listen, probesPort] = await Promise.all([freePort(), freePort(), freePort()]);
  const a = await namedServer(t, '127.0.0.1', port, 'A');
  const b = await namedServer(t, '127.0.0.2', port, 'B');
  const interval = 200;
  const { gw } = await startGw(t, {
    admin: { log_level: 'silent', workers: 2, drain_timeout: 0, metrics: { address: '127.0.0.1', port: probesPort }, limits: { api_rate: 0 } },
    listeners: [{ name: 'in', spec: { protocol: 'TCP', address: '127.0.0.1', port: listen }, rules: [{ action: { route: { destination: 'up' } } }] }],
    clusters: [{
      name: 'up', spec: { protocol: 'TCP', port },
      loadbalancer: { policy: 'WeightedRandom' },
      health_check: { interval, timeout: 150, unhealthy_threshold: 2, healthy_threshold: 1 },
      endpoints: [{ name: 'a', spec: { address: '127.0.0.1' } }, { name: 'b', spec: { address: '127.0.0.2' } }],
    }],
  });
  t.truthy(gw.workers, 'the gateway runs workers');

  // Probes only (no session yet): three processes probing would open about
  // three connections per interval to each endpoint; one opens about one.
  const start = b.connections();
  const window = 3000;
  await new Promise((r) => setTimeout(r, window));
  const probes = b.connections() - start;
  const perInterval = probes / (window / interval);
  t.log(`endpoint b: ${probes} probe connections in ${window} ms (interval ${interval} ms): ${perInterval.toFixed(2)} per interval`);
  t.true(perInterval >= 0.6 && perInterval <= 1.4, `about one probe per interval, not one per process: ${probes} in ${window} ms`);

  // Both endpoints take sessions while healthy.
  const before = new Set<string>();
  for (let i = 0; i < 20; i++) before.add(await whoAnswers(listen));
  t.deepEqual([...before].sort(), ['A', 'B']);

  // A dies: once the main process's checks mark it unhealthy, no worker sends it a session.
  await a.close();
  await waitFor(async () => {
    const seen = new Set<string>();
    for (let i = 0; i < 10; i++) seen.add(await whoAnswers(listen).catch(() => 'failed'));
    return seen.size === 1 && seen.has('B');
  }, 5000, 'every new session goes to the healthy endpoint');
  // No worker even tries A: its connect failures stop growing (a worker
  // without the verdict would try A first, fail, and retry on B).
  const failures = async () => {
    const text = await (await fetch(`http://127.0.0.1:${probesPort}/metrics`)).text();
    return Number(/^l7mp_listener_connect_failures_total\{listener="in",protocol="TCP"\} (\S+)$/m.exec(text)?.[1] ?? 0);
  };
  const failedBefore = await failures();
  const after: string[] = [];
  for (let i = 0; i < 30; i++) after.push(await whoAnswers(listen));
  t.deepEqual([...new Set(after)], ['B'], '30 sessions over both workers all reach B');
  t.is(await failures(), failedBefore, 'no connect attempt to the unhealthy endpoint');
});
