// The HTTP listener on uWebSockets.js (the default engine): one session per
// request; index.ts says how requests and responses map to sessions.

import type * as U from '@trufflesuite/uws-js-unofficial';
import { BaseChannel, type ChannelKind } from '../../dataplane/channel.js';
import { GatewayError, reasonPhrase } from '../../core/errors.js';
import type { ListenerContext, ListenerImpl, SessionPriv } from '../types.js';
import { ExchangeBase } from '../common/http-exchange.js';
import { httpMetadata, readHead, refusePath, type RequestHead } from '../common/http-head.js';
import type { TlsFiles } from '../common/tls.js';
import { copyBuffer, listenUws, requireUws, type UwsTarget, type Uws } from '../common/uws.js';
import { UwsAppPool, type PooledApp } from '../common/uws-pool.js';

class UwsExchange extends ExchangeBase {
  private sent = false;

  constructor(readonly res: U.HttpResponse, head: RequestHead, readonly localAddress: string) {
    super(head);
  }

  get headSent(): boolean { return this.sent; }

  protected override batch(fn: () => void): void {
    this.res.cork(fn);
  }

  protected sendHead(status: number, headers: Record<string, string | string[]>): void {
    this.sent = true;
    this.res.writeStatus(`${status} ${reasonPhrase(status)}`);
    for (const [k, val] of Object.entries(headers)) {
      const lk = k.toLowerCase();
      // uWS computes these itself.
      if (lk === 'content-length' || lk === 'transfer-encoding' || lk === 'connection' || lk === 'date') continue;
      if (Array.isArray(val)) for (const x of val) this.res.writeHeader(k, x);
      else this.res.writeHeader(k, val);
    }
  }

  protected sendBody(chunk: Uint8Array): boolean {
    return this.res.write(chunk);
  }

  protected sendEnd(body: string | Uint8Array | undefined, close: boolean): void {
    if (body === undefined) this.res.end();
    else this.res.end(body, close);
  }

  protected destroy(): void {
    this.res.close();
  }
}

const EMPTY = new Uint8Array(0);

class HttpServerChannel extends BaseChannel {
  readonly kind: ChannelKind = 'byte';
  private waitingWritable = false;
  /** uWS is told of a pause or a resume only when the state changes (the channel may ask twice). */
  private uwsPaused = false;

  constructor(private readonly ex: UwsExchange) {
    super();
    this.peer = ex.remoteAddress;
    ex.res.onData((ab, isLast) => {
      if (ab.byteLength > 0) this.deliver(copyBuffer(ab));
      if (isLast) this.deliverEnd();
    });
    ex.res.onAborted(() => {
      ex.aborted = true;
      ex.settle();
      this.finish(new Error('client went away'));
    });
    ex.onDone = () => queueMicrotask(() => this.finish());
  }

  send(chunk: Uint8Array): boolean {
    const ok = this.ex.write(chunk);
    if (!ok && !this.waitingWritable) {
      this.waitingWritable = true;
      this.ex.res.onWritable(() => {
        this.waitingWritable = false;
        this.emitDrain();
        return true;
      });
    }
    return ok;
  }

  end(): void {
    this.ex.finishResponse();
  }

  protected doPause(): void {
    if (this.uwsPaused || this.ex.aborted || this.ex.responded) return;
    this.uwsPaused = true;
    this.ex.res.pause();
  }

  protected doResume(): void {
    if (!this.uwsPaused || this.ex.aborted || this.ex.responded) return;
    this.uwsPaused = false;
    this.ex.res.resume();
    // uWS builds for Node 22+ (v20.5x) stop polling the socket for
    // writability on resume(), even when part of the response is still
    // buffered: that part never drains, onWritable never fires, uWS reads no
    // more of the request either, and the exchange hangs until the idle
    // timeout resets it. An empty write flushes the buffer, which re-arms the
    // poll if the socket is still full. It sends nothing (no chunk), but it
    // would send the head, so only once the head is out; before that nothing
    // of the response is buffered.
    if (this.ex.headSent) this.ex.res.cork(() => this.ex.res.write(EMPTY));
  }

  protected doClose(err: Error | undefined): void {
    this.ex.close(err);
    this.finish(err);
  }
}

/** Every HTTP listener's App, kept for the next listener with the same TLS files (or none) once deleted (uws-pool.ts). */
export const httpApps = new UwsAppPool<HttpListener>();

