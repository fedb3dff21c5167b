// The WebSocket listener on uWebSockets.js (the default engine; ws-engine.ts
// is the other): one session per connection, one message per datagram.

import type * as U from '@trufflesuite/uws-js-unofficial';
import { BaseChannel, type ChannelKind } from '../../dataplane/channel.js';
import type { ListenerContext, ListenerImpl } from '../types.js';
import { httpMetadata, readHead, refusePath, type RequestHead } from '../common/http-head.js';
import { copyBuffer, listenUws, requireUws, text, type UwsTarget, type Uws } from '../common/uws.js';
import { UwsAppPool, type PooledApp } from '../common/uws-pool.js';
import { NORMAL_CLOSES, WebSocketCloseError, chooseSubprotocol, closeCodeFor, closeReason, type FrameMode, type WsListenerConfig } from './frames.js';

interface WsData {
  head: RequestHead;
  protocol: string;
  channel?: WsServerChannel;
  /** Bytes reserved from the gateway-wide message budget for this connection. */
  reserved?: number;
}

/**
 * Outgoing WebSocket messages are queued per channel and written once per
 * event-loop turn inside ws.cork(): a message that arrives from the other
 * side of the session (a UDP datagram, a TCP read) reaches send() outside any
 * uWS callback, where an uncorked ws.send() costs one write() system call per
 * message. Corked, all messages of one poll phase for one connection leave in
 * one write. The flush runs from setImmediate, i.e. right after the poll
 * phase that produced the messages, so it adds no timer latency.
 */
const corkQueue: WsServerChannel[] = [];
let corkScheduled = false;

function flushCorked(): void {
  corkScheduled = false;
  // Channels queued while flushing (a send from a drain handler) go to the next turn.
  const n = corkQueue.length;
  for (let i = 0; i < n; i++) corkQueue[i]!.flush();
  corkQueue.splice(0, n);
}

/** Queued bytes beyond which send() asks the session to pause its source. */
const QUEUE_HIGH_WATER = 1024 * 1024;

class WsServerChannel extends BaseChannel {
  readonly kind: ChannelKind = 'datagram';
  private lastBinary = true;
  private gone = false;
  /** Messages waiting for this turn's corked flush, and whether each is binary. */
  private out: Uint8Array[] = [];
  private outBinary: boolean[] = [];
  private outBytes = 0;
  private queued = false;
  /** send() returned false: emit drain once the queue and uWS's buffer have room. */
  private wantDrain = false;
  /** close() came while messages were queued: end the connection after the flush. */
  private closeAfterFlush: { err: Error | undefined } | undefined;
  private readonly sendAll = (): void => {
    const ws = this.ws;
    const out = this.out;
    const bin = this.outBinary;
    for (let i = 0; i < out.length; i++) ws.send(out[i]!, bin[i]!, false);
  };

  constructor(private readonly ws: U.WebSocket<WsData>, private readonly mode: FrameMode, peer: string) {
    super();
    this.peer = peer;
  }

  onMessage(msg: ArrayBuffer, isBinary: boolean): void {
    this.lastBinary = isBinary;
    this.deliver(copyBuffer(msg));
  }

  onDrain(): void {
    if (this.wantDrain && this.outBytes === 0) {
      this.wantDrain = false;
      this.emitDrain();
    }
  }

  onClosed(code: number, reason: string): void {
    this.gone = true;
    this.out.length = 0;
    this.outBinary.length = 0;
    this.outBytes = 0;
    this.finish(NORMAL_CLOSES.has(code) ? undefined : new WebSocketCloseError(code, reason));
  }

  send(chunk: Uint8Array): boolean {
    if (this.gone || this.closed) return true;
    const binary = this.mode === 'binary' || (this.mode === 'mirror' && this.lastBinary);
    this.out.push(chunk);
    this.outBinary.push(binary);
    this.outBytes += chunk.byteLength;
    if (!this.queued) {
      this.queued = true;
      corkQueue.push(this);
      if (!corkScheduled) {
        corkScheduled = true;
        setImmediate(flushCorked);
      }
    }
    if (this.outBytes + this.ws.getBufferedAmount() >= QUEUE_HIGH_WATER) {
      this.wantDrain = true;
      return false;
    }
    return true;
  }

