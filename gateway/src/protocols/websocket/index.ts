// WebSocket listener on uWebSockets.js and WebSocket cluster (client, on the
// `ws` library, since uWebSockets.js has no client). One message is one
// datagram both ways. Close codes travel as session end reasons, and a
// session ended by a WebSocket close passes the code on to the other side.

import WebSocket from 'ws';
import { BaseChannel, type ChannelKind } from '../../dataplane/channel.js';
import { GatewayError, invalid } from '../../core/errors.js';
import type { ClusterContext, ClusterImpl, ConnectRequest, ListenerContext, ListenerImpl, ProtocolDef, Spec } from '../types.js';
import { httpMetadata, listenUws, readHead, refusePath, type RequestHead } from '../http/index.js';
import { copyBuffer, requireUws, text, type Uws } from '../common/uws.js';
import type * as U from '@trufflesuite/uws-js-unofficial';
import * as v from '../common/validate.js';
import { WsEngineListener } from './ws-engine.js';
import { watchUnfinished } from './unfinished.js';
import type net from 'node:net';

/** How outgoing messages are framed. */
export type FrameMode = 'binary' | 'text' | 'mirror';

export const NORMAL_CLOSES = new Set([1000, 1001, 1005]);
/**
 * A WebSocket listener's default message size. uWebSockets.js holds a partial
 * message where JavaScript cannot see it, so each of its connections reserves
 * its whole max_message_size from admin.limits.message_buffer_bytes when it
 * opens: 1 MiB admits 1024 connections in the default 1 GiB budget (16 MiB
 * admitted 64, which one client could take). A cluster reserves only what an
 * unfinished message holds, so it keeps the larger default.
 */
const DEFAULT_LISTENER_MAX_MESSAGE = 1024 * 1024;
const DEFAULT_MAX_MESSAGE = 16 * 1024 * 1024;
const CLIENT_HIGH_WATER = 1024 * 1024;

/** A WebSocket close with its code, carried as a session end reason. */
export class WebSocketCloseError extends Error {
  /** Not an abort: peers close normally, and WebSocket peers get the code. */
  readonly graceful = true;
  constructor(readonly closeCode: number, reason: string) {
    super(`WebSocket closed with code ${closeCode}${reason ? `: ${reason}` : ''}`);
    this.name = 'WebSocketCloseError';
  }
}

/** The close code to send for an error that ends a session. */
export function closeCodeFor(err: Error | undefined): number {
  if (!err) return 1000;
  const c = (err as { closeCode?: number }).closeCode;
  // 1005/1006/1015 may not be sent on the wire.
  if (typeof c === 'number' && c >= 1000 && c < 5000 && c !== 1005 && c !== 1006 && c !== 1015) return c;
  return 1011;
}

export function closeReason(err: Error | undefined): string {
  if (!err) return '';
  // A close frame's reason is at most 123 bytes.
  return Buffer.from(err.message).subarray(0, 120).toString('utf8').replace(/\uFFFD+$/, '');
}

function parseFrameMode(spec: Spec, field: string): FrameMode {
  const m = v.optString(spec, 'frame', field) ?? 'mirror';
  if (m !== 'binary' && m !== 'text' && m !== 'mirror') throw invalid(`${field}.frame`, 'must be binary, text or mirror');
  return m;
}

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

export function chooseSubprotocol(offered: string, allowed: readonly string[] | undefined): string | undefined {
  const list = offered.split(',').map((s) => s.trim()).filter(Boolean);
  if (list.length === 0) return '';
  if (!allowed) return list[0];
  return list.find((p) => allowed.includes(p));
}

/** A WebSocket listener's settings, whichever engine serves it. */
export interface WsListenerConfig {
  address: string;
  port: number;
  path: string | undefined;
  subprotocols: string[] | undefined;
  maxMessage: number;
  idleTimeout: number;
  frame: FrameMode;
}

class WsListener implements ListenerImpl {
  private token: U.us_listen_socket | undefined;
  private seq = 0;
  private localPort: number;
  private readonly uws: Uws;
  private readonly open = new Set<U.WebSocket<WsData>>();
  /** Held for the listener's lifetime: uWS closes an App that is garbage-collected. */
  private app: U.TemplatedApp | undefined;

  constructor(
    private readonly cfg: WsListenerConfig,
    private readonly ctx: ListenerContext,
  ) {
    this.uws = requireUws();
    this.localPort = cfg.port;
  }

