// The pair matrix, generated from the protocol registry:
//
//   rows     every protocol with a listener side, then every protocol the
//            registry knows but cannot run (`unavailable`)
//   columns  every protocol with a non-virtual ("remote") cluster side, then
//            the transform clusters (transform: true) grouped as peers.ts
//            says, then the unavailable protocols
//
// An unavailable protocol gets a row and a column, since the registry does
// not say yet which sides it will have; all its cells are skipped with the
// registry's reason. A protocol without a conformance peer gets its cells
// skipped with "no conformance peer for X". Virtual clusters that are not
// transforms (Sync, Stdio, L7mpController) have no remote peer to pair with:
// they are listed under the matrix, not silently dropped.

import { PROTOCOLS } from '../gateway/src/protocols/registry.js';
import type { ProtocolDef } from '../gateway/src/protocols/types.js';
import {
  CLUSTER_PEERS, LISTENER_PEERS, TRANSFORM_BASES, TRANSFORM_PEERS,
  type ClusterPeer, type ListenerPeer, type TransformPeer,
} from './peers.js';

export interface Row {
  readonly id: string;
  readonly protocol: ProtocolDef;
  /** Set for a protocol the registry knows but cannot run. */
  readonly unavailable?: string;
}

export interface Column {
  readonly id: string;
  readonly kind: 'cluster' | 'transform' | 'unavailable';
  /** The registry protocols behind the column (several for a transform group). */
  readonly protocols: readonly ProtocolDef[];
  readonly transform?: TransformPeer;
  /** Why every cell of the column is skipped, when it is. */
  readonly skipAll?: string;
}

interface CellBase {
  readonly row: Row;
  readonly col: Column;
}

export interface RunCell extends CellBase {
  readonly type: 'run';
  readonly listener: ListenerPeer;
  /** The destination cluster protocol (the base protocol for a transform cell). */
  readonly clusterProtocol: ProtocolDef;
  readonly cluster: ClusterPeer;
  readonly transform?: TransformPeer;
  /** The listener's representative pair: also runs retry, load balancing and convergence. */
  readonly representative: boolean;
}

export interface SkipCell extends CellBase {
  readonly type: 'skip';
  readonly reason: string;
}

/** Not a pair at all (a transform on a row that is not one of its base pairs): shown, not counted. */
export interface NaCell extends CellBase {
  readonly type: 'na';
  readonly reason: string;
}

export type Cell = RunCell | SkipCell | NaCell;

export interface Matrix {
  readonly rows: readonly Row[];
  readonly cols: readonly Column[];
  readonly cells: readonly Cell[];
  /** Registry protocols that are neither a row nor a column, and why. */
  readonly outside: readonly { readonly name: string; readonly reason: string }[];
}

export interface PeerTables {
  readonly listeners: Readonly<Record<string, ListenerPeer>>;
  readonly clusters: Readonly<Record<string, ClusterPeer>>;
  readonly transforms: readonly TransformPeer[];
  readonly transformBases: readonly string[];
}

export const DEFAULT_PEERS: PeerTables = {
  listeners: LISTENER_PEERS,
  clusters: CLUSTER_PEERS,
  transforms: TRANSFORM_PEERS,
  transformBases: TRANSFORM_BASES,
};

export function noPeer(name: string): string {
  return `no conformance peer for ${name}`;
}

