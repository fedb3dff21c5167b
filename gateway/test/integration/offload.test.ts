// The tc-bpf UDP fast path, end to end, in network namespaces this test
// creates: client ns <-> gateway ns <-> server ns over veth pairs, the
// gateway as its own process inside the gateway ns (offload: init on its two
// data-plane veths), its REST API and metrics reached over a third veth.
//
// Needs root, the bpf addon and the BPF object. On a developer machine
// without them the tests skip and say why; under CI=true they fail instead.

import test, { type ExecutionContext } from 'ava';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { startGateway } from '../../src/app.js';
import { OffloadBridge } from '../../src/fastpath/offload/bridge.js';
import { parseOffloadConfig } from '../../src/config/offload.js';
import { silentLogger } from '../../src/observe/log.js';
import { waitFor } from './helpers.js';
import { MAIN, PEER, Proc, kernelFlows, offloadUnavailable, roundTrip, roundTripRetry, startPeer as startRigPeer } from './offload-rig.js';
import { createTopology, inNs, spawnInNs, type Topology } from '../../../conformance/netns.js';

const why = offloadUnavailable();
const ci = process.env.CI === 'true';
if (why && !ci) console.log(`offload tests skipped: ${why}`);
const serial = why && !ci ? test.serial.skip : test.serial;

interface Ctx {
  topo: Topology;
  gw: Proc;
  base: string;
  metrics: string;
  procs: Proc[];
  dir: string;
  server: Proc;
}

let ctx: Ctx | undefined;

function started(t: ExecutionContext, p: Proc): Proc {
  ctx!.procs.push(p);
  t.teardown(() => p.stop());
  return p;
}

async function api(method: string, p: string): Promise<{ status: number; body: any }> {
  const r = await fetch(`${ctx!.base}${p}`, { method });
  const text = await r.text();
  return { status: r.status, body: text ? JSON.parse(text) : undefined };
}

async function sessionOf(listenerPort: number, clientPort: number): Promise<any | undefined> {
  const r = await api('GET', '/api/v1/sessions');
  return (r.body as any[]).find((s) => s.name.startsWith(`UDP:${ctx!.topo.addr.client}:${clientPort}-`) && s.name.includes(`:${listenerPort}-`) && s.status === 'CONNECTED');
}

/** Packets a raw capture saw, each with its UDP checksum checked (python3, AF_PACKET). */
const CAPTURE = `
import json, socket, struct, sys
ifname, port = sys.argv[1], int(sys.argv[2])
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003))  # ETH_P_ALL: outgoing too
s.bind((ifname, 0))
print(json.dumps({"ready": True}), flush=True)
def fold(x):
    while x >> 16: x = (x & 0xffff) + (x >> 16)
    return x
while True:
    pkt = s.recv(65535)
    ip = pkt[14:]
    if pkt[12:14] != b"\\x08\\x00" or len(ip) < 28 or ip[9] != 17: continue
    ihl = (ip[0] & 15) * 4
    udp = ip[ihl:]
    sport, dport, ulen, csum = struct.unpack("!HHHH", udp[:8])
    if port not in (sport, dport): continue
    seg = udp[:ulen]
    pseudo = ip[12:20] + struct.pack("!BBH", 0, 17, ulen)
    data = pseudo + seg + (b"\\0" if len(seg) % 2 else b"")
    total = fold(sum(struct.unpack("!%dH" % (len(data) // 2), data)))
    print(json.dumps({"sport": sport, "dport": dport, "csum": csum, "valid": csum != 0 and total == 0xffff}), flush=True)
`;

async function capture(t: ExecutionContext, ns: string, ifname: string, port: number): Promise<Proc> {
  const p = started(t, new Proc(spawnInNs(ns, 'python3', ['-u', '-c', CAPTURE, ifname, String(port)])));
  await waitFor(() => p.count((l) => l.ready === true) > 0, 10_000, 'capture ready');
  return p;
}

/** Source ports of the entries in the gateway's flow table. */
function kernelFlowPorts(): number[] {
  return kernelFlows(ctx!.topo).map((f) => f.sport);
}

async function startPeer(t: ExecutionContext, ns: string, args: string[]): Promise<Proc> {
  return startRigPeer(t, ctx!.procs, ns, args);
}

function csumErrors(ns: string): number {
  const snmp = inNs(ns, 'cat', ['/proc/net/snmp']).split('\n').filter((l) => l.startsWith('Udp:'));
  const [names, values] = snmp.map((l) => l.trim().split(/\s+/));
  return Number(values![names!.indexOf('InCsumErrors')]);
}