  async start(): Promise<void> {
    const { cfg, ctx } = this;
    const app = this.uws.App();
    this.app = app;
    app.ws<WsData>('/*', {
      maxPayloadLength: cfg.maxMessage,
      idleTimeout: cfg.idleTimeout,
      sendPingsAutomatically: cfg.idleTimeout > 0,
      maxBackpressure: 4 * 1024 * 1024,
      closeOnBackpressureLimit: 0,
      upgrade: (res, req, context) => {
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
      },
      open: (ws) => {
        const data = ws.getUserData();
        // uWS buffers an unfinished message (a frame still arriving, or
        // fragments) inside C++, out of our sight, up to maxPayloadLength. The
        // only sound bound on that memory is to reserve a whole message per
        // connection from the gateway-wide budget; a connection that does not
        // fit is closed at once with 1013 (Try Again Later). The `ws` engine
        // counts the bytes really held instead (websocket-ws.ts).
        if (!ctx.limits.messages.reserve(cfg.maxMessage)) {
          ctx.refusals.refuse('message_buffer', ctx.listenerName, { remote: data.head.remoteAddress, reserve: cfg.maxMessage, held: ctx.limits.messages.used });
          ws.end(1013, 'message buffer budget exhausted, try again later');
          return;
        }
        data.reserved = cfg.maxMessage;
        this.open.add(ws);
        const ch = new WsServerChannel(ws, cfg.frame, data.head.remoteAddress);
        data.channel = ch;
        const metadata = httpMetadata(data.head, cfg.address, this.localPort);
        if (data.protocol) (metadata.WebSocket as unknown) = { protocol: data.protocol };
        ctx.emit({ name: `WS:${data.head.remoteAddress}-${cfg.address}:${this.localPort}-${this.seq++}`, channel: ch, metadata });
      },
      message: (ws, msg, isBinary) => ws.getUserData().channel?.onMessage(msg, isBinary),
      drain: (ws) => ws.getUserData().channel?.onDrain(),
      close: (ws, code, msg) => {
        this.open.delete(ws);
        const data = ws.getUserData();
        ctx.limits.messages.release(data.reserved ?? 0);
        data.reserved = 0;
        data.channel?.onClosed(code, text(msg));
      },
    });
    app.any('/*', (res, req) => {
      const head = readHead(res, req);
      ctx.log.info({ listener: ctx.listenerName, method: head.method, path: head.path, remote: head.remoteAddress }, 'non-WebSocket request to a WebSocket listener refused');
      res.writeStatus('426 Upgrade Required').writeHeader('upgrade', 'websocket').end('this is a WebSocket endpoint\n');
    });
    this.token = await listenUws(this.uws, app, cfg.address, cfg.port, `WebSocket listener "${ctx.listenerName}"`);
    this.localPort = this.uws.us_socket_local_port(this.token);
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
    // uWS keeps accepted connections after the listen socket closes: end them.
    for (const ws of [...this.open]) ws.end(1001, 'listener removed');
    this.open.clear();
    this.app = undefined;
  }
}

class WsClientChannel extends BaseChannel {
  readonly kind: ChannelKind = 'datagram';
  private lastBinary = true;
  private waitingDrain = false;

  constructor(private readonly sock: WebSocket, private readonly mode: FrameMode, peer: string) {
    super();
    this.peer = peer;
    sock.on('message', (data: Buffer, isBinary: boolean) => {
      this.lastBinary = isBinary;
      this.deliver(data);
    });
    let error: Error | undefined;
    sock.on('error', (err) => { error ??= err; });
    sock.on('close', (code: number, reason: Buffer) => {
      this.finish(error ?? (NORMAL_CLOSES.has(code) ? undefined : new WebSocketCloseError(code, reason.toString('utf8'))));
    });
  }

  private readonly afterSend = (): void => {
    if (this.waitingDrain && this.sock.bufferedAmount < CLIENT_HIGH_WATER / 2) {
      this.waitingDrain = false;
      this.emitDrain();
    }
  };

  send(chunk: Uint8Array): boolean {
    if (this.closed || this.sock.readyState !== WebSocket.OPEN) return true;
    const binary = this.mode === 'binary' || (this.mode === 'mirror' && this.lastBinary);
    this.sock.send(chunk, { binary }, this.afterSend);
    if (this.sock.bufferedAmount >= CLIENT_HIGH_WATER) {
      this.waitingDrain = true;
      return false;
    }
    return true;
  }

  end(): void {
    this.close();
  }

  protected doPause(): void { this.sock.pause(); }
  protected doResume(): void { this.sock.resume(); }

  protected doClose(err: Error | undefined): void {
    if (this.sock.readyState === WebSocket.CLOSED) {
      this.finish(err);
      return;
    }
    if (this.sock.readyState === WebSocket.CONNECTING) {
      this.sock.terminate();
      return;
    }
    this.sock.close(closeCodeFor(err), closeReason(err));
    const t = setTimeout(() => this.sock.terminate(), 5000);
    t.unref();
  }
}

const HOP_BY_HOP = new Set([
  'host', 'connection', 'upgrade', 'keep-alive', 'transfer-encoding', 'te', 'trailer', 'proxy-authorization',
  'proxy-authenticate', 'content-length', 'sec-websocket-key', 'sec-websocket-version', 'sec-websocket-extensions',
  'sec-websocket-protocol', 'sec-websocket-accept',
]);

class WsCluster implements ClusterImpl {
  constructor(
    private readonly cfg: { port: number; path: string | undefined; bindAddress: string | undefined; maxMessage: number; frame: FrameMode; subprotocols: string[] | undefined },
    private readonly ctx: ClusterContext,
  ) {}

