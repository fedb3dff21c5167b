// Data-plane fuzzing (fast-check, fixed seed, bounded time): random
// datagrams, garbage bytes, truncated handshakes and abrupt resets against a
// listener of every protocol in the registry that can listen, each routed to
// an Echo cluster. Throughout, a healthy session on the same listener keeps
// echoing, stays listed in GET /api/v1/sessions, and the API answers; the
// sessions the attacks opened on stream protocols end. So bad input ends
// only the session it arrived on, never the listener or the process.
//
// Protocols come from gateway/src/protocols/registry.ts: a new listener
// protocol fails the "every protocol has a driver" test until a driver for
// it is added here. Clients are real sockets. The attacks: raw bytes on
// Node's sockets for UDP, TCP, Unix streams, HTTP and WebSocket, socat for
// UNIX/dgram and UNIX/seqpacket (Node has neither). The healthy clients are
// the conformance suite's (conformance/peers.ts, fuzz-drivers.ts says where
// not). FIFOs for PIPE (whose writers share one session, so its runs are
// sequential), python3 packet sockets for AF_PACKET (inside a network
// namespace the test creates, on the far end of a veth pair whose other end
// the listener is bound to; root only: skipped with the reason elsewhere,
// failed under CI=true). On a failure fast-check prints the seed and the
// attacks; replay with FUZZ_SEED=<seed>.

import test, { type ExecutionContext } from 'ava';
import net from 'node:net';
import fc from 'fast-check';
import { PROTOCOLS } from '../../src/protocols/registry.js';
import { api, freePort, startGw, tmpPath, waitFor } from './helpers.js';
import { ETHERTYPE } from './veth.js';
import {
  HTTP_REQUESTS, WS_BAD_UPGRADES, datagramAttacks, garbage, httpClient, jsonHeaders, jsonSocketWsClient, peerClient, peerSpec, pipeAttack,
  pipeRoundTrip, rawStream, sctpPacketArb, sendDatagrams, sendSctpPackets, sendWsMessages, socatOnce, streamVariant, tcpConnect, truncated,
  unixMessageVariant, wsFrames, type Variant, type Where,
} from './fuzz-drivers.js';
import { packetVariant } from './fuzz-packet.js';

const SEED = Number(process.env.FUZZ_SEED ?? 20261128);
const RUNS = 40;
/** Per variant; the whole file stays well under a minute on a small machine. */
const TIME_LIMIT_MS = 3_000;

/** Listener protocol name -> its variants (engines, transports). */
const DRIVERS: Record<string, Variant[]> = {
  UDP: [{
    title: 'UDP',
    protocol: 'UDP',
    sessionsEnd: false,
    spec: peerSpec('UDP'),
    open: (w) => peerClient('UDP', w),
    attacks: datagramAttacks('datagrams', fc.uint8Array({ maxLength: 1500 })),
    attack: (w, a) => sendDatagrams(w.port, a),
  }],
  TCP: [streamVariant('TCP', tcpConnect)],
  UnixDomainSocket: [streamVariant('UnixDomainSocket', (w) => () => net.connect(w.path))],
  HTTP: [{
    title: 'HTTP',
    protocol: 'HTTP',
    sessionsEnd: true,
    spec: (w) => ({ protocol: 'HTTP', address: '127.0.0.1', port: w.port }),
    open: (w) => httpClient(w.port),
    attacks: fc.oneof(truncated('truncated-request', HTTP_REQUESTS), garbage('garbage')),
    attack: (w, a) => rawStream(tcpConnect(w), a.bytes, a.end),
  }],
  WebSocket: (['uws', 'ws'] as const).map((engine): Variant => ({
    title: `WebSocket (engine ${engine})`,
    protocol: 'WebSocket',
    sessionsEnd: true,
    spec: peerSpec('WebSocket', engine === 'ws' ? { engine } : {}),
    open: (w) => peerClient('WebSocket', w),
    attacks: fc.oneof(truncated('truncated-upgrade', WS_BAD_UPGRADES), wsFrames(), garbage('garbage')),
    attack: (w, a) => rawStream(tcpConnect(w), a.bytes, a.end),
  })),
  // A healthy sender binds its own path (replies need an address); attackers send unbound, one-way.
  // Attackers send unbound, one-way.
  'UNIX/dgram': [unixMessageVariant('UNIX/dgram', (w) => `UNIX-SENDTO:${w.path}`)],
  // Its attacked sessions are not checked to end here: see the known-failing test below.
  'UNIX/seqpacket': [unixMessageVariant('UNIX/seqpacket', (w) => `UNIX-CONNECT:${w.path},type=5`)],
  SCTP: [{
    title: 'SCTP over UDP',
    protocol: 'SCTP',
    sessionsEnd: false,
    spec: peerSpec('SCTP'),
    open: (w) => peerClient('SCTP', w),
    attacks: datagramAttacks('sctp-packets', sctpPacketArb),
    attack: (w, a) => sendSctpPackets(w.port, a),
  }],
  PIPE: [{
    title: 'PIPE',
    protocol: 'PIPE',
    sessionsEnd: true,
    sequential: true,
    spec: (w) => ({ protocol: 'PIPE', filename: w.path, reply_filename: `${w.path}.reply` }),
    open: () => { throw new Error('PIPE runs are sequential: see fuzzSequential'); },
    attacks: garbage('garbage'),
    attack: pipeAttack,
  }],
  JSONSocket: [{
    title: 'JSONSocket over UDP',
    protocol: 'JSONSocket',
    sessionsEnd: false,
    spec: peerSpec('JSONSocket', { handshake_timeout: 500 }),
    open: (w) => peerClient('JSONSocket', w),
    attacks: datagramAttacks('json-header', jsonHeaders),
    attack: (w, a) => sendDatagrams(w.port, a),
  }, {
    title: 'JSONSocket over WebSocket',
    protocol: 'JSONSocket',
    sessionsEnd: true,
    spec: (w) => ({ protocol: 'JSONSocket', transport: { protocol: 'WebSocket', address: '127.0.0.1', port: w.port }, handshake_timeout: 500 }),
    open: (w) => jsonSocketWsClient(w.port),
    attacks: fc.oneof(datagramAttacks('json-header', jsonHeaders), truncated('truncated-upgrade', WS_BAD_UPGRADES), wsFrames()),
    attack: (w, a) => (a.kind === 'json-header' ? sendWsMessages(w.port, a) : rawStream(tcpConnect(w), a.bytes, a.end)),
  }],
  AF_PACKET: [
    packetVariant('AF_PACKET (ethertype 0x88B5)', ETHERTYPE),
    packetVariant('AF_PACKET (ETH_P_ALL)', 3),
  ],
};

