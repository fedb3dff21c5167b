// Unix-domain datagram (UNIX/dgram) and sequenced-packet (UNIX/seqpacket)
// sockets, through the native sockets addon: Node.js has neither.
//
// UNIX/dgram listener: one socket bound to `filename`; each sending socket
// (by its address) is a session, answered with sendto() from the listening
// socket, like a UDP server-mode listener without per-flow sockets (a Unix
// path cannot be bound twice). A sender with no address (an unbound socket)
// gets a one-way session: there is nowhere to send replies.
// UNIX/dgram cluster: a socket autobound to an abstract address (so the peer
// can reply) and connected to the endpoint's path, one per session.
// UNIX/seqpacket: connection-oriented with message boundaries: one session
// per connection, listener and cluster, and a zero-length read is EOF.

import { BaseChannel, type ChannelKind } from '../../dataplane/channel.js';
import { GatewayError } from '../../core/errors.js';
import { NativeDatagramChannel } from '../../native/channel.js';
import { NativeAcceptListener } from '../../native/accept.js';
import { NativeSocket, type NativeSocketHandler, sourceAddress } from '../../native/fdsocket.js';
import { socketsAddon, socketsUnavailable, type SocketsAddon } from '../../native/sockets.js';
import { clearStaleSocket, unixPathOf, unlinkSocket } from '../../native/unixaddr.js';
import type { ClusterImpl, ConnectRequest, ListenerContext, ListenerImpl, ProtocolDef, Spec } from '../types.js';
import { UDP_EOF_LINGER_MS } from '../udp/index.js';
import * as v from '../common/validate.js';

function bindFailed(err: unknown, what: string): GatewayError {
  if (err instanceof GatewayError) return err;
  return new GatewayError('BIND_FAILED', `${what}: ${(err as Error).message}`, undefined, { cause: err });
}

/** One sender of a UNIX/dgram listener. */
class UnixDgramFlow extends BaseChannel {
  readonly kind: ChannelKind = 'datagram';
  activity = 0;

  constructor(private readonly main: NativeSocket, readonly addr: Uint8Array | undefined, peer: string) {
    super();
    this.peer = peer;
  }

  inject(msg: Uint8Array): void {
    this.activity++;
    this.deliver(msg);
  }

  send(chunk: Uint8Array): boolean {
    if (this.closed || this.addr === undefined) return true; // one-way session: nowhere to reply
    this.activity++;
    return this.main.send(chunk, this.addr);
  }

  end(): void { /* no half-close for datagrams */ }

  /** The listening socket can take more again. */
  drained(): void {
    this.emitDrain();
  }

  protected doPause(): void {}
  protected doResume(): void {}
  protected doClose(err: Error | undefined): void {
    this.finish(err);
  }
}

class UnixDgramListener implements ListenerImpl, NativeSocketHandler {
  private main: NativeSocket | undefined;
  private readonly flows = new Map<string, UnixDgramFlow>();
  private seq = 0;
  private sweepTimer: NodeJS.Timeout | undefined;
  private readonly idle = new WeakMap<UnixDgramFlow, number>();

  constructor(
    private readonly addon: SocketsAddon,
    private readonly filename: string,
    private readonly idleTimeout: number,
    private readonly ctx: ListenerContext,
  ) {}

  async start(): Promise<void> {
    const a = this.addon;
    const what = `UNIX/dgram listener "${this.ctx.listenerName}" cannot bind ${this.filename}`;
    clearStaleSocket(a, this.filename, a.constants.SOCK_DGRAM, what);
    const fd = a.socket(a.constants.AF_UNIX, a.constants.SOCK_DGRAM, 0);
    try {
      a.bindUnix(fd, this.filename);
    } catch (err) {
      a.close(fd);
      throw bindFailed(err, what);
    }
    this.main = new NativeSocket(a, fd, 'data', this, true);
    this.main.readStart();
    if (this.idleTimeout > 0) {
      const every = Math.max(250, Math.min(this.idleTimeout * 1000 / 4, 10_000));
      this.sweepTimer = setInterval(() => this.sweep(), every);
      this.sweepTimer.unref();
    }
  }

