// A UDP session's channel on node:dgram: one connected socket per flow (the
// cluster side, and server-mode listeners on IPv6 or with batching off), or
// the listener's own socket for a singleton. Same Channel semantics as the
// batched channels of batch.ts: one datagram per chunk, oversized chunks
// split, no half-close (a cluster socket reports EOF after a linger), and the
// hooks the idle sweep, early drop and the kernel offload read.

import type dgram from 'node:dgram';
import { BaseChannel, type ChannelKind } from '../../dataplane/channel.js';
import { EofLinger } from '../../dataplane/linger.js';
import { MAX_UDP_PAYLOAD, sendInPieces } from '../common/datagram.js';
import { flowClock } from '../common/flows.js';
import type { BatchedUdpChannel, SharedUdpFlow } from './batch.js';
import { releaseSourcePort } from './ports.js';

/** A session's UDP channel: node:dgram, or the batched recvmmsg/sendmmsg path (batch.ts). */
export type UdpFlowChannel = UdpChannel | BatchedUdpChannel | SharedUdpFlow;

export class UdpChannel extends BaseChannel {
  readonly kind: ChannelKind = 'datagram';
  /** The kernel may forward this flow in our stead (dataplane/capabilities.ts): user space only relays its datagrams. */
  readonly kernelOffload: boolean = true;
  /** Packets seen either way since the last idle sweep; read by the listener. */
  activity = 0;
  /**
   * Kernel offload hook (fastpath/offload): while the kernel forwards this
   * flow, user space sees none of its packets, so the idle sweep asks this
   * for the packets the kernel forwarded since the last call.
   */
  kernelActivity: (() => number) | undefined;
  /** Cluster side: the source port to quarantine when the socket has closed (ports.ts). */
  releaseRemote: string | undefined;
  releasePort = 0;
  /** For early drop of server-mode flows (common/flows.ts): when a datagram last went either way, and whether one went to the client. */
  lastActive = flowClock.now;
  replied = false;
  private ended = false;
  private received = 0;
  private linger: EofLinger | undefined;

  constructor(
    readonly socket: dgram.Socket,
    peer: string,
    private readonly ownsSocket = true,
    /** > 0: report EOF this long after end() once no more datagrams arrive (cluster side). */
    private readonly eofLingerMs = 0,
    /**
     * Server-mode sessions: the flow's remote, and where datagrams from anyone
     * else go. A socket connected after bind() may still hold datagrams the
     * kernel queued for it before connect(), from other new flows.
     */
    remote?: { readonly address: string; readonly port: number; foreign(msg: Buffer, r: dgram.RemoteInfo): void },
  ) {
    super();
    this.peer = peer;
    socket.on('message', (msg, r) => {
      if (remote !== undefined && (r.port !== remote.port || r.address !== remote.address)) {
        remote.foreign(msg, r);
        return;
      }
      this.activity++;
      this.lastActive = flowClock.now;
      this.received++;
      this.deliver(msg);
    });
    socket.on('error', (err) => this.close(err));
    socket.on('close', () => {
      releaseSourcePort(this);
      this.finish();
    });
  }

  /** Kernel offload hook: the connected socket's local and remote address (undefined if unconnected or closed). */
  addresses(): { local: { address: string; port: number }; remote: { address: string; port: number } } | undefined {
    try {
      const l = this.socket.address();
      const r = this.socket.remoteAddress();
      return { local: { address: l.address, port: l.port }, remote: { address: r.address, port: r.port } };
    } catch {
      return undefined;
    }
  }

  /** Feed a datagram that arrived on another socket (listener hand-over). */
  inject(msg: Uint8Array): void {
    this.activity++;
    this.lastActive = flowClock.now;
    this.deliver(msg);
  }

  send(chunk: Uint8Array): boolean {
    if (this.closed || this.ended) return true;
    this.activity++;
    this.lastActive = flowClock.now;
    this.replied = true;
    if (chunk.byteLength <= MAX_UDP_PAYLOAD) this.socket.send(chunk, this.onSent);
    else sendInPieces(chunk, MAX_UDP_PAYLOAD, this.sendPiece);
    return true;
  }

  private readonly onSent = (err: Error | null): void => {
    if (err) this.close(err);
  };

  private readonly sendPiece = (piece: Uint8Array): boolean => {
    this.socket.send(piece, this.onSent);
    return true;
  };

  /** UDP has no half-close: stop sending, keep receiving until the session ends (or the linger ends). */
  end(): void {
    if (this.ended) return;
    this.ended = true;
    if (this.eofLingerMs > 0) this.linger = new EofLinger(this.eofLingerMs, () => this.received, () => { if (!this.closed) this.deliverEnd(); });
  }

  protected doPause(): void {}
  protected doResume(): void {}

  protected doClose(_err: Error | undefined): void {
    this.linger?.cancel();
    if (!this.ownsSocket) {
      this.finish(_err);
      return;
    }
    try {
      this.socket.close();
    } catch {
      this.finish(_err);
    }
  }
}
