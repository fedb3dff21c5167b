// SCTP over UDP encapsulation (RFC 6951): the SCTP listener and cluster with
// real peers. The upstream is conformance/sctp_udp_echo.c on usrsctp (an SCTP
// stack independent of the gateway's `sctp` package); the client is the
// `sctp` package on its own UDP socket (conformance/sctp-client.ts).

import test, { type ExecutionContext } from 'ava';
import { spawn } from 'node:child_process';
import dgram from 'node:dgram';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { sctpUdpClient, type SctpClientSession } from '../../../conformance/sctp-client.js';
import { sctpUdpEcho, sctpUdpEchoArgs } from '../../../conformance/sctp-peer.js';
import { createRequire } from 'node:module';
import { socketsAddon } from '../../src/native/sockets.js';
import { api, echo, freePort, nextMessage, peer, startGw, udpClient, waitFor, type Peer } from './helpers.js';

const crc32c = (createRequire(createRequire(import.meta.url).resolve('sctp'))('polycrc') as { crc32c: (b: Uint8Array) => number }).crc32c;

const BIN_DIR = fs.mkdtempSync(path.join(os.tmpdir(), 'l7mp-sctp-'));
test.after.always(() => fs.rmSync(BIN_DIR, { recursive: true, force: true }));

/** The usrsctp echo peer could not be built: skip (fail under CI) with cc's reason. */
function echoBinary(t: ExecutionContext): string | undefined {
  try {
    return sctpUdpEcho(BIN_DIR);
  } catch (err) {
    if (process.env.CI === 'true') t.fail((err as Error).message);
    else {
      t.log(`skipped: ${(err as Error).message}`);
      t.pass();
    }
    return undefined;
  }
}

