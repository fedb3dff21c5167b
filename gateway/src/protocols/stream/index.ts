// TCP and Unix-domain stream sockets: one byte-stream channel per connection.
//
// A SocketChannel can leave Node for the kernel splice path
// (gateway/src/fastpath/splice.ts): spliceCheck() says whether its socket could
// be handed over right now, spliceAttach() takes what was read but not yet
// forwarded and lets go of the Node socket (the addon forwards on dup()s of
// its fd); from then on closing the channel closes the kernel path, whose end
// finishes the channel (spliceEnded()).

import net from 'node:net';
import fs from 'node:fs';
import { BaseChannel, type ChannelKind } from '../../dataplane/channel.js';
import { GatewayError } from '../../core/errors.js';
import type { SpliceableChannel, SpliceControl } from '../../dataplane/capabilities.js';
import type {
  ClusterContext, ClusterImpl, ConnectRequest, ListenerContext, ListenerImpl, ProtocolDef, Spec,
} from '../types.js';
import * as v from '../common/validate.js';

/** How long a gracefully closed socket may take to flush before it is destroyed. */
const GRACEFUL_CLOSE_MS = 5000;

/**
 * Bytes queued in user space before send() asks the session to pause the
 * source. Node's own mark (16 KiB) is smaller than one 64 KiB read, so every
 * read that the kernel could not take at once paused and resumed the source
 * (two epoll_ctl calls and a bubble in the pipe); 256 KiB lets a bulk transfer
 * keep both sockets busy. The drain event still comes: write() returned false
 * long before this mark.
 */
const WRITE_HIGH_WATER = 256 * 1024;

export class SocketChannel extends BaseChannel implements SpliceableChannel {
  readonly kind: ChannelKind = 'byte';
  private error: Error | undefined;
  /** Set once the kernel splice path forwards for this socket; the Node socket is gone then. */
  private spliced: SpliceControl | undefined;

  constructor(readonly socket: net.Socket, peer: string) {
    super();
    this.peer = peer;
    // After a splice handover the socket is destroyed; what it still emits
    // (the data read() returns, 'end', 'close') is not ours any more.
    socket.on('data', (chunk: Buffer) => { if (this.spliced === undefined) this.deliver(chunk); });
    socket.on('end', () => { if (this.spliced === undefined) this.deliverEnd(); });
    socket.on('drain', () => this.emitDrain());
    socket.on('error', (err) => { this.error ??= err; });
    socket.on('close', () => { if (this.spliced === undefined) this.finish(this.error); });
  }

  send(chunk: Uint8Array): boolean {
    const s = this.socket;
    if (this.closed || this.spliced !== undefined || s.writableEnded) return true;
    s.write(chunk);
    return s.writableLength < WRITE_HIGH_WATER;
  }

  end(): void {
    if (this.spliced === undefined && !this.socket.writableEnded) this.socket.end();
  }

  spliceCheck(): number {
    const s = this.socket;
    // Every byte written must be in the kernel, and no EOF seen or sent yet.
    // Bytes read and not yet forwarded are fine: spliceAttach() hands them over.
    if (this.closed || this.spliced !== undefined || s.destroyed || s.connecting || s.writableEnded || s.readableEnded) return -1;
    if (s.writableLength !== 0) return -1;
    const q = this.queuedBytes();
    return q < 0 ? -1 : q + s.readableLength;
  }

  spliceFd(): number {
    const fd = (this.socket as unknown as { _handle?: { fd?: number } | null })._handle?.fd;
    return typeof fd === 'number' && fd >= 0 ? fd : -1;
  }

  spliceAttach(path: SpliceControl): Uint8Array[] | undefined {
    const s = this.socket;
    this.spliced = path; // from here on the socket's events are ignored
    const pending = this.takeQueue();
    // Node's readable buffer (read() in flowing mode returns one chunk at a
    // time). read() may ask libuv to read again (readStart); nothing is read
    // before destroy() below, in this same turn, closes the handle.
    for (let left = s.readableLength; left > 0;) {
      const c = s.read() as Buffer | null;
      if (c === null || c.length === 0) break;
      pending.push(c);
      left -= c.length;
    }
    const complete = s.readableLength === 0;
    // Closes Node's fd only: the addon holds dup()s, so the connection stays
    // up (no FIN, no RST); libuv takes the fd out of epoll before closing it.
    s.destroy();
    return complete ? pending : undefined;
  }

  spliceEnded(err: Error | undefined): void {
    this.finish(err);
  }

  protected doPause(): void {
    if (this.spliced === undefined) this.socket.pause();
  }

