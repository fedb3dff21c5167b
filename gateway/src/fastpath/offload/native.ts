// Loads the bpf addon (native/bpf) and finds the tc-bpf object (offload/).
// When either is missing the gateway runs without offload, and this module
// says why: the addon's BUILD_FAILED marker (scripts/build-native.mjs), a
// missing object, or the load error itself.

import fs from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** A UDP 4-tuple (IPv4 addresses as text). */
export interface FlowTuple {
  srcAddr: string;
  srcPort: number;
  dstAddr: string;
  dstPort: number;
}

export interface FlowCounters {
  packets: number;
  /** UDP payload bytes, the unit of the gateway's own counters. */
  bytes: number;
  /** bpf_ktime_get_ns() of the last forwarded packet; 0 before the first. */
  lastNs: number;
}

/** The loaded BPF object (native/bpf/src/addon.cc). */
export interface BpfProgram {
  attach(ifindex: number): { created: boolean };
  detach(ifindex: number, destroyQdisc?: boolean): void;
  /** `owner`: the worker index that installs it (0: no workers). */
  add(key: FlowTuple, rewrite: FlowTuple & { oif?: number; owner?: number }): void;
  remove(key: FlowTuple): boolean;
  read(key: FlowTuple): FlowCounters | null;
  count(): number;
  /** The flow table's fd (handed to worker processes: fastpath/offload/shared.ts). */
  mapFd(): number;
  /** Remove every entry `owner` installed; returns how many. */
  removeOwner(owner: number): number;
  close(): void;
}

export interface BpfAddon {
  /** An object path loads the program; a map fd opens an inherited flow table only. */
  Program: new (objectPathOrMapFd: string | number) => BpfProgram;
  ifindex(name: string): number;
}

export type BpfLoad =
  | { ok: true; addon: BpfAddon; objectPath: string }
  | { ok: false; reason: string };

/** The repository (or image) root: dist/gateway/src/fastpath/offload is five levels down. */
function rootDir(): string {
  return path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..', '..', '..');
}

export function addonPath(): string {
  return process.env.L7MP_BPF_ADDON ?? path.join(rootDir(), 'native', 'bpf', 'build', 'Release', 'l7mp_bpf.node');
}

export function objectPath(): string {
  return process.env.L7MP_BPF_OBJECT ?? path.join(rootDir(), 'offload', 'build', 'udp_offload.bpf.o');
}

/** The bpf addon and a BPF object of ours (the offload's, or another: workers/sticky-udp.ts). */
export function loadBpf(obj = objectPath()): BpfLoad {
  const file = addonPath();
  if (!fs.existsSync(file)) {
    const dir = path.join(rootDir(), 'native', 'bpf', 'build');
    let why = 'it was not built (npm run build:native; needs libbpf-dev, libelf-dev, zlib1g-dev)';
    try {
      const text = fs.readFileSync(path.join(dir, 'BUILD_FAILED'), 'utf8').trim().split('\n').slice(-3).join(' | ');
      why = `its build failed: ${text}`;
    } catch { /* no marker: never built */ }
    try {
      // Left on purpose (images/gateway/Dockerfile): say where it is instead.
      why = fs.readFileSync(path.join(dir, 'ABSENT'), 'utf8').trim();
    } catch { /* not an image without it */ }
    return { ok: false, reason: `the bpf addon ${file} is missing: ${why}` };
  }
  if (!fs.existsSync(obj)) {
    return { ok: false, reason: `the BPF object ${obj} is missing (npm run build:offload; needs clang and libbpf-dev)` };
  }
  try {
    const addon = createRequire(import.meta.url)(file) as BpfAddon;
    return { ok: true, addon, objectPath: obj };
  } catch (err) {
    return { ok: false, reason: `the bpf addon ${file} does not load: ${(err as Error).message}` };
  }
}
