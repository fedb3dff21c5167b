// The UDP cluster: one connected socket per session, batched (batch.ts) for
// IPv4 where the addon is built, node:dgram otherwise. Kernel-chosen source
// ports go through the quarantine of ports.ts.

import dgram from 'node:dgram';
import { GatewayError } from '../../core/errors.js';
import type { ClusterContext, ClusterImpl, ConnectRequest } from '../types.js';
import { EOF_LINGER_MS, bindDgram, closeDgram, connectDgram, dgramType } from '../common/datagram.js';
import { BatchedUdpChannel, canBatch, udpBatchAddon } from './batch.js';
import { UdpChannel, type UdpFlowChannel } from './channel.js';
import { drawUnbarred, udpSourcePorts } from './ports.js';

export interface UdpClusterConfig {
  port: number;
  bindAddress: string | undefined;
  bindPort: number | undefined;
}

export class UdpCluster implements ClusterImpl {
  constructor(private readonly cfg: UdpClusterConfig, private readonly ctx: ClusterContext) {}

  async connect(req: ConnectRequest): Promise<UdpFlowChannel> {
    const ep = req.endpoint;
    if (!ep) throw new GatewayError('CONNECT_FAILED', `cluster "${this.ctx.clusterName}" has no endpoint`);
    const { bindAddress, bindPort, port } = this.cfg;
    const remote = `${ep.address}:${port}`;
    // A fixed source port is the user's choice; only kernel-chosen ones are quarantined (ports.ts).
    const ephemeral = bindPort === undefined || bindPort === 0;
    try {
      if (canBatch(bindAddress, ep.address)) {
        const open = (): BatchedUdpChannel => this.openBatched(ep.address);
        const ch = ephemeral ? await drawUnbarred(remote, open, (c) => c.localPort, (c) => c.close()) : open();
        if (ephemeral) releaseOnClose(ch, remote, ch.localPort);
        return ch;
      }
      const open = (): Promise<dgram.Socket> => this.openDgram(ep.address, req.timeoutMs);
      const sock = ephemeral ? await drawUnbarred(remote, open, localPortOf, closeDgram) : await open();
      const ch = new UdpChannel(sock, remote, true, EOF_LINGER_MS);
      if (ephemeral) releaseOnClose(ch, remote, localPortOf(sock));
      return ch;
    } catch (err) {
      throw new GatewayError('CONNECT_FAILED', `UDP ${remote}: ${(err as Error).message}`, undefined, { cause: err });
    }
  }

  private async openDgram(address: string, timeoutMs: number): Promise<dgram.Socket> {
    const { bindAddress, bindPort, port } = this.cfg;
    const sock = dgram.createSocket({ type: dgramType(address), reuseAddr: bindPort !== undefined && bindPort !== 0 });
    try {
      if (bindAddress !== undefined || bindPort !== undefined) await bindDgram(sock, bindPort ?? 0, bindAddress);
      await connectDgram(sock, port, address, timeoutMs);
    } catch (err) {
      closeDgram(sock);
      throw err;
    }
    return sock;
  }

  /** The batched path (batch.ts): an IPv4 endpoint and the addon built. */
  private openBatched(address: string): BatchedUdpChannel {
    const { bindAddress, bindPort, port } = this.cfg;
    const bind = bindAddress !== undefined || bindPort !== undefined
      ? { address: bindAddress ?? '0.0.0.0', port: bindPort ?? 0, reuse: bindPort !== undefined && bindPort !== 0 }
      : undefined;
    return BatchedUdpChannel.open(udpBatchAddon()!, { ...(bind ? { bind } : {}), remote: { address, port }, eofLingerMs: EOF_LINGER_MS });
  }
}

function localPortOf(sock: dgram.Socket): number | undefined {
  try {
    return sock.address().port;
  } catch {
    return undefined;
  }
}

/** When the session's socket closes, its port goes into quarantine for this upstream. */
function releaseOnClose(ch: UdpFlowChannel, remote: string, localPort: number | undefined): void {
  if (localPort !== undefined) ch.onRelease = () => udpSourcePorts.release(remote, localPort);
}
