// The UDP cluster: one connected socket per session, batched (batch.ts) for
// IPv4 where the addon is built, node:dgram otherwise. Kernel-chosen source
// ports go through the quarantine of ports.ts.

import dgram from 'node:dgram';
import { GatewayError } from '../../core/errors.js';
import type { ClusterContext, ClusterImpl, ConnectRequest } from '../types.js';
import { EOF_LINGER_MS, bindDgram, closeDgram, connectDgram, dgramType } from '../common/datagram.js';
import { BatchedUdpChannel, batchedUdpTarget, canBatch, udpBatchAddon, type BatchedUdpOptions, type BatchedUdpTarget } from './batch.js';
import { UdpChannel, type UdpFlowChannel } from './channel.js';
import { drawUnbarred, drawUnbarredNow } from './ports.js';
import { AddressMemo } from '../common/address-memo.js';

export interface UdpClusterConfig {
  port: number;
  bindAddress: string | undefined;
  bindPort: number | undefined;
}

/** An endpoint address's batched path: its options and how to open a socket to it. */
interface BatchTarget extends BatchedUdpTarget {
  readonly open: () => BatchedUdpChannel;
}

export class UdpCluster implements ClusterImpl {
  /** Endpoint address -> its batched path, or null where it takes node:dgram. */
  private readonly targets = new AddressMemo<BatchTarget | null>((address) => this.makeBatchTarget(address));

  constructor(private readonly cfg: UdpClusterConfig, private readonly ctx: ClusterContext) {}

  /**
   * A compiled UDP listener's target (fastpath/compiled.ts): where the batched
   * path would go, without a bind. (The addon's flows take kernel-chosen
   * source ports without the quarantine of ports.ts.)
   */
  compiledDatagramTarget(ep: { readonly address: string }): [string, number] | undefined {
    if (this.cfg.bindAddress !== undefined || this.cfg.bindPort !== undefined) return undefined;
    return this.batchTarget(ep.address) === undefined ? undefined : [ep.address, this.cfg.port];
  }

  /** The batched path (an IPv4 endpoint, the addon built) opens and connects its socket at once: no promise. */
  connectNow(req: ConnectRequest): UdpFlowChannel | undefined {
    const ep = req.endpoint;
    const t = ep === undefined ? undefined : this.batchTarget(ep.address);
    if (t === undefined) return undefined;
    try {
      // A fixed source port is the user's choice; only kernel-chosen ones are quarantined (ports.ts).
      if (!this.ephemeral) return t.open();
      const ch = drawUnbarredNow(t.peer, t.open, localPortOfChannel, closeChannel);
      releaseOnClose(ch, t.peer, ch.localPort);
      return ch;
    } catch (err) {
      throw connectFailed(t.peer, err);
    }
  }

  /**
   * The batched path's options for an endpoint address, worked out once per
   * address (the addon, canBatch's address checks, the peer strings); undefined: node:dgram.
   */
  private batchTarget(address: string): BatchTarget | undefined {
    return this.targets.get(address) ?? undefined;
  }

  private makeBatchTarget(address: string): BatchTarget | null {
    const addon = canBatch(this.cfg.bindAddress, address) ? udpBatchAddon() : undefined;
    if (addon === undefined) return null;
    const target = batchedUdpTarget(this.batchedOptions(address));
    return { ...target, open: () => BatchedUdpChannel.open(addon, target) };
  }

  async connect(req: ConnectRequest): Promise<UdpFlowChannel> {
    const now = this.connectNow(req);
    if (now !== undefined) return now;
    const ep = req.endpoint;
    if (!ep) throw new GatewayError('CONNECT_FAILED', `cluster "${this.ctx.clusterName}" has no endpoint`);
    const remote = `${ep.address}:${this.cfg.port}`;
    const ephemeral = this.ephemeral;
    try {
      const open = (): Promise<dgram.Socket> => this.openDgram(ep.address, req.timeoutMs);
      const sock = ephemeral ? await drawUnbarred(remote, open, localPortOf, closeDgram) : await open();
      const ch = new UdpChannel(sock, remote, true, EOF_LINGER_MS);
      if (ephemeral) releaseOnClose(ch, remote, localPortOf(sock));
      return ch;
    } catch (err) {
      throw connectFailed(remote, err);
    }
  }

  private get ephemeral(): boolean {
    return this.cfg.bindPort === undefined || this.cfg.bindPort === 0;
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
  private batchedOptions(address: string): BatchedUdpOptions {
    const { bindAddress, bindPort, port } = this.cfg;
    const bind = bindAddress !== undefined || bindPort !== undefined
      ? { address: bindAddress ?? '0.0.0.0', port: bindPort ?? 0, reuse: bindPort !== undefined && bindPort !== 0 }
      : undefined;
    return { ...(bind ? { bind } : {}), remote: { address, port }, eofLingerMs: EOF_LINGER_MS };
  }
}

function connectFailed(remote: string, err: unknown): GatewayError {
  return new GatewayError('CONNECT_FAILED', `UDP ${remote}: ${(err as Error).message}`, undefined, { cause: err });
}

const localPortOfChannel = (c: BatchedUdpChannel): number | undefined => c.localPort;
const closeChannel = (c: BatchedUdpChannel): void => c.close();

function localPortOf(sock: dgram.Socket): number | undefined {
  try {
    return sock.address().port;
  } catch {
    return undefined;
  }
}

/** When the session's socket closes, its port goes into quarantine for this upstream. */
function releaseOnClose(ch: UdpFlowChannel, remote: string, localPort: number | undefined): void {
  if (localPort === undefined) return;
  ch.releaseRemote = remote;
  ch.releasePort = localPort;
}
