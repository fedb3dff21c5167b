// HTTP listener: one session per request. The request body flows into the
// route; whatever the destination sends back becomes the response body (as in
// l7mp). The REST controller is such a destination (L7mpController), so the
// API is served the l7mp way: HTTP listener -> rule -> controller cluster.

import http from 'node:http';
import { BaseChannel, type ChannelKind } from '../channel/channel.js';
import { GatewayError, reasonPhrase } from '../core/errors.js';
import type { HttpExchange, ListenerContext, ListenerImpl, ProtocolDef, SessionPriv, Spec } from './types.js';
import * as v from './validate.js';

class NodeHttpExchange implements HttpExchange {
  responded = false;
  constructor(private readonly req: http.IncomingMessage, readonly res: http.ServerResponse) {}
  get method(): string { return this.req.method ?? 'GET'; }
  get url(): string { return this.req.url ?? '/'; }
  get headers(): http.IncomingHttpHeaders { return this.req.headers; }
  get remoteAddress(): string { return this.req.socket.remoteAddress ?? ''; }

  respond(status: number, headers: Record<string, string>, body: string | Uint8Array): void {
    if (this.responded || this.res.headersSent) return;
    this.responded = true;
    const buf = typeof body === 'string' ? Buffer.from(body) : body;
    this.res.writeHead(status, reasonPhrase(status), { ...headers, 'content-length': String(buf.byteLength) });
    this.res.end(buf);
  }
}

class HttpServerChannel extends BaseChannel {
  readonly kind: ChannelKind = 'byte';

  constructor(private readonly req: http.IncomingMessage, private readonly ex: NodeHttpExchange) {
    super();
    this.peer = `${req.socket.remoteAddress}:${req.socket.remotePort}`;
    req.on('data', (chunk: Buffer) => this.deliver(chunk));
    req.on('end', () => this.deliverEnd());
    req.on('error', (err) => this.close(err));
    ex.res.on('close', () => this.finish());
    ex.res.on('drain', () => this.emitDrain());
  }

  send(chunk: Uint8Array): boolean {
    const res = this.ex.res;
    if (this.ex.responded || res.writableEnded) return true;
    if (!res.headersSent) res.writeHead(200);
    return res.write(chunk);
  }

  end(): void {
    const res = this.ex.res;
    if (this.ex.responded || res.writableEnded) return;
    this.ex.responded = true;
    res.end();
  }

  protected doPause(): void { this.req.pause(); }
  protected doResume(): void { this.req.resume(); }

  protected doClose(err: Error | undefined): void {
    const res = this.ex.res;
    if (!res.writableEnded) {
      if (err && !res.headersSent) {
        const status = err instanceof GatewayError ? err.status : 502;
        this.ex.respond(status, { 'content-type': 'application/json' }, JSON.stringify({ status, message: reasonPhrase(status), content: err.message }));
      } else {
        this.ex.responded = true;
        res.end();
      }
    }
    if (res.writableFinished || res.destroyed) this.finish(err);
  }
}

export function httpMetadata(req: http.IncomingMessage, localAddress: string, localPort: number): Record<string, unknown> {
  const host = req.headers.host ?? `${localAddress}:${localPort}`;
  const rawUrl = req.url ?? '/';
  let parsed: URL;
  try {
    parsed = new URL(rawUrl, `http://${host}`);
  } catch {
    parsed = new URL('http://invalid/');
  }
  const q = rawUrl.indexOf('?');
  return {
    IP: { src_addr: req.socket.remoteAddress ?? '', dst_addr: localAddress },
    TCP: { src_port: req.socket.remotePort ?? 0, dst_port: localPort },
    HTTP: {
      version: req.httpVersion,
      method: req.method ?? 'GET',
      url: {
        url: rawUrl,
        href: parsed.href,
        protocol: 'http:',
        host: parsed.hostname,
        port: parsed.port === '' ? localPort : Number(parsed.port),
        path: q >= 0 ? rawUrl.slice(0, q) : rawUrl,
        query: q >= 0 ? rawUrl.slice(q + 1) : '',
      },
      headers: { ...req.headers },
    },
  };
}

class HttpListener implements ListenerImpl {
  private server: http.Server | undefined;
  private seq = 0;

  constructor(private readonly address: string, private readonly port: number, private readonly ctx: ListenerContext) {}

  async start(): Promise<void> {
    const server = http.createServer({ keepAlive: true }, (req, res) => this.onRequest(req, res));
    server.headersTimeout = 10_000;
    server.requestTimeout = 60_000;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen({ host: this.address, port: this.port }, () => {
        server.off('error', reject);
        resolve();
      });
    }).catch((err: NodeJS.ErrnoException) => {
      const reason = err.code === 'EADDRINUSE' ? 'address already in use' : err.message;
      throw new GatewayError('BIND_FAILED', `HTTP listener "${this.ctx.listenerName}" cannot listen on ${this.address}:${this.port}: ${reason}`, undefined, { cause: err });
    });
    server.on('error', (err) => this.ctx.log.warn({ listener: this.ctx.listenerName, err: err.message }, 'HTTP listener error'));
    this.server = server;
  }

  private onRequest(req: http.IncomingMessage, res: http.ServerResponse): void {
    const ex = new NodeHttpExchange(req, res);
    const lAddr = req.socket.localAddress ?? this.address;
    const lPort = req.socket.localPort ?? this.port;
    const priv: SessionPriv = {
      http: ex,
      error(status, body) {
        ex.respond(status, { 'content-type': 'application/json' }, JSON.stringify(body, null, 4));
      },
    };
    this.ctx.emit({
      name: `HTTP:${req.socket.remoteAddress}:${req.socket.remotePort}-${lAddr}:${lPort}-${this.seq++}`,
      channel: new HttpServerChannel(req, ex),
      metadata: httpMetadata(req, lAddr, lPort),
      priv,
    });
  }

  async stop(): Promise<void> {
    const s = this.server;
    this.server = undefined;
    if (!s) return;
    await new Promise<void>((resolve) => {
      s.close(() => resolve());
      s.closeAllConnections();
    });
  }
}

export const httpProtocol: ProtocolDef = {
  name: 'HTTP',
  kind: 'byte',
  summary: 'HTTP/1.1 server; one session per request, the request body is the ingress stream',
  listener: {
    modes: ['server'],
    create(spec: Spec, ctx, field) {
      const port = v.port(spec, 'port', field, true)!;
      const address = v.host(spec, 'address', field, false) ?? '0.0.0.0';
      return new HttpListener(address, port, ctx);
    },
  },
};
