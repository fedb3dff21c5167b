// Sets up the kernel offload as admin.offload/offload_ifs (or -o/-i) say: loads
// and attaches the program and gives the gateway the bridge. If anything is
// missing (addon, object, privileges, kernel support) it logs why, once, and
// the gateway runs without offload. A data-plane worker does not load
// anything: it uses the flow table the main process handed it (shared.ts).

import type { Gateway } from '../../core/gateway.js';
import { OffloadBridge } from './bridge.js';
import type { OffloadConfig } from '../../config/offload.js';
import { KernelOffload } from './engine.js';
import { inheritedFlowTable, shareFlowTable, type InheritedTable } from './shared.js';

export function setupOffload(gw: Gateway, cfg: OffloadConfig): void {
  gw.admin.offload = false;
  const inherited = inheritedFlowTable();
  if (inherited !== undefined) return setupWorkerOffload(gw, inherited);
  if (cfg.mode === 'disable') return;
  const engine = KernelOffload.start(cfg, gw.log);
  if (typeof engine === 'string') {
    gw.log.warn({ reason: engine }, 'kernel offload unavailable, running without it');
    return;
  }
  const bridge = new OffloadBridge(gw, engine.program, gw.log);
  gw.hooks.add(bridge);
  gw.admin.offload = true;
  gw.admin.offload_ifs = engine.interfaces;
  shareFlowTable(gw, engine.program, gw.log);
  gw.log.info({ mode: cfg.mode, interfaces: engine.interfaces }, 'kernel offload active');
  gw.onStop(() => {
    bridge.stop();
    engine.stop();
  });
}

/** A worker: its sessions go into the main process's flow table, marked with its index. */
function setupWorkerOffload(gw: Gateway, { owner: index, table }: InheritedTable): void {
  if (typeof table === 'string') {
    gw.log.error({ worker: index, reason: table }, 'kernel offload: this worker cannot open the shared flow table; its sessions stay in user space');
    return;
  }
  const bridge = new OffloadBridge(gw, table, gw.log, index);
  gw.hooks.add(bridge);
  gw.admin.offload = true;
  // Whatever way this process ends (a stop, the main process gone), no entry
  // of ours may go on forwarding for sessions nobody owns.
  const release = (): void => {
    try { table.removeOwner(index); } catch { /* closed already */ }
  };
  process.once('exit', release);
  gw.onStop(() => {
    bridge.stop();
    release();
    process.off('exit', release);
    table.close();
  });
}
