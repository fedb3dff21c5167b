// HTTP listener on uWebSockets.js: one session per request. The request body
// flows into the route; whatever the destination sends back becomes the
// response body (as in l7mp), and an HTTP-aware destination (the HTTP
// cluster, the REST controller) sets the status and headers through the
// exchange. The REST API is served the l7mp way: HTTP listener -> rule ->
// L7mpController cluster. With `spec.tls: {cert_file, key_file, passphrase?}`
// the listener serves HTTPS instead (uWS SSLApp; see tls.ts).
//
// uWebSockets.js does not expose the client's port, so HTTP session names and
// metadata carry the client address only (TCP/src_port is absent).

import { BaseChannel, type ChannelKind } from '../../dataplane/channel.js';
import { GatewayError, invalid, reasonPhrase } from '../../core/errors.js';
import { normalizePath } from '../../routing/httppath.js';
import { ExchangeBase } from '../common/http-exchange.js';
import { NodeHttpListener } from './node-engine.js';
import type { HttpExchange, ListenerContext, ListenerImpl, ProtocolDef, SessionPriv, Spec } from '../types.js';
import { parseTls, type TlsFiles } from '../common/tls.js';
import { copyBuffer, requireUws, text, type Uws } from '../common/uws.js';
import type * as U from '@trufflesuite/uws-js-unofficial';
import type { IncomingMessage } from 'node:http';
import * as v from '../common/validate.js';

export interface RequestHead {
  method: string;
  url: string;
  path: string;
  query: string;
  headers: Record<string, string>;
  remoteAddress: string;
  /** Set when the path cannot be normalised (routing/httppath.ts): the request gets 400 and no session. */
  pathError?: string;
}

/** The request path normalised (routing/httppath.ts), or the raw one with the reason it is refused. */
export function normalizedPath(raw: string): { path: string; pathError?: string } {
  const n = normalizePath(raw);
  return n.ok ? { path: n.path } : { path: raw, pathError: n.reason };
}

/** Read what uWS lets us read of a request: only synchronously, in the handler. */
export function readHead(res: U.HttpResponse, req: U.HttpRequest): RequestHead {
  const headers: Record<string, string> = {};
  req.forEach((k, val) => { headers[k] = headers[k] === undefined ? val : `${headers[k]}, ${val}`; });
  const { path, pathError } = normalizedPath(req.getUrl());
  const query = req.getQuery() ?? '';
  return {
    method: req.getCaseSensitiveMethod().toUpperCase(),
    url: query ? `${path}?${query}` : path,
    path,
    query,
    headers,
    remoteAddress: text(res.getRemoteAddressAsText()),
    ...(pathError !== undefined ? { pathError } : {}),
  };
}

/** A node:http request's head in the shape the uWS listener reads it (the node engines of HTTP and WebSocket) (lower-case names, repeats joined). */
export function readNodeHead(req: IncomingMessage): RequestHead {
  const headers: Record<string, string> = {};
  const raw = req.rawHeaders;
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const k = raw[i]!.toLowerCase();
    const val = raw[i + 1]!;
    headers[k] = headers[k] === undefined ? val : `${headers[k]}, ${val}`;
  }
  const url = req.url ?? '/';
  const q = url.indexOf('?');
  const { path, pathError } = normalizedPath(q < 0 ? url : url.slice(0, q));
  const query = q < 0 ? '' : url.slice(q + 1);
  return {
    method: (req.method ?? 'GET').toUpperCase(),
    url: query ? `${path}?${query}` : path,
    path,
    query,
    headers,
    remoteAddress: req.socket.remoteAddress ?? '',
    ...(pathError !== undefined ? { pathError } : {}),
  };
}

/** Count and log (once per interval) a request refused for its path; the caller answers 400. */
export function refusePath(ctx: ListenerContext, head: RequestHead): string {
  ctx.refusals.refuse('http_path', ctx.listenerName, { remote: head.remoteAddress, path: head.path.slice(0, 200), why: head.pathError });
  return `Bad Request: ${head.pathError}\n`;
}

