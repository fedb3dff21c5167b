// The drain tests of drain.test.ts against gateways with 2 data-plane worker
// processes (admin.workers, docs/workers.md): SIGTERM reaches the main
// process, which stops the workers; each drains its own sessions for
// drain_timeout, and the main process waits for them before it exits.

import test from 'ava';
import { freePort, tcpListening, waitFor } from '../helpers.js';
import { startChild, tcpClient, tcpEchoUpstream } from './edge-helpers.js';

process.env.L7MP_TEST_WORKERS = '2';
await import('./drain.test.js');

test.serial('2 workers: a drain longer than the supervisor\'s 10 s step is waited for, not cut short', async (t) => {
  t.timeout(40_000);
  const up = await tcpEchoUpstream(t);
  const port = await freePort();
  const listener = {
    name: 'tcp', spec: { protocol: 'TCP', address: '127.0.0.1', port },
    rules: [{ action: { route: { destination: { name: 'tcp-up', spec: { protocol: 'TCP', port: up.port }, endpoints: [{ spec: { address: '127.0.0.1' } }] } } } }],
  };
  const gw = await startChild(t, { listeners: [listener] }, { drain_timeout: 13_000 });
  const c = await tcpClient(port);
  c.sock.write('a;');
  await c.next(2);
  const t0 = Date.now();
  gw.signal('SIGTERM');
  await waitFor(async () => !(await tcpListening(port)), 3000, 'listener closed to new connections');
  // Past the 10 s that used to end the workers, the session still echoes.
  await new Promise((r) => setTimeout(r, 11_000));
  c.sock.write('b;');
  t.is((await c.next(4)).toString(), 'a;b;', 'the session lives on past 10 s of drain');
  t.is(await gw.exited, 0);
  const took = Date.now() - t0;
  t.true(took >= 12_000, 'the gateway exited at drain_timeout, not before');
  // The idle worker waits for the busy one (it holds its connections until
  // every worker has drained), but the wait ends with the drain: not at the
  // workers' 3 s backstop past drain_timeout.
  t.true(took < 13_000 + 2_000, `the gateway exited ${took} ms after SIGTERM (drain_timeout 13000)`);
});
