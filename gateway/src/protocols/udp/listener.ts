// The UDP listener, singleton or server mode (index.ts says how each works).

import dgram from 'node:dgram';
import { GatewayError } from '../../core/errors.js';
import type { ListenerContext, ListenerImpl } from '../types.js';
import { bindDgram, closeDgram, connectDgram, dgramType } from '../common/datagram.js';
import { IdleSweep, pickEvictable, startFlowClock } from '../common/flows.js';
import { bindError } from '../common/socket.js';
import { portSharing } from '../common/reuseport.js';
import { SharedUdpSocket, canBatch, flat, keyAddress, udpBatchAddon, type SharedUdpFlow, type SharedUdpOwner } from './batch.js';
import { UdpChannel, type UdpFlowChannel } from './channel.js';
import { CompiledUdp } from './compiled.js';

export interface UdpListenerConfig {
  address: string;
  port: number;
  connectAddress: string | undefined;
  connectPort: number | undefined;
  singleton: boolean;
  /** Seconds of silence after which a server-mode session ends; 0 = never. */
  idleTimeout: number;
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

/** A flow table entry is a flow, or the datagrams of a flow whose socket is being set up. */
function isFlow(v: unknown): v is ServerFlow {
  return !Array.isArray(v);
}

export class UdpListener implements ListenerImpl, SharedUdpOwner {
  private main: dgram.Socket | undefined;
  /** Server mode on the batched path (IPv4): one socket for every flow (batch.ts). */
  private shared: SharedUdpSocket | undefined;
  private readonly flows = new Map<string, UdpChannel | Uint8Array[]>();
  /** The shared socket's flow table, kept for the idle sweep after stop() (sessions outlive the listener). */
  private sharedFlows: Map<number, SharedUdpFlow> | undefined;
  /** The addon's flow table on the shared socket (a compiled listener, compiled.ts). */
  private compiled: CompiledUdp | undefined;
  private seq = 0;
  /** address:port of the listener, for session names. */
  private readonly localName: string;
  private readonly idle: IdleSweep<ServerFlow>;
  private stopped = false;
  private pendingSingleton: (() => void) | undefined;

  constructor(private readonly cfg: UdpListenerConfig, private readonly ctx: ListenerContext) {
    this.localName = `${cfg.address}:${cfg.port}`;
    this.idle = new IdleSweep<ServerFlow>(cfg.idleTimeout, {
      table: () => this.sharedFlows ?? this.flows,
      flow: (entry) => (isFlow(entry) ? entry : undefined),
      takeActivity: (flow) => {
        if (flow.kernelActivity !== undefined) flow.activity += flow.kernelActivity();
        const n = flow.activity;
        flow.activity = 0;
        return n;
      },
      expired: (flow) => {
        this.ctx.log.info({ listener: this.ctx.listenerName, peer: flow.peer }, 'UDP session idle timeout');
        flow.close();
      },
    });
  }

