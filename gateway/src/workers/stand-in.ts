// The listener object a process builds for a listener the other side runs:
// the main process for a data-plane listener (the workers run it), a worker
// for a control-plane listener (the main process runs it). It binds nothing
// for long, so the graph, its names and its dumps are the same on both sides.
//
// In the main process it also answers "is the port free?" before a change
// reaches the workers: with SO_REUSEPORT a second listener on a taken port
// would bind in every worker and share the port silently, so a TCP/UDP
// address already held by another listener of this gateway, or bound by
// another program, fails here with BIND_FAILED, as it does without workers.

import { GatewayError } from '../core/errors.js';
import { isObject } from '../core/is-object.js';
import { bindError } from '../protocols/common/socket.js';
import { probeSharedPort } from '../protocols/common/reuseport.js';
import { findProtocol } from '../protocols/registry.js';
import type { ListenerImpl } from '../protocols/types.js';

/** TCP/UDP addresses held by the main process's stand-ins: kind:address:port -> listener. */
const held = new Map<string, string>();

function sharedAddress(raw: Record<string, unknown>): { kind: 'tcp' | 'udp'; address: string; port: number } | undefined {
  const spec = isObject(raw.spec) ? raw.spec : undefined;
  // The registry says which socket the protocol's listener binds (ListenerSide.portKind).
  const kind = typeof spec?.protocol === 'string' ? findProtocol(spec.protocol)?.listener?.portKind : undefined;
  if (kind === undefined || typeof spec?.port !== 'number') return undefined;
  return { kind, address: typeof spec.address === 'string' ? spec.address : '0.0.0.0', port: spec.port };
}

/** `checkPort`: the main process's stand-in for a data-plane listener. */
export function standInListener(raw: Record<string, unknown> = {}, checkPort = false): ListenerImpl {
  const a = checkPort ? sharedAddress(raw) : undefined;
  const key = a && `${a.kind}:${a.address}:${a.port}`;
  let holding = false;
  return {
    start: () => {
      if (a === undefined || key === undefined) return Promise.resolve();
      const what = `${a.kind.toUpperCase()} listener "${String(raw.name)}" cannot bind ${a.address}:${a.port}`;
      // Each worker would get a port of its own.
      if (a.port === 0) return Promise.reject(new GatewayError('NOT_SUPPORTED', `listener "${String(raw.name)}": port 0 (any free port) cannot be shared by data-plane workers; give a port (admin.workers > 1)`, 'spec.port'));
      const other = held.get(key);
      if (other !== undefined) return Promise.reject(bindError(Object.assign(new Error('in use'), { code: 'EADDRINUSE' }), `${what} (listener "${other}" holds it)`));
      try {
        probeSharedPort(a.kind, a.address, a.port);
      } catch (err) {
        return Promise.reject(bindError(err, what));
      }
      held.set(key, String(raw.name));
      holding = true;
      return Promise.resolve();
    },
    stop: () => {
      if (holding && key !== undefined) held.delete(key);
      holding = false;
      return Promise.resolve();
    },
  };
}