  message(msg: Buffer, slot: number): void {
    const addr = sourceAddress(slot);
    const key = addr.toString('latin1');
    let flow = this.flows.get(key);
    if (flow !== undefined && flow.closed) {
      this.flows.delete(key);
      flow = undefined;
    }
    if (flow === undefined) flow = this.open(key, addr);
    flow.inject(msg);
  }

  private open(key: string, addr: Buffer): UnixDgramFlow {
    const peer = unixPathOf(addr);
    const flow = new UnixDgramFlow(this.main!, peer === '' ? undefined : Buffer.from(addr), peer === '' ? '(unnamed)' : peer);
    this.flows.set(key, flow);
    this.ctx.emit({
      name: `UNIX-DGRAM:${this.ctx.listenerName}-${this.seq++}`,
      channel: flow,
      metadata: { UNIX: { filename: this.filename, peer } },
    });
    return flow;
  }

  oversized(): void {
    this.ctx.log.warn({ listener: this.ctx.listenerName }, 'UNIX/dgram listener: a datagram larger than 64 KiB was dropped');
  }

  sendFailed(code: string, addr: Uint8Array): void {
    // The peer's socket is gone: end its session, keep the listener.
    const flow = this.flows.get(Buffer.from(addr.buffer, addr.byteOffset, addr.byteLength).toString('latin1'));
    flow?.close(Object.assign(new Error(`UNIX/dgram reply to ${flow.peer}: ${code}`), { code }));
  }

  drained(): void {
    for (const f of this.flows.values()) f.drained();
  }

  error(code: string): void {
    this.ctx.log.warn({ listener: this.ctx.listenerName, code }, 'UNIX/dgram listener socket error');
  }

  private sweep(): void {
    const now = Date.now();
    for (const [key, flow] of this.flows) {
      if (flow.closed) {
        this.flows.delete(key);
        continue;
      }
      const seen = this.idle.get(flow);
      if (flow.activity > 0 || seen === undefined) {
        flow.activity = 0;
        this.idle.set(flow, now);
      } else if (now - seen >= this.idleTimeout * 1000) {
        flow.close();
      }
    }
  }

  bound(): boolean {
    return this.main !== undefined;
  }

  async stop(): Promise<void> {
    if (this.sweepTimer) clearInterval(this.sweepTimer);
    this.main?.close();
    this.main = undefined;
    unlinkSocket(this.filename);
  }
}

class SeqpacketListener extends NativeAcceptListener {
  constructor(addon: SocketsAddon, private readonly filename: string, ctx: ListenerContext) {
    super(addon, ctx, 'UNIX/seqpacket');
  }

  async start(): Promise<void> {
    const a = this.addon;
    const what = `UNIX/seqpacket listener "${this.ctx.listenerName}" cannot listen on ${this.filename}`;
    clearStaleSocket(a, this.filename, a.constants.SOCK_SEQPACKET, what);
    const fd = a.socket(a.constants.AF_UNIX, a.constants.SOCK_SEQPACKET, 0);
    try {
      a.bindUnix(fd, this.filename);
      a.listen(fd, 511);
    } catch (err) {
      a.close(fd);
      throw bindFailed(err, what);
    }
    this.listenOn(fd);
  }

  accepted(fd: number): void {
    this.ctx.emit({
      name: `UNIX-SEQPACKET:${this.ctx.listenerName}-${this.seq++}`,
      channel: new NativeDatagramChannel(this.addon, fd, this.filename, { seqpacket: true, what: `UNIX/seqpacket ${this.filename}` }),
      metadata: { UNIX: { filename: this.filename } },
    });
  }