export function httpMetadata(head: RequestHead, localAddress: string, localPort: number, scheme: 'http' | 'https' = 'http'): Record<string, unknown> {
  const hostHeader = head.headers.host ?? `${localAddress}:${localPort}`;
  const colon = hostHeader.lastIndexOf(':');
  const host = colon > 0 && !hostHeader.endsWith(']') ? hostHeader.slice(0, colon) : hostHeader;
  const port = colon > 0 && !hostHeader.endsWith(']') ? Number(hostHeader.slice(colon + 1)) : localPort;
  return {
    IP: { src_addr: head.remoteAddress, dst_addr: localAddress },
    TCP: { dst_port: localPort },
    HTTP: {
      version: '1.1',
      method: head.method,
      url: {
        url: head.url,
        href: `${scheme}://${hostHeader}${head.url}`,
        protocol: `${scheme}:`,
        host,
        port,
        path: head.path,
        query: head.query,
      },
      headers: { ...head.headers },
    },
  };
}

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

/** Listen exclusively (uWS defaults to SO_REUSEPORT, which would hide "address in use"). */
export function listenUws(uws: Uws, app: U.TemplatedApp, address: string, port: number, what: string): Promise<U.us_listen_socket> {
  return new Promise((resolve, reject) => {
    // The typings lack the (host, port, options, cb) overload that the binary has.
    const exclusive = (uws as unknown as { LIBUS_LISTEN_EXCLUSIVE_PORT?: number }).LIBUS_LISTEN_EXCLUSIVE_PORT ?? 1;
    const listen = app.listen as unknown as (h: string, p: number, o: number, cb: (t: U.us_listen_socket | false) => void) => void;
    listen.call(app, address, port, exclusive, (token) => {
      if (token) resolve(token);
      else reject(new GatewayError('BIND_FAILED', `${what} cannot listen on ${address}:${port}: address already in use or not available`));
    });
  });
}

class HttpListener implements ListenerImpl {
  private token: U.us_listen_socket | undefined;
  /** Held for the listener's lifetime: uWS closes an App that is garbage-collected. */
  private app: U.TemplatedApp | undefined;
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

  private newApp(): U.TemplatedApp {
    if (!this.tls) return this.uws.App();
    const t = this.tls;
    try {
      return this.uws.SSLApp({ cert_file_name: t.cert_file, key_file_name: t.key_file, ...(t.passphrase !== undefined ? { passphrase: t.passphrase } : {}) });
    } catch (err) {
      // The files were checked when the listener was added; they may have changed since.
      throw new GatewayError('INVALID_INPUT', `HTTP listener "${this.ctx.listenerName}": TLS setup failed (${(err as Error).message}): check tls.cert_file and tls.key_file`);
    }
  }

  async start(): Promise<void> {
    const app = this.newApp().any('/*', (res, req) => this.onRequest(res, req));
    this.app = app;
    this.token = await listenUws(this.uws, app, this.address, this.port, `HTTP listener "${this.ctx.listenerName}"`);
    this.localPort = this.uws.us_socket_local_port(this.token);
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
    const app = this.app;
    this.app = undefined;
    // After the answer just written went out: close() would cut what uWS still buffers.
    if (app) setImmediate(() => (app as unknown as { close?: () => void }).close?.());
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

export const httpProtocol: ProtocolDef = {
  name: 'HTTP',
  kind: 'byte',
  summary: 'HTTP/1.1 server on uWebSockets.js; one session per request, the request body is the ingress stream',
  files: { listener: [{ key: 'tls.cert_file' }, { key: 'tls.key_file' }] },
  listener: {
    modes: ['server'],
    create(spec: Spec, ctx, field) {
      const port = v.port(spec, 'port', field, true)!;
      const address = v.host(spec, 'address', field, false) ?? '0.0.0.0';
      // engine: node answers pipelined and half-closed requests (http-node.ts says why).
      const engine = v.optString(spec, 'engine', field) ?? 'uws';
      if (engine !== 'uws' && engine !== 'node') throw invalid(`${field}.engine`, `must be "uws" or "node", got "${engine}"`);
      const tls = parseTls(spec, field);
      if (engine === 'node') {
        if (tls) throw new GatewayError('NOT_SUPPORTED', `${field}.engine: "node" does not serve TLS yet; use the uws engine`, `${field}.engine`);
        return new NodeHttpListener(address, port, ctx);
      }
      return new HttpListener(address, port, ctx, tls);
    },
  },
};
