// WebSocket listener on the `ws` library (spec.engine: ws), the alternative to
// the uWebSockets.js listener in listener.ts. Same behaviour and session
// metadata: one message per datagram, frame mode mirror/binary/text, path and
// subprotocol checks, 426 for plain HTTP, close codes as session end reasons.
//
// Why a second engine: uWebSockets.js ships as prebuilt binaries for a range
// of Node versions and glibc; where none loads, `ws` (pure JS) still serves.
// It is also the peer the WebSocket message-rate benchmark (bench/ws-rate.ts)
// compares against.
//
// Differences, on purpose:
// - pause() really holds the peer back (ws.pause stops reading the socket);
//   the uWS listener cannot, and drops what overflows the channel queue.
// - The idle timeout is a sweep every idle_timeout/2 (a silent connection is
//   pinged, and ended 1 to 1.5 idle_timeouts after it fell silent), not a
//   per-connection timer: the hot path only sets a flag.
// - The client address is node's (IPv6 in its short form), where uWS prints
//   IPv6 in full.

import http from 'node:http';
import type { Duplex } from 'node:stream';
import type net from 'node:net';
import { WebSocketServer, type WebSocket } from 'ws';
import { BaseChannel, type ChannelKind } from '../../dataplane/channel.js';
import type { ListenerContext, ListenerImpl } from '../types.js';
import { httpMetadata, readNodeHead as nodeHead, refusePath, type RequestHead } from '../common/http-head.js';
import { bindError } from '../common/socket.js';
import { watchUnfinished } from './unfinished.js';
import { listenTarget } from '../common/reuseport.js';
import {
  NORMAL_CLOSES, WebSocketCloseError, chooseSubprotocol, closeCodeFor, closeReason, type WsListenerConfig, type FrameMode,
} from './frames.js';

/** What uWS's maxBackpressure is in the other engine: beyond it, messages are dropped. */
const MAX_BACKPRESSURE = 4 * 1024 * 1024;
/** How long a closing connection may take to answer our close frame. */
const CLOSE_GRACE_MS = 5000;

/** Options objects for ws.send, allocated once. */
const BINARY = { binary: true } as const;
const TEXT = { binary: false } as const;

/** Answer a refused upgrade on the raw socket, the way node's HTTP server would. */
function refuse(socket: Duplex, status: number, phrase: string, body: string, extra = ''): void {
  if (socket.writable) {
    socket.end(`HTTP/1.1 ${status} ${phrase}\r\nConnection: close\r\nContent-Type: text/plain\r\nContent-Length: ${Buffer.byteLength(body)}\r\n${extra}\r\n${body}`);
  }
  socket.destroy();
}

class WsEngineServerChannel extends BaseChannel {
  readonly kind: ChannelKind = 'datagram';
  /** Set on every message or pong; the idle sweep clears it. */
  active = true;
  pinged = false;
  private lastBinary = true;
  private gone = false;
  private waitingDrain = false;
  private graceTimer: NodeJS.Timeout | undefined;

  constructor(private readonly ws: WebSocket, private readonly socket: net.Socket, private readonly mode: FrameMode, peer: string) {
    super();
    this.peer = peer;
    ws.on('message', (data: Buffer, isBinary: boolean) => {
      this.active = true;
      this.lastBinary = isBinary;
      // A view into the socket's read buffer, which ws never reuses: no copy needed.
      this.deliver(data);
    });
    ws.on('pong', () => { this.active = true; });
    // Protocol errors (oversized frame, bad UTF-8, ...) close the connection
    // with their code; the 'close' event reports it.
    ws.on('error', () => {});
    ws.on('close', (code: number, reason: Buffer) => {
      this.gone = true;
      if (this.graceTimer) clearTimeout(this.graceTimer);
      this.finish(NORMAL_CLOSES.has(code) ? undefined : new WebSocketCloseError(code, reason.toString('utf8')));
    });
    socket.on('drain', () => {
      if (!this.waitingDrain) return;
      this.waitingDrain = false;
      this.emitDrain();
    });
  }