test.before(async () => {
  if (why && !ci) return;
  if (why) throw new Error(`offload tests cannot run under CI: ${why}`);
  const topo = createTopology();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'l7mp-offload-'));
  ctx = { topo, gw: undefined as unknown as Proc, server: undefined as unknown as Proc, base: `http://${topo.addr.gwHost}:1234`, metrics: `http://${topo.addr.gwHost}:8080/metrics`, procs: [], dir };
  const server = { name: 'server', spec: { protocol: 'UDP', port: 6000 }, endpoints: [{ spec: { address: topo.addr.server } }] };
  const cfg = {
    admin: {
      log_level: 'verbose', offload: 'init', offload_ifs: [topo.ifs.gwClient, topo.ifs.gwServer],
      metrics: { enabled: true, address: topo.addr.gwHost, port: 8080 }, limits: { api_rate: 0 },
    },
    clusters: [server],
    listeners: [
      {
        name: 'controller-listener', spec: { protocol: 'HTTP', address: topo.addr.gwHost, port: 1234 },
        rules: [{ action: { route: { destination: { name: 'controller', spec: { protocol: 'L7mpController' } } } } }],
      },
      { name: 'udp-fast', spec: { protocol: 'UDP', address: topo.addr.gwClient, port: 5000, idle_timeout: 60 }, rules: [{ action: { route: { destination: 'server' } } }] },
      // Bound to the wildcard address: the flows use the concrete address the kernel picked.
      { name: 'udp-idle', spec: { protocol: 'UDP', port: 5002, idle_timeout: 2 }, rules: [{ action: { route: { destination: 'server' } } }] },
      {
        name: 'udp-logged', spec: { protocol: 'UDP', address: topo.addr.gwClient, port: 5001 },
        rules: [{ action: { route: { destination: 'server', ingress: [{ name: 'logger', spec: { protocol: 'Logger', log_file: path.join(dir, 'logger.log') } }] } } }],
      },
    ],
  };
  const file = path.join(dir, 'gateway.json');
  fs.writeFileSync(file, JSON.stringify(cfg));
  ctx.gw = new Proc(spawnInNs(topo.ns.gateway, process.execPath, [MAIN, '-c', file]));
  ctx.procs.push(ctx.gw);
  await waitFor(async () => {
    if (ctx!.gw.p.exitCode !== null) throw new Error(`gateway exited: ${ctx!.gw.text.join('\n').slice(-2000)}`);
    try { return (await fetch(`${ctx!.base}/api/v1/admin`)).ok; } catch { return false; }
  }, 30_000, 'gateway REST API');
  ctx.server = new Proc(spawnInNs(topo.ns.server, process.execPath, [PEER, 'server', topo.addr.server, '6000']));
  ctx.procs.push(ctx.server);
  await waitFor(() => ctx!.server.count((l) => l.ready === true) > 0, 15_000, 'UDP server peer ready');
});

test.after.always(async () => {
  if (!ctx) return;
  for (const p of ctx.procs) p.stop();
  await waitFor(() => ctx!.gw.p.exitCode !== null || ctx!.gw.p.signalCode !== null, 5000, 'gateway exit').catch(() => undefined);
  ctx.topo.destroy();
  fs.rmSync(ctx.dir, { recursive: true, force: true });
});

serial('the gateway reports offload active on its interfaces', async (t) => {
  const admin = await api('GET', '/api/v1/admin');
  t.is(admin.status, 200);
  t.is(admin.body.offload, true, `offload not active; gateway log:\n${ctx!.gw.text.filter((l) => l.includes('offload')).join('\n')}`);
});

