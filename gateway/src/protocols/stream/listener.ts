// TCP and Unix stream listeners: one session per accepted connection.

import net from 'node:net';
import type { FailedAttempt, ListenerContext, ListenerImpl } from '../types.js';
import { bindError, clearStaleSocket, unlinkSocket } from '../common/socket.js';
import { SocketChannel } from './channel.js';
import { portSharing, reusePortSocket, streamListenSocket } from '../common/reuseport.js';
import { BareStream, rawAddon, type RawAddon } from '../../native/rawstream.js';
import { RawAcceptor } from './raw-accept.js';
import { ForwardAcceptor, forwarderOf } from './forward-accept.js';
import { RawStreamChannel } from './raw-channel.js';

/** Listen backlog of the raw path's sockets: what net.Server asks for. */
const BACKLOG = 511;

function wildcard(address: string): boolean {
  return address === '0.0.0.0' || address === '::';
}

/** `{ fd }`: a socket already bound and listening (a worker's SO_REUSEPORT socket). */
function listen(server: net.Server, opts: net.ListenOptions | { fd: number }): Promise<void> {
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

export class TcpListener implements ListenerImpl {
  private server: net.Server | undefined;
  private acceptor: RawAcceptor | ForwardAcceptor | undefined;
  private seq = 0;
  /** The port accepted connections arrive on (the bound one when the spec says 0). */
  private localPort: number;

  constructor(private readonly address: string, private readonly port: number, private readonly ctx: ListenerContext) {
    this.localPort = port;
  }

  async start(): Promise<void> {
    // The raw stream path needs a numeric address (Node resolves a host name).
    const addon = net.isIP(this.address) !== 0 ? rawAddon() : undefined;
    if (addon !== undefined) return this.startRaw(addon);
    const server = net.createServer({ allowHalfOpen: true, noDelay: true }, (sock) => this.onConnection(sock));
    try {
      // In a worker every worker listens on the port (common/reuseport.ts).
      await listen(server, portSharing.on ? { fd: reusePortSocket('tcp', this.address, this.port) } : { host: this.address, port: this.port });
    } catch (err) {
      throw bindError(err, `TCP listener "${this.ctx.listenerName}" cannot listen on ${this.address}:${this.port}`);
    }
    server.on('error', (err) => this.ctx.log.warn({ listener: this.ctx.listenerName, err: err.message }, 'TCP listener error'));
    this.server = server;
  }

  private startRaw(addon: RawAddon): void {
    let fd: number;
    try {
      fd = streamListenSocket(this.address, this.port, BACKLOG);
      if (this.port === 0) this.localPort = addon.localAddress(fd).port ?? 0;
    } catch (err) {
      throw bindError(err, `TCP listener "${this.ctx.listenerName}" cannot listen on ${this.address}:${this.port}`);
    }
    const local = wildcard(this.address);
    if (this.ctx.compiled !== undefined && forwarderOf(addon) !== undefined) {
      this.acceptor = new ForwardAcceptor(addon, fd, this.ctx, { protocol: 'TCP', address: this.address, port: this.localPort, wildcard: local }, (cfd, rAddr, rPort, failed) => {
        let lAddr = this.address;
        let lPort = this.localPort;
        if (local) {
          try {
            const a = addon.localAddress(cfd);
            lAddr = a.address ?? '';
            lPort = a.port ?? 0;
          } catch {
            // The connection is gone already: its session ends at the first read.
          }
        }
        this.emitRaw(addon, cfd, rAddr ?? '', rPort ?? 0, lAddr, lPort, failed);
      }, 'TCP');
      return;
    }
    this.acceptor = new RawAcceptor(addon, fd, local ? 2 : 1, (cfd, rAddr, rPort, lAddr, lPort) => {
      this.emitRaw(addon, cfd, rAddr, rPort, local ? lAddr! : this.address, local ? lPort! : this.localPort);
    }, this.ctx.log, this.ctx.listenerName, 'TCP');
  }

  private emitRaw(addon: RawAddon, fd: number, rAddr: string, rPort: number, lAddr: string, lPort: number, failedAttempt?: FailedAttempt): void {
    this.ctx.emit({
      ...(failedAttempt === undefined ? {} : { failedAttempt }),
      name: `TCP:${rAddr}:${rPort}-${lAddr}:${lPort}-${this.seq++}`,
      channel: new RawStreamChannel(new BareStream(addon, fd), `${rAddr}:${rPort}`),
      metadata: {
        IP: { src_addr: rAddr, dst_addr: lAddr },
        TCP: { src_port: rPort, dst_port: lPort },
      },
    });
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
    if (this.server) closeServer(this.server);
    this.server = undefined;
    this.acceptor?.close();
    this.acceptor = undefined;
  }

  stopAccepting(): void {
    if (this.server) closeServer(this.server);
    if (this.acceptor instanceof ForwardAcceptor) {
      this.acceptor.stopAccepting(); // its compiled sessions go on until stop()
      return;
    }
    this.acceptor?.close();
    this.acceptor = undefined;
  }

  bound(): boolean {
    return this.server?.listening === true || this.acceptor !== undefined;
  }
}

/** Is a Unix socket file stale (nobody accepts on it)? */
/** Whether someone accepts on the Unix stream socket at `path` (a connect that is not refused). */
function streamSocketLive(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const c = net.connect({ path });
    c.once('connect', () => { c.destroy(); resolve(true); });
    c.once('error', (err: NodeJS.ErrnoException) => resolve(err.code !== 'ECONNREFUSED'));
  });
}

