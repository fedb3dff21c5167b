// The tc-bpf UDP offload with two data-plane workers (docs/workers.md
// "Offload with workers"), in network namespaces this test creates (the rig
// of offload.test.ts): each worker offloads the UDP flows the kernel gave it
// into the one flow table the main process attached, every entry records its
// worker, and a killed worker's entries are removed while the other worker's
// flows stay in the kernel.
//
// Needs root, the bpf addon and the BPF object; skips and says why without
// them, fails instead under CI=true.

import test from 'ava';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { waitFor } from './helpers.js';
import { MAIN, Proc, kernelFlows, offloadUnavailable, roundTrip, roundTripRetry, startPeer } from './offload-rig.js';
import { createTopology, spawnInNs, type Topology } from '../../../conformance/netns.js';

const why = offloadUnavailable();
const ci = process.env.CI === 'true';
if (why && !ci) console.log(`offload-workers test skipped: ${why}`);
const run = why && !ci ? test.serial.skip : test.serial;

const FLOWS = 16;
const CLIENT_PORT = 7100;

interface Dumped { name: string; worker: number; status: string; offloaded?: boolean; offload?: { state: string; reason?: string; kernel: { ingress: { packets: number }; egress: { packets: number } } }; counters: { ingress: { packets: number } } }

let topo: Topology | undefined;
const procs: Proc[] = [];
let dir: string | undefined;

