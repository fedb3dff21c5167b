// The batched UDP hot path: a session's connected UDP socket read with
// recvmmsg and written with sendmmsg through the sockets addon, one
// JavaScript call per batch instead of one 'message' event per datagram.
//
// Used whenever the addon is built, for IPv4: cluster sessions get a
// connected socket each (BatchedUdpChannel); a server-mode listener reads and
// answers every flow through its one socket (SharedUdpSocket, one
// SharedUdpFlow channel per flow). L7MP_UDP_BATCH=off selects the plain
// node:dgram path (channel.ts), for comparison or if this one misbehaves.
// Either path reuses kernel-chosen source ports, which the quarantine of
// ports.ts keeps from reaching the previous flow's upstream state.
//
// Same Channel semantics as UdpChannel: one datagram per chunk, oversized
// chunks split, no half-close (a cluster socket reports EOF after a linger),
// and the same hooks (activity, kernelActivity, addresses()).

import { isIPv4 } from 'node:net';
import { BaseChannel, type ChannelKind } from '../../dataplane/channel.js';
import { NativeDatagramChannel } from '../../native/channel.js';
import { NativeSocket, sourceAddress, sourceIPv4Key, type NativeSocketHandler } from '../../native/fdsocket.js';
import { socketsAddon, type SocketsAddon, type UdpForwarderHandle } from '../../native/sockets.js';
import { MAX_UDP_PAYLOAD, sendInPieces } from '../common/datagram.js';
import { flowClock } from '../common/flows.js';
import { releaseSourcePort } from './ports.js';

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

export function keyAddress(key: number): { address: string; port: number } {
  const port = (key % 65536) | 0; // an int32: the metadata's src_port field holds it inline, not as a heap number
  const ip = (key - port) / 65536; // < 2^32: the shifts below read it as uint32
  // One template, no array and join: this runs for every new flow.
  return { address: `${ip >>> 24}.${(ip >>> 16) & 255}.${(ip >>> 8) & 255}.${ip & 255}`, port };
}

export interface BatchedUdpOptions {
  /** Bind here first (the cluster's `bind`). */
  readonly bind?: { readonly address: string; readonly port: number; readonly reuse: boolean };
  readonly remote: { readonly address: string; readonly port: number };
  /** > 0: report EOF this long after end() once no more datagrams arrive (cluster side). */
  readonly eofLingerMs: number;
}

/** BatchedUdpOptions with what every channel to that remote shares, worked out once (a cluster keeps one per endpoint address). */
export interface BatchedUdpTarget extends BatchedUdpOptions {
  /** address:port */
  readonly peer: string;
  /** What the session's error names (NativeChannelOptions). */
  readonly what: string;
  readonly remoteKey: number;
}

export function batchedUdpTarget(o: BatchedUdpOptions): BatchedUdpTarget {
  const peer = flat(`${o.remote.address}:${o.remote.port}`);
  return { ...o, peer, what: `UDP ${peer}`, remoteKey: ipv4Key(o.remote.address, o.remote.port) };
}

export class BatchedUdpChannel extends NativeDatagramChannel {
  /** The kernel may forward this flow in our stead, as on UdpChannel. */
  readonly kernelOffload: boolean = true;
  /** Kernel offload hook, as on UdpChannel. */
  kernelActivity: (() => number) | undefined;
  /** The source port to quarantine when the socket closes (ports.ts). */
  releaseRemote: string | undefined;
  releasePort = 0;
  /** The local port, read once (getsockname): the quarantine asks for it twice per session (ports.ts). */
  private port: number | undefined;

  /** Open, bind and connect a non-blocking UDP socket; throws a Node-style system error. */
  static open(addon: SocketsAddon, o: BatchedUdpTarget): BatchedUdpChannel {
    const fd = addon.socket(addon.constants.AF_INET, addon.constants.SOCK_DGRAM, 0);
    try {
      if (o.bind) addon.bindInet(fd, o.bind.address, o.bind.port, o.bind.reuse);
      addon.connectInet(fd, o.remote.address, o.remote.port);
      // Bursts are what batching is for: a deeper receive queue drops fewer of them.
      // The send side keeps the default: a full send buffer is EAGAIN, which
      // queues in NativeSocket, never a drop, and the option is a system call per session.
      addon.setBuffers(fd, 1 << 20, 0);
    } catch (err) {
      addon.close(fd);
      throw err;
    }
    return new BatchedUdpChannel(addon, fd, o);
  }

