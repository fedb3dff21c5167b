// UDP listener (singleton and server mode) and cluster.
//
// Server mode gives each remote address/port a session of its own. With the
// sockets addon (IPv4), the listener's one socket reads every flow in batches
// and answers through it (udp-batch.ts, as nginx does). On node:dgram (IPv6,
// or L7MP_UDP_BATCH=off) it follows l7mp: for each new remote the listener
// opens a socket bound to its own address and port (SO_REUSEADDR) and
// connect()s it to the remote, so the kernel demultiplexes the flow to that
// socket; packets that reach the listening socket before the connected one
// exists are handed over through a small map. Either way a session has its
// own 5-tuple, which the kernel offload matches.

import dgram from 'node:dgram';
import { isIPv6 } from 'node:net';
import { BaseChannel, type ChannelKind } from '../../dataplane/channel.js';
import { EofLinger } from '../../dataplane/linger.js';
import { GatewayError, invalid } from '../../core/errors.js';
import type {
  ClusterContext, ClusterImpl, ConnectRequest, ListenerContext, ListenerImpl, ProtocolDef, Spec,
} from '../types.js';
import * as v from '../common/validate.js';
import { BatchedUdpChannel, SharedUdpSocket, canBatch, flat, keyAddress, udpBatchAddon, type SharedUdpFlow, type SharedUdpOwner } from './batch.js';
import { drawUnbarred, udpSourcePorts } from './ports.js';
import { flowClock, pickEvictable, startFlowClock } from '../common/flows.js';

/** Largest UDP payload over IPv4. */
export const MAX_UDP_PAYLOAD = 65507;

/**
 * UDP cannot half-close. When a cluster-side channel has been told end() (its
 * client sent EOF), it keeps taking replies and reports EOF once they have
 * stopped for this long; without it a TCP client that closed towards a UDP
 * upstream left its session (and a half-open socket) open for ever.
 */
export const UDP_EOF_LINGER_MS = 2000;

/** A session's UDP channel: node:dgram, or the batched recvmmsg/sendmmsg path (udp-batch.ts). */
export type UdpFlowChannel = UdpChannel | BatchedUdpChannel | SharedUdpFlow;

export class UdpChannel extends BaseChannel {
  readonly kind: ChannelKind = 'datagram';
  /** Packets seen either way since the last idle sweep; read by the listener. */
  activity = 0;
  /**
   * Kernel offload hook (gateway/src/offload): while the kernel forwards this
   * flow, user space sees none of its packets, so the idle sweep asks this
   * for the packets the kernel forwarded since the last call.
   */
  kernelActivity: (() => number) | undefined;
  /** Called once when the socket has closed (cluster side: its source port goes into quarantine, udp-ports.ts). */
  onRelease: (() => void) | undefined;
  /** For early drop of server-mode flows (flow-evict.ts): when a datagram last went either way, and whether one went to the client. */
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
      this.onRelease?.();
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
    if (chunk.byteLength <= MAX_UDP_PAYLOAD) {
      this.socket.send(chunk, this.onSent);
    } else {
      // A byte stream routed into UDP can hand us more than one datagram holds.
      for (let off = 0; off < chunk.byteLength; off += MAX_UDP_PAYLOAD) {
        this.socket.send(chunk.subarray(off, Math.min(off + MAX_UDP_PAYLOAD, chunk.byteLength)), this.onSent);
      }
    }
    return true;
  }

  private readonly onSent = (err: Error | null): void => {
    if (err) this.close(err);
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

function socketType(address: string | undefined): 'udp4' | 'udp6' {
  return address !== undefined && isIPv6(address) ? 'udp6' : 'udp4';
}

function bindSocket(sock: dgram.Socket, port: number, address: string | undefined): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (err: Error) => reject(err);
    sock.once('error', onError);
    sock.bind({ port, address, exclusive: false }, () => {
      sock.off('error', onError);
      resolve();
    });
  });
}

function connectSocket(sock: dgram.Socket, port: number, address: string, timeoutMs: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      sock.off('error', onError);
      reject(new GatewayError('TIMEOUT', `UDP connect to ${address}:${port} timed out after ${timeoutMs} ms`));
    }, timeoutMs);
    const onError = (err: Error) => {
      clearTimeout(timer);
      reject(err);
    };
    sock.once('error', onError);
    sock.connect(port, address, () => {
      clearTimeout(timer);
      sock.off('error', onError);
      resolve();
    });
  });
}