  protected doResume(): void {
    if (this.spliced === undefined) this.socket.resume();
  }

  protected doClose(err: Error | undefined): void {
    const s = this.socket;
    if (this.spliced !== undefined) {
      this.spliced.close((err as { reset?: boolean } | undefined)?.reset === true); // both sockets of the pair (idempotent)
      this.finish(err);
      return;
    }
    if (s.destroyed) {
      this.finish(err);
      return;
    }
    if (err && (err as { graceful?: boolean }).graceful !== true) {
      this.error ??= err;
      // A cut (core/drain.ts SessionCut) resets, so the peer cannot take it
      // for a complete stream. Not after our FIN: libuv refuses to reset a
      // socket that is shutting down, and Node then leaves the handle open.
      if ((err as { reset?: boolean }).reset === true && !s.connecting && !s.writableEnded && s.remotePort !== undefined) s.resetAndDestroy();
      else s.destroy();
      return;
    }
    s.end();
    s.resume(); // drain whatever the peer still sends so that its FIN arrives
    const t = setTimeout(() => s.destroy(), GRACEFUL_CLOSE_MS);
    t.unref();
  }
}

function listenError(err: unknown, what: string): GatewayError {
  const e = err as NodeJS.ErrnoException;
  const reason = e.code === 'EADDRINUSE' ? 'address already in use'
    : e.code === 'EACCES' ? 'permission denied'
    : e.message;
  return new GatewayError('BIND_FAILED', `${what}: ${reason}`, undefined, { cause: err });
}

function listen(server: net.Server, opts: net.ListenOptions): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts, () => {
      server.off('error', reject);
      resolve();
    });
  });
}

/**
 * Stop listening. Not waiting for close's callback: it fires only once every
 * accepted connection has ended, and an idle client would hold the caller
 * (a REST delete, and every REST call queued behind it) for as long as it likes.
 */
function closeServer(server: net.Server): void {
  if (server.listening) server.close();
}

class TcpListener implements ListenerImpl {
  private server: net.Server | undefined;
  private seq = 0;

  constructor(private readonly address: string, private readonly port: number, private readonly ctx: ListenerContext) {}

  async start(): Promise<void> {
    const server = net.createServer({ allowHalfOpen: true, noDelay: true }, (sock) => this.onConnection(sock));
    try {
      await listen(server, { host: this.address, port: this.port });
    } catch (err) {
      throw listenError(err, `TCP listener "${this.ctx.listenerName}" cannot listen on ${this.address}:${this.port}`);
    }
    server.on('error', (err) => this.ctx.log.warn({ listener: this.ctx.listenerName, err: err.message }, 'TCP listener error'));
    this.server = server;
  }

  private onConnection(sock: net.Socket): void {
    const rAddr = sock.remoteAddress ?? '';
    const rPort = sock.remotePort ?? 0;
    const lAddr = sock.localAddress ?? '';
    const lPort = sock.localPort ?? 0;
    this.ctx.emit({
      name: `TCP:${rAddr}:${rPort}-${lAddr}:${lPort}-${this.seq++}`,
      channel: new SocketChannel(sock, `${rAddr}:${rPort}`),
      metadata: {
        IP: { src_addr: rAddr, dst_addr: lAddr },
        TCP: { src_port: rPort, dst_port: lPort },
      },
    });
  }

  async stop(): Promise<void> {
    this.stopAccepting();
    this.server = undefined;
  }

  stopAccepting(): void {
    if (this.server) closeServer(this.server);
  }

  bound(): boolean {
    return this.server?.listening === true;
  }
}

/** Is a Unix socket file stale (nobody accepts on it)? */
function staleSocket(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const c = net.connect({ path });
    c.once('connect', () => { c.destroy(); resolve(false); });
    c.once('error', (err: NodeJS.ErrnoException) => resolve(err.code === 'ECONNREFUSED'));
  });
}

class UnixListener implements ListenerImpl {
  private server: net.Server | undefined;
  private seq = 0;

  constructor(private readonly filename: string, private readonly ctx: ListenerContext) {}

  async start(): Promise<void> {
    const what = `UnixDomainSocket listener "${this.ctx.listenerName}" cannot listen on ${this.filename}`;
    let st: fs.Stats | undefined;
    try { st = fs.lstatSync(this.filename); } catch { st = undefined; }
    if (st !== undefined) {
      // Replace a stale socket left by a crashed process; never any other file.
      if (!st.isSocket()) throw new GatewayError('BIND_FAILED', `${what}: the path exists and is not a socket`);
      if (!(await staleSocket(this.filename))) throw new GatewayError('BIND_FAILED', `${what}: another process is listening there`);
      fs.unlinkSync(this.filename);
    }
    const server = net.createServer({ allowHalfOpen: true }, (sock) => this.onConnection(sock));
    try {
      await listen(server, { path: this.filename });
    } catch (err) {
      throw listenError(err, what);
    }
    this.server = server;
  }

