// HTTP listener on node:http (spec.engine: node), the alternative to the
// uWebSockets.js listener in listener.ts. Same sessions, metadata and exchange.
//
// Why a second engine: uWebSockets.js closes a connection when a pipelined
// request arrives while an earlier response is still pending ("denying async
// pipelining"), and when the client half-closes (SHUT_WR) after its request;
// a proxy always answers asynchronously, so such clients lost their answers.
// node:http queues pipelined responses in order, and with httpAllowHalfOpen
// it answers a half-closed connection before closing it.

import http from 'node:http';
import { BaseChannel, type ChannelKind } from '../../dataplane/channel.js';
import { GatewayError } from '../../core/errors.js';
import { ExchangeBase } from '../common/http-exchange.js';
import { httpMetadata, readNodeHead as readHead, refusePath, type RequestHead } from '../common/http-head.js';
import { bindError } from '../common/socket.js';
import type { ListenerContext, ListenerImpl, SessionPriv } from '../types.js';
import { listenTarget } from '../common/reuseport.js';

/** Headers node:http computes itself. */
const FRAMING = new Set(['content-length', 'transfer-encoding', 'connection', 'date', 'keep-alive']);

function framedHeaders(headers: Record<string, string | string[]>): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  for (const [k, val] of Object.entries(headers)) if (!FRAMING.has(k.toLowerCase())) out[k] = val;
  return out;
}

class NodeExchange extends ExchangeBase {
  constructor(readonly res: http.ServerResponse, head: RequestHead) {
    super(head);
  }

  get headSent(): boolean { return this.res.headersSent; }

  protected sendHead(status: number, headers: Record<string, string | string[]>): void {
    if (headers.connection === 'close') this.res.shouldKeepAlive = false;
    this.res.writeHead(status, framedHeaders(headers));
  }

  protected sendBody(chunk: Uint8Array): boolean {
    return this.res.write(chunk);
  }

  protected sendEnd(body: string | Uint8Array | undefined, close: boolean): void {
    if (close) this.res.shouldKeepAlive = false;
    if (body === undefined) this.res.end();
    else this.res.end(body);
  }

  /** After the head went out: the client must see a truncated response, never a clean end. */
  protected destroy(): void {
    this.res.destroy();
  }
}

class NodeHttpServerChannel extends BaseChannel {
  readonly kind: ChannelKind = 'byte';

  constructor(private readonly req: http.IncomingMessage, private readonly ex: NodeExchange) {
    super();
    this.peer = ex.remoteAddress;
    req.on('data', (d: Buffer) => this.deliver(d));
    req.on('end', () => this.deliverEnd());
    ex.res.on('drain', () => this.emitDrain());
    ex.res.on('close', () => {
      if (ex.responded) return;
      ex.aborted = true;
      this.finish(new Error('client went away'));
    });
    ex.onDone = () => queueMicrotask(() => this.finish());
  }

  send(chunk: Uint8Array): boolean {
    return this.ex.write(chunk);
  }

  end(): void {
    this.ex.finishResponse();
  }

  protected doPause(): void {
    this.req.pause();
  }

  protected doResume(): void {
    this.req.resume();
  }

  protected doClose(err: Error | undefined): void {
    this.ex.close(err);
    this.finish(err);
  }
}

export class NodeHttpListener implements ListenerImpl {
  private server: http.Server | undefined;
  private seq = 0;
  private localPort: number;
  /** Deleted: requests still arriving on kept-alive connections are refused, never routed. */
  private stopped = false;

  constructor(private readonly address: string, private readonly port: number, private readonly ctx: ListenerContext) {
    this.localPort = port;
  }

  async start(): Promise<void> {
    const server = http.createServer((req, res) => this.onRequest(req, res));
    // Answer a client that half-closed after its request(s), then close.
    // (A public property of http.Server that @types/node does not declare.)
    (server as unknown as { httpAllowHalfOpen: boolean }).httpAllowHalfOpen = true;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(listenTarget(this.address, this.port), () => {
        server.off('error', reject);
        resolve();
      });
    }).catch((err: unknown) => {
      throw bindError(err, `HTTP listener "${this.ctx.listenerName}" cannot listen on ${this.address}:${this.port}`);
    });
    server.on('error', (err) => this.ctx.log.warn({ listener: this.ctx.listenerName, err: err.message }, 'HTTP listener error'));
    const a = server.address();
    if (a !== null && typeof a === 'object') this.localPort = a.port;
    this.server = server;
  }

  private onRequest(req: http.IncomingMessage, res: http.ServerResponse): void {
    if (this.stopped) {
      // As the uWS engine: a listener of the same name added later must not get these.
      res.writeHead(503, { 'content-type': 'application/json', connection: 'close' })
        .end(JSON.stringify({ status: 503, message: 'Service Unavailable', content: `listener "${this.ctx.listenerName}" was deleted` }));
      return;
    }
    const head = readHead(req);
    const ex = new NodeExchange(res, head);
    if (head.pathError !== undefined) {
      const err = new GatewayError('INVALID_INPUT', refusePath(this.ctx, head).trim(), 'path');
      ex.respond(400, { 'content-type': 'application/json', connection: 'close' }, JSON.stringify(err.toBody(), null, 4));
      return;
    }
    const priv: SessionPriv = {
      http: ex,
      error(status, body) {
        const headers: Record<string, string> = status === 503 ? { 'content-type': 'application/json', connection: 'close' } : { 'content-type': 'application/json' };
        ex.respond(status, headers, JSON.stringify(body, null, 4));
      },
    };
    this.ctx.emit({
      name: `HTTP:${head.remoteAddress}-${this.address}:${this.localPort}-${this.seq++}`,
      channel: new NodeHttpServerChannel(req, ex),
      metadata: httpMetadata(head, this.address, this.localPort),
      priv,
    });
  }

  /** Keep the connections with requests in flight; idle keep-alive ones go now. */
  stopAccepting(): void {
    const s = this.server;
    if (!s) return;
    if (s.listening) s.close();
    s.closeIdleConnections();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.stopAccepting();
    this.server = undefined;
  }

  bound(): boolean {
    return this.server?.listening === true;
  }
}