/** A bind or listen failure as BIND_FAILED, with the usual causes in words. */
export function bindError(err: unknown, what: string): GatewayError {
  const e = err as NodeJS.ErrnoException;
  if (e.code === 'EADDRINUSE') return new GatewayError('BIND_FAILED', `${what}: address already in use`, undefined, { cause: err });
  if (e.code === 'EACCES') return new GatewayError('BIND_FAILED', `${what}: permission denied`, undefined, { cause: err });
  if (e.code === 'EADDRNOTAVAIL') return new GatewayError('BIND_FAILED', `${what}: address not available`, undefined, { cause: err });
  return new GatewayError('BIND_FAILED', `${what}: ${e.message}`, undefined, { cause: err });
}

interface UdpListenerConfig {
  address: string;
  port: number;
  connectAddress: string | undefined;
  connectPort: number | undefined;
  singleton: boolean;
  /** Seconds of silence after which a server-mode session ends; 0 = never. */
  idleTimeout: number;
}

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

class UdpListener implements ListenerImpl, SharedUdpOwner {
  private main: dgram.Socket | undefined;
  /** Server mode on the batched path (IPv4): one socket for every flow (udp-batch.ts). */
  private shared: SharedUdpSocket | undefined;
  private readonly flows = new Map<string, UdpChannel | Uint8Array[]>();
  /** The shared socket's flow table, kept for the idle sweep after stop() (sessions outlive the listener). */
  private sharedFlows: Map<number, SharedUdpFlow> | undefined;
  private seq = 0;
  private sweepTimer: NodeJS.Timeout | undefined;
  private readonly lastActivity = new WeakMap<UdpFlowChannel, number>();
  private stopped = false;

  constructor(private readonly cfg: UdpListenerConfig, private readonly ctx: ListenerContext) {}

  async start(): Promise<void> {
    const { address, port } = this.cfg;
    const what = `UDP listener "${this.ctx.listenerName}" cannot bind ${address}:${port}`;
    const addon = this.cfg.singleton ? undefined : udpBatchAddon();
    if (addon !== undefined && canBatch(address, address)) {
      this.startShared(addon, what);
      return;
    }
    if (!this.cfg.singleton) {
      // Server mode needs SO_REUSEADDR for its per-session sockets, which would
      // also let a second listener share the port. An exclusive probe bind
      // first makes "address in use" an error, as users expect.
      const probe = dgram.createSocket({ type: socketType(address) });
      try {
        await bindSocket(probe, port, address);
      } catch (err) {
        probe.close();
        throw bindError(err, what);
      }
      await new Promise<void>((r) => probe.close(() => r()));
    }
    const sock = dgram.createSocket({ type: socketType(address), reuseAddr: !this.cfg.singleton });
    try {
      await bindSocket(sock, port, address);
    } catch (err) {
      sock.close();
      throw bindError(err, what);
    }
    this.main = sock;
    if (this.cfg.singleton) {
      await this.startSingleton(sock);
      return;
    }
    sock.on('message', (msg, rinfo) => this.onMessage(msg, rinfo));
    sock.on('error', (err) => this.ctx.log.warn({ listener: this.ctx.listenerName, err: err.message }, 'UDP listener socket error'));
    startFlowClock();
    this.startSweep();
  }

  private startShared(addon: NonNullable<ReturnType<typeof udpBatchAddon>>, what: string): void {
    const { address, port } = this.cfg;
    const fd = addon.socket(addon.constants.AF_INET, addon.constants.SOCK_DGRAM, 0);
    try {
      // No SO_REUSEADDR: nothing else binds this port (flows have no sockets), so "in use" is an error at once.
      addon.bindInet(fd, address, port, false);
      // Every flow's burst lands in this one queue.
      addon.setBuffers(fd, 4 << 20, 4 << 20);
    } catch (err) {
      addon.close(fd);
      throw bindError(err, what);
    }
    this.shared = new SharedUdpSocket(addon, fd, { address, port }, this);
    this.sharedFlows = this.shared.flows;
    startFlowClock();
    this.startSweep();
  }