  private onConnection(sock: net.Socket): void {
    this.ctx.emit({
      name: `UNIX:${this.ctx.listenerName}-${this.seq++}`,
      channel: new SocketChannel(sock, this.filename),
      metadata: { UNIX: { filename: this.filename } },
    });
  }

  async stop(): Promise<void> {
    this.stopAccepting();
    this.server = undefined;
  }

  stopAccepting(): void {
    if (this.server) closeServer(this.server); // unlinks the socket file
  }

  bound(): boolean {
    return this.server?.listening === true;
  }
}

function connectSocket(opts: net.NetConnectOpts, timeoutMs: number, what: string): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const sock = net.connect({ ...opts, allowHalfOpen: true } as net.NetConnectOpts);
    const timer = setTimeout(() => {
      sock.destroy();
      reject(new GatewayError('CONNECT_FAILED', `${what}: connect timed out after ${timeoutMs} ms`));
    }, timeoutMs);
    sock.once('connect', () => {
      clearTimeout(timer);
      sock.off('error', onError);
      resolve(sock);
    });
    const onError = (err: Error) => {
      clearTimeout(timer);
      reject(new GatewayError('CONNECT_FAILED', `${what}: ${err.message}`, undefined, { cause: err }));
    };
    sock.once('error', onError);
  });
}

class TcpCluster implements ClusterImpl {
  constructor(
    private readonly port: number,
    private readonly bindAddress: string | undefined,
    private readonly bindPort: number | undefined,
    private readonly ctx: ClusterContext,
  ) {}

  async connect(req: ConnectRequest): Promise<SocketChannel> {
    const ep = req.endpoint;
    if (!ep) throw new GatewayError('CONNECT_FAILED', `cluster "${this.ctx.clusterName}" has no endpoint`);
    const sock = await connectSocket({
      host: ep.address, port: this.port, localAddress: this.bindAddress, localPort: this.bindPort, noDelay: true,
    } as net.NetConnectOpts, req.timeoutMs, `TCP ${ep.address}:${this.port}`);
    return new SocketChannel(sock, `${ep.address}:${this.port}`);
  }
}

class UnixCluster implements ClusterImpl {
  async connect(req: ConnectRequest): Promise<SocketChannel> {
    const ep = req.endpoint;
    if (!ep) throw new GatewayError('CONNECT_FAILED', 'UnixDomainSocket cluster has no endpoint');
    const sock = await connectSocket({ path: ep.address }, req.timeoutMs, `UnixDomainSocket ${ep.address}`);
    return new SocketChannel(sock, ep.address);
  }
}

export const tcpProtocol: ProtocolDef = {
  name: 'TCP',
  kind: 'byte',
  summary: 'TCP byte streams; one session per connection',
  listener: {
    modes: ['server'],
    create(spec: Spec, ctx, field) {
      const port = v.port(spec, 'port', field, true)!;
      const address = v.host(spec, 'address', field, false) ?? '0.0.0.0';
      return new TcpListener(address, port, ctx);
    },
  },
  cluster: {
    virtual: false,
    retriable: true,
    create(spec, ctx, field) {
      const port = v.port(spec, 'port', field, true)!;
      const bind = v.optObject(spec, 'bind', field);
      return new TcpCluster(
        port,
        bind ? v.host(bind, 'address', `${field}.bind`, false) : undefined,
        bind ? v.port(bind, 'port', `${field}.bind`, false) : undefined,
        ctx,
      );
    },
    checkEndpoint(spec, field) {
      v.host(spec, 'address', field, true);
    },
  },
};

export const unixProtocol: ProtocolDef = {
  name: 'UnixDomainSocket',
  aliases: ['UNIX/stream'],
  kind: 'byte',
  summary: 'Unix-domain stream sockets; the endpoint address is the socket path',
  files: { listener: [{ key: 'filename' }], endpoint: [{ key: 'address' }] },
  listener: {
    modes: ['server'],
    create(spec, ctx, field) {
      return new UnixListener(v.path(spec, 'filename', field, true)!, ctx);
    },
  },
  cluster: {
    virtual: false,
    retriable: true,
    create(_spec, _ctx: ClusterContext) {
      return new UnixCluster();
    },
    checkEndpoint(spec, field) {
      v.path(spec, 'address', field, true);
    },
  },
};