  protected override stopped(): void {
    unlinkSocket(this.filename);
  }
}

class UnixNativeCluster implements ClusterImpl {
  constructor(private readonly addon: SocketsAddon, private readonly seqpacket: boolean) {}

  async connect(req: ConnectRequest): Promise<NativeDatagramChannel> {
    const a = this.addon;
    const name = this.seqpacket ? 'UNIX/seqpacket' : 'UNIX/dgram';
    const ep = req.endpoint;
    if (!ep) throw new GatewayError('CONNECT_FAILED', `${name} cluster has no endpoint`);
    const fd = a.socket(a.constants.AF_UNIX, this.seqpacket ? a.constants.SOCK_SEQPACKET : a.constants.SOCK_DGRAM, 0);
    try {
      if (!this.seqpacket) a.bindUnix(fd, ''); // autobind: an abstract address the peer can reply to
      a.connectUnix(fd, ep.address);
    } catch (err) {
      a.close(fd);
      const code = (err as NodeJS.ErrnoException).code;
      const why = code === 'ECONNREFUSED' ? 'nobody is bound to it' : code === 'ENOENT' ? 'no such socket file'
        : code === 'EAGAIN' ? 'its backlog is full' : (err as Error).message;
      throw new GatewayError('CONNECT_FAILED', `${name} ${ep.address}: ${why}`, undefined, { cause: err });
    }
    return new NativeDatagramChannel(a, fd, ep.address, {
      seqpacket: this.seqpacket,
      eofLingerMs: this.seqpacket ? 0 : UDP_EOF_LINGER_MS,
      what: `${name} ${ep.address}`,
    });
  }
}

/** The protocol as declared, or reported unavailable with the addon's reason. */
export function needsAddon(def: ProtocolDef): ProtocolDef {
  const reason = socketsUnavailable();
  if (reason === undefined) return def;
  const { listener: _l, cluster: _c, ...rest } = def;
  return { ...rest, unavailable: `protocol "${def.name}" is unavailable: ${reason}` };
}

function addon(): SocketsAddon {
  const a = socketsAddon();
  if (a === undefined) throw new GatewayError('NOT_SUPPORTED', socketsUnavailable() ?? 'the native sockets addon is not available');
  return a;
}

export const unixDgramProtocol: ProtocolDef = needsAddon({
  name: 'UNIX/dgram',
  files: { listener: [{ key: 'filename' }], endpoint: [{ key: 'address' }] },
  kind: 'datagram',
  summary: 'Unix-domain datagram sockets; one session per sending socket; the endpoint address is the socket path',
  listener: {
    modes: ['server'],
    create(spec: Spec, ctx, field) {
      const filename = v.path(spec, 'filename', field, true)!;
      const idle = v.optNumber(spec, 'idle_timeout', field, 0, 86400 * 365) ?? 120;
      return new UnixDgramListener(addon(), filename, idle, ctx);
    },
  },
  cluster: {
    virtual: false,
    retriable: true,
    create() {
      return new UnixNativeCluster(addon(), false);
    },
    checkEndpoint(spec, field) {
      v.path(spec, 'address', field, true);
    },
  },
});

export const unixSeqpacketProtocol: ProtocolDef = needsAddon({
  name: 'UNIX/seqpacket',
  files: { listener: [{ key: 'filename' }], endpoint: [{ key: 'address' }] },
  kind: 'datagram',
  summary: 'Unix-domain sequenced-packet sockets; one session per connection, message boundaries kept',
  listener: {
    modes: ['server'],
    create(spec: Spec, ctx, field) {
      return new SeqpacketListener(addon(), v.path(spec, 'filename', field, true)!, ctx);
    },
  },
  cluster: {
    virtual: false,
    retriable: true,
    create() {
      return new UnixNativeCluster(addon(), true);
    },
    checkEndpoint(spec, field) {
      v.path(spec, 'address', field, true);
    },
  },
});
