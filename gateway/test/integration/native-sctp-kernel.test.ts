// Kernel SCTP (gateway/src/protocols/sctp/kernel.ts). This machine's kernel
// has no SCTP, so these tests run the kernel SCTP code on TCP sockets: the
// stand-in L7MP_SCTP_KERNEL_STANDIN=tcp swaps only the socket's protocol
// number, so accept, non-blocking connect, metadata, the message channel and
// session teardown run for real against real peers (net clients, socat). TCP
// does not keep message boundaries: every exchange is one message per round
// trip. Where the kernel has SCTP, the SCTP-only test at the end runs too.

import test from 'ava';
import net from 'node:net';
import { socketsAddon } from '../../src/native/sockets.js';
import { api, echo, freePort, nextMessage, peer, startGw, udpClient, waitFor } from './helpers.js';

process.env.L7MP_SCTP_KERNEL_STANDIN = 'tcp';

function route(name: string, spec: Record<string, unknown>): unknown {
  return [{ action: { route: { destination: { name, spec, endpoints: [{ spec: { address: '127.0.0.1' } }] } } } }];
}

function connectTcp(port: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host: '127.0.0.1', port }, () => { s.off('error', reject); resolve(s); });
    s.once('error', reject);
  });
}

function reply(s: net.Socket, timeoutMs = 5000): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => { s.off('data', on); reject(new Error('no reply in time')); }, timeoutMs);
    const on = (d: Buffer) => { clearTimeout(t); resolve(d); };
    s.once('data', on);
  });
}

function closed(s: net.Socket, timeoutMs = 5000): Promise<void> {
  return new Promise((resolve, reject) => {
    if (s.destroyed || s.readableEnded) return resolve();
    const t = setTimeout(() => reject(new Error('the connection did not end in time')), timeoutMs);
    s.once('end', () => { clearTimeout(t); resolve(); });
    s.once('close', () => { clearTimeout(t); resolve(); });
    s.resume();
  });
}

test('kernel SCTP listener (TCP stand-in: no SCTP in this kernel) -> UDP echo: messages round-trip, IP/SCTP metadata, REST delete ends the association', async (t) => {
  const up = await freePort();
  await peer(t, echo.udp(up));
  const port = await freePort();
  const { base, gw } = await startGw(t, { listeners: [{ name: 'ks', spec: { protocol: 'SCTP', port, address: '127.0.0.1' }, rules: route('u', { protocol: 'UDP', port: up }) }] });
  const c = await connectTcp(port);
  t.teardown(() => c.destroy());
  for (const m of ['hello', 'x'.repeat(1400), 'third']) {
    c.write(m);
    t.is(String(await reply(c)), m);
  }
  const live = [...gw.sessions.values()].filter((s) => s.name.startsWith('SCTP:') && s.status !== 'DESTROYED');
  t.is(live.length, 1);
  const s = live[0]!;
  const md = s.metadata as Record<string, unknown>;
  t.deepEqual(md.IP, { src_addr: '127.0.0.1', dst_addr: '127.0.0.1' });
  t.deepEqual(md.SCTP, { src_port: c.localPort, dst_port: port });
  t.is(s.name, `SCTP:127.0.0.1:${c.localPort}-127.0.0.1:${port}-0`);
  const r = await api(base, 'DELETE', `/api/v1/sessions/${encodeURIComponent(s.name)}`);
  t.true(r.status < 300, r.text);
  await closed(c);
  // The listener goes on accepting.
  const d = await connectTcp(port);
  t.teardown(() => d.destroy());
  d.write('again');
  t.is(String(await reply(d)), 'again');
});