  private constructor(addon: SocketsAddon, fd: number, o: BatchedUdpTarget) {
    // The target is the channel's options (eofLingerMs, what, remoteKey): no
    // object per session, and no copy of remoteKey, a double, in a field.
    super(addon, fd, o.peer, o);
  }

  override send(chunk: Uint8Array): boolean {
    if (chunk.byteLength <= MAX_UDP_PAYLOAD) return super.send(chunk);
    return sendInPieces(chunk, MAX_UDP_PAYLOAD, (piece) => super.send(piece));
  }

  /** The socket's local port (undefined once closed). */
  get localPort(): number | undefined {
    if (this.sock.closed) return undefined;
    if (this.port !== undefined) return this.port;
    try {
      this.port = this.addon.localPort(this.sock.fd);
      return this.port;
    } catch {
      return undefined;
    }
  }

  protected override doClose(err: Error | undefined): void {
    super.doClose(err);
    releaseSourcePort(this);
  }

  /** Kernel offload hook: the connected socket's local and remote address. */
  addresses(): { local: { address: string; port: number }; remote: { address: string; port: number } } | undefined {
    if (this.closed || this.sock.closed) return undefined;
    try {
      const l = this.addon.localAddress(this.sock.fd);
      return { local: { address: l.address!, port: l.port! }, remote: keyAddress((this.opts as BatchedUdpTarget).remoteKey) };
    } catch {
      return undefined;
    }
  }
}

/** Flattens a string built by concatenation (a V8 rope of one node per part) in place: a retained rope costs ~3× a flat string. */
export function flat(s: string): string {
  s.charCodeAt(0);
  return s;
}

/** What the listener does with a datagram from a peer it has no flow for. */
export interface SharedUdpOwner {
  newFlow(shared: SharedUdpSocket, key: number, msg: Buffer, slot: number): void;
  /** The addon's flow table refused a new source over its flow rate (compiled.ts). */
  flowRate(key: number): void;
  socketError(code: string): void;
}

/**
 * A server-mode UDP listener's one socket on the batched path: every flow's
 * datagrams are read from it (recvmmsg, demultiplexed by source address) and
 * every reply leaves through it (sendmmsg with each datagram's destination),
 * as nginx stream does. A flow costs a map entry and a small channel object,
 * not a socket, a libuv watcher and a bind+connect pair, which is what
 * per-session memory and the session setup rate come down to. The 5-tuple a flow
 * has on the wire is the same as with a connected socket per flow, so the
 * kernel offload matches it the same way.
 */
export class SharedUdpSocket implements NativeSocketHandler {
  readonly sock: NativeSocket;
  readonly flows = new Map<number, SharedUdpFlow>();
  /** Flows whose last send found the socket (or its queue) full: told when it drains. */
  private blocked: Set<SharedUdpFlow> | undefined;
  /** The listener stopped: close the socket when the last flow ends. */
  private closing = false;
  /** The addon's flow table on this socket (a compiled listener, compiled.ts): it leaves our flows' datagrams to us. */
  private tap: UdpForwarderHandle | undefined;

  constructor(private readonly addon: SocketsAddon, fd: number, readonly local: { readonly address: string; readonly port: number }, private readonly owner: SharedUdpOwner) {
    this.sock = new NativeSocket(addon, fd, 'data', this, true);
    this.sock.readStart();
  }

  message(msg: Buffer, slot: number): void {
    const key = sourceIPv4Key(slot);
    if (key < 0) return; // not IPv4: cannot happen on an AF_INET socket
    const f = this.flows.get(key);
    if (f !== undefined) f.receive(msg);
    else if (!this.closing) this.owner.newFlow(this, key, msg, slot);
  }

  flowRate(slot: number): void {
    if (!this.closing) this.owner.flowRate(sourceIPv4Key(slot));
  }

  useTap(t: UdpForwarderHandle): void {
    this.tap = t;
    for (const key of this.flows.keys()) t.claim(key);
  }

  /** The addon's flow table let go of the socket (its flows ended). */
  tapGone(t: UdpForwarderHandle): void {
    if (this.tap !== t) return;
    this.tap = undefined;
    this.closeIfDone();
  }

  /** Add a flow for the source of `slot` in the current batch; `peer` is its address:port. */
  open(key: number, slot: number, peer: string): SharedUdpFlow {
    const f = new SharedUdpFlow(this, key, Buffer.from(sourceAddress(slot)), peer);
    this.flows.set(key, f);
    this.tap?.claim(key);
    return f;
  }

