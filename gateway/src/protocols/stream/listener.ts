// TCP and Unix stream listeners: one session per accepted connection.

import net from 'node:net';
import type { ListenerContext, ListenerImpl } from '../types.js';
import { bindError, clearStaleSocket } from '../common/socket.js';
import { SocketChannel } from './channel.js';
import { portSharing, reusePortSocket } from '../common/reuseport.js';

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
  private seq = 0;

  constructor(private readonly address: string, private readonly port: number, private readonly ctx: ListenerContext) {}

  async start(): Promise<void> {
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
  private seq = 0;

  constructor(private readonly filename: string, private readonly ctx: ListenerContext) {}

  async start(): Promise<void> {
    const what = `UnixDomainSocket listener "${this.ctx.listenerName}" cannot listen on ${this.filename}`;
    // Replace a stale socket left by a crashed process; never any other file.
    await clearStaleSocket(this.filename, what, streamSocketLive);
    const server = net.createServer({ allowHalfOpen: true }, (sock) => this.onConnection(sock));
    try {
      await listen(server, { path: this.filename });
    } catch (err) {
      throw bindError(err, what);
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
