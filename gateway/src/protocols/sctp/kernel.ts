// Kernel SCTP: IPPROTO_SCTP sockets of the one-to-one style (SOCK_STREAM:
// listen, accept and connect as for TCP, one association per socket) through
// the sockets addon. Every send is one SCTP message and every receive returns
// one message (up to the addon's 64 KiB receive slot; a longer one arrives in
// pieces), so the channel is the one UNIX/seqpacket uses
// (native/channel.ts): message boundaries kept, end() is shutdown(SHUT_WR),
// which for SCTP starts the association's graceful SHUTDOWN.
//
//   listener: {protocol: SCTP, port: 9000, address: 0.0.0.0}
//     One listening socket; every accepted association is a session with
//     IP and SCTP addresses as metadata. The kernel's heartbeats find dead
//     peers (no idle_timeout needed, unlike SCTP over UDP).
//   cluster:  {protocol: SCTP, port: 9000}, endpoints by address
//     Per session a socket connected (non-blocking) to endpoint:port; the
//     connect fails with the kernel's reason (ECONNREFUSED: an ABORT came
//     back, ETIMEDOUT: INIT was not answered in the session's connect timeout).
//
// Where the kernel has no SCTP (this project's CI machine: no sctp module),
// configs without `encapsulation: udp` are refused with the kernel's reason.
// L7MP_SCTP_KERNEL_STANDIN=tcp is for tests on such machines only: the same
// code on TCP sockets (SOCK_STREAM, protocol 0), so accept, connect, metadata
// and the channel run for real; TCP does not keep message boundaries, which
// the stand-in tests respect by sending one message per round trip.

import { isIPv6 } from 'node:net';
import { GatewayError } from '../../core/errors.js';
import { NativeDatagramChannel } from '../../native/channel.js';
import { NativeAcceptListener } from '../../native/accept.js';
import { socketsAddon, socketsUnavailable, type SocketsAddon } from '../../native/sockets.js';
import type { ClusterContext, ClusterImpl, ConnectRequest, ListenerContext } from '../types.js';
import { bindError, requireAddon } from '../common/socket.js';

/** The test stand-in (see the header): TCP sockets carry the kernel SCTP code. */
export function kernelSctpStandIn(): boolean {
  return process.env.L7MP_SCTP_KERNEL_STANDIN === 'tcp';
}

/** Why kernel SCTP cannot be used here (undefined: it can). */
export function kernelSctpUnavailable(): string | undefined {
  const addon = socketsAddon();
  if (addon === undefined) return socketsUnavailable() ?? 'the native sockets addon is not available';
  if (kernelSctpStandIn()) return undefined;
  return addon.sctpProbe();
}

function openSocket(a: SocketsAddon, address: string): number {
  const family = isIPv6(address) ? a.constants.AF_INET6 : a.constants.AF_INET;
  return a.socket(family, a.constants.SOCK_STREAM, kernelSctpStandIn() ? 0 : a.constants.IPPROTO_SCTP);
}

const STANDIN_WARNING = 'kernel SCTP test stand-in: TCP sockets carry the SCTP code path (L7MP_SCTP_KERNEL_STANDIN=tcp); not for production';

export class KernelSctpListener extends NativeAcceptListener {
  constructor(private readonly address: string, private readonly port: number, ctx: ListenerContext) {
    super(requireAddon('kernel SCTP is unavailable'), ctx, 'SCTP');
  }

  async start(): Promise<void> {
    const a = this.addon;
    if (kernelSctpStandIn()) this.ctx.log.warn({ listener: this.ctx.listenerName }, STANDIN_WARNING);
    const fd = openSocket(a, this.address);
    try {
      a.bindInet(fd, this.address, this.port, true);
      a.listen(fd, 511);
    } catch (err) {
      a.close(fd);
      throw bindError(err, `SCTP listener "${this.ctx.listenerName}" cannot listen on ${this.address}:${this.port}`);
    }
    this.listenOn(fd);
  }

  accepted(fd: number): void {
    const a = this.addon;
    let peer;
    let local;
    try {
      peer = a.peerAddress(fd);
      local = a.localAddress(fd);
    } catch {
      a.close(fd); // the association went away before we looked (ENOTCONN)
      return;
    }
    const from = `${peer.address}:${peer.port}`;
    this.ctx.emit({
      name: `SCTP:${from}-${local.address}:${local.port}-${this.seq++}`,
      channel: new NativeDatagramChannel(a, fd, from, { seqpacket: true, what: `SCTP ${from}` }),
      metadata: {
        IP: { src_addr: peer.address, dst_addr: local.address },
        SCTP: { src_port: peer.port, dst_port: local.port },
      },
    });
  }
}

export class KernelSctpCluster implements ClusterImpl {
  private readonly addon: SocketsAddon;
  private warned = false;

  constructor(private readonly port: number, private readonly ctx: ClusterContext) {
    this.addon = requireAddon('kernel SCTP is unavailable');
  }

  async connect(req: ConnectRequest): Promise<NativeDatagramChannel> {
    const ep = req.endpoint;
    if (!ep) throw new GatewayError('CONNECT_FAILED', `cluster "${this.ctx.clusterName}" has no endpoint`);
    if (kernelSctpStandIn() && !this.warned) {
      this.warned = true;
      this.ctx.log.warn({ cluster: this.ctx.clusterName }, STANDIN_WARNING);
    }
    const a = this.addon;
    const target = `${ep.address}:${this.port}`;
    let fd: number;
    try {
      fd = openSocket(a, ep.address);
    } catch (err) {
      throw new GatewayError('CONNECT_FAILED', `SCTP ${target}: ${(err as Error).message}`, undefined, { cause: err });
    }
    try {
      a.connectInet(fd, ep.address, this.port); // non-blocking: EINPROGRESS is not an error
    } catch (err) {
      a.close(fd);
      throw new GatewayError('CONNECT_FAILED', `SCTP ${target}: ${(err as Error).message}`, undefined, { cause: err });
    }
    const ch = new NativeDatagramChannel(a, fd, target, { seqpacket: true, what: `SCTP ${target}` });
    try {
      await ch.connected(req.timeoutMs);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      const why = code === 'ECONNREFUSED' ? 'refused (nobody listens on that port)'
        : code === 'ETIMEDOUT' ? `no answer within ${req.timeoutMs} ms` : code ?? (err as Error).message;
      throw new GatewayError('CONNECT_FAILED', `SCTP ${target}: ${why}`, undefined, { cause: err });
    }
    return ch;
  }
}