test('kernel SCTP cluster (TCP stand-in) from UDP: one association per flow, datagrams round-trip', async (t) => {
  const up = await freePort();
  await peer(t, echo.tcp(up));
  const port = await freePort();
  const { gw } = await startGw(t, { listeners: [{ name: 'u', spec: { protocol: 'UDP', address: '127.0.0.1', port }, rules: route('kc', { protocol: 'SCTP', port: up }) }] });
  const a = await udpClient();
  const b = await udpClient();
  t.teardown(() => { a.close(); b.close(); });
  for (const [u, m] of [[a, 'from a'], [b, 'from b'], [a, 'a again']] as const) {
    u.send(m, port, '127.0.0.1');
    t.is(String(await nextMessage(u, 5000)), m);
  }
  const live = [...gw.sessions.values()].filter((s) => s.status !== 'DESTROYED');
  t.is(live.length, 2, 'a session per flow');
});

test('kernel SCTP cluster (TCP stand-in): nobody on the port fails the session at once with "refused"', async (t) => {
  const nobody = await freePort();
  const port = await freePort();
  const { gw } = await startGw(t, { listeners: [{ name: 'u', spec: { protocol: 'UDP', address: '127.0.0.1', port }, options: { track: 30 }, rules: route('kc', { protocol: 'SCTP', port: nobody }) }] });
  const u = await udpClient();
  t.teardown(() => u.close());
  const started = Date.now();
  u.send('x', port, '127.0.0.1');
  const failed = await waitFor(() => [...gw.sessions.values()].find((s) => s.status === 'DESTROYED'), 5000, 'the failed session');
  t.true(Date.now() - started < 4000);
  t.regex(JSON.stringify(failed.events), new RegExp(`SCTP 127\\.0\\.0\\.1:${nobody}: refused`));
});

test('kernel SCTP (TCP stand-in): a listener port in use and udp_port without encapsulation are clear errors; config unchanged', async (t) => {
  const { base } = await startGw(t, {});
  const taken = await freePort();
  const holder = net.createServer();
  await new Promise<void>((r) => holder.listen(taken, '127.0.0.1', () => r()));
  t.teardown(() => holder.close());
  const before = (await api(base, 'GET', '/api/v1/config')).text;
  const inUse = await api(base, 'POST', '/api/v1/listeners', { listener: { name: 'k1', spec: { protocol: 'SCTP', port: taken, address: '127.0.0.1' }, rules: route('u', { protocol: 'UDP', port: taken }) } });
  t.true(inUse.status >= 400 && inUse.status < 500, inUse.text);
  t.regex(inUse.text, /cannot listen on 127\.0\.0\.1:\d+: address already in use/);
  const udpPort = await api(base, 'POST', '/api/v1/clusters', { cluster: { name: 'k2', spec: { protocol: 'SCTP', port: taken, udp_port: 9899 } } });
  t.is(udpPort.status, 400, udpPort.text);
  t.regex(udpPort.text, /udp_port/);
  t.is((await api(base, 'GET', '/api/v1/config')).text, before);
});

test.serial('kernel SCTP where the kernel has it: a real association, else the probe names the reason', async (t) => {
  const reason = socketsAddon()?.sctpProbe();
  if (reason !== undefined) {
    // This machine: no sctp module. The stand-in tests above carry the code path.
    t.regex(reason, /SCTP not supported by this kernel/);
    return;
  }
  delete process.env.L7MP_SCTP_KERNEL_STANDIN;
  t.teardown(() => { process.env.L7MP_SCTP_KERNEL_STANDIN = 'tcp'; });
  const up = await freePort();
  await peer(t, echo.udp(up));
  const port = await freePort();
  const back = await freePort();
  // SCTP listener -> UDP echo, reached through a UDP listener -> SCTP cluster.
  await startGw(t, {
    listeners: [
      { name: 'ks', spec: { protocol: 'SCTP', port, address: '127.0.0.1' }, rules: route('u', { protocol: 'UDP', port: up }) },
      { name: 'ku', spec: { protocol: 'UDP', port: back, address: '127.0.0.1' }, rules: route('kc', { protocol: 'SCTP', port }) },
    ],
  });
  const u = await udpClient();
  t.teardown(() => u.close());
  u.send('over kernel sctp', back, '127.0.0.1');
  t.is(String(await nextMessage(u, 5000)), 'over kernel sctp');
});