  send(chunk: Uint8Array): boolean {
    if (this.gone || this.closed) return true;
    const ws = this.ws;
    // Datagram semantics when the peer does not read: drop, as uWS does past maxBackpressure.
    if (ws.bufferedAmount > MAX_BACKPRESSURE) {
      this.waitingDrain = true;
      return false;
    }
    const binary = this.mode === 'binary' || (this.mode === 'mirror' && this.lastBinary);
    ws.send(chunk, binary ? BINARY : TEXT);
    // Above the socket's high-water mark node emits 'drain' once it is written out.
    if (this.socket.writableNeedDrain) {
      this.waitingDrain = true;
      return false;
    }
    return true;
  }

  end(): void {
    this.close();
  }

  /** Idle sweep: true when the connection saw nothing for two sweeps and was ended. */
  sweep(): boolean {
    if (this.active) {
      this.active = false;
      this.pinged = false;
      return false;
    }
    if (!this.pinged) {
      this.pinged = true;
      try { this.ws.ping(); } catch { /* closing */ }
      return false;
    }
    this.ws.terminate();
    return true;
  }

  terminate(code: number, reason: string): void {
    if (this.gone) return;
    this.ws.close(code, reason);
    this.armGrace();
  }

  protected doPause(): void { this.ws.pause(); }
  protected doResume(): void { this.ws.resume(); }

  protected doClose(err: Error | undefined): void {
    if (this.gone) {
      this.finish(err);
      return;
    }
    this.ws.close(closeCodeFor(err), closeReason(err));
    this.armGrace();
  }

  private armGrace(): void {
    if (this.graceTimer) return;
    this.graceTimer = setTimeout(() => this.ws.terminate(), CLOSE_GRACE_MS);
    this.graceTimer.unref();
  }
}

export class WsEngineListener implements ListenerImpl {
  private server: http.Server | undefined;
  private wss: WebSocketServer | undefined;
  private seq = 0;
  private localPort: number;
  private sweepTimer: NodeJS.Timeout | undefined;
  private readonly open = new Set<WsEngineServerChannel>();
  /** The subprotocol chosen for an upgrade in flight (ws asks again in handleProtocols). */
  private readonly chosen = new WeakMap<http.IncomingMessage, string>();

  constructor(private readonly cfg: WsListenerConfig, private readonly ctx: ListenerContext) {
    this.localPort = cfg.port;
  }

  async start(): Promise<void> {
    const { cfg, ctx } = this;
    const wss = new WebSocketServer({
      noServer: true,
      clientTracking: false,
      perMessageDeflate: false,
      maxPayload: cfg.maxMessage,
      handleProtocols: (_offered, req) => this.chosen.get(req) || false,
    });
    this.wss = wss;
    const server = http.createServer((req, res) => {
      ctx.log.info({ listener: ctx.listenerName, method: req.method, path: req.url, remote: req.socket.remoteAddress }, 'non-WebSocket request to a WebSocket listener refused');
      res.writeHead(426, { upgrade: 'websocket', connection: 'Upgrade', 'content-type': 'text/plain' }).end('this is a WebSocket endpoint\n');
    });
    server.on('upgrade', (req: http.IncomingMessage, socket: Duplex, head: Buffer) => this.onUpgrade(req, socket, head));
    server.on('clientError', (_err, socket) => {
      if (socket.writable) socket.end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n');
      socket.destroy();
    });
    await new Promise<void>((resolve, reject) => {
      const onError = (err: Error) => {
        reject(bindError(err, `WebSocket listener "${ctx.listenerName}" cannot listen on ${cfg.address}:${cfg.port}`));
      };
      server.once('error', onError);
      let target: ReturnType<typeof listenTarget>;
      try {
        target = listenTarget(cfg.address, cfg.port);
      } catch (err) {
        onError(err as Error);
        return;
      }
      server.listen(target, () => {
        server.off('error', onError);
        resolve();
      });
    });
    server.on('error', (err) => ctx.log.warn({ listener: ctx.listenerName, err: err.message }, 'WebSocket listener socket error'));
    this.server = server;
    this.localPort = (server.address() as net.AddressInfo).port;
    if (cfg.idleTimeout > 0) {
      this.sweepTimer = setInterval(() => this.sweep(), cfg.idleTimeout * 500);
      this.sweepTimer.unref();
    }
  }