  /** SharedUdpOwner: a datagram from a peer without a flow. */
  newFlow(shared: SharedUdpSocket, key: number, msg: Buffer, slot: number): void {
    // The remote comes from the flow key. (It was read back through
    // addresses(), which opens a socket to ask the routing table for the
    // local address: at EMFILE that failed, and every datagram of a flood
    // was logged as "a peer outside connect{}".)
    const r = keyAddress(key);
    if (this.foreign(r.address, r.port)) return;
    // Admitted before the flow exists: a refused datagram of a flood costs no flow object.
    const metadata = udpMetadata(r.address, r.port, this.cfg.address, this.cfg.port);
    if (!this.ctx.admit({ metadata })) return;
    const f = shared.open(key, slot);
    f.receive(msg);
    this.emit(f, metadata, true);
  }

  /** SharedUdpOwner: the socket failed; its flows are closed with the error. */
  socketError(code: string): void {
    this.ctx.log.error({ listener: this.ctx.listenerName, code }, 'UDP listener socket failed; its sessions end');
    this.shared = undefined;
  }

  private startSweep(): void {
    if (this.cfg.idleTimeout > 0) {
      const every = Math.max(250, Math.min(this.cfg.idleTimeout * 1000 / 4, 10_000));
      this.sweepTimer = setInterval(() => this.sweep(), every);
      this.sweepTimer.unref();
    }
  }

  private async startSingleton(sock: dgram.Socket): Promise<void> {
    const { connectAddress, connectPort } = this.cfg;
    try {
      await connectSocket(sock, connectPort!, connectAddress!, 5000);
    } catch (err) {
      sock.close();
      this.main = undefined;
      throw new GatewayError('BIND_FAILED', `UDP listener "${this.ctx.listenerName}" cannot connect to ${connectAddress}:${connectPort}: ${(err as Error).message}`);
    }
    const local = sock.address();
    const ch = new UdpChannel(sock, `${connectAddress}:${connectPort}`);
    // Emitted once the listener is committed, so that the session can be routed.
    this.pendingSingleton = () => this.emit(ch, udpMetadata(connectAddress!, connectPort!, local.address, local.port));
  }

  private pendingSingleton: (() => void) | undefined;

  ready(): void {
    const emit = this.pendingSingleton;
    this.pendingSingleton = undefined;
    emit?.();
  }

  private onMessage(msg: Buffer, rinfo: dgram.RemoteInfo): void {
    const key = `${rinfo.address}:${rinfo.port}`;
    let known = this.flows.get(key);
    if (known !== undefined && !Array.isArray(known) && known.closed) {
      // The flow's session has ended. The session replaced the close listener
      // set in accept(), so the entry is dropped here: the peer gets a new session.
      this.flows.delete(key);
      known = undefined;
    }
    if (known !== undefined) {
      if (Array.isArray(known)) {
        if (known.length < 64) known.push(msg);
      } else {
        known.inject(msg);
      }
      return;
    }
    if (this.foreign(rinfo.address, rinfo.port)) return;
    // This path spends a socket on the flow before emit(): ask admission first.
    const metadata = udpMetadata(rinfo.address, rinfo.port, this.cfg.address, this.cfg.port);
    if (!this.ctx.admit({ metadata })) return;
    const pending: Uint8Array[] = [msg];
    this.flows.set(key, pending);
    void this.accept(key, rinfo, pending, metadata);
  }

