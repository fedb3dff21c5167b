// Network namespaces for the offload tests and bench:
//
//   client ns            gateway ns                    server ns
//   c0 10.200.X.2 ─veth─ g0 10.200.X.1
//                        g1 10.200.X+1.1 ─veth─ s0 10.200.X+1.2
//   (host) h0 10.200.X+2.1 ─veth─ g2 10.200.X+2.2   (REST API and metrics, from the test)
//
// The client has no route to the server: whatever reaches the server went
// through the gateway (its user space, or its tc-bpf program). Checksum
// offloads are off on every veth, so every UDP datagram carries a real
// checksum and every receiver verifies it in software (a bad one is dropped
// and counted in /proc/net/snmp Udp InCsumErrors).
//
// Names are unique per run (pid + random), so parallel runs do not collide;
// destroy() removes everything, and is safe to call twice.

import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import crypto from 'node:crypto';

export interface Topology {
  id: string;
  ns: { client: string; gateway: string; server: string };
  ifs: { client: string; gwClient: string; gwServer: string; server: string; host: string; gwHost: string };
  addr: { client: string; gwClient: string; gwServer: string; server: string; host: string; gwHost: string };
  destroy(): void;
}

function ip(args: string[]): void {
  execFileSync('ip', args, { stdio: ['ignore', 'ignore', 'pipe'] });
}

export function inNs(ns: string, cmd: string, args: string[]): string {
  return execFileSync('ip', ['netns', 'exec', ns, cmd, ...args], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

/** Why namespaces cannot be made here, or undefined when they can. */
export function netnsUnavailable(): string | undefined {
  if (process.getuid?.() !== 0) return 'needs root (network namespaces, tc, BPF)';
  for (const tool of ['ip', 'ethtool']) {
    try {
      execFileSync(tool, ['-V'], { stdio: 'ignore' });
    } catch {
      try { execFileSync(tool, ['--version'], { stdio: 'ignore' }); } catch { return `${tool} is not installed (scripts/setup-host.sh)`; }
    }
  }
  return undefined;
}

export function createTopology(): Topology {
  const id = `${(process.pid % 1000).toString(36)}${crypto.randomBytes(2).toString('hex')}`;
  const x = (crypto.randomBytes(1)[0]! % 80) * 3; // three /24s: X, X+1, X+2
  const ns = { client: `l7c-${id}`, gateway: `l7g-${id}`, server: `l7s-${id}` };
  const ifs = { client: `c0${id}`, gwClient: `g0${id}`, gwServer: `g1${id}`, server: `s0${id}`, host: `h0${id}`, gwHost: `g2${id}` };
  const addr = {
    client: `10.200.${x}.2`, gwClient: `10.200.${x}.1`,
    gwServer: `10.200.${x + 1}.1`, server: `10.200.${x + 1}.2`,
    host: `10.200.${x + 2}.1`, gwHost: `10.200.${x + 2}.2`,
  };
  let destroyed = false;
  const destroy = (): void => {
    if (destroyed) return;
    destroyed = true;
    // Deleting a namespace deletes its veths, and with them their peers.
    for (const n of Object.values(ns)) {
      try { ip(['netns', 'del', n]); } catch { /* not created */ }
    }
    try { ip(['link', 'del', ifs.host]); } catch { /* gone with the namespace */ }
  };
  try {
    for (const n of Object.values(ns)) ip(['netns', 'add', n]);
    const pair = (a: string, nsA: string | undefined, b: string, nsB: string): void => {
      ip(['link', 'add', a, 'type', 'veth', 'peer', 'name', b]);
      if (nsA) ip(['link', 'set', a, 'netns', nsA]);
      ip(['link', 'set', b, 'netns', nsB]);
    };
    pair(ifs.client, ns.client, ifs.gwClient, ns.gateway);
    pair(ifs.server, ns.server, ifs.gwServer, ns.gateway);
    pair(ifs.host, undefined, ifs.gwHost, ns.gateway);
    const up = (n: string | undefined, dev: string, cidr: string): void => {
      const pre = n ? ['-n', n] : [];
      ip([...pre, 'addr', 'add', cidr, 'dev', dev]);
      ip([...pre, 'link', 'set', dev, 'up']);
      const ethtool = ['-K', dev, 'tx', 'off', 'rx', 'off'];
      if (n) inNs(n, 'ethtool', ethtool);
      else execFileSync('ethtool', ethtool, { stdio: 'ignore' });
    };
    up(ns.client, ifs.client, `${addr.client}/24`);
    up(ns.gateway, ifs.gwClient, `${addr.gwClient}/24`);
    up(ns.gateway, ifs.gwServer, `${addr.gwServer}/24`);
    up(ns.server, ifs.server, `${addr.server}/24`);
    up(undefined, ifs.host, `${addr.host}/24`);
    up(ns.gateway, ifs.gwHost, `${addr.gwHost}/24`);
    for (const n of Object.values(ns)) ip(['-n', n, 'link', 'set', 'lo', 'up']);
  } catch (err) {
    destroy();
    throw err;
  }
  return { id, ns, ifs, addr, destroy };
}

/** A child process inside a namespace, in its own process group (killed with its children). */
export function spawnInNs(ns: string, cmd: string, args: string[], env: NodeJS.ProcessEnv = process.env): ChildProcess {
  return spawn('ip', ['netns', 'exec', ns, cmd, ...args], { stdio: ['pipe', 'pipe', 'pipe'], detached: true, env });
}

export function killGroup(p: ChildProcess): void {
  if (p.pid === undefined || p.exitCode !== null || p.signalCode !== null) return;
  try { process.kill(-p.pid, 'SIGTERM'); } catch { /* gone */ }
}