  private onUpgrade(req: http.IncomingMessage, socket: Duplex, head: Buffer): void {
    const { cfg, ctx } = this;
    const h = nodeHead(req);
    if ((h.headers.upgrade ?? '').toLowerCase() !== 'websocket') {
      refuse(socket, 426, 'Upgrade Required', 'this is a WebSocket endpoint\n', 'Upgrade: websocket\r\n');
      return;
    }
    if (h.pathError !== undefined) {
      refuse(socket, 400, 'Bad Request', refusePath(ctx, h));
      return;
    }
    if (cfg.path !== undefined && h.path !== cfg.path) {
      ctx.log.info({ listener: ctx.listenerName, path: h.path }, 'WebSocket upgrade for an unknown path refused');
      refuse(socket, 404, 'Not Found', 'no WebSocket service at this path\n');
      return;
    }
    const offered = h.headers['sec-websocket-protocol'] ?? '';
    const protocol = chooseSubprotocol(offered, cfg.subprotocols);
    if (protocol === undefined) {
      ctx.log.info({ listener: ctx.listenerName, offered }, 'WebSocket upgrade refused: no acceptable subprotocol');
      refuse(socket, 400, 'Bad Request', 'no acceptable WebSocket subprotocol\n');
      return;
    }
    if (protocol) this.chosen.set(req, protocol);
    this.wss!.handleUpgrade(req, socket, head, (ws) => this.onOpen(ws, socket as net.Socket, h, protocol));
  }

  private onOpen(ws: WebSocket, socket: net.Socket, h: RequestHead, protocol: string): void {
    const { cfg, ctx } = this;
    if (this.server === undefined) {
      ws.close(1001, 'listener removed');
      return;
    }
    const ch = new WsEngineServerChannel(ws, socket, cfg.frame, h.remoteAddress);
    watchUnfinished(ws, socket, ctx.limits, ctx.refusals, ctx.listenerName, h.remoteAddress);
    this.open.add(ch);
    // Not a close listener: the session takes that slot.
    ws.once('close', () => this.open.delete(ch));
    const metadata = httpMetadata(h, cfg.address, this.localPort);
    if (protocol) (metadata.WebSocket as unknown) = { protocol };
    ctx.emit({ name: `WS:${h.remoteAddress}-${cfg.address}:${this.localPort}-${this.seq++}`, channel: ch, metadata });
  }

  private sweep(): void {
    for (const ch of this.open) {
      if (ch.sweep()) this.ctx.log.info({ listener: this.ctx.listenerName, peer: ch.peer }, 'WebSocket idle timeout');
    }
  }

  /** Draining: unbind now; upgraded sockets stay until they end or are cut. */
  stopAccepting(): void {
    this.server?.close();
  }

  async stop(): Promise<void> {
    if (this.sweepTimer) clearInterval(this.sweepTimer);
    this.sweepTimer = undefined;
    const server = this.server;
    this.server = undefined;
    // As the uWS listener: stop accepting, end accepted connections.
    for (const ch of [...this.open]) ch.terminate(1001, 'listener removed');
    this.open.clear();
    // close() unbinds now; its callback would wait for upgraded sockets to finish their close handshake.
    server?.close();
    server?.closeIdleConnections();
    this.wss?.close();
    this.wss = undefined;
  }
}