  connect(req: ConnectRequest): Promise<WsClientChannel> {
    const ep = req.endpoint;
    if (!ep) return Promise.reject(new GatewayError('CONNECT_FAILED', `cluster "${this.ctx.clusterName}" has no endpoint`));
    const http = (req.session.metadata.HTTP ?? undefined) as { url?: { url?: string }; headers?: Record<string, string> } | undefined;
    // Sessions without HTTP metadata (e.g. from UDP) connect to the configured path (l7mp crashed here).
    const path = this.cfg.path ?? http?.url?.url ?? '/';
    const host = ep.address.includes(':') ? `[${ep.address}]` : ep.address;
    const url = `ws://${host}:${this.cfg.port}${path.startsWith('/') ? path : `/${path}`}`;
    const headers: Record<string, string> = {};
    for (const [k, val] of Object.entries(http?.headers ?? {})) if (!HOP_BY_HOP.has(k)) headers[k] = String(val);
    const offered = http?.headers?.['sec-websocket-protocol'];
    const protocols = this.cfg.subprotocols ?? (offered ? offered.split(',').map((s) => s.trim()).filter(Boolean) : undefined);
    return new Promise((resolve, reject) => {
      const sock = new WebSocket(url, protocols, {
        headers,
        handshakeTimeout: req.timeoutMs,
        maxPayload: this.cfg.maxMessage,
        perMessageDeflate: false,
        followRedirects: false,
        ...(this.cfg.bindAddress ? { localAddress: this.cfg.bindAddress } : {}),
      });
      const fail = (reason: string) => {
        cleanup();
        sock.terminate();
        reject(new GatewayError('CONNECT_FAILED', `WebSocket ${url}: ${reason}`));
      };
      const onOpen = () => {
        cleanup();
        const peer = `${ep.address}:${this.cfg.port}`;
        // An upstream's unfinished messages count against the same budget as a client's.
        const socket = (sock as unknown as { _socket?: net.Socket })._socket;
        if (socket) watchUnfinished(sock, socket, this.ctx.limits, this.ctx.refusals, this.ctx.clusterName, peer);
        resolve(new WsClientChannel(sock, this.cfg.frame, peer));
      };
      const onError = (err: Error) => fail(err.message);
      const onUnexpected = (_r: unknown, res: { statusCode?: number }) => fail(`upgrade refused with HTTP ${res.statusCode}`);
      const cleanup = () => {
        sock.off('open', onOpen);
        sock.off('error', onError);
        sock.off('unexpected-response', onUnexpected);
      };
      sock.on('open', onOpen);
      sock.on('error', onError);
      sock.on('unexpected-response', onUnexpected);
    });
  }
}

function subprotocolList(spec: Spec, field: string): string[] | undefined {
  const s = spec.subprotocols;
  if (s === undefined) return undefined;
  if (!Array.isArray(s) || s.some((x) => typeof x !== 'string' || !/^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/.test(x))) {
    throw invalid(`${field}.subprotocols`, 'must be an array of subprotocol tokens');
  }
  return s as string[];
}

export const websocketProtocol: ProtocolDef = {
  name: 'WebSocket',
  aliases: ['WS'],
  kind: 'datagram',
  summary: 'WebSocket messages: listener on uWebSockets.js, cluster on the ws client; one message per datagram',
  listener: {
    modes: ['server'],
    create(spec, ctx, field) {
      const path = v.optString(spec, 'path', field);
      // uws (default): uWebSockets.js; ws: the pure-JS `ws` library (websocket-ws.ts).
      const engine = v.optString(spec, 'engine', field) ?? 'uws';
      if (engine !== 'uws' && engine !== 'ws') throw invalid(`${field}.engine`, `must be "uws" or "ws", got "${engine}"`);
      const cfg: WsListenerConfig = {
        address: v.host(spec, 'address', field, false) ?? '0.0.0.0',
        port: v.port(spec, 'port', field, true)!,
        path: path === undefined || path === '' || path === '/*' ? undefined : path,
        subprotocols: subprotocolList(spec, field),
        maxMessage: v.optNumber(spec, 'max_message_size', field, 1, 1 << 30) ?? DEFAULT_LISTENER_MAX_MESSAGE,
        idleTimeout: v.optNumber(spec, 'idle_timeout', field, 0, 960) ?? 120,
        frame: parseFrameMode(spec, field),
      };
      return engine === 'ws' ? new WsEngineListener(cfg, ctx) : new WsListener(cfg, ctx);
    },
  },
  cluster: {
    virtual: false,
    retriable: true,
    create(spec, ctx, field) {
      const bind = v.optObject(spec, 'bind', field);
      return new WsCluster({
        port: v.port(spec, 'port', field, true)!,
        path: v.optString(spec, 'path', field),
        bindAddress: bind ? v.host(bind, 'address', `${field}.bind`, false) : undefined,
        maxMessage: v.optNumber(spec, 'max_message_size', field, 1, 1 << 30) ?? DEFAULT_MAX_MESSAGE,
        frame: parseFrameMode(spec, field),
        subprotocols: subprotocolList(spec, field),
      }, ctx);
    },
    checkEndpoint(spec, field) {
      v.host(spec, 'address', field, true);
    },
  },
};