export function buildMatrix(protocols: readonly ProtocolDef[] = PROTOCOLS, peers: PeerTables = DEFAULT_PEERS): Matrix {
  const available = protocols.filter((p) => p.unavailable === undefined);
  const unavailable = protocols.filter((p) => p.unavailable !== undefined);
  const byName = new Map(protocols.map((p) => [p.name, p]));

  const rows: Row[] = [
    ...available.filter((p) => p.listener !== undefined).map((p) => ({ id: p.name, protocol: p })),
    ...unavailable.map((p) => ({ id: p.name, protocol: p, unavailable: p.unavailable! })),
  ];

  // A virtual cluster is a column when peers.ts knows how to exercise it (STDIO-fork runs a program per session).
  const pairable = (p: ProtocolDef): boolean => !p.cluster!.virtual || peers.clusters[p.name] !== undefined;
  const cols: Column[] = available
    .filter((p) => p.cluster !== undefined && pairable(p) && p.transform !== true)
    .map((p) => ({ id: p.name, kind: 'cluster' as const, protocols: [p] }));

  // Transform columns: one per peers.ts entry, in the registry order of the first protocol it covers.
  const seen = new Set<TransformPeer>();
  for (const p of available.filter((q) => q.transform === true && q.cluster !== undefined)) {
    const entry = peers.transforms.find((t) => t.covers.includes(p.name));
    if (entry === undefined) {
      cols.push({ id: p.name, kind: 'transform', protocols: [p], skipAll: noPeer(p.name) });
      continue;
    }
    if (seen.has(entry)) continue;
    seen.add(entry);
    const covered = entry.covers.map((n) => byName.get(n));
    const missing = entry.covers.filter((n, i) => covered[i] === undefined || covered[i]!.unavailable !== undefined || covered[i]!.transform !== true);
    cols.push({
      id: entry.label,
      kind: 'transform',
      protocols: covered.filter((x): x is ProtocolDef => x !== undefined),
      transform: entry,
      ...(missing.length > 0 ? { skipAll: `${missing.join(', ')} not available as a transform in the registry` } : {}),
    });
  }
  for (const p of unavailable) cols.push({ id: p.name, kind: 'unavailable', protocols: [p], skipAll: p.unavailable! });

  const outside = available
    .filter((p) => p.listener === undefined && p.cluster !== undefined && !pairable(p) && p.transform !== true)
    .map((p) => ({ name: p.name, reason: 'virtual cluster, not a transform: no remote peer to pair a listener with' }));

  const cells: Cell[] = [];
  for (const row of rows) {
    for (const col of cols) {
      cells.push(planCell(row, col, peers, byName));
    }
  }
  return { rows, cols, cells, outside };
}

function planCell(row: Row, col: Column, peers: PeerTables, byName: Map<string, ProtocolDef>): Cell {
  const skip = (reason: string): SkipCell => ({ type: 'skip', row, col, reason });
  if (row.unavailable !== undefined) return skip(row.unavailable);
  if (col.kind === 'unavailable') return skip(col.skipAll!);
  const listener = peers.listeners[row.id];

  if (col.kind === 'transform') {
    if (!peers.transformBases.includes(row.id)) {
      return { type: 'na', row, col, reason: `transforms run on the ${peers.transformBases.map((b) => `${b}→${b}`).join(' and ')} base pairs` };
    }
    if (col.skipAll !== undefined) return skip(col.skipAll);
    if (listener === undefined) return skip(noPeer(row.id));
    const base = byName.get(row.id);
    const cluster = peers.clusters[row.id];
    if (base === undefined || base.cluster === undefined || cluster === undefined) return skip(`no ${row.id}→${row.id} base pair: ${noPeer(row.id)}`);
    return { type: 'run', row, col, listener, clusterProtocol: base, cluster, transform: col.transform!, representative: false };
  }

  const clusterProtocol = col.protocols[0]!;
  if (col.skipAll !== undefined) return skip(col.skipAll);
  if (listener === undefined) return skip(noPeer(row.id));
  const cluster = peers.clusters[col.id];
  if (cluster === undefined) return skip(noPeer(col.id));
  if (cluster.onlyFrom !== undefined && !cluster.onlyFrom.includes(row.id)) {
    return skip(cluster.onlyFromReason ?? `${col.id} clusters serve ${cluster.onlyFrom.join(', ')} listeners only`);
  }
  return { type: 'run', row, col, listener, clusterProtocol, cluster, representative: listener.representative === col.id };
}

/** "LISTENER:CLUSTER" of a cell, as --only takes it. */
export function cellKey(c: { row: Row; col: Column }): string {
  return `${c.row.id}:${c.col.id}`;
}