export class HttpListener implements ListenerImpl {
  private token: U.us_listen_socket | undefined;
  /** The listener's App, from httpApps; held while in use (uWS closes an App that is garbage-collected). */
  private pooled: PooledApp<HttpListener> | undefined;
  private seq = 0;
  private localPort: number;
  private readonly uws: Uws;
  /** Deleted: requests still arriving on kept-alive connections are refused, never routed. */
  private stopped = false;
  private inFlight = 0;

  constructor(private readonly address: string, private readonly port: number, private readonly ctx: ListenerContext, private readonly tls?: TlsFiles) {
    this.uws = requireUws();
    this.localPort = port;
  }

  async start(): Promise<void> {
    // uWS keeps the handler for good: it reaches this listener through the target alone.
    const spec = { uws: this.uws, settings: 'http', tls: this.tls, what: `HTTP listener "${this.ctx.listenerName}"` };
    const pooled = httpApps.take(spec, this, (app, target) => app.any('/*', HttpListener.handler(target)));
    this.pooled = pooled;
    try {
      this.token = await listenUws(this.uws, pooled.app, this.address, this.port, `HTTP listener "${this.ctx.listenerName}"`);
    } catch (err) {
      // Nothing was opened on it: the App can go at once.
      this.pooled = undefined;
      httpApps.give(pooled);
      throw err;
    }
    this.localPort = this.uws.us_socket_local_port(this.token);
  }

  /** The App's handler, made outside any instance method so that it closes over the target alone. */
  private static handler(target: UwsTarget<HttpListener>): (res: U.HttpResponse, req: U.HttpRequest) => void {
    return (res, req) => {
      const l = target.get();
      if (l !== undefined) l.onRequest(res, req);
      else res.writeStatus('503 Service Unavailable').end('', true); // cannot happen: released after the App closed
    };
  }

  private onRequest(res: U.HttpResponse, req: U.HttpRequest): void {
    if (this.stopped) {
      // A kept-alive connection of a deleted listener: a listener of the same
      // name added later must not get its requests (they were never checked
      // against the new listener's address and rules).
      res.cork(() => {
        res.writeStatus('503 Service Unavailable');
        res.end(JSON.stringify({ status: 503, message: 'Service Unavailable', content: `listener "${this.ctx.listenerName}" was deleted` }), true);
      });
      return;
    }
    const head = readHead(res, req);
    const ex = new UwsExchange(res, head, this.address);
    if (head.pathError !== undefined) {
      // Before any session: no rule may see a path that is not normalised.
      const err = new GatewayError('INVALID_INPUT', refusePath(this.ctx, head).trim(), 'path');
      ex.respond(400, { 'content-type': 'application/json', connection: 'close' }, JSON.stringify(err.toBody(), null, 4));
      return;
    }
    this.inFlight++;
    ex.onSettled = () => {
      this.inFlight--;
      if (this.stopped && this.inFlight === 0) this.closeConnections();
    };
    const priv: SessionPriv = {
      http: ex,
      error(status, body) {
        // 503 is the gateway's own limits refusing (core/admission.ts) or a drain:
        // close the connection too, a kept-alive one would hold a descriptor for nothing.
        const headers: Record<string, string> = status === 503 ? { 'content-type': 'application/json', connection: 'close' } : { 'content-type': 'application/json' };
        ex.respond(status, headers, JSON.stringify(body, null, 4));
      },
    };
    const channel = new HttpServerChannel(ex);
    this.ctx.emit({
      name: `HTTP:${head.remoteAddress}-${this.address}:${this.localPort}-${this.seq++}`,
      channel,
      metadata: httpMetadata(head, this.address, this.localPort, this.tls ? 'https' : 'http'),
      priv,
    });
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.stopAccepting();
    // Idle kept-alive connections close now; ones with a request in flight once it is answered.
    if (this.inFlight === 0) this.closeConnections();
  }

  /** Close every connection of the app (uWS App.close(): the listen socket and all connections). */
  private closeConnections(): void {
    const pooled = this.pooled;
    this.pooled = undefined;
    // After the answer just written went out: close() would cut what uWS still buffers.
    if (pooled) setImmediate(() => httpApps.give(pooled));
  }

  /** Keep-alive connections stay: their requests in flight finish, new ones get 503 from the gateway. */
  stopAccepting(): void {
    if (this.token) this.uws.us_listen_socket_close(this.token);
    this.token = undefined;
  }

  bound(): boolean {
    return this.token !== undefined;
  }
}
