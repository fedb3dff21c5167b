// The pieces the offload tests share (offload.test.ts, offload-workers.test.ts):
// why the rig cannot run here, peers as JSON-line child processes in a
// namespace, a checked round trip, and the gateway's flow table read from
// outside the gateway with bpftool.

import type { ExecutionContext } from 'ava';
import { spawnSync, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';
import { loadBpf } from '../../src/fastpath/offload/native.js';
import { waitFor } from './helpers.js';
import { inNs, killGroup, spawnInNs, topologyUnavailable, type Topology } from '../../../conformance/netns.js';

const here = path.dirname(fileURLToPath(import.meta.url));
export const MAIN = path.resolve(here, '..', '..', 'src', 'main.js');
export const PEER = path.join(here, 'offload-peer.js');

/** Why the offload rig cannot run here (root, tools, the bpf addon and object), or undefined. */
export function offloadUnavailable(): string | undefined {
  const why = topologyUnavailable();
  if (why) return why;
  // bpftool reads the gateway's flow table from outside; python3 captures raw packets.
  for (const [tool, arg] of [['bpftool', 'version'], ['python3', '--version']] as const) {
    if (spawnSync(tool, [arg], { stdio: 'ignore' }).status !== 0) return `${tool} is not installed (scripts/setup-host.sh)`;
  }
  const b = loadBpf();
  return b.ok ? undefined : b.reason;
}

/** A child process whose stdout is JSON lines, collected for waiting on. */
export class Proc {
  readonly lines: Array<Record<string, unknown>> = [];
  readonly text: string[] = [];
  constructor(readonly p: ChildProcess) {
    readline.createInterface({ input: p.stdout! }).on('line', (l) => {
      this.text.push(l);
      if (this.text.length > 5000) this.text.shift();
      try { this.lines.push(JSON.parse(l) as Record<string, unknown>); } catch { /* not JSON */ }
    });
    p.stderr!.on('data', (d: Buffer) => { this.text.push(d.toString()); });
  }
  send(o: unknown): void { this.p.stdin!.write(`${JSON.stringify(o)}\n`); }
  count(pred: (l: Record<string, unknown>) => boolean): number { return this.lines.filter(pred).length; }
  stop(): void { this.p.stdin?.end(); killGroup(this.p); }
}

/** Start an offload-peer in `ns`; `track` keeps it for the teardown. */
export async function startPeer(t: ExecutionContext, track: Proc[], ns: string, args: string[]): Promise<Proc> {
  const p = new Proc(spawnInNs(ns, process.execPath, [PEER, ...args]));
  track.push(p);
  t.teardown(() => p.stop());
  await waitFor(() => p.count((l) => l.ready === true) > 0, 30_000, `peer ${args.join(' ')} ready`);
  return p;
}

/** Send one payload (on `flow` of a multi-flow client) and wait for its NOT to come back. */
export async function roundTrip(client: Proc, payload: Buffer, timeoutMs = 3000, flow?: number): Promise<void> {
  const want = Buffer.from(payload.map((b) => ~b & 0xff)).toString('hex');
  const mine = (l: Record<string, unknown>): boolean => l.hex === want && (flow === undefined || l.flow === flow);
  const before = client.count(mine);
  client.send(flow === undefined ? { send: payload.toString('hex') } : { send: payload.toString('hex'), flow });
  await waitFor(() => client.count(mine) > before, timeoutMs, 'reply');
}

/**
 * As a UDP client would: resend when no answer comes. For the first datagram
 * after a session was deleted, which may reach the closing session socket
 * and be lost (as without offload).
 */
export async function roundTripRetry(client: Proc, payload: Buffer, flow?: number): Promise<void> {
  for (let i = 0; ; i++) {
    try {
      return await roundTrip(client, payload, 1000, flow);
    } catch (err) {
      if (i === 2) throw err;
    }
  }
}

export interface KernelFlow { sport: number; dport: number; owner: number }

/** The entries of the gateway's flow table (read with bpftool, from outside the gateway). */
export function kernelFlows(topo: Topology): KernelFlow[] {
  const net = JSON.parse(inNs(topo.ns.gateway, 'bpftool', ['-j', 'net', 'show', 'dev', topo.ifs.gwClient])) as Array<{ tc?: Array<{ name: string; id?: number; prog_id?: number }> }>;
  // The kernel keeps 15 characters of a program name; bpftool versions call the id "id" or "prog_id".
  const prog = net.flatMap((x) => x.tc ?? []).find((x) => x.name.startsWith('l7mp_udp_offloa'));
  if (!prog) throw new Error(`the offload program is not attached: ${JSON.stringify(net)}`);
  const info = JSON.parse(inNs(topo.ns.gateway, 'bpftool', ['-j', 'prog', 'show', 'id', String(prog.id ?? prog.prog_id)])) as { map_ids: number[] };
  const entries = JSON.parse(inNs(topo.ns.gateway, 'bpftool', ['-j', 'map', 'dump', 'id', String(info.map_ids[0])])) as Array<{ key: string[]; value: string[] }>;
  const byte = (a: string[], i: number): number => parseInt(a[i]!, 16);
  // Layouts (offload/udp_offload.h): the key's ports in network order at 8
  // and 10; the value's owner a host-order (little-endian) u32 at 16.
  return entries.map((e) => ({
    sport: (byte(e.key, 8) << 8) | byte(e.key, 9),
    dport: (byte(e.key, 10) << 8) | byte(e.key, 11),
    owner: byte(e.value, 16) | (byte(e.value, 17) << 8) | (byte(e.value, 18) << 16) | (byte(e.value, 19) << 24),
  }));
}
