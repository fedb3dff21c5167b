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
import type { SocketsAddon } from '../../native/sockets.js';
import { clearStaleSocket, unixPathOf, unlinkSocket } from '../../native/unixaddr.js';
import type { ClusterImpl, ConnectRequest, ListenerContext, ListenerImpl, ProtocolDef, Spec } from '../types.js';
import { EOF_LINGER_MS } from '../common/datagram.js';
import { IdleSweep } from '../common/flows.js';
import { bindError, needsAddon, requireAddon } from '../common/socket.js';
import * as v from '../common/validate.js';

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
  private readonly idle: IdleSweep<UnixDgramFlow>;

  constructor(
    private readonly addon: SocketsAddon,
    private readonly filename: string,
    idleTimeout: number,
    private readonly ctx: ListenerContext,
  ) {
    this.idle = new IdleSweep<UnixDgramFlow>(idleTimeout, {
      table: () => this.flows,
      flow: (entry) => entry as UnixDgramFlow,
      takeActivity: (flow) => {
        const n = flow.activity;
        flow.activity = 0;
        return n;
      },
      expired: (flow) => flow.close(),
    });
  }

  async start(): Promise<void> {
    const a = this.addon;
    const what = `UNIX/dgram listener "${this.ctx.listenerName}" cannot bind ${this.filename}`;
    clearStaleSocket(a, this.filename, a.constants.SOCK_DGRAM, what);
    const fd = a.socket(a.constants.AF_UNIX, a.constants.SOCK_DGRAM, 0);
    try {
      a.bindUnix(fd, this.filename);
    } catch (err) {
      a.close(fd);
      throw bindError(err, what);
    }
    this.main = new NativeSocket(a, fd, 'data', this, true);
    this.main.readStart();
    this.idle.start();
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

  bound(): boolean {
    return this.main !== undefined;
  }

  async stop(): Promise<void> {
    this.idle.stop();
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
      throw bindError(err, what);
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
      eofLingerMs: this.seqpacket ? 0 : EOF_LINGER_MS,
      what: `${name} ${ep.address}`,
    });
  }
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
      return new UnixDgramListener(requireAddon(), filename, idle, ctx);
    },
  },
  cluster: {
    virtual: false,
    retriable: true,
    create() {
      return new UnixNativeCluster(requireAddon(), false);
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
      return new SeqpacketListener(requireAddon(), v.path(spec, 'filename', field, true)!, ctx);
    },
  },
  cluster: {
    virtual: false,
    retriable: true,
    create() {
      return new UnixNativeCluster(requireAddon(), true);
    },
    checkEndpoint(spec, field) {
      v.path(spec, 'address', field, true);
    },
  },
});