  private async accept(key: string, rinfo: dgram.RemoteInfo, pending: Uint8Array[], metadata: UdpMetadata): Promise<void> {
    // The node:dgram path (IPv6, or batching off): a socket per flow. On the
    // batched path (IPv4) flows share the listener's socket (startShared).
    const { address, port } = this.cfg;
    const sock = dgram.createSocket({ type: socketType(address), reuseAddr: true });
    // Between bind() and connect() this socket is an unconnected socket on the
    // listener's port, and the kernel hands it the datagrams of *other* new
    // flows (of equal sockets it prefers the last bound). Unhandled, they were
    // lost, or read later as this flow's data (one client's datagram in
    // another's session). Route them: ours to the pending queue, the others'
    // as if the main socket had read them.
    const early = (msg: Buffer, r: dgram.RemoteInfo): void => {
      if (r.port === rinfo.port && r.address === rinfo.address) {
        if (pending.length < 64) pending.push(msg);
      } else {
        this.onMessage(msg, r);
      }
    };
    sock.on('message', early);
    try {
      await bindSocket(sock, port, address);
      await connectSocket(sock, rinfo.port, rinfo.address, 2000);
    } catch (err) {
      sock.off('message', early);
      this.flows.delete(key);
      try { sock.close(); } catch { /* already closed */ }
      const code = (err as NodeJS.ErrnoException).code;
      // Out of descriptors (someone else took them): per flow, so counted, not logged each time.
      if (code === 'EMFILE' || code === 'ENFILE') this.ctx.refusals.refuse('fd_budget', this.ctx.listenerName, { remote: key, err: code });
      else this.ctx.log.warn({ listener: this.ctx.listenerName, remote: key, err: (err as Error).message }, 'UDP listener: cannot open a session socket');
      return;
    }
    sock.off('message', early);
    if (this.stopped) {
      sock.close();
      return;
    }
    const ch = new UdpChannel(sock, key, true, 0, { address: rinfo.address, port: rinfo.port, foreign: (m, r) => this.onMessage(m, r) });
    this.flows.set(key, ch);
    ch.setCloseListener({ closed: () => { if (this.flows.get(key) === ch) this.flows.delete(key); } });
    for (const m of pending) ch.inject(m);
    this.emit(ch, metadata, true);
  }

  /** A datagram from a peer that connect{} does not allow: dropped, counted, logged once per interval. */
  private foreign(address: string, port: number): boolean {
    const { connectAddress, connectPort } = this.cfg;
    if ((connectAddress === undefined || connectAddress === address) && (connectPort === undefined || connectPort === port)) return false;
    this.ctx.refusals.refuse('udp_foreign_peer', this.ctx.listenerName, { remote: `${address}:${port}` });
    return true;
  }

  private emit(ch: UdpFlowChannel, metadata: UdpMetadata, admitted = false): void {
    const { IP: ip, UDP: udp } = metadata;
    const name = flat(`UDP:${ip.src_addr}:${udp.src_port}-${ip.dst_addr}:${udp.dst_port}-${this.seq++}`);
    this.ctx.emit({ name, channel: ch, metadata, ...(admitted ? { admitted } : {}) });
  }

  /** Early drop (flow-evict.ts): end one idle flow to make room for a new one. */
  evictIdle(): boolean {
    if (this.cfg.singleton) return false;
    const flows: Map<unknown, ServerFlow | Uint8Array[]> = this.sharedFlows ?? this.flows;
    const f = pickEvictable(flows, isFlow);
    if (f === undefined) return false;
    f.close();
    return true;
  }

  /** Ends server-mode flows that were silent for idle_timeout seconds. */
  private sweep(): void {
    const now = Date.now();
    const limit = this.cfg.idleTimeout * 1000;
    const flows: Map<unknown, UdpFlowChannel | Uint8Array[]> = this.sharedFlows ?? this.flows;
    if (this.stopped && flows.size === 0 && this.sweepTimer) clearInterval(this.sweepTimer);
    for (const [key, flow] of flows) {
      if (Array.isArray(flow)) continue;
      if (flow.closed) {
        flows.delete(key); // its session ended (see onMessage)
        continue;
      }
      const seen = this.lastActivity.get(flow);
      if (flow.kernelActivity !== undefined) flow.activity += flow.kernelActivity();
      if (flow.activity > 0 || seen === undefined) {
        flow.activity = 0;
        this.lastActivity.set(flow, now);
      } else if (now - seen >= limit) {
        this.ctx.log.info({ listener: this.ctx.listenerName, peer: flow.peer }, 'UDP session idle timeout');
        flow.close();
      }
    }
  }

  bound(): boolean {
    return this.main !== undefined || this.shared !== undefined;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    const shared = this.shared;
    if (shared !== undefined) {
      // Sessions may outlive the listener (deleted without recursive): the
      // socket serves them, and their idle sweep, until the last one ends.
      this.shared = undefined;
      shared.stop();
      return;
    }
    if (this.sweepTimer) clearInterval(this.sweepTimer);
    const main = this.main;
    this.main = undefined;
    if (main) await new Promise<void>((resolve) => {
      try { main.close(() => resolve()); } catch { resolve(); }
    });
  }
}

interface UdpMetadata extends Record<string, unknown> {
  IP: { src_addr: string; dst_addr: string };
  UDP: { src_port: number; dst_port: number };
}

