// The repo's one network-namespace rig: namespaces, veth pairs between them,
// and processes inside them. Built on it: the conformance suite's AF_PACKET
// peers (l2.ts), the AF_PACKET tests (gateway/test/integration/veth.ts), and
// the offload test and bench (createTopology below). It lives in conformance/
// because the conformance image builds only gateway/src and conformance/.
//
// Every command is `ip` (iproute2) with a timeout; a failed step throws with
// the command and its stderr, after whatever the step created is removed.

import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import crypto from 'node:crypto';

const TIMEOUT_MS = 10_000;

/** Run `ip ARGS`; throws "ip ARGS: stderr" on failure. */
export function ip(args: string[]): void {
  try {
    execFileSync('ip', args, { stdio: ['ignore', 'ignore', 'pipe'], timeout: TIMEOUT_MS });
  } catch (err) {
    const stderr = (err as { stderr?: Buffer }).stderr?.toString().trim();
    throw new Error(`ip ${args.join(' ')}: ${stderr || (err as Error).message}`);
  }
}

/** Run `ip ARGS` for cleanup: what is already gone is fine. */
export function ipQuiet(args: string[]): void {
  spawnSync('ip', args, { stdio: 'ignore', timeout: TIMEOUT_MS });
}

/**
 * Why namespaces cannot be made here, or undefined when they can: not root
 * (`notRoot` says what root is needed for), or one of `tools` is missing.
 */
export function netnsUnavailable(notRoot: string, tools: string[] = ['ip']): string | undefined {
  if (process.getuid?.() !== 0) return notRoot;
  for (const tool of tools) {
    const r = spawnSync(tool, ['--version'], { stdio: 'ignore', timeout: TIMEOUT_MS });
    if ((r.error as NodeJS.ErrnoException | undefined)?.code === 'ENOENT') return `${tool} is not installed (scripts/setup-host.sh)`;
  }
  return undefined;
}

/** One end of a veth pair: its name, its namespace (undefined: the caller's), and what to set on it. */
export interface VethEnd {
  dev: string;
  ns?: string;
  mtu?: number;
  mac?: string;
}

function endArgs(e: VethEnd): string[] {
  return [...(e.mtu === undefined ? [] : ['mtu', String(e.mtu)]), ...(e.mac === undefined ? [] : ['address', e.mac])];
}

/**
 * A veth pair a <-> b, each end in its namespace and up. `noAddrGen`: no IPv6
 * link-local address either, so nothing but the test's own traffic crosses.
 * On failure the pair is deleted (the namespaces are the caller's).
 */
export function addVeth(a: VethEnd, b: VethEnd, opts: { noAddrGen?: boolean } = {}): void {
  if (a.dev.length > 15 || b.dev.length > 15) throw new Error(`interface name ${a.dev}/${b.dev} is longer than 15 characters`);
  const pre = (e: VethEnd): string[] => (e.ns === undefined ? [] : ['-n', e.ns]);
  try {
    ip(['link', 'add', a.dev, ...endArgs(a), 'type', 'veth', 'peer', 'name', b.dev, ...endArgs(b), ...(b.ns === undefined ? [] : ['netns', b.ns])]);
    if (a.ns !== undefined) ip(['link', 'set', a.dev, 'netns', a.ns]);
    for (const e of [a, b]) {
      if (opts.noAddrGen) ip([...pre(e), 'link', 'set', e.dev, 'addrgenmode', 'none']);
      ip([...pre(e), 'link', 'set', e.dev, 'up']);
    }
  } catch (err) {
    // Deleting either end deletes the pair, wherever it got to.
    ipQuiet(['link', 'del', a.dev]);
    if (a.ns !== undefined) ipQuiet(['-n', a.ns, 'link', 'del', a.dev]);
    if (b.ns !== undefined) ipQuiet(['-n', b.ns, 'link', 'del', b.dev]);
    throw err;
  }
}

/** A veth pair whose far end is in a namespace of its own. */
export interface VethToNs {
  host: string;
  far: string;
  ns: string;
  /** Delete the pair and the namespace (idempotent). */
  remove(): void;
}

