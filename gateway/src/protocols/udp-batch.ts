// The batched UDP hot path: a session's connected UDP socket read with
// recvmmsg and written with sendmmsg through the sockets addon, one
// JavaScript call per batch instead of one 'message' event per datagram.
//
// Used by udp.ts for IPv4 per-session sockets (server-mode flows and cluster
// connections) whenever the addon is built; L7MP_UDP_BATCH=off selects the
// plain node:dgram path (for comparison, or if this one misbehaves). It was
// opt-in for a while because the conformance suite's load-balancing probes
// now and then saw an untagged echo: a reused source port reaching the
// previous flow's upstream state (it can happen on either path), now
// prevented by the source-port quarantine (udp-ports.ts).
//
// Same Channel semantics as UdpChannel:
// one datagram per chunk, oversized chunks split, no half-close (a cluster
// socket reports EOF after a linger), and the same hooks (activity,
// kernelActivity, addresses(), inject()).

import { isIPv4 } from 'node:net';
import { NativeDatagramChannel } from '../native/channel.js';
import { sourceIPv4Key } from '../native/fdsocket.js';
import { socketsAddon, type SocketsAddon } from '../native/sockets.js';

/** Largest UDP payload over IPv4 (as in udp.ts; repeated to avoid an import cycle). */
const MAX_UDP_PAYLOAD = 65507;

/** The addon unless batching is turned off (L7MP_UDP_BATCH=off) or the addon is not built. */
export function udpBatchAddon(): SocketsAddon | undefined {
  if (process.env.L7MP_UDP_BATCH === 'off') return undefined;
  return socketsAddon();
}

/** Whether a flow between these addresses can take the batched path. */
export function canBatch(local: string | undefined, remote: string): boolean {
  return udpBatchAddon() !== undefined && (local === undefined || isIPv4(local)) && isIPv4(remote);
}

function ipv4Key(address: string, port: number): number {
  const [a, b, c, d] = address.split('.').map(Number) as [number, number, number, number];
  return (((a * 256 + b) * 256 + c) * 256 + d) * 65536 + port;
}

function keyAddress(key: number): { address: string; port: number } {
  const port = key % 65536;
  let ip = Math.floor(key / 65536);
  const parts: number[] = [];
  for (let i = 0; i < 4; i++) {
    parts.unshift(ip % 256);
    ip = Math.floor(ip / 256);
  }
  return { address: parts.join('.'), port };
}

export interface BatchedUdpOptions {
  /** Bind here first (server-mode flows: the listener's own address and port, shared with SO_REUSEADDR). */
  readonly bind?: { readonly address: string; readonly port: number; readonly reuse: boolean };
  readonly remote: { readonly address: string; readonly port: number };
  /** > 0: report EOF this long after end() once no more datagrams arrive (cluster side). */
  readonly eofLingerMs: number;
  /** Server-mode flows: where datagrams from anyone else go (they reached this socket before connect()). */
  readonly foreign?: (msg: Buffer, rinfo: { address: string; port: number }) => void;
}

export class BatchedUdpChannel extends NativeDatagramChannel {
  /** Kernel offload hook, as on UdpChannel. */
  kernelActivity: (() => number) | undefined;
  /** Called once when the socket closes (cluster side: its source port goes into quarantine, udp-ports.ts). */
  onRelease: (() => void) | undefined;
  private readonly remoteKey: number;
  private readonly foreign: BatchedUdpOptions['foreign'];

  /** Open, bind and connect a non-blocking UDP socket; throws a Node-style system error. */
  static open(addon: SocketsAddon, o: BatchedUdpOptions): BatchedUdpChannel {
    const fd = addon.socket(addon.constants.AF_INET, addon.constants.SOCK_DGRAM, 0);
    try {
      if (o.bind) addon.bindInet(fd, o.bind.address, o.bind.port, o.bind.reuse);
      addon.connectInet(fd, o.remote.address, o.remote.port);
      // Bursts are what batching is for: a deeper receive queue drops fewer of them.
      addon.setBuffers(fd, 1 << 20, 1 << 20);
    } catch (err) {
      addon.close(fd);
      throw err;
    }
    return new BatchedUdpChannel(addon, fd, o);
  }

  private constructor(private readonly udpAddon: SocketsAddon, fd: number, o: BatchedUdpOptions) {
    super(udpAddon, fd, `${o.remote.address}:${o.remote.port}`, { eofLingerMs: o.eofLingerMs, what: `UDP ${o.remote.address}:${o.remote.port}` });
    this.remoteKey = ipv4Key(o.remote.address, o.remote.port);
    this.foreign = o.foreign;
  }

  override message(msg: Buffer, slot?: number): void {
    if (this.foreign !== undefined && slot !== undefined) {
      const key = sourceIPv4Key(slot);
      if (key !== this.remoteKey) {
        this.foreign(msg, keyAddress(key));
        return;
      }
    }
    super.message(msg);
  }

  /** Feed a datagram that arrived on another socket (listener hand-over). */
  inject(msg: Uint8Array): void {
    this.activity++;
    this.deliver(msg);
  }

  override send(chunk: Uint8Array): boolean {
    if (chunk.byteLength <= MAX_UDP_PAYLOAD) return super.send(chunk);
    // A byte stream routed into UDP can hand us more than one datagram holds.
    let ok = true;
    for (let off = 0; off < chunk.byteLength; off += MAX_UDP_PAYLOAD) {
      ok = super.send(chunk.subarray(off, Math.min(off + MAX_UDP_PAYLOAD, chunk.byteLength))) && ok;
    }
    return ok;
  }

  /** The socket's local port (undefined once closed). */
  get localPort(): number | undefined {
    if (this.sock.closed) return undefined;
    try {
      return this.udpAddon.localAddress(this.sock.fd).port;
    } catch {
      return undefined;
    }
  }

  protected override doClose(err: Error | undefined): void {
    super.doClose(err);
    const release = this.onRelease;
    this.onRelease = undefined;
    release?.();
  }

  /** Kernel offload hook: the connected socket's local and remote address. */
  addresses(): { local: { address: string; port: number }; remote: { address: string; port: number } } | undefined {
    if (this.closed || this.sock.closed) return undefined;
    try {
      const l = this.udpAddon.localAddress(this.sock.fd);
      return { local: { address: l.address!, port: l.port! }, remote: keyAddress(this.remoteKey) };
    } catch {
      return undefined;
    }
  }
}