function udpMetadata(rAddr: string, rPort: number, lAddr: string, lPort: number): UdpMetadata {
  return {
    IP: { src_addr: rAddr, dst_addr: lAddr },
    UDP: { src_port: rPort, dst_port: lPort },
  };
}

/** A server-mode flow's channel (the cluster side's BatchedUdpChannel never sits in a flow table). */
type ServerFlow = UdpChannel | SharedUdpFlow;

function isFlow(v: unknown): v is ServerFlow {
  return !Array.isArray(v);
}

interface UdpClusterConfig {
  port: number;
  bindAddress: string | undefined;
  bindPort: number | undefined;
}

class UdpCluster implements ClusterImpl {
  constructor(private readonly cfg: UdpClusterConfig, private readonly ctx: ClusterContext) {}

  async connect(req: ConnectRequest): Promise<UdpFlowChannel> {
    const ep = req.endpoint;
    if (!ep) throw new GatewayError('CONNECT_FAILED', `cluster "${this.ctx.clusterName}" has no endpoint`);
    const { bindAddress, bindPort, port } = this.cfg;
    const remote = `${ep.address}:${port}`;
    // A fixed source port is the user's choice; only kernel-chosen ones are quarantined (udp-ports.ts).
    const ephemeral = bindPort === undefined || bindPort === 0;
    try {
      if (canBatch(bindAddress, ep.address)) {
        const open = (): BatchedUdpChannel => this.openBatched(ep.address);
        const ch = ephemeral ? await drawUnbarred(remote, open, (c) => c.localPort, (c) => c.close()) : open();
        if (ephemeral) releaseOnClose(ch, remote, ch.localPort);
        return ch;
      }
      const open = (): Promise<dgram.Socket> => this.openDgram(ep.address, req.timeoutMs);
      const sock = ephemeral ? await drawUnbarred(remote, open, localPortOf, closeQuietly) : await open();
      const ch = new UdpChannel(sock, remote, true, UDP_EOF_LINGER_MS);
      if (ephemeral) releaseOnClose(ch, remote, localPortOf(sock));
      return ch;
    } catch (err) {
      throw new GatewayError('CONNECT_FAILED', `UDP ${remote}: ${(err as Error).message}`, undefined, { cause: err });
    }
  }

  private async openDgram(address: string, timeoutMs: number): Promise<dgram.Socket> {
    const { bindAddress, bindPort, port } = this.cfg;
    const sock = dgram.createSocket({ type: socketType(address), reuseAddr: bindPort !== undefined && bindPort !== 0 });
    try {
      if (bindAddress !== undefined || bindPort !== undefined) await bindSocket(sock, bindPort ?? 0, bindAddress);
      await connectSocket(sock, port, address, timeoutMs);
    } catch (err) {
      closeQuietly(sock);
      throw err;
    }
    return sock;
  }

  /** The batched path (udp-batch.ts): an IPv4 endpoint and the addon built. */
  private openBatched(address: string): BatchedUdpChannel {
    const { bindAddress, bindPort, port } = this.cfg;
    const bind = bindAddress !== undefined || bindPort !== undefined
      ? { address: bindAddress ?? '0.0.0.0', port: bindPort ?? 0, reuse: bindPort !== undefined && bindPort !== 0 }
      : undefined;
    return BatchedUdpChannel.open(udpBatchAddon()!, { ...(bind ? { bind } : {}), remote: { address, port }, eofLingerMs: UDP_EOF_LINGER_MS });
  }
}

function localPortOf(sock: dgram.Socket): number | undefined {
  try {
    return sock.address().port;
  } catch {
    return undefined;
  }
}

function closeQuietly(sock: dgram.Socket): void {
  try { sock.close(); } catch { /* not open */ }
}

/** When the session's socket closes, its port goes into quarantine for this upstream. */
function releaseOnClose(ch: UdpFlowChannel, remote: string, localPort: number | undefined): void {
  if (localPort !== undefined) ch.onRelease = () => udpSourcePorts.release(remote, localPort);
}

export const udpProtocol: ProtocolDef = {
  name: 'UDP',
  kind: 'datagram',
  summary: 'UDP datagrams; listener in singleton or server mode, cluster with one connected socket per session',
  listener: {
    modes: ['singleton', 'server'],
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
