// Chaos at the edge: a bounded UDP flood, REST churn (listeners and clusters
// added and deleted in a loop) and a SIGTERM, all at once, while well-behaved
// clients stream. Each client's stream must either complete or end with an
// error it can see; a clean end with fewer bytes than sent is the one outcome
// that must never happen (silent truncation).

import test from 'ava';
import dgram from 'node:dgram';
import http from 'node:http';
import { api, freePort, waitFor } from '../helpers.js';
import { httpRequest, startChild, tcpClient, tcpEchoUpstream, type HttpOutcome, type StreamEnd } from './edge-helpers.js';

const CHUNK = 64 * 1024;
const CHUNKS = 80; // 5 MiB per stream
const PACE_MS = 25; // ~2 s per stream: the SIGTERM lands in the middle

function chunkOf(i: number): Buffer {
  return Buffer.alloc(CHUNK, i & 0xff);
}

async function* pacedBody(): AsyncIterable<Buffer> {
  for (let i = 0; i < CHUNKS; i++) {
    yield chunkOf(i);
    await new Promise((r) => setTimeout(r, PACE_MS));
  }
}

/** An HTTP upstream that streams each request body back as its response. */
async function httpEchoUpstream(t: { teardown(fn: () => unknown): void }): Promise<number> {
  const server = http.createServer((req, res) => {
    res.writeHead(200, { 'content-type': 'application/octet-stream' });
    req.pipe(res);
  });
  const port = await freePort();
  await new Promise<void>((r) => server.listen(port, '127.0.0.1', () => r()));
  t.teardown(() => { server.closeAllConnections(); server.close(); });
  return port;
}

async function udpEchoUpstream(t: { teardown(fn: () => unknown): void }): Promise<number> {
  const s = dgram.createSocket('udp4');
  s.on('message', (m, r) => s.send(m, r.port, r.address));
  const port = await freePort();
  await new Promise<void>((r) => s.bind(port, '127.0.0.1', () => r()));
  t.teardown(() => s.close());
  return port;
}

/** At most `count` datagrams, in bursts, for at most `ms`. */
async function udpFlood(port: number, count: number, ms: number): Promise<number> {
  const s = dgram.createSocket('udp4');
  await new Promise<void>((r) => s.bind(0, '127.0.0.1', () => r()));
  s.on('message', () => undefined);
  const payload = Buffer.alloc(512, 7);
  const end = Date.now() + ms;
  let sent = 0;
  while (sent < count && Date.now() < end) {
    for (let i = 0; i < 100 && sent < count; i++, sent++) s.send(payload, port, '127.0.0.1');
    await new Promise((r) => setTimeout(r, 2));
  }
  s.close();
  return sent;
}

/** Add and delete a TCP listener and a cluster in a loop until `stop()` or `rounds`; errors (the API going away) end it. */
async function restChurn(base: string, upPort: number, rounds: number, stop: () => boolean, progress: { rounds: number }): Promise<number> {
  const port = await freePort();
  let done = 0;
  for (let i = 0; i < rounds && !stop(); i++) {
    try {
      await api(base, 'POST', '/api/v1/listeners', {
        listener: {
          name: `churn-${i}`, spec: { protocol: 'TCP', address: '127.0.0.1', port },
          rules: [{ action: { route: { destination: { name: `churn-up-${i}`, spec: { protocol: 'TCP', port: upPort }, endpoints: [{ spec: { address: '127.0.0.1' } }] } } } }],
        },
      });
      await api(base, 'POST', '/api/v1/clusters', { cluster: { name: `churn-c-${i}`, spec: { protocol: 'UDP', port: upPort }, endpoints: [{ spec: { address: '127.0.0.1' } }] } });
      await api(base, 'DELETE', `/api/v1/listeners/churn-${i}?recursive=true`);
      await api(base, 'DELETE', `/api/v1/clusters/churn-c-${i}`);
      done++;
      progress.rounds = done;
    } catch {
      break; // the gateway stopped taking REST calls (draining)
    }
  }
  return done;
}

function describeHttp(o: HttpOutcome): string {
  return `status ${o.status}, ${o.body.length} of ${CHUNK * CHUNKS} bytes, ${o.complete ? 'clean end' : `error: ${o.error}`}`;
}

