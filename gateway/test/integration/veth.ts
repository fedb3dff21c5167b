// A veth pair for the AF_PACKET tests (on the shared rig, conformance/netns.ts):
// the host end in the test's own namespace (where the in-process gateway binds
// it), the far end in a network namespace the test creates, with python3 and a
// raw packet socket as the peer there. Names are unique per call; the pair and
// the namespace are removed at teardown (or at once if creating them failed).
// Needs root (CAP_NET_ADMIN, CAP_NET_RAW): skipped with the reason
// elsewhere, failed under CI=true. Used by native-afpacket.test.ts and the
// AF_PACKET driver of fuzz-dataplane.test.ts.

import type { ExecutionContext } from 'ava';
import { spawn, type ChildProcess } from 'node:child_process';
import { ETHERTYPE } from '../../../conformance/l2.js';
import { netnsUnavailable, vethToNs } from '../../../conformance/netns.js';

export { ETHERTYPE };

export interface Veth { host: string; far: string; ns: string }

/**
 * Create the namespace and the veth pair, or say why not (undefined: the test
 * was skipped, logged, or failed under CI=true). `mtu` sets both ends' MTU.
 */
export function makeVeth(t: ExecutionContext, opts: { mtu?: number } = {}): Veth | undefined {
  const id = `${process.pid % 10000}${Math.floor(Math.random() * 1000)}`;
  let why = netnsUnavailable('needs root (CAP_NET_ADMIN for a namespace and a veth pair, CAP_NET_RAW for packet sockets)');
  if (why === undefined) {
    try {
      const v = vethToNs({ host: `l7ph${id}`, far: `l7pf${id}`, ns: `l7mp-pkt-${id}`, mtu: opts.mtu });
      t.teardown(() => v.remove());
      return { host: v.host, far: v.far, ns: v.ns };
    } catch (err) {
      why = (err as Error).message;
    }
  }
  if (process.env.CI === 'true') t.fail(why);
  else { t.log(`skipped: ${why}`); t.pass(); }
  return undefined;
}

/** python3 inside the namespace, killed at teardown. */
export function nsPython(t: ExecutionContext, v: Veth, script: string): ChildProcess {
  const p = spawn('ip', ['netns', 'exec', v.ns, 'python3', '-u', '-c', script], { stdio: ['pipe', 'pipe', 'pipe'] });
  p.stdin?.on('error', () => { /* python may be gone already */ });
  t.teardown(() => { p.kill('SIGKILL'); });
  return p;
}

/** python3 in the namespace with a packet socket on the far end. */
export function pyPeer(v: Veth, script: string): { done: Promise<string>; kill(): void } {
  const prelude = `
import socket, sys, time
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(${ETHERTYPE}))
s.bind((${JSON.stringify(v.far)}, ${ETHERTYPE}))
s.settimeout(0.5)
def recv_in(deadline):
    while time.time() < deadline:
        try:
            data, addr = s.recvfrom(65535)
        except socket.timeout:
            continue
        if addr[2] != socket.PACKET_OUTGOING:
            return data
    return None
`;
  const p = spawn('ip', ['netns', 'exec', v.ns, 'python3', '-c', prelude + script], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  p.stdout.on('data', (d) => { out += String(d); });
  p.stderr.on('data', (d) => { err += String(d); });
  const done = new Promise<string>((resolve) => p.on('close', () => resolve(out + (err ? `\nstderr: ${err}` : ''))));
  return { done, kill: () => p.kill('SIGKILL') };
}

/** An Ethernet frame: broadcast, from a locally administered MAC, of `ethertype`. */
export function frame(payload: string | Buffer, ethertype = ETHERTYPE): Buffer {
  const head = Buffer.from('ffffffffffff020000000002', 'hex');
  const type = Buffer.alloc(2);
  type.writeUInt16BE(ethertype, 0);
  return Buffer.concat([head, type, Buffer.from(payload)]);
}