serial('an offloaded UDP session: byte-exact both ways, valid checksums, kernel counters in the API and metrics', async (t) => {
  const { topo } = ctx!;
  const server = ctx!.server;
  const capS = await capture(t, topo.ns.server, topo.ifs.server, 6000);
  const capC = await capture(t, topo.ns.client, topo.ifs.client, 5000);
  const client = await startPeer(t, topo.ns.client, ['client', topo.addr.client, '7000', topo.addr.gwClient, '5000']);
  const csumBefore = { c: csumErrors(topo.ns.client), s: csumErrors(topo.ns.server) };

  await roundTrip(client, Buffer.from('hello'));
  const s0 = await waitFor(async () => { const s = await sessionOf(5000, 7000); return s?.offloaded === true ? s : undefined; }, 5000, 'session offloaded');
  t.is(s0.offload.state, 'kernel');
  const userIn = s0.counters.ingress.packets - s0.offload.kernel.ingress.packets;
  const userEg = s0.counters.egress.packets - s0.offload.kernel.egress.packets;
  t.is(userIn, 1);
  t.is(userEg, 1);

  // 100 datagrams of random sizes and contents, each answered.
  const sent: Buffer[] = [];
  for (let i = 0; i < 100; i++) {
    const p = crypto.randomBytes(1 + crypto.randomInt(1400));
    sent.push(p);
    await roundTrip(client, p);
  }
  const atServer = server.lines.filter((l) => typeof l.hex === 'string').map((l) => l.hex as string);
  t.deepEqual(atServer.slice(-100), sent.map((b) => b.toString('hex')), 'the server got every payload byte-exact, in order');
  t.true(server.lines.filter((l) => typeof l.from === 'string').every((l) => String(l.from).startsWith(`${topo.addr.gwServer}:`)), 'the server saw the gateway as the sender');

  const s1 = await sessionOf(5000, 7000);
  t.truthy(s1, 'still the same session');
  t.is(s1.name, s0.name);
  t.true(s1.offloaded);
  t.is(s1.offload.kernel.ingress.packets, 100, 'the kernel forwarded every client datagram');
  t.is(s1.offload.kernel.egress.packets, 100, 'the kernel forwarded every server datagram');
  const bytes = sent.reduce((n, b) => n + b.length, 0);
  t.is(s1.offload.kernel.ingress.bytes, bytes);
  t.is(s1.offload.kernel.egress.bytes, bytes);
  t.is(s1.counters.ingress.packets - s1.offload.kernel.ingress.packets, userIn, 'user space saw no packet of the offloaded flow');
  t.is(s1.counters.egress.packets - s1.offload.kernel.egress.packets, userEg);
  t.is(s1.counters.ingress.packets, 101, 'session counters include the kernel counts');

  const m = await (await fetch(ctx!.metrics)).text();
  const rx = m.split('\n').find((l) => l.startsWith('l7mp_listener_packets_total{') && l.includes('listener="udp-fast"') && l.includes('direction="rx"'));
  t.truthy(rx, 'listener packet metric present');
  t.true(Number(rx!.split(' ').pop()) >= 101, `Prometheus counts the kernel's packets: ${rx}`);

  // Every packet of the flow on both wires carried a valid, non-zero UDP checksum.
  const seen = (cap: Proc, port: number): string => `${cap.count((l) => l.dport === port)} to, ${cap.count((l) => l.sport === port)} from port ${port}`;
  await waitFor(() => capS.count((l) => l.dport === 6000) >= 101 && capS.count((l) => l.sport === 6000) >= 101, 3000, 'server-side capture')
    .catch((err: Error) => { throw new Error(`${err.message}: ${seen(capS, 6000)}`); });
  await waitFor(() => capC.count((l) => l.dport === 5000) >= 101 && capC.count((l) => l.sport === 5000) >= 101, 3000, 'client-side capture')
    .catch((err: Error) => { throw new Error(`${err.message}: ${seen(capC, 5000)}`); });
  for (const cap of [capS, capC]) {
    const bad = cap.lines.filter((l) => l.valid === false);
    t.deepEqual(bad, [], 'no packet with a zero or wrong UDP checksum');
  }
  t.is(csumErrors(topo.ns.client), csumBefore.c, 'no UDP checksum errors at the client');
  t.is(csumErrors(topo.ns.server), csumBefore.s, 'no UDP checksum errors at the server');
});