  /** Write this turn's messages in one corked batch (called by flushCorked). */
  flush(): void {
    this.queued = false;
    if (!this.gone && this.out.length > 0) this.ws.cork(this.sendAll);
    this.out.length = 0;
    this.outBinary.length = 0;
    this.outBytes = 0;
    if (this.gone) return;
    const pendingClose = this.closeAfterFlush;
    if (pendingClose) {
      this.closeAfterFlush = undefined;
      this.gone = true;
      this.ws.end(closeCodeFor(pendingClose.err), closeReason(pendingClose.err));
      return;
    }
    // Below the high-water mark now: resume the source (else uWS's drain callback will).
    if (this.wantDrain && this.ws.getBufferedAmount() < QUEUE_HIGH_WATER) {
      this.wantDrain = false;
      this.emitDrain();
    }
  }

  end(): void {
    this.close();
  }

  protected doPause(): void {}
  protected doResume(): void {}

  protected doClose(err: Error | undefined): void {
    if (this.gone) {
      this.finish(err);
      return;
    }
    if (this.queued) {
      // Messages sent before close() still go out, then the close frame.
      this.closeAfterFlush = { err };
      return;
    }
    this.gone = true;
    this.ws.end(closeCodeFor(err), closeReason(err));
  }
}

/** Apps of deleted WebSocket listeners, for the next ones with the same message size, idle timeout and TLS files (uws-pool.ts). */
export const wsApps = new UwsAppPool<WsListener>();

export class WsListener implements ListenerImpl {
  private token: U.us_listen_socket | undefined;
  private seq = 0;
  private localPort: number;
  private readonly uws: Uws;
  private readonly open = new Set<U.WebSocket<WsData>>();
  /** The listener's App, from wsApps; held while in use (uWS closes an App that is garbage-collected). */
  private pooled: PooledApp<WsListener> | undefined;
  private stopping = false;

  constructor(
    private readonly cfg: WsListenerConfig,
    private readonly ctx: ListenerContext,
  ) {
    this.uws = requireUws();
    this.localPort = cfg.port;
  }

  async start(): Promise<void> {
    const { maxMessage, idleTimeout, tls } = this.cfg;
    // The App's WebSocket options are fixed when it is made: they are part of its pool key.
    const spec = { uws: this.uws, settings: `${maxMessage}/${idleTimeout}`, tls, what: `WebSocket listener "${this.ctx.listenerName}"` };
    this.pooled = wsApps.take(spec, this, (app, target) => WsListener.withHandlers(app, maxMessage, idleTimeout, target));
    try {
      this.token = await listenUws(this.uws, this.pooled.app, this.cfg.address, this.cfg.port, `WebSocket listener "${this.ctx.listenerName}"`);
    } catch (err) {
      this.giveBack(); // nothing was opened on it
      throw err;
    }
    this.localPort = this.uws.us_socket_local_port(this.token);
  }

  /**
   * An App given this listener kind's handlers, outside any instance method:
   * uWS keeps the handlers for the life of the process, and they must reach
   * a listener through the target alone (a closure made in an instance
   * method can hold `this`).
   */
  private static withHandlers(app: U.TemplatedApp, maxMessage: number, idleTimeout: number, target: UwsTarget<WsListener>): U.TemplatedApp {
    const h = WsListener.handlers(target);
    app.ws<WsData>('/*', {
      maxPayloadLength: maxMessage,
      idleTimeout,
      sendPingsAutomatically: idleTimeout > 0,
      maxBackpressure: 4 * 1024 * 1024,
      closeOnBackpressureLimit: 0,
      upgrade: h.upgrade,
      open: h.open,
      message: (ws, msg, isBinary) => ws.getUserData().channel?.onMessage(msg, isBinary),
      drain: (ws) => ws.getUserData().channel?.onDrain(),
      close: h.close,
    });
    return app.any('/*', h.any);
  }

  /** The App's handlers, made outside any instance method so that they close over the target alone. */
  private static handlers(target: UwsTarget<WsListener>) {
    // Released only once no connection is left (stop), so these cannot run without it.
    const gone = (res: U.HttpResponse) => res.writeStatus('503 Service Unavailable').end('', true);
    return {
      upgrade: (res: U.HttpResponse, req: U.HttpRequest, context: U.us_socket_context_t) => {
        const l = target.get();
        if (l !== undefined) l.onUpgrade(res, req, context);
        else gone(res);
      },
      open: (ws: U.WebSocket<WsData>) => {
        const l = target.get();
        if (l !== undefined) l.onOpen(ws);
        else ws.end(1001, 'listener removed');
      },
      close: (ws: U.WebSocket<WsData>, code: number, msg: ArrayBuffer) => target.get()?.onClose(ws, code, msg),
      any: (res: U.HttpResponse, req: U.HttpRequest) => {
        const l = target.get();
        if (l !== undefined) l.onPlainRequest(res, req);
        else gone(res);
      },
    };
  }

