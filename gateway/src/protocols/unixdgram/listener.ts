// UNIX/dgram and UNIX/seqpacket listeners (index.ts says how each maps
// peers to sessions).

import { BaseChannel, type ChannelKind } from '../../dataplane/channel.js';
import { NativeDatagramChannel } from '../../native/channel.js';
import { NativeAcceptListener } from '../../native/accept.js';
import { NativeSocket, type NativeSocketHandler, sourceAddress } from '../../native/fdsocket.js';
import type { SocketsAddon } from '../../native/sockets.js';
import { unixPathOf, unixSocketLive } from '../../native/unixaddr.js';
import type { ListenerContext, ListenerImpl } from '../types.js';
import { IdleSweep } from '../common/flows.js';
import { bindError, clearStaleSocket, unlinkSocket } from '../common/socket.js';

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

export class UnixDgramListener implements ListenerImpl, NativeSocketHandler {
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
    await clearStaleSocket(this.filename, what, (p) => unixSocketLive(a, p, a.constants.SOCK_DGRAM));
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

export class SeqpacketListener extends NativeAcceptListener {
  constructor(addon: SocketsAddon, private readonly filename: string, ctx: ListenerContext) {
    super(addon, ctx, 'UNIX/seqpacket');
  }

  async start(): Promise<void> {
    const a = this.addon;
    const what = `UNIX/seqpacket listener "${this.ctx.listenerName}" cannot listen on ${this.filename}`;
    await clearStaleSocket(this.filename, what, (p) => unixSocketLive(a, p, a.constants.SOCK_SEQPACKET));
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