test('UDP flood + REST churn + SIGTERM: every streaming client completes or sees an error, none is silently truncated', async (t) => {
  const httpUp = await httpEchoUpstream(t);
  const tcpUp = await tcpEchoUpstream(t);
  const udpUp = await udpEchoUpstream(t);
  const [httpPort, tcpPort, udpPort] = [await freePort(), await freePort(), await freePort()];
  const gw = await startChild(t, {
    listeners: [
      {
        name: 'web', spec: { protocol: 'HTTP', address: '127.0.0.1', port: httpPort },
        rules: [{ action: { route: { destination: { name: 'web-up', spec: { protocol: 'HTTP', port: httpUp }, endpoints: [{ spec: { address: '127.0.0.1' } }] } } } }],
      },
      {
        name: 'tcp', spec: { protocol: 'TCP', address: '127.0.0.1', port: tcpPort },
        rules: [{ action: { route: { destination: { name: 'tcp-up', spec: { protocol: 'TCP', port: tcpUp.port }, endpoints: [{ spec: { address: '127.0.0.1' } }] } } } }],
      },
      {
        name: 'udp', spec: { protocol: 'UDP', address: '127.0.0.1', port: udpPort },
        rules: [{ action: { route: { destination: { name: 'udp-up', spec: { protocol: 'UDP', port: udpUp }, endpoints: [{ spec: { address: '127.0.0.1' } }] } } } }],
      },
    ],
  }, { drain_timeout: 600, log_level: 'warn' });

  // The well-behaved clients.
  const web = httpRequest(`http://127.0.0.1:${httpPort}/upload`, { method: 'POST', body: pacedBody });
  const tcp = await tcpClient(tcpPort);
  const tcpSent = (async () => {
    let n = 0;
    for (let i = 0; i < CHUNKS && !tcp.sock.destroyed; i++) {
      if (!tcp.sock.write(chunkOf(i))) await new Promise((r) => { tcp.sock.once('drain', r); tcp.sock.once('close', r); });
      n += CHUNK;
      await new Promise((r) => setTimeout(r, PACE_MS));
    }
    if (!tcp.sock.destroyed) tcp.sock.end();
    return n;
  })();

  // The chaos.
  let stopChurn = false;
  const flood = udpFlood(udpPort, 20_000, 2500);
  const progress = { rounds: 0 };
  const churn = restChurn(gw.base, tcpUp.port, 200, () => stopChurn, progress);
  await waitFor(() => tcp.received().length >= 8 * CHUNK && progress.rounds >= 5, 5000, 'TCP stream and REST churn under way');
  gw.signal('SIGTERM');

  const [o, tcpEnd] = await Promise.all([web.outcome, tcp.ended]);
  stopChurn = true;
  const [floodSent, churnRounds] = await Promise.all([flood, churn]);
  await tcpSent;
  const exit = await Promise.race([gw.exited, new Promise<'hung'>((r) => setTimeout(() => r('hung'), 8000))]);
  t.log(`HTTP: ${describeHttp(o)}; TCP: ${tcp.received().length} bytes, ${tcpEnd.how}; UDP flood ${floodSent} datagrams; REST churn ${churnRounds} rounds`);

  // HTTP: a 200 with a clean end carries every byte; anything short ends with an error.
  const expected = CHUNK * CHUNKS;
  if (o.status === 200 && o.complete) t.is(o.body.length, expected, `silently truncated: ${describeHttp(o)}`);
  else t.true(o.status === undefined || o.status >= 500 || !o.complete, `unexpected outcome: ${describeHttp(o)}`);

  // TCP: a clean end (FIN) carries every byte sent; anything short is a reset or an error.
  const end: StreamEnd = tcpEnd;
  if (end.how === 'end') t.is(tcp.received().length, await tcpSent, `TCP stream silently truncated at ${tcp.received().length} bytes`);
  // Otherwise the client saw the cut as a reset or an error: visible, not silent.
  else t.true(end.how === 'reset' || end.how === 'error', `TCP stream ended ${end.how}`);

  t.is(exit, 0, 'the gateway exited after the drain');
});