const LISTENER_PROTOCOLS = PROTOCOLS.filter((p) => p.listener !== undefined && p.unavailable === undefined).map((p) => p.name);

test('every listener protocol in the registry has a fuzz driver', (t) => {
  const missing = LISTENER_PROTOCOLS.filter((p) => !DRIVERS[p]);
  t.deepEqual(missing, [], `add a driver to fuzz-dataplane.test.ts for: ${missing.join(', ')}`);
  t.true(LISTENER_PROTOCOLS.length >= 6, LISTENER_PROTOCOLS.join(', '));
});
// --------------------------------------------------------------------- runs

interface SessionDump { name: string; status?: string; source?: { origin?: string } }

async function listenerSessions(base: string, listener: string): Promise<SessionDump[]> {
  const r = await api(base, 'GET', '/api/v1/sessions');
  if (r.status !== 200) throw new Error(`GET /api/v1/sessions answered ${r.status}: ${r.text}`);
  return (r.body as SessionDump[]).filter((s) => s.source?.origin === listener);
}

/** The sequential harness (PIPE): after every attack its session ends, and a fresh client gets an echo. */
async function fuzzSequential(t: ExecutionContext, v: Variant): Promise<void> {
  const w: Where = { port: 0, path: tmpPath('fuzz.fifo') };
  const { base } = await startGw(t, {
    listeners: [{ name: 'fuzzed', spec: v.spec(w), rules: [{ action: { route: { destination: { name: 'echo', spec: { protocol: 'Echo' } } } } }] }],
  });
  let seq = 0;
  const quiet = () => waitFor(async () => (await listenerSessions(base, 'fuzzed')).length === 0, 10_000, `${v.title}: the attacked session to end`);
  const probe = async () => {
    await quiet();
    const payload = Buffer.from(`healthy-${++seq}-${'#'.repeat(seq % 50)}`);
    const back = await pipeRoundTrip(w, payload);
    if (!back.equals(payload)) throw new Error(`a fresh client got ${JSON.stringify(back.toString())} for ${JSON.stringify(payload.toString())}`);
  };
  await probe();
  let attacks = 0;
  const started = Date.now();
  const deadline = started + TIME_LIMIT_MS;
  await fc.assert(
    fc.asyncProperty(v.attacks, async (a) => {
      if (Date.now() > deadline) return;
      await v.attack(w, a);
      attacks++;
      await probe();
    }),
    { seed: SEED, numRuns: RUNS, endOnFailure: true, includeErrorInReport: true },
  );
  await quiet();
  t.is((await api(base, 'GET', '/api/v1/config')).status, 200);
  t.log(`seed ${SEED}: ${attacks} attacks in ${Date.now() - started} ms`);
  t.true(attacks >= 10, `too few attacks in the time budget (${attacks})`);
}

