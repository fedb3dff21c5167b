// The offload's flow table shared with data-plane workers (docs/workers.md
// "Offload with workers").
//
// The main process loads the program, attaches it and owns the one flow
// table; a worker gets the table's fd at fork, as an extra stdio entry
// (`workerStdio`), so there is no pin in bpffs to clean up after a stop or a
// crash: the table lives as long as a process or the attached program holds
// it. Each worker installs and removes the entries of its own sessions and
// reads their counters; every entry records its owner (the worker index), so
// the main process removes a dead worker's entries (`sweep`) before the
// worker is restarted, and a worker that exits removes its own.

import type { Logger } from '../../observe/log.js';
import { loadBpf, type BpfProgram } from './native.js';

/** Set in a worker's environment: the fd its flow table arrived on, and the owner its entries carry. */
const MAP_FD_ENV = 'L7MP_OFFLOAD_MAP_FD';
const OWNER_ENV = 'L7MP_OFFLOAD_OWNER';
/** The worker's stdio slot for it: 0-2 are stdio, 3 the IPC channel. */
const WORKER_FD = 4;

/** The main process's flow table, as the supervisor sees it. */
export interface SharedFlowTable {
  /** What a worker's fork adds to its stdio and environment. */
  readonly stdio: number;
  env(owner: number): Record<string, string>;
  /** Remove every entry of worker `owner`; returns how many there were. */
  sweep(owner: number): number;
}

const tables = new WeakMap<object, SharedFlowTable>();

/** The main process: offer `program`'s table to the workers of gateway `gw`. */
export function shareFlowTable(gw: object, program: BpfProgram, log: Logger): void {
  tables.set(gw, {
    stdio: program.mapFd(),
    env: (owner) => ({ [MAP_FD_ENV]: String(WORKER_FD), [OWNER_ENV]: String(owner) }),
    sweep: (owner) => {
      try {
        return program.removeOwner(owner);
      } catch (err) {
        log.error({ worker: owner, err: (err as Error).message }, 'kernel offload: cannot remove a dead worker\'s flows');
        return 0;
      }
    },
  });
}

/** The flow table the workers of `gw` get, if offload is active. */
export function sharedFlowTable(gw: object): SharedFlowTable | undefined {
  return tables.get(gw);
}

export interface InheritedTable { readonly owner: number; readonly table: BpfProgram | string }

/** A worker: the table it inherited (or why it cannot use it) and its owner index; undefined outside a worker with offload. */
export function inheritedFlowTable(): InheritedTable | undefined {
  const fd = process.env[MAP_FD_ENV];
  if (fd === undefined) return undefined;
  const owner = Number(process.env[OWNER_ENV]);
  const loaded = loadBpf();
  if (!loaded.ok) return { owner, table: loaded.reason };
  try {
    return { owner, table: new loaded.addon.Program(Number(fd)) };
  } catch (err) {
    return { owner, table: (err as Error).message };
  }
}
