// Port sharing across data-plane workers (docs/workers.md): in a worker
// process every TCP and UDP listener binds its address with SO_REUSEPORT, so
// that each worker holds its own socket and the kernel spreads connections
// and UDP 4-tuples over them. Node 20 cannot set SO_REUSEPORT (the
// `reusePort` listen option came in 22.12), so the addon makes the socket
// and Node adopts it (`net.Server.listen({fd})`, the UDP shared socket).

import { isIPv6 } from 'node:net';
import { GatewayError } from '../../core/errors.js';
import { socketsAddon } from '../../native/sockets.js';

/**
 * Whether the workers will be able to bind address:port: the main process
 * binds and closes a socket with the workers' flags (never listening, so it
 * takes no connection). Another program's socket makes it throw EADDRINUSE.
 */
export function probeSharedPort(kind: 'tcp' | 'udp', address: string, port: number): void {
  const fd = reusePortSocket(kind, address, port, false);
  socketsAddon()!.close(fd);
}

/**
 * Set once by the worker entry before any listener starts. `reportUdp`: a
 * worker tells the main process each shared UDP socket it binds, so that the
 * main process can keep every flow on its worker (workers/sticky-udp.ts).
 */
export const portSharing: { on: boolean; reportUdp?: (fd: number, address: string, port: number) => void } = { on: false };

/**
 * What a `net`/`http` server listens on: in a worker, a socket of the port's
 * SO_REUSEPORT group (throws the bind error); otherwise the address itself,
 * exclusively, so that "address in use" is an error.
 */
export function listenTarget(address: string, port: number): { fd: number } | { host: string; port: number; exclusive: true } {
  return portSharing.on ? { fd: reusePortSocket('tcp', address, port) } : { host: address, port, exclusive: true };
}

/**
 * A socket bound to address:port with SO_REUSEPORT (and SO_REUSEADDR, so that
 * per-flow UDP sockets with SO_REUSEADDR only can bind beside it without
 * joining the group). Throws a Node-style system error from bind.
 */
export function reusePortSocket(kind: 'tcp' | 'udp', address: string, port: number, listen = true): number {
  return boundSocket(kind, address, port, true, kind === 'tcp' && listen ? 511 : 0);
}

/**
 * A listening TCP socket made by the addon (the raw stream path): SO_REUSEADDR
 * as Node sets it, and in a worker SO_REUSEPORT (the port's group).
 */
export function streamListenSocket(address: string, port: number, backlog: number): number {
  return boundSocket('tcp', address, port, portSharing.on, backlog);
}

/** backlog 0: bound, not listening. */
function boundSocket(kind: 'tcp' | 'udp', address: string, port: number, reusePort: boolean, backlog: number): number {
  const addon = socketsAddon();
  if (addon === undefined) throw new GatewayError('NOT_SUPPORTED', 'sharing a port across workers needs the native sockets addon');
  const c = addon.constants;
  const fd = addon.socket(isIPv6(address) ? c.AF_INET6 : c.AF_INET, kind === 'tcp' ? c.SOCK_STREAM : c.SOCK_DGRAM, 0);
  try {
    addon.bindInet(fd, address, port, true, reusePort);
    if (backlog > 0) addon.listen(fd, backlog);
  } catch (err) {
    addon.close(fd);
    throw err;
  }
  return fd;
}