/**
 * Create namespace `ns` and a veth pair `host` (here) <-> `far` (in `ns`),
 * both up. On failure nothing is left behind and the error names the step.
 */
export function vethToNs(o: { host: string; far: string; ns: string; mtu?: number; hostMac?: string; farMac?: string; noAddrGen?: boolean }): VethToNs {
  let removed = false;
  const remove = (): void => {
    if (removed) return;
    removed = true;
    // Deleting either end deletes the pair; deleting the namespace would too, but say so explicitly.
    ipQuiet(['link', 'del', o.host]);
    ipQuiet(['netns', 'del', o.ns]);
  };
  try {
    ip(['netns', 'add', o.ns]);
    addVeth({ dev: o.host, mtu: o.mtu, mac: o.hostMac }, { dev: o.far, ns: o.ns, mtu: o.mtu, mac: o.farMac }, { noAddrGen: o.noAddrGen });
  } catch (err) {
    remove();
    throw err;
  }
  return { host: o.host, far: o.far, ns: o.ns, remove };
}

export function inNs(ns: string, cmd: string, args: string[]): string {
  return execFileSync('ip', ['netns', 'exec', ns, cmd, ...args], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

/** A child process inside a namespace, in its own process group (killed with its children). */
export function spawnInNs(ns: string, cmd: string, args: string[], env: NodeJS.ProcessEnv = process.env): ChildProcess {
  return spawn('ip', ['netns', 'exec', ns, cmd, ...args], { stdio: ['pipe', 'pipe', 'pipe'], detached: true, env });
}

export function killGroup(p: ChildProcess): void {
  if (p.pid === undefined || p.exitCode !== null || p.signalCode !== null) return;
  try { process.kill(-p.pid, 'SIGTERM'); } catch { /* gone */ }
}

// ------------------------------------------------- the offload topology
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

export interface Topology {
  id: string;
  ns: { client: string; gateway: string; server: string };
  ifs: { client: string; gwClient: string; gwServer: string; server: string; host: string; gwHost: string };
  addr: { client: string; gwClient: string; gwServer: string; server: string; host: string; gwHost: string };
  destroy(): void;
}

/** Why the offload topology cannot be made here, or undefined. */
export function topologyUnavailable(): string | undefined {
  return netnsUnavailable('needs root (network namespaces, tc, BPF)', ['ip', 'ethtool']);
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
    for (const n of Object.values(ns)) ipQuiet(['netns', 'del', n]);
    ipQuiet(['link', 'del', ifs.host]);
  };
  try {
    for (const n of Object.values(ns)) ip(['netns', 'add', n]);
    addVeth({ dev: ifs.client, ns: ns.client }, { dev: ifs.gwClient, ns: ns.gateway });
    addVeth({ dev: ifs.server, ns: ns.server }, { dev: ifs.gwServer, ns: ns.gateway });
    addVeth({ dev: ifs.host }, { dev: ifs.gwHost, ns: ns.gateway });
    const address = (n: string | undefined, dev: string, cidr: string): void => {
      ip([...(n ? ['-n', n] : []), 'addr', 'add', cidr, 'dev', dev]);
      const ethtool = ['-K', dev, 'tx', 'off', 'rx', 'off'];
      if (n) inNs(n, 'ethtool', ethtool);
      else execFileSync('ethtool', ethtool, { stdio: 'ignore' });
    };
    address(ns.client, ifs.client, `${addr.client}/24`);
    address(ns.gateway, ifs.gwClient, `${addr.gwClient}/24`);
    address(ns.gateway, ifs.gwServer, `${addr.gwServer}/24`);
    address(ns.server, ifs.server, `${addr.server}/24`);
    address(undefined, ifs.host, `${addr.host}/24`);
    address(ns.gateway, ifs.gwHost, `${addr.gwHost}/24`);
    for (const n of Object.values(ns)) ip(['-n', n, 'link', 'set', 'lo', 'up']);
  } catch (err) {
    destroy();
    throw err;
  }
  return { id, ns, ifs, addr, destroy };
}