/** The usrsctp echo on 127.0.0.1, UDP encapsulation port and SCTP port both `port`. */
function usrsctpEcho(bin: string, port: number): Promise<Peer> {
  return new Promise((resolve, reject) => {
    const proc = spawn(bin, sctpUdpEchoArgs('127.0.0.1', port), { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    const timer = setTimeout(() => { proc.kill('SIGKILL'); reject(new Error(`sctp_udp_echo not ready in 5 s: ${out}`)); }, 5000);
    proc.stdout!.on('data', (d) => {
      out += String(d);
      if (out.includes('ready\n')) {
        clearTimeout(timer);
        resolve({
          proc,
          stop: () => new Promise<void>((r) => {
            if (proc.exitCode !== null || proc.signalCode !== null) return r();
            proc.once('exit', () => r());
            proc.kill('SIGKILL');
          }),
        });
      }
    });
    proc.stderr!.on('data', (d) => { out += String(d); });
    proc.once('exit', (code) => { clearTimeout(timer); reject(new Error(`sctp_udp_echo exited (${code}): ${out}`)); });
  });
}

function route(name: string, spec: Record<string, unknown>): unknown {
  return [{ action: { route: { destination: { name, spec, endpoints: [{ spec: { address: '127.0.0.1' } }] } } } }];
}

const sctpUdp = (port: number, extra: Record<string, unknown> = {}) => ({ protocol: 'SCTP', encapsulation: 'udp', port, ...extra });

async function client(t: ExecutionContext, port: number): Promise<SctpClientSession> {
  const c = await sctpUdpClient({ host: '127.0.0.1', port });
  t.teardown(() => c.abort());
  return c;
}

/** Send `msgs` in a burst and wait until as many messages came back. */
async function burst(c: SctpClientSession, msgs: Buffer[], what: string): Promise<Buffer[]> {
  const before = c.inbox.chunks.length;
  for (const m of msgs) c.send(m);
  await c.inbox.until(() => c.inbox.chunks.length >= before + msgs.length, 10_000, what);
  return c.inbox.chunks.slice(before);
}

const sized = (sizes: number[]) => sizes.map((n, i) => Buffer.alloc(n, 0x41 + i));

test('SCTP/UDP listener -> UDP cluster (socat echo): each SCTP message comes back as one', async (t) => {
  const up = await freePort();
  await peer(t, echo.udp(up));
  const port = await freePort();
  await startGw(t, { listeners: [{ name: 's', spec: { ...sctpUdp(port), address: '127.0.0.1' }, rules: route('u', { protocol: 'UDP', port: up }) }] });
  const c = await client(t, port);
  // One at a time: socat's per-datagram children may answer a burst out of order.
  for (const m of sized([1, 100, 1400, 1500, 9000, 65507])) {
    c.send(m);
    await c.inbox.until(() => c.inbox.chunks.at(-1)?.equals(m) === true, 10_000, `echo of ${m.byteLength} B`);
  }
  t.is(c.inbox.chunks.length, 6);
});

test('UDP listener -> SCTP/UDP cluster (usrsctp echo): datagrams come back whole, in order', async (t) => {
  const bin = echoBinary(t);
  if (bin === undefined) return;
  const up = await freePort();
  await peer(t, usrsctpEcho(bin, up));
  const port = await freePort();
  await startGw(t, { listeners: [{ name: 'u', spec: { protocol: 'UDP', address: '127.0.0.1', port }, rules: route('s', sctpUdp(up)) }] });
  const u = await udpClient();
  t.teardown(() => u.close());
  // The first datagram sets the association up; later ones queue behind it.
  const first = Buffer.from('first');
  u.send(first, port, '127.0.0.1');
  t.true((await nextMessage(u, 8000)).equals(first));
  const msgs = sized([1, 64, 1400, 3000, 16384, 65507]);
  const got: Buffer[] = [];
  u.on('message', (m) => got.push(m));
  for (const m of msgs) u.send(m, port, '127.0.0.1');
  await waitFor(() => got.length >= msgs.length, 10_000, 'six echoes');
  t.deepEqual(got.map((b) => b.byteLength), msgs.map((b) => b.byteLength));
  for (let i = 0; i < msgs.length; i++) t.true(got[i]!.equals(msgs[i]!), `message ${i}`);
});

test('SCTP/UDP -> SCTP/UDP (usrsctp echo): message boundaries kept in a burst, 64 KiB included', async (t) => {
  const bin = echoBinary(t);
  if (bin === undefined) return;
  const up = await freePort();
  await peer(t, usrsctpEcho(bin, up));
  const port = await freePort();
  // A separate UDP encapsulation port for the listener, to exercise udp_port.
  const udpPort = await freePort();
  await startGw(t, { listeners: [{ name: 's', spec: { ...sctpUdp(port, { udp_port: udpPort }), address: '127.0.0.1' }, rules: route('up', sctpUdp(up)) }] });
  const c = await sctpUdpClient({ host: '127.0.0.1', port: udpPort, sctpPort: port });
  t.teardown(() => c.abort());
  const msgs = sized([1, 2, 1400, 1452, 1453, 4000, 20000, 65536, 7]);
  const got = await burst(c, msgs, 'nine echoes');
  t.deepEqual(got.map((b) => b.byteLength), msgs.map((b) => b.byteLength));
  for (let i = 0; i < msgs.length; i++) t.true(got[i]!.equals(msgs[i]!), `message ${i}`);
});

test('SCTP/UDP listener: concurrent associations each get their own data, one session each', async (t) => {
  const bin = echoBinary(t);
  if (bin === undefined) return;
  const up = await freePort();
  await peer(t, usrsctpEcho(bin, up));
  const port = await freePort();
  const { gw } = await startGw(t, { listeners: [{ name: 's', spec: { ...sctpUdp(port), address: '127.0.0.1' }, rules: route('up', sctpUdp(up)) }] });
  const clients = await Promise.all(Array.from({ length: 8 }, () => client(t, port)));
  await Promise.all(clients.map((c, i) => burst(c, [Buffer.from(`c${i}-a`), Buffer.from(`c${i}-b`), Buffer.from(`c${i}-c`)], `client ${i}`)));
  for (const [i, c] of clients.entries()) {
    t.deepEqual(c.inbox.chunks.map(String), [`c${i}-a`, `c${i}-b`, `c${i}-c`], `client ${i}`);
  }
  const live = [...gw.sessions.values()].filter((s) => s.name.startsWith('SCTP:') && s.status !== 'DESTROYED');
  t.is(live.length, 8);
  const ports = live.map((s) => (s.metadata as { UDP: { src_port: number } }).UDP.src_port).sort();
  t.deepEqual(ports, clients.map((c) => c.localPort).sort());
});

test('SCTP/UDP: deleting the session over REST shuts the association down; the client\'s SHUTDOWN ends a session', async (t) => {
  const bin = echoBinary(t);
  if (bin === undefined) return;
  const up = await freePort();
  await peer(t, usrsctpEcho(bin, up));
  const port = await freePort();
  const { base, gw } = await startGw(t, { listeners: [{ name: 's', spec: { ...sctpUdp(port), address: '127.0.0.1' }, rules: route('up', sctpUdp(up)) }] });
  const a = await client(t, port);
  const b = await client(t, port);
  await burst(a, [Buffer.from('a')], 'a echo');
  await burst(b, [Buffer.from('b')], 'b echo');
  const sessionOf = (c: SctpClientSession) => [...gw.sessions.values()].find((s) =>
    (s.metadata as { UDP?: { src_port: number } }).UDP?.src_port === c.localPort && s.status !== 'DESTROYED');
  const sa = sessionOf(a);
  t.truthy(sa);
  const r = await api(base, 'DELETE', `/api/v1/sessions/${encodeURIComponent(sa!.name)}`);
  t.true(r.status < 300, r.text);
  await a.inbox.until(() => a.inbox.ended, 5000, 'the association of the deleted session to end');
  // The other association is untouched.
  t.is(String((await burst(b, [Buffer.from('still')], 'b after a ended'))[0]), 'still');
  // The client's SHUTDOWN ends its session.
  const sb = sessionOf(b);
  t.truthy(sb);
  await b.close();
  t.true(b.inbox.ended, 'the gateway completed the SHUTDOWN');
  await waitFor(() => sessionOf(b) === undefined, 5000, 'the session of the shut-down association to end');
});

test('SCTP/UDP cluster: nothing on the UDP port, or no SCTP on the port asked: the session fails at once with the reason', async (t) => {
  const bin = echoBinary(t);
  if (bin === undefined) return;
  const up = await freePort();
  await peer(t, usrsctpEcho(bin, up));
  const nobody = await freePort();
  const [p1, p2] = [await freePort(), await freePort()];
  const udpListener = (name: string, port: number, spec: Record<string, unknown>) =>
    ({ name, spec: { protocol: 'UDP', address: '127.0.0.1', port }, options: { track: 30 }, rules: route(`${name}-c`, spec) });
  const { gw } = await startGw(t, { listeners: [
    udpListener('nobody', p1, sctpUdp(nobody)),
    // usrsctp answers an INIT for an SCTP port nobody listens on with an ABORT.
    udpListener('wrongport', p2, sctpUdp(nobody, { udp_port: up })),
  ] });
  const u = await udpClient();
  t.teardown(() => u.close());
  const started = Date.now();
  u.send('x', p1, '127.0.0.1');
  u.send('y', p2, '127.0.0.1');
  const failed = (port: number) => [...gw.sessions.values()].find((s) => s.status === 'DESTROYED' && s.name.endsWith(`:${port}-0`));
  const [a, b] = await Promise.all([waitFor(() => failed(p1), 5000, 'the refused session'), waitFor(() => failed(p2), 5000, 'the aborted session')]);
  t.true(Date.now() - started < 4000, 'no waiting for INIT retransmissions');
  t.regex(JSON.stringify(a.events), /connection refused: nothing listens on UDP 127\.0\.0\.1/);
  t.regex(JSON.stringify(b.events), /aborted by the peer while being set up/);
});

test('SCTP/UDP listener: a client ABORT ends its session; idle_timeout shuts an idle association down', async (t) => {
  const up = await freePort();
  await peer(t, echo.udp(up));
  const port = await freePort();
  const { gw } = await startGw(t, { listeners: [{ name: 's', spec: { ...sctpUdp(port), address: '127.0.0.1', idle_timeout: 1 }, rules: route('u', { protocol: 'UDP', port: up }) }] });
  const live = () => [...gw.sessions.values()].filter((s) => s.name.startsWith('SCTP:') && s.status !== 'DESTROYED');
  const a = await client(t, port);
  await burst(a, [Buffer.from('a')], 'a echo');
  t.is(live().length, 1);
  await a.abort();
  await waitFor(() => live().length === 0, 5000, 'the aborted association\'s session to end');
  const b = await client(t, port);
  await burst(b, [Buffer.from('b')], 'b echo');
  const idleFrom = Date.now();
  await b.inbox.until(() => b.inbox.ended, 6000, 'the idle association to be shut down');
  t.true(Date.now() - idleFrom >= 900, 'not before idle_timeout');
  await waitFor(() => live().length === 0, 5000, 'the idle session to end');
});

test('SCTP/UDP: a client SHUTDOWN that crosses echoes in flight completes cleanly on both sides', async (t) => {
  const bin = echoBinary(t);
  if (bin === undefined) return;
  const up = await freePort();
  await peer(t, usrsctpEcho(bin, up));
  const port = await freePort();
  const { gw } = await startGw(t, { listeners: [{ name: 's', spec: { ...sctpUdp(port), address: '127.0.0.1' }, options: { track: 30 }, rules: route('up', sctpUdp(up)) }] });
  // The echoes reach the client while it is in SHUTDOWN-SENT: the `sctp`
  // package threw a TypeError there (see patchAssociation).
  for (let round = 0; round < 5; round++) {
    const c = await sctpUdpClient({ host: '127.0.0.1', port });
    await burst(c, [Buffer.from('warm-up')], 'warm-up echo');
    for (let i = 0; i < 30; i++) c.send(Buffer.alloc(600, i));
    await c.close();
    t.is(c.inbox.error, undefined, `round ${round}: ${c.inbox.error?.message ?? ''}`);
  }
  await waitFor(() => [...gw.sessions.values()].every((s) => s.status === 'DESTROYED'), 5000, 'every session to end');
  const errors = [...gw.sessions.values()].flatMap((s) => (s.events as { event: string; message: string }[]).filter((e) => e.event === 'ERROR').map((e) => e.message));
  t.deepEqual(errors, []);
});

test('SCTP/UDP listener: a peer that restarts on the same UDP port gets a new session; the old one ends', async (t) => {
  const up = await freePort();
  await peer(t, echo.udp(up));
  const port = await freePort();
  const { gw } = await startGw(t, { listeners: [{ name: 's', spec: { ...sctpUdp(port), address: '127.0.0.1' }, options: { track: 30 }, rules: route('u', { protocol: 'UDP', port: up }) }] });
  const a = await client(t, port);
  await burst(a, [Buffer.from('before the crash')], 'first echo');
  const first = [...gw.sessions.values()][0]!;
  await a.drop(); // no ABORT, no SHUTDOWN: the gateway still holds the association
  t.is(first.status === 'DESTROYED', false);
  const b = await sctpUdpClient({ host: '127.0.0.1', port }, { localPort: a.localPort });
  t.teardown(() => b.abort());
  t.is(String((await burst(b, [Buffer.from('after the restart')], 'echo after the restart'))[0]), 'after the restart');
  await waitFor(() => first.status === 'DESTROYED', 5000, 'the old session to end');
  t.regex(JSON.stringify(first.events), /restarted by the peer/);
  t.is([...gw.sessions.values()].filter((s) => s.status !== 'DESTROYED').length, 1);
});

test('SCTP/UDP listener: garbage, bad checksums and stray chunks are dropped; live associations carry on', async (t) => {
  const up = await freePort();
  await peer(t, echo.udp(up));
  const port = await freePort();
  const { gw } = await startGw(t, { listeners: [{ name: 's', spec: { ...sctpUdp(port), address: '127.0.0.1' }, rules: route('u', { protocol: 'UDP', port: up }) }] });
  const c = await client(t, port);
  await burst(c, [Buffer.from('before')], 'first echo');
  const junk = dgram.createSocket('udp4');
  t.teardown(() => junk.close());
  const send = (b: Buffer) => new Promise<void>((r) => junk.send(b, port, '127.0.0.1', () => r()));
  // Runt, random bytes, an INIT with a wrong CRC32c, a DATA chunk outside any association,
  // and an INIT whose chunk length claims more than the packet holds.
  const init = Buffer.alloc(32);
  init.writeUInt16BE(5000, 0);
  init.writeUInt16BE(port, 2);
  init.writeUInt32BE(0, 4);
  init.writeUInt32BE(0xdeadbeef, 8); // not the CRC32c
  init[12] = 1;
  init.writeUInt16BE(20, 14);
  const data = Buffer.from(init);
  data[12] = 0;
  data.writeUInt32BE(1234, 4);
  // A well-formed INIT (valid CRC32c) from SCTP port 65535, which the `sctp` package asserts against.
  const init65535 = Buffer.alloc(32);
  init65535.writeUInt16BE(65535, 0);
  init65535.writeUInt16BE(port, 2);
  init65535[12] = 1;
  init65535.writeUInt16BE(20, 14);
  init65535.writeUInt32BE(1234, 16); // initiate tag
  init65535.writeUInt32BE(100_000, 20); // a_rwnd
  init65535.writeUInt16BE(2, 24);
  init65535.writeUInt16BE(2, 26);
  init65535.writeUInt32BE(1, 28); // initial TSN
  init65535.writeUInt32LE(crc32c(init65535) >>> 0, 8);
  for (const b of [Buffer.from('x'), Buffer.alloc(300, 0xff), init, data, init65535]) await send(b);
  t.is(String((await burst(c, [Buffer.from('after')], 'echo after the junk'))[0]), 'after');
  t.is([...gw.sessions.values()].filter((s) => s.name.startsWith('SCTP:') && s.status !== 'DESTROYED').length, 1);
});

test('SCTP without encapsulation asks for kernel SCTP: rejected with the kernel\'s reason, config unchanged', async (t) => {
  const { base } = await startGw(t, {});
  const port = await freePort();
  const kernel = socketsAddon()?.sctpProbe();
  for (const [kind, body] of [
    ['listeners', { listener: { name: 'ks', spec: { protocol: 'SCTP', port }, rules: route('u', { protocol: 'UDP', port }) } }],
    ['clusters', { cluster: { name: 'kc', spec: { protocol: 'SCTP', port } } }],
  ] as const) {
    const r = await api(base, 'POST', `/api/v1/${kind}`, body);
    if (kernel === undefined) {
      // This kernel has SCTP: the kernel path takes it (native-sctp-kernel.test.ts).
      t.true(r.status < 300, r.text);
      continue;
    }
    t.is(r.status, 400, r.text);
    t.true(r.text.includes(kernel), r.text);
    t.regex(r.text, /encapsulation: udp/);
    const list = await api(base, 'GET', `/api/v1/${kind}`);
    t.false(list.text.includes(kind === 'listeners' ? '"ks"' : '"kc"'), 'nothing was added');
  }
  // And a bad encapsulation value names the field.
  const bad = await api(base, 'POST', '/api/v1/clusters', { cluster: { name: 'kc', spec: { protocol: 'SCTP', port, encapsulation: 'tcp' } } });
  t.is(bad.status, 400);
  t.regex(bad.text, /encapsulation/);
});

test('SCTP without encapsulation on this machine: the probe gives "SCTP not supported by this kernel"', (t) => {
  // The machine this was written on has no SCTP module; elsewhere the probe may be empty.
  const kernel = socketsAddon()?.sctpProbe();
  if (kernel === undefined) {
    t.log('skipped: this kernel has SCTP (or the addon is not built)');
    t.pass();
    return;
  }
  t.regex(kernel, /SCTP not supported by this kernel/);
});
