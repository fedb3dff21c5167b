// UDP: the protocol's declaration and spec parsing. Listener in singleton or
// server mode (listener.ts), cluster with one connected socket per session
// (cluster.ts).
//
// Server mode gives each remote address/port a session of its own. With the
// sockets addon (IPv4), the listener's one socket reads every flow in batches
// and answers through it (batch.ts, as nginx does). On node:dgram (IPv6, or
// L7MP_UDP_BATCH=off) it follows l7mp: for each new remote the listener opens
// a socket bound to its own address and port (SO_REUSEADDR) and connect()s it
// to the remote, so the kernel demultiplexes the flow to that socket; packets
// that reach the listening socket before the connected one exists are handed
// over through a small map. Either way a session has its own 5-tuple, which
// the kernel offload matches.

import { invalid } from '../../core/errors.js';
import type { ProtocolDef, Spec } from '../types.js';
import * as v from '../common/validate.js';
import { canBatch } from './batch.js';
import { UdpCluster } from './cluster.js';
import { UdpListener, type UdpListenerConfig } from './listener.js';

function parseListenerSpec(spec: Spec, field: string): UdpListenerConfig {
  const port = v.port(spec, 'port', field, true)!;
  const address = v.host(spec, 'address', field, false) ?? '0.0.0.0';
  const connect = v.optObject(spec, 'connect', field);
  const connectAddress = connect ? v.host(connect, 'address', `${field}.connect`, false) : undefined;
  const connectPort = connect ? v.port(connect, 'port', `${field}.connect`, false) : undefined;
  const options = v.optObject(spec, 'options', field);
  const mode = options ? v.optString(options, 'mode', `${field}.options`) : undefined;
  if (mode !== undefined && mode !== 'singleton' && mode !== 'server') {
    throw invalid(`${field}.options.mode`, `must be "singleton" or "server", got "${mode}"`);
  }
  const full = connectAddress !== undefined && connectPort !== undefined;
  if (mode === 'singleton' && !full) {
    throw invalid(`${field}.connect`, 'singleton mode needs both connect.address and connect.port');
  }
  const singleton = mode === 'singleton' || (mode === undefined && full);
  const idleTimeout = v.optNumber(spec, 'idle_timeout', field, 0, 86400 * 365) ?? 120;
  return { address, port, connectAddress, connectPort, singleton, idleTimeout };
}

export const udpProtocol: ProtocolDef = {
  name: 'UDP',
  kind: 'datagram',
  summary: 'UDP datagrams; listener in singleton or server mode, cluster with one connected socket per session',
  listener: {
    modes: ['singleton', 'server'],
    // Server mode on the batched path reads every flow from one socket, so
    // each worker can hold one in the port's group; a singleton (one remote)
    // or per-flow sockets cannot be shared (docs/workers.md).
    portKind: 'udp',
    workers(spec) {
      try {
        const cfg = parseListenerSpec(spec, 'spec');
        return !cfg.singleton && canBatch(cfg.address, cfg.address) ? 'every' : 'one';
      } catch {
        return 'one';
      }
    },
    create(spec, ctx, field) {
      return new UdpListener(parseListenerSpec(spec, field), ctx);
    },
  },
  cluster: {
    virtual: false,
    retriable: true,
    connectionless: true,
    create(spec, ctx, field) {
      const port = v.port(spec, 'port', field, true)!;
      const bind = v.optObject(spec, 'bind', field);
      return new UdpCluster({
        port,
        bindAddress: bind ? v.host(bind, 'address', `${field}.bind`, false) : undefined,
        bindPort: bind ? v.port(bind, 'port', `${field}.bind`, false) : undefined,
      }, ctx);
    },
    checkEndpoint(spec, field) {
      v.host(spec, 'address', field, true);
    },
  },
};
