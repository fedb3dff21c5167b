// The WebSocket cluster: a client on the `ws` library (uWebSockets.js has no
// client), one connection per session, one message per datagram.

import type net from 'node:net';
import WebSocket from 'ws';
import { BaseChannel, type ChannelKind } from '../../dataplane/channel.js';
import { GatewayError } from '../../core/errors.js';
import type { ClusterContext, ClusterImpl, ConnectRequest } from '../types.js';
import { NORMAL_CLOSES, WebSocketCloseError, closeCodeFor, closeReason, type FrameMode } from './frames.js';
import { watchUnfinished } from './unfinished.js';

const CLIENT_HIGH_WATER = 1024 * 1024;

export interface WsClusterConfig {
  port: number;
  path: string | undefined;
  bindAddress: string | undefined;
  maxMessage: number;
  frame: FrameMode;
  subprotocols: string[] | undefined;
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

export class WsCluster implements ClusterImpl {
  constructor(
    private readonly cfg: WsClusterConfig,
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
