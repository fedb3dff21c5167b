// The kernel pair in a data-plane worker (docs/workers.md): a TCP bulk
// session through a 2-worker gateway is forwarded by the addon (the raw
// stream path from its first byte; with L7MP_TCP_FASTPATH=off, the splice
// handover past 256 KiB), in whichever worker the kernel gave the connection.

import test from 'ava';
import crypto from 'node:crypto';
import net from 'node:net';
import { startGateway } from '../../src/app.js';
import { spliceUnavailable } from '../../src/fastpath/splice.js';
import { api, echo, freePort, peer, waitFor } from './helpers.js';
import { workersConfig } from './workers-helpers.js';

const why = spliceUnavailable();
// Under CI=true a capability-gated test fails instead of skipping.
const ci = process.env.CI === 'true';
const run = why === undefined || ci ? test : test.skip;
if (why !== undefined && !ci) console.log(`workers splice test skipped: ${why}`);

run('a TCP bulk session in a worker goes on the splice path', async (t) => {
  if (why !== undefined) t.fail(`splice unavailable (${why}) (CI=true)`);
  const [api1, probes, tcpIn, tcpEcho] = await Promise.all([freePort(), freePort(), freePort(), freePort()]);
  await peer(t, echo.tcp(tcpEcho));
  const gw = await startGateway({
    config: workersConfig(2, api1, probes, {
      listeners: [{ name: 'in', spec: { protocol: 'TCP', address: '127.0.0.1', port: tcpIn }, rules: [{ action: { route: { destination: 'up' } } }] }],
      clusters: [{ name: 'up', spec: { protocol: 'TCP', port: tcpEcho }, endpoints: [{ spec: { address: '127.0.0.1' } }] }],
    }),
  });
  t.teardown(() => gw.stop());
  const base = `http://127.0.0.1:${api1}`;

  // 1 MiB echoed, the connection kept open so that the session is live when read.
  const c = net.connect(tcpIn, '127.0.0.1');
  t.teardown(() => c.destroy());
  const sent = crypto.randomBytes(1024 * 1024);
  const got: Buffer[] = [];
  let n = 0;
  c.on('data', (d: Buffer) => { got.push(d); n += d.length; });
  c.write(sent);
  await waitFor(() => n >= sent.length, 10_000, 'the echo of 1 MiB');
  t.true(Buffer.concat(got).equals(sent), 'the bytes came back exact');

  const s = await waitFor(async () => {
    const l = ((await api(base, 'GET', '/api/v1/sessions')).body as any[]).filter((x) => x.name.includes(`TCP:127.0.0.1:${c.localPort}-`));
    return l.length === 1 && l[0].splice?.state === 'active' ? l[0] : undefined;
  }, 5000, 'the session on the splice path');
  t.true(s.worker === 1 || s.worker === 2, 'a worker runs it');
  t.true(s.spliced, 'the kernel splice path took over in the worker');
  t.true(s.splice.kernel.ingress.bytes > 0, `the kernel carried bytes: ${JSON.stringify(s.splice)}`);
  t.is(s.counters.ingress.bytes, sent.length, 'the counters hold every byte, the kernel\'s share included');
});