export class UnixListener implements ListenerImpl {
  private server: net.Server | undefined;
  private acceptor: RawAcceptor | ForwardAcceptor | undefined;
  private seq = 0;

  /** The socket file was removed (stopAccepting): a later stop() must not remove a successor's. */
  private unlinked = false;

  constructor(private readonly filename: string, private readonly ctx: ListenerContext) {}

  async start(): Promise<void> {
    const what = `UnixDomainSocket listener "${this.ctx.listenerName}" cannot listen on ${this.filename}`;
    // Replace a stale socket left by a crashed process; never any other file.
    await clearStaleSocket(this.filename, what, streamSocketLive);
    const addon = rawAddon();
    if (addon !== undefined) return this.startRaw(addon, what);
    const server = net.createServer({ allowHalfOpen: true }, (sock) => this.onConnection(sock));
    try {
      await listen(server, { path: this.filename });
    } catch (err) {
      throw bindError(err, what);
    }
    this.server = server;
  }

  private startRaw(addon: RawAddon, what: string): void {
    const c = addon.constants;
    const fd = addon.socket(c.AF_UNIX, c.SOCK_STREAM, 0);
    try {
      addon.bindUnix(fd, this.filename);
      addon.listen(fd, BACKLOG);
    } catch (err) {
      addon.close(fd);
      throw bindError(err, what);
    }
    const emit = (cfd: number, _a?: string, _p?: number, failedAttempt?: FailedAttempt): void => {
      this.ctx.emit({
        ...(failedAttempt === undefined ? {} : { failedAttempt }),
        name: `UNIX:${this.ctx.listenerName}-${this.seq++}`,
        channel: new RawStreamChannel(new BareStream(addon, cfd), this.filename),
        metadata: { UNIX: { filename: this.filename } },
      });
    };
    this.acceptor = this.ctx.compiled !== undefined && forwarderOf(addon) !== undefined
      ? new ForwardAcceptor(addon, fd, this.ctx, { protocol: 'UNIX', address: this.filename, port: -1, wildcard: false }, emit, 'UNIX stream')
      : new RawAcceptor(addon, fd, 0, (cfd) => emit(cfd), this.ctx.log, this.ctx.listenerName, 'UNIX stream');
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
    this.acceptor?.close();
    this.acceptor = undefined;
  }

  stopAccepting(): void {
    if (this.server) closeServer(this.server); // unlinks the socket file
    if (this.acceptor === undefined || this.unlinked) return;
    if (this.acceptor instanceof ForwardAcceptor) {
      this.acceptor.stopAccepting(); // its compiled sessions go on until stop()
    } else {
      this.acceptor.close();
      this.acceptor = undefined;
    }
    this.unlinked = true;
    unlinkSocket(this.filename); // as net.Server does on close
  }

  bound(): boolean {
    return this.server?.listening === true || this.acceptor !== undefined;
  }
}