serial('idle timeout counts kernel traffic; deleting the session stops kernel forwarding', async (t) => {
  const { topo } = ctx!;
  const client = await startPeer(t, topo.ns.client, ['client', topo.addr.client, '7001', topo.addr.gwClient, '5002']);
  await roundTrip(client, Buffer.from('first'));
  const s0 = await waitFor(async () => { const s = await sessionOf(5002, 7001); return s?.offloaded === true ? s : undefined; }, 5000, 'session offloaded');
  // idle_timeout is 2 s: 4.5 s of kernel-only traffic must not end the session.
  const until = Date.now() + 4500;
  for (let i = 0; i < 60 && Date.now() < until; i++) {
    await roundTrip(client, crypto.randomBytes(32));
    await new Promise((r) => setTimeout(r, 100));
  }
  const s1 = await sessionOf(5002, 7001);
  t.is(s1?.name, s0.name, 'the session outlived its idle timeout while the kernel forwarded its packets');
  t.true(s1.offload.kernel.ingress.packets >= 10);

  const before = kernelFlowPorts();
  t.true(before.includes(7001), 'the client->gateway flow is in the kernel table');
  const del = await api('DELETE', `/api/v1/sessions/${encodeURIComponent(s0.name)}`);
  t.is(del.status, 200);
  const after = kernelFlowPorts();
  t.false(after.includes(7001), 'the delete removed the client->gateway flow from the kernel table');
  t.is(after.filter((p) => p === 6000).length, before.filter((p) => p === 6000).length - 1, 'and its server->gateway flow');
  // The next datagram is not forwarded by the kernel any more: user space
  // gets it and starts a new session for it.
  await roundTripRetry(client, Buffer.from('after delete'));
  const s2 = await waitFor(async () => { const s = await sessionOf(5002, 7001); return s && s.name !== s0.name ? s : undefined; }, 3000, 'a new session');
  t.true(s2.counters.ingress.packets >= 1);
  t.true(s2.counters.ingress.packets - (s2.offload?.kernel.ingress.packets ?? 0) >= 1, 'the datagram after the delete went through user space');

  // Silence: the new session (offloaded after its first exchange) ends by idle timeout.
  await waitFor(async () => (await sessionOf(5002, 7001)) === undefined, 10_000, 'idle timeout of the silent session');
  t.false(kernelFlowPorts().includes(7001), 'the idle timeout removed the flows from the kernel table');
});

serial('a session with a Logger in its route stays in user space', async (t) => {
  const { topo } = ctx!;
  const client = await startPeer(t, topo.ns.client, ['client', topo.addr.client, '7002', topo.addr.gwClient, '5001']);
  for (let i = 0; i < 10; i++) await roundTrip(client, Buffer.from(`logged ${i}`));
  const s = await waitFor(() => sessionOf(5001, 7002), 3000, 'logged session');
  t.false(s.offloaded);
  t.is(s.offload.state, 'user');
  t.regex(s.offload.reason, /transforms/);
  t.is(s.counters.ingress.packets, 10, 'user space carried every datagram');
  t.is(s.offload.kernel.ingress.packets, 0);
  const log = fs.readFileSync(path.join(ctx!.dir, 'logger.log'), 'utf8');
  t.is(log.trim().split('\n').length, 10, 'the Logger saw every datagram');
});

// These need no privileges: they run everywhere.

test.serial('offload settings: l7mp modes, booleans, interface lists and the CLI override', (t) => {
  t.deepEqual(parseOffloadConfig({}), { mode: 'disable', ifs: 'all' });
  t.deepEqual(parseOffloadConfig({ offload: true, offload_ifs: ['eth0', 'eth1'] }), { mode: 'init', ifs: ['eth0', 'eth1'] });
  t.deepEqual(parseOffloadConfig({ offload: 'no_init', offload_ifs: 'lo,eth0' }), { mode: 'no_init', ifs: ['lo', 'eth0'] });
  t.deepEqual(parseOffloadConfig({ offload: 'init', offload_ifs: [] }), { mode: 'init', ifs: 'all' });
  t.deepEqual(parseOffloadConfig({ offload: false, offload_ifs: 'eth0' }, { offload: 'init', offloadIfs: 'all' }), { mode: 'init', ifs: 'all' });
  t.throws(() => parseOffloadConfig({ offload: 'sometimes' }), { message: /init, no_init, disable/ });
  t.throws(() => parseOffloadConfig({ offload: 'init', offload_ifs: [3] }), { message: /interface names/ });
});

test.serial('without the addon the gateway says why once and runs without offload', async (t) => {
  const saved = process.env.L7MP_BPF_ADDON;
  process.env.L7MP_BPF_ADDON = '/nonexistent/l7mp_bpf.node';
  t.teardown(() => { if (saved === undefined) delete process.env.L7MP_BPF_ADDON; else process.env.L7MP_BPF_ADDON = saved; });
  const warnings: Array<{ obj: unknown; msg: string }> = [];
  const log = silentLogger();
  const origWarn = log.warn.bind(log);
  (log as { warn: unknown }).warn = (obj: unknown, msg: string) => { warnings.push({ obj, msg }); return origWarn(obj as object, msg); };
  const gw = await startGateway({ config: { admin: { offload: 'init', offload_ifs: ['lo'], metrics: { enabled: false } } }, logger: log });
  t.teardown(() => gw.stop());
  t.false(gw.admin.offload);
  t.false(gw.hooks.all.some((h) => h instanceof OffloadBridge));
  const w = warnings.filter((x) => x.msg.includes('kernel offload unavailable'));
  t.is(w.length, 1);
  t.regex(JSON.stringify(w[0]!.obj), /l7mp_bpf\.node is missing/);
});