  send(f: SharedUdpFlow, chunk: Uint8Array): boolean {
    if (this.sock.send(chunk, f.addr)) return true;
    (this.blocked ??= new Set()).add(f);
    return false;
  }

  drained(): void {
    const b = this.blocked;
    this.blocked = undefined;
    if (b !== undefined) for (const f of b) f.drained();
  }

  /** One datagram to a peer failed (say, EPERM from a firewall): it is dropped, as the kernel would drop it later. */
  sendFailed(): void {}

  error(code: string): void {
    this.owner.socketError(code);
    for (const f of [...this.flows.values()]) f.close(sysError(code));
    this.sock.close();
  }

  /**
   * The local address replies to `remote` leave from. A wildcard listener
   * does not know it per datagram (no IP_PKTINFO): ask the routing table, as
   * connect() on a socket would. Only the offload asks, once per session.
   */
  localFor(remote: { address: string; port: number }): { address: string; port: number } | undefined {
    if (this.local.address !== '0.0.0.0') return this.local;
    const a = this.addon;
    let fd = -1;
    try {
      fd = a.socket(a.constants.AF_INET, a.constants.SOCK_DGRAM, 0);
      a.connectInet(fd, remote.address, remote.port);
      return { address: a.localAddress(fd).address!, port: this.local.port };
    } catch {
      return undefined;
    } finally {
      if (fd >= 0) a.close(fd);
    }
  }

  removed(f: SharedUdpFlow): void {
    if (this.flows.get(f.key) === f) {
      this.flows.delete(f.key);
      this.tap?.release(f.key);
    }
    this.blocked?.delete(f);
    this.closeIfDone();
  }

  /** No new flows; the socket closes with the last one, ours and the addon's (sessions outlive a listener deleted without recursive). */
  stop(): void {
    this.closing = true;
    this.closeIfDone();
  }

  private closeIfDone(): void {
    if (this.closing && this.flows.size === 0 && this.tap === undefined) this.sock.close();
  }
}

function sysError(code: string): Error {
  const e = new Error(`UDP listener socket: ${code}`) as NodeJS.ErrnoException;
  e.code = code;
  return e;
}

/** One server-mode flow on a SharedUdpSocket: a datagram channel without a socket of its own. */
export class SharedUdpFlow extends BaseChannel {
  readonly kind: ChannelKind = 'datagram';
  /** The kernel may forward this flow in our stead, as on UdpChannel. */
  readonly kernelOffload: boolean = true;
  /** Datagrams seen either way since the last idle sweep; read by the listener. */
  activity = 0;
  /** Kernel offload hook, as on UdpChannel. */
  kernelActivity: (() => number) | undefined;
  /** Unused (cluster sockets only); here so that every UdpFlowChannel has them. */
  releaseRemote: string | undefined;
  releasePort = 0;
  /** For early drop (common/flows.ts): when a datagram last went either way, and whether one went to the client. */
  lastActive = flowClock.now;
  replied = false;

  constructor(private readonly shared: SharedUdpSocket, readonly key: number, readonly addr: Uint8Array, peer: string) {
    super();
    this.peer = peer;
  }

  receive(msg: Uint8Array): void {
    this.activity++;
    this.lastActive = flowClock.now;
    this.deliver(msg);
  }

  send(chunk: Uint8Array): boolean {
    if (this.closed) return true;
    this.activity++;
    this.lastActive = flowClock.now;
    this.replied = true;
    if (chunk.byteLength <= MAX_UDP_PAYLOAD) return this.shared.send(this, chunk);
    return sendInPieces(chunk, MAX_UDP_PAYLOAD, (piece) => this.shared.send(this, piece));
  }

  /** UDP has no half-close: the flow keeps receiving until its session ends. */
  end(): void {}

  drained(): void {
    this.emitDrain();
  }

  // One socket serves every flow: pausing one flow cannot stop it. Datagrams
  // for a paused flow wait in the channel's early queue (bounded, as UDP drops).
  protected doPause(): void {}
  protected doResume(): void {}

  protected doClose(err: Error | undefined): void {
    this.shared.removed(this);
    this.finish(err);
  }

  /** Kernel offload hook: the flow's addresses, as a connected socket would have them. */
  addresses(): { local: { address: string; port: number }; remote: { address: string; port: number } } | undefined {
    if (this.closed) return undefined;
    const remote = keyAddress(this.key);
    const local = this.shared.localFor(remote);
    return local === undefined ? undefined : { local, remote };
  }
}