test.after.always(() => {
  for (const p of procs) p.stop();
  topo?.destroy();
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

run('two workers offload their own UDP flows into one table; a dead worker\'s entries are removed', async (t) => {
  if (why) throw new Error(`cannot run under CI: ${why}`);
  topo = createTopology();
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'l7mp-offload-workers-'));
  const base = `http://${topo.addr.gwHost}:9301`;
  const cfg = {
    admin: {
      log_level: 'info', workers: 2, drain_timeout: 0, offload: 'init', offload_ifs: [topo.ifs.gwClient, topo.ifs.gwServer],
      metrics: { address: topo.addr.gwHost, port: 9302 }, limits: { api_rate: 0 },
    },
    clusters: [{ name: 'server', spec: { protocol: 'UDP', port: 6000 }, endpoints: [{ spec: { address: topo.addr.server } }] }],
    listeners: [
      { name: 'controller-listener', spec: { protocol: 'HTTP', address: topo.addr.gwHost, port: 9301 }, rules: [{ action: { route: { destination: { name: 'controller', spec: { protocol: 'L7mpController' } } } } }] },
      { name: 'udp-fast', spec: { protocol: 'UDP', address: topo.addr.gwClient, port: 5000, idle_timeout: 60 }, rules: [{ action: { route: { destination: 'server' } } }] },
    ],
  };
  const file = path.join(dir, 'gateway.json');
  fs.writeFileSync(file, JSON.stringify(cfg));
  const gw = new Proc(spawnInNs(topo.ns.gateway, process.execPath, [MAIN, '-c', file]));
  procs.push(gw);
  const log = (): string => gw.text.slice(-40).join('\n');
  await waitFor(async () => {
    if (gw.p.exitCode !== null) throw new Error(`gateway exited: ${log()}`);
    try { return (await fetch(`${base}/api/v1/admin`)).ok; } catch { return false; }
  }, 30_000, 'gateway REST API');
  const pids = gw.lines.find((l) => l.msg === 'data-plane workers started')?.worker_pids as number[];
  t.is(pids?.length, 2, log());
  await startPeer(t, procs, topo.ns.server, ['server', topo.addr.server, '6000']);
  const clients = await startPeer(t, procs, topo.ns.client, ['clients', topo.addr.client, String(CLIENT_PORT), String(FLOWS), topo.addr.gwClient, '5000']);

  const sessions = async (): Promise<Dumped[]> => ((await (await fetch(`${base}/api/v1/sessions`)).json()) as Dumped[]).filter((s) => s.status === 'CONNECTED' && s.name.includes('-UDP:'));
  const flowOf = (s: Dumped): number => Number(new RegExp(`UDP:${topo!.addr.client.replace(/\./g, '\\.')}:(\\d+)-`).exec(s.name)?.[1]) - CLIENT_PORT;
  for (let f = 0; f < FLOWS; f++) await roundTrip(clients, Buffer.from(`hello ${f}`), 3000, f);
  const first = await waitFor(async () => {
    const l = await sessions();
    return l.length === FLOWS && l.every((s) => s.offloaded === true) ? l : undefined;
  }, 5000, 'every flow offloaded').catch(async (err: Error) => { throw new Error(`${err.message}: ${JSON.stringify((await sessions()).map((s) => [s.name, s.offload]))}`); });
  const ownerOf = new Map(first.map((s) => [flowOf(s), s.worker]));
  const onW1 = [...ownerOf].filter(([, w]) => w === 1).map(([f]) => f);
  const onW2 = [...ownerOf].filter(([, w]) => w === 2).map(([f]) => f);
  t.true(onW1.length > 0 && onW2.length > 0, `flows on both workers: ${onW1.length} / ${onW2.length}`);
  for (const s of first) t.is(s.offload?.state, 'kernel');

  // The kernel forwards the rest: user space sees none of these.
  for (let i = 0; i < 10; i++) for (let f = 0; f < FLOWS; f++) await roundTrip(clients, Buffer.from(`bulk ${i} ${f}`), 3000, f);
  for (const s of await sessions()) {
    t.true((s.offload?.kernel.ingress.packets ?? 0) >= 10, `${s.name}: the kernel forwarded its datagrams (${JSON.stringify(s.offload)})`);
    t.is(s.counters.ingress.packets - s.offload!.kernel.ingress.packets, 1, `${s.name}: user space saw only the first datagram`);
  }

  // Each flow's client->gateway entry carries the worker that owns the session; both directions per flow.
  const table = kernelFlows(topo);
  for (const [f, w] of ownerOf) t.deepEqual(table.filter((e) => e.sport === CLIENT_PORT + f).map((e) => e.owner), [w], `flow ${f}'s entry belongs to worker ${w}`);
  t.is(table.filter((e) => e.owner === 1).length, 2 * onW1.length);
  t.is(table.filter((e) => e.owner === 2).length, 2 * onW2.length);

  // Worker 1 dies: its entries go (no kernel forwarding for sessions nobody owns), worker 2's stay and forward.
  process.kill(pids[0]!, 'SIGKILL');
  const died = await waitFor(() => gw.lines.find((l) => l.msg?.toString().startsWith('data-plane worker died') && l.worker === 1), 5000, 'the death logged');
  t.is(died.kernel_flows_removed, 2 * onW1.length, JSON.stringify(died));
  t.is(died.sessions_ended, onW1.length, 'its offloaded sessions counted as ended');
  const after = kernelFlows(topo);
  t.deepEqual(after.filter((e) => e.owner === 1), [], 'no entry of the dead worker is left');
  t.is(after.filter((e) => e.owner === 2).length, 2 * onW2.length, 'the surviving worker\'s entries stay');
  const survivor = onW2[0]!;
  const before = (await sessions()).find((s) => flowOf(s) === survivor)!;
  await roundTrip(clients, Buffer.from('still in the kernel'), 3000, survivor);
  const later = (await sessions()).find((s) => flowOf(s) === survivor)!;
  t.is(later.name, before.name);
  t.is(later.offload!.kernel.ingress.packets, before.offload!.kernel.ingress.packets + 1, 'the surviving worker\'s flow is still forwarded by the kernel');
  // The dead worker's flows reach user space again and get new sessions.
  for (const f of onW1) await roundTripRetry(clients, Buffer.from(`back ${f}`), f);
  await waitFor(() => gw.lines.some((l) => l.msg === 'data-plane worker restarted' && l.worker === 1), 15_000, 'worker 1 restarted');

  // The main process dies without a shutdown: the program stays attached (as
  // without workers), but the workers, on losing it, remove their entries.
  const workers = [pids[1]!, gw.lines.find((l) => l.msg === 'data-plane worker restarted' && l.worker === 1)!.worker_pid as number];
  t.true(kernelFlows(topo).length > 0, 'flows in the kernel before the main process dies');
  process.kill(gw.p.pid!, 'SIGKILL');
  const alive = (pid: number): boolean => { try { process.kill(pid, 0); return true; } catch { return false; } };
  await waitFor(() => !workers.some(alive), 5000, 'the workers exit');
  t.deepEqual(kernelFlows(topo), [], 'no entry is left forwarding for sessions nobody owns');
});