  private onUpgrade(res: U.HttpResponse, req: U.HttpRequest, context: U.us_socket_context_t): void {
    const { cfg, ctx } = this;
    const head = readHead(res, req);
    const key = req.getHeader('sec-websocket-key');
    const offered = req.getHeader('sec-websocket-protocol');
    const ext = req.getHeader('sec-websocket-extensions');
    if (head.pathError !== undefined) {
      res.writeStatus('400 Bad Request').end(refusePath(ctx, head), true);
      return;
    }
    if (cfg.path !== undefined && head.path !== cfg.path) {
      ctx.log.info({ listener: ctx.listenerName, path: head.path }, 'WebSocket upgrade for an unknown path refused');
      res.writeStatus('404 Not Found').end('no WebSocket service at this path\n');
      return;
    }
    const protocol = chooseSubprotocol(offered, cfg.subprotocols);
    if (protocol === undefined) {
      ctx.log.info({ listener: ctx.listenerName, offered }, 'WebSocket upgrade refused: no acceptable subprotocol');
      res.writeStatus('400 Bad Request').end('no acceptable WebSocket subprotocol\n');
      return;
    }
    res.upgrade<WsData>({ head, protocol }, key, protocol, ext, context);
  }

  private onOpen(ws: U.WebSocket<WsData>): void {
    const { cfg, ctx } = this;
    const data = ws.getUserData();
    if (this.stopping) {
      // Upgraded after stop() ended the others: its App is about to be closed and reused.
      ws.end(1001, 'listener removed');
      return;
    }
    // uWS buffers an unfinished message (a frame still arriving, or
    // fragments) inside C++, out of our sight, up to maxPayloadLength. The
    // only sound bound on that memory is to reserve a whole message per
    // connection from the gateway-wide budget; a connection that does not
    // fit is closed at once with 1013 (Try Again Later). The `ws` engine
    // counts the bytes really held instead (ws-engine.ts).
    if (!ctx.limits.messages.reserve(cfg.maxMessage)) {
      ctx.refusals.refuse('message_buffer', ctx.listenerName, { remote: data.head.remoteAddress, reserve: cfg.maxMessage, held: ctx.limits.messages.used });
      ws.end(1013, 'message buffer budget exhausted, try again later');
      return;
    }
    data.reserved = cfg.maxMessage;
    this.open.add(ws);
    const ch = new WsServerChannel(ws, cfg.frame, data.head.remoteAddress);
    data.channel = ch;
    const metadata = httpMetadata(data.head, cfg.address, this.localPort, cfg.tls !== undefined ? 'https' : 'http');
    if (data.protocol) (metadata.WebSocket as unknown) = { protocol: data.protocol };
    ctx.emit({ name: `WS:${data.head.remoteAddress}-${cfg.address}:${this.localPort}-${this.seq++}`, channel: ch, metadata });
  }

  private onClose(ws: U.WebSocket<WsData>, code: number, msg: ArrayBuffer): void {
    this.open.delete(ws);
    const data = ws.getUserData();
    this.ctx.limits.messages.release(data.reserved ?? 0);
    data.reserved = 0;
    data.channel?.onClosed(code, text(msg));
    // Out of this callback: close() runs the App's close handlers.
    if (this.stopping && this.open.size === 0) setImmediate(() => this.giveBack());
  }

  private onPlainRequest(res: U.HttpResponse, req: U.HttpRequest): void {
    const head = readHead(res, req);
    this.ctx.log.info({ listener: this.ctx.listenerName, method: head.method, path: head.path, remote: head.remoteAddress }, 'non-WebSocket request to a WebSocket listener refused');
    res.writeStatus('426 Upgrade Required').writeHeader('upgrade', 'websocket').end('this is a WebSocket endpoint\n');
  }

  /** No WebSocket of this listener is left: its handlers let go of it, and the App (closed) waits for the next listener. */
  private giveBack(): void {
    const p = this.pooled;
    this.pooled = undefined;
    if (p) wsApps.give(p);
  }

  bound(): boolean {
    return this.token !== undefined;
  }

  /** Draining: no new connections; open WebSockets stay until they end or are cut. */
  stopAccepting(): void {
    if (this.token) this.uws.us_listen_socket_close(this.token);
    this.token = undefined;
  }

  async stop(): Promise<void> {
    this.stopAccepting();
    this.stopping = true;
    // uWS keeps accepted connections after the listen socket closes: end
    // them. Their close handlers release the budget; the last one (or this,
    // when none is open) lets the App's handlers go.
    for (const ws of [...this.open]) ws.end(1001, 'listener removed');
    if (this.open.size === 0) setImmediate(() => this.giveBack());
  }
}