async function fuzz(t: ExecutionContext, v: Variant): Promise<void> {
  if (v.sequential) return fuzzSequential(t, v);
  const extra = v.prepare ? await v.prepare(t) : {};
  if (extra === undefined) return; // skipped, with the reason logged (or failed under CI=true)
  const w: Where = { port: await freePort(), path: tmpPath('fuzz.sock'), ...extra };
  const { base } = await startGw(t, {
    listeners: [{ name: 'fuzzed', spec: v.spec(w), rules: [{ action: { route: { destination: { name: 'echo', spec: { protocol: 'Echo' } } } } }] }],
  });
  const healthy = await v.open(w);
  t.teardown(() => healthy.close());
  let seq = 0;
  const probe = async () => {
    const payload = Buffer.from(`healthy-${++seq}-${'#'.repeat(seq % 50)}`);
    const back = await healthy.roundTrip(payload);
    if (!back.equals(payload)) throw new Error(`the healthy session echoed ${JSON.stringify(back.toString())} for ${JSON.stringify(payload.toString())}`);
  };
  await probe();
  const before = await listenerSessions(base, 'fuzzed');
  if (before.length !== 1) throw new Error(`expected the healthy session alone, got ${JSON.stringify(before.map((s) => s.name))}`);
  const healthyName = before[0]!.name;

  let attacks = 0;
  const started = Date.now();
  const deadline = started + TIME_LIMIT_MS;
  await fc.assert(
    fc.asyncProperty(fc.array(v.attacks, { minLength: 1, maxLength: 4 }), async (batch) => {
      // Out of time: the remaining runs pass without doing anything. (fast-check's own
      // time limit abandons a run mid-flight, whose late echo would then confuse the next probe.)
      if (Date.now() > deadline) return;
      // The attacks run together, the healthy session talks meanwhile.
      await Promise.all([...batch.map((a) => v.attack(w, a)), probe()]);
      attacks += batch.length;
      await probe();
      const now = await listenerSessions(base, 'fuzzed');
      const h = now.find((s) => s.name === healthyName);
      if (!h) throw new Error(`the healthy session ${healthyName} is gone; sessions: ${JSON.stringify(now.map((s) => s.name))}`);
    }),
    { seed: SEED, numRuns: RUNS, endOnFailure: true, includeErrorInReport: true },
  );
  if (v.sessionsEnd) {
    // The attacked sessions end; the healthy one stays.
    let left: SessionDump[] = [];
    try {
      await waitFor(async () => {
        left = await listenerSessions(base, 'fuzzed');
        return left.length === 1 && left[0]!.name === healthyName;
      }, 10_000, `${v.title}: only the healthy session left`);
    } catch (err) {
      const others = left.filter((s) => s.name !== healthyName);
      throw new Error(`${(err as Error).message}; ${others.length} attacked sessions did not end, e.g. ${JSON.stringify(others.slice(0, 2))}`);
    }
  }
  await probe();
  t.is((await api(base, 'GET', '/api/v1/config')).status, 200);
  t.log(`seed ${SEED}: ${attacks} attacks in ${Date.now() - started} ms${w.packet ? ` (${w.packet.refused()} frames refused by the sending kernel, ${w.packet.echoed} echoed back)` : ''}`);
  t.true(attacks >= 10, `too few attacks in the time budget (${attacks})`);
  if (w.packet) t.true(w.packet.echoed > 0, 'no attack frame reached the AF_PACKET listener (none was echoed back)');
}

for (const [protocol, variants] of Object.entries(DRIVERS)) {
  for (const v of variants) {
    test.serial(`${v.title}: random input and truncated handshakes end only their own session`, async (t) => {
      t.true(LISTENER_PROTOCOLS.includes(protocol), `${protocol} is not a listener protocol of the registry any more`);
      await fuzz(t, v);
    });
  }
}

// Found by this fuzzer (2026-11-28): a UNIX/seqpacket session whose client
// sends a message and closes stayed CONNECTED (the listener's channel saw
// EOF and passed end() on, but the socket was never closed once both halves
// had ended). Fixed in native/channel.ts (closeIfDone).
test('UNIX/seqpacket: a session ends when its client closes', async (t) => {
  t.true(LISTENER_PROTOCOLS.includes('UNIX/seqpacket'));
  const w: Where = { port: 0, path: tmpPath('seqpacket.sock') };
  const { base } = await startGw(t, {
    listeners: [{ name: 'fuzzed', spec: { protocol: 'UNIX/seqpacket', filename: w.path }, rules: [{ action: { route: { destination: { spec: { protocol: 'Discard' } } } } }] }],
  });
  for (let i = 0; i < 5; i++) await socatOnce(`UNIX-CONNECT:${w.path},type=5`, Buffer.from(`message ${i}`));
  await waitFor(async () => (await listenerSessions(base, 'fuzzed')).length === 0, 3_000, 'the closed sessions to end');
  t.deepEqual(await listenerSessions(base, 'fuzzed'), [], 'no session outlives its closed client');
});