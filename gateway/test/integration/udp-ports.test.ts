// The UDP source-port quarantine (gateway/src/protocols/udp/ports.ts): a port
// a cluster session released is not handed to the next session to the same
// upstream, because per-flow upstreams (socat's fork, NAT, flow tables) would
// take the new session for the old one.

import test from 'ava';
import dgram from 'node:dgram';
import { PortQuarantine, QUARANTINE_TRIES, drawUnbarred, udpSourcePorts } from '../../src/protocols/udp/ports.js';
import { api, freePort, nextMessage, startGw, udpClient, waitFor } from './helpers.js';

// These tests are about UDP sessions in JavaScript (the batched path, the port
// quarantine, a session's links); compiled UDP listeners have native-udp-forwarder.test.ts.
process.env.L7MP_UDP_COMPILED = 'off';

test('a released port is barred for the same upstream only, until the quarantine ends', (t) => {
  const q = new PortQuarantine(1000, 100);
  q.release('10.0.0.1:53', 40000, 0);
  t.true(q.barred('10.0.0.1:53', 40000, 10));
  t.false(q.barred('10.0.0.2:53', 40000, 10), 'another upstream');
  t.false(q.barred('10.0.0.1:54', 40000, 10), 'another upstream port');
  t.false(q.barred('10.0.0.1:53', 40001, 10), 'another local port');
  t.true(q.barred('10.0.0.1:53', 40000, 999));
  t.false(q.barred('10.0.0.1:53', 40000, 1000), 'expired');
  t.is(q.size, 0, 'an expired entry is dropped when looked up');
});

test('the table is bounded: the oldest entries go first, expired ones on the next release', (t) => {
  const q = new PortQuarantine(1000, 3);
  for (let p = 1; p <= 5; p++) q.release('u:1', p, p);
  t.is(q.size, 3);
  t.deepEqual([1, 2, 3, 4, 5].map((p) => q.barred('u:1', p, 10)), [false, false, true, true, true]);
  q.release('u:1', 9, 1004); // 3 and 4 have expired by now
  t.deepEqual([3, 4, 5, 9].map((p) => q.barred('u:1', p, 1004)), [false, false, true, true]);
  // Re-releasing a port renews it (it moves to the end of the order).
  q.release('u:1', 5, 1005);
  t.true(q.barred('u:1', 5, 1900));
});

test('upstreams are numbered, not spelled out, in the keys: no two upstreams share a port\'s entry, and past the numbering\'s bound the table starts over', (t) => {
  const q = new PortQuarantine(1000, 100_000);
  // Port 65535 of one upstream and port 0 of the next are adjacent keys: neither may read as the other.
  q.release('10.0.0.1:53', 65535, 0);
  t.false(q.barred('10.0.0.2:53', 0, 1));
  t.false(q.barred('10.0.0.2:53', 65535, 1));
  t.true(q.barred('10.0.0.1:53', 65535, 1));
  // Many upstreams: each keeps its own entry until the numbering wraps.
  for (let i = 0; i < 16_000; i++) q.release(`10.1.${i >> 8}.${i & 255}:53`, 40000, 2);
  t.true(q.barred('10.1.0.0:53', 40000, 3));
  t.true(q.barred('10.1.62.127:53', 40000, 3));
  t.false(q.barred('10.1.62.128:53', 40000, 3), 'an upstream that never released that port');
  for (let i = 0; i < 1_000; i++) q.release(`10.2.${i >> 8}.${i & 255}:53`, 40000, 4);
  t.true(q.size <= 1_000, `started over once the upstreams were too many to number (${q.size} entries)`);
  t.true(q.barred('10.2.3.231:53', 40000, 5), 'the entries made after the restart are kept');
});

function bound(): Promise<dgram.Socket> {
  const s = dgram.createSocket('udp4');
  return new Promise((resolve, reject) => {
    s.once('error', reject);
    s.bind(0, '127.0.0.1', () => resolve(s));
  });
}

function isClosed(s: dgram.Socket): boolean {
  try {
    s.address();
    return false;
  } catch {
    return true;
  }
}

test('drawUnbarred keeps drawing real sockets past barred ports, and closes the ones it passed over', async (t) => {
  const q = new PortQuarantine();
  const drawn: dgram.Socket[] = [];
  const ports: number[] = [];
  const open = async (): Promise<dgram.Socket> => {
    const s = await bound();
    drawn.push(s);
    ports.push(s.address().port);
    // The first three draws get their port barred just before the check:
    // as if the kernel had handed back three recently released ports.
    if (drawn.length <= 3) q.release('127.0.0.1:9', s.address().port);
    return s;
  };
  const got = await drawUnbarred('127.0.0.1:9', open, (s) => s.address().port, (s) => s.close(), q);
  t.teardown(() => got.close());
  t.is(drawn.length, 4);
  t.is(got, drawn[3]);
  t.false(isClosed(got));
  t.deepEqual(drawn.slice(0, 3).map(isClosed), [true, true, true], 'the passed-over sockets are closed');
  // Held open while drawing, the barred sockets kept their ports: four different ports.
  t.is(new Set(ports).size, 4);
});

test('drawUnbarred gives up after QUARANTINE_TRIES draws and takes the last one', async (t) => {
  const q = new PortQuarantine();
  let n = 0;
  const got = await drawUnbarred('u:1', () => { n++; q.release('u:1', 7); return { port: 7, open: true }; }, (s) => s.port, (s) => { s.open = false; }, q);
  t.is(n, QUARANTINE_TRIES);
  t.true(got.open);
});

test('through the gateway: a UDP cluster session that ends leaves its source port barred for that upstream', async (t) => {
  // The upstream records the source port of each flow and echoes.
  const up = await freePort();
  const seen: number[] = [];
  const echoSock = dgram.createSocket('udp4');
  echoSock.on('message', (m, r) => {
    if (!seen.includes(r.port)) seen.push(r.port);
    echoSock.send(m, r.port, r.address);
  });
  await new Promise<void>((r) => echoSock.bind(up, '127.0.0.1', () => r()));
  t.teardown(() => echoSock.close());
  const port = await freePort();
  const { base, gw } = await startGw(t, {
    admin: { log_level: 'warn' },
    listeners: [{
      name: 'u', spec: { protocol: 'UDP', address: '127.0.0.1', port },
      rules: [{ action: { route: { destination: { name: 'up', spec: { protocol: 'UDP', port: up }, endpoints: [{ spec: { address: '127.0.0.1' } }] } } } }],
    }],
  });
  const remote = `127.0.0.1:${up}`;
  for (let i = 0; i < 3; i++) {
    const c = await udpClient();
    c.send(`probe ${i}`, port, '127.0.0.1');
    t.is((await nextMessage(c, 3000)).toString(), `probe ${i}`);
    c.close();
    const p = seen[i]!;
    t.false(udpSourcePorts.barred(remote, p), `flow ${i}: not barred while in use`);
    const name = [...gw.sessions.keys()][0]!;
    t.is((await api(base, 'DELETE', `/api/v1/sessions/${encodeURIComponent(name)}`)).status, 200);
    await waitFor(() => udpSourcePorts.barred(remote, p), 3000, `port ${p} barred after its session ended`);
  }
  t.is(seen.length, 3, 'each session reached the upstream from its own port');
});
