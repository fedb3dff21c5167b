// Sets up the kernel offload as admin.offload/offload_ifs (or -o/-i) say: loads
// and attaches the program and gives the gateway the bridge. If anything is
// missing (addon, object, privileges, kernel support) it logs why, once, and
// the gateway runs without offload.

import type { Gateway } from '../../core/gateway.js';
import { OffloadBridge } from './bridge.js';
import type { OffloadConfig } from '../../config/offload.js';
import { KernelOffload } from './engine.js';

export function setupOffload(gw: Gateway, cfg: OffloadConfig): void {
  gw.admin.offload = false;
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
  gw.log.info({ mode: cfg.mode, interfaces: engine.interfaces }, 'kernel offload active');
  gw.onStop(() => {
    bridge.stop();
    engine.stop();
  });
}