  async start(): Promise<void> {
    const { address, port } = this.cfg;
    const what = `UDP listener "${this.ctx.listenerName}" cannot bind ${address}:${port}`;
    const addon = this.cfg.singleton ? undefined : udpBatchAddon();
    if (addon !== undefined && canBatch(address, address)) {
      this.startShared(addon, what);
      return;
    }
    if (portSharing.on) {
      // Workers share the port only on the batched path (one socket, flows
      // demultiplexed here); per-flow sockets are docs/workers.md's next step.
      throw new GatewayError('NOT_SUPPORTED', `${what}: with admin.workers > 1 a UDP listener needs server mode on IPv4 with the native addon`);
    }
    if (!this.cfg.singleton) {
      // Server mode needs SO_REUSEADDR for its per-session sockets, which would
      // also let a second listener share the port. An exclusive probe bind
      // first makes "address in use" an error, as users expect.
      const probe = dgram.createSocket({ type: dgramType(address) });
      try {
        await bindDgram(probe, port, address);
      } catch (err) {
        probe.close();
        throw bindError(err, what);
      }
      await new Promise<void>((r) => probe.close(() => r()));
    }
    const sock = dgram.createSocket({ type: dgramType(address), reuseAddr: !this.cfg.singleton });
    try {
      await bindDgram(sock, port, address);
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
    this.idle.start();
  }

  private startShared(addon: NonNullable<ReturnType<typeof udpBatchAddon>>, what: string): void {
    const { address, port } = this.cfg;
    const fd = addon.socket(addon.constants.AF_INET, addon.constants.SOCK_DGRAM, 0);
    try {
      // No SO_REUSEADDR: nothing else binds this port (flows have no sockets), so "in use" is an error at once.
      // Workers: every worker binds the port, the kernel keeps each 4-tuple on one (common/reuseport.ts).
      addon.bindInet(fd, address, port, portSharing.on, portSharing.on);
      // Every flow's burst lands in this one queue.
      addon.setBuffers(fd, 4 << 20, 4 << 20);
    } catch (err) {
      addon.close(fd);
      throw bindError(err, what);
    }
    if (portSharing.on) portSharing.reportUdp?.(fd, address, addon.localAddress(fd).port ?? port);
    this.shared = new SharedUdpSocket(addon, fd, { address, port }, this);
    this.sharedFlows = this.shared.flows;
    const { compiled: site } = this.ctx;
    // Not with connect{}: the peers it allows are checked per new flow, in JavaScript.
    if (site !== undefined && addon.UdpForwarder !== undefined && process.env.L7MP_UDP_COMPILED !== 'off' && this.cfg.connectAddress === undefined && this.cfg.connectPort === undefined) {
      this.compiled = new CompiledUdp(addon.UdpForwarder, this.shared, { ...this.ctx, compiled: site }, { address, port }, this.cfg.idleTimeout);
    }
    startFlowClock();
    this.idle.start();
  }

  /** SharedUdpOwner: a datagram from a peer without a flow. */
  newFlow(shared: SharedUdpSocket, key: number, msg: Buffer, slot: number): void {
    // The remote comes from the flow key, never from a lookup that needs a
    // descriptor: at EMFILE that would fail for every datagram of a flood.
    const r = keyAddress(key);
    if (this.foreign(r.address, r.port)) return;
    // Admitted before the flow exists: a refused datagram of a flood costs no flow object.
    const metadata = udpMetadata(r.address, r.port, this.cfg.address, this.cfg.port);
    if (!this.ctx.admit({ metadata })) return;
    const peer = flat(`${r.address}:${r.port}`);
    const f = shared.open(key, slot, peer);
    f.receive(msg);
    // The name as emit() builds it, from the strings at hand.
    this.ctx.emit({ name: flat(`UDP:${peer}-${this.localName}-${this.seq++}`), channel: f, metadata, admitted: true });
  }

  /** SharedUdpOwner: the addon's flow table refused a new source over its flow rate. */
  flowRate(key: number): void {
    const r = keyAddress(key);
    this.ctx.refusals.refuse('flow_rate', this.ctx.listenerName, { source: r.address });
  }

  /** SharedUdpOwner: the socket failed; its flows are closed with the error. */
  socketError(code: string): void {
    this.ctx.log.error({ listener: this.ctx.listenerName, code }, 'UDP listener socket failed; its sessions end');
    this.shared = undefined;
    const c = this.compiled;
    this.compiled = undefined;
    c?.detach();
    c?.fail();
  }

  /** Draining: the addon opens no new flows (the gateway refuses new sessions here). */
  stopAccepting(): void {
    this.compiled?.stopAccepting();
  }

  private async startSingleton(sock: dgram.Socket): Promise<void> {
    const { connectAddress, connectPort } = this.cfg;
    try {
      await connectDgram(sock, connectPort!, connectAddress!, 5000);
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
    const sock = dgram.createSocket({ type: dgramType(address), reuseAddr: true });
    // Between bind() and connect() this socket is an unconnected socket on the
    // listener's port, and the kernel hands it the datagrams of *other* new
    // flows (of equal sockets it prefers the last bound). Unhandled, they
    // would be lost, or read later as this flow's data (one client's datagram
    // in another's session). Route them: ours to the pending queue, the
    // others' as if the main socket had read them.
    const early = (msg: Buffer, r: dgram.RemoteInfo): void => {
      if (r.port === rinfo.port && r.address === rinfo.address) {
        if (pending.length < 64) pending.push(msg);
      } else {
        this.onMessage(msg, r);
      }
    };
    sock.on('message', early);
    try {
      await bindDgram(sock, port, address);
      await connectDgram(sock, rinfo.port, rinfo.address, 2000);
    } catch (err) {
      sock.off('message', early);
      this.flows.delete(key);
      closeDgram(sock);
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

  /** Early drop (common/flows.ts): end one idle flow to make room for a new one. */
  evictIdle(): boolean {
    if (this.cfg.singleton) return false;
    const flows: Map<unknown, ServerFlow | Uint8Array[]> = this.sharedFlows ?? this.flows;
    const f = pickEvictable(flows, isFlow);
    if (f === undefined) return false;
    f.close();
    return true;
  }

  bound(): boolean {
    return this.main !== undefined || this.shared !== undefined;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.idle.retire();
    const shared = this.shared;
    if (shared !== undefined) {
      // Sessions may outlive the listener (deleted without recursive): the
      // socket serves them, and their idle sweep, until the last one ends.
      this.shared = undefined;
      const c = this.compiled;
      this.compiled = undefined;
      c?.detach();
      shared.stop();
      return;
    }
    this.idle.stop();
    const main = this.main;
    this.main = undefined;
    if (main) await new Promise<void>((resolve) => {
      try { main.close(() => resolve()); } catch { resolve(); }
    });
  }
}
