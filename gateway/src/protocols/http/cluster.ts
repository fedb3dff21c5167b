// HTTP cluster: forwards the HTTP request of a session to an endpoint and
// streams the answer back. l7mp had no HTTP cluster; this one is a plain
// HTTP/1.1 reverse proxy stage built on undici.
//
// The request is rebuilt from the session metadata, not from the listener's
// request object, so rewrite rules (`rewrite: [{path: '/HTTP/url/path', ...}]`)
// change what goes upstream, and so the cluster works behind any listener
// that sets the HTTP metadata (either listener engine).
// A session without HTTP metadata (a TCP listener routed here) becomes a
// chunked `POST /` whose body is the byte stream; only the body comes back.
//
// Connect failure and retry. The gateway retries `connect()` on another
// endpoint when it rejects, so connect() must only resolve once a TCP
// connection to the endpoint exists. undici calls a handler's
// onRequestStart (legacy onConnect) only when a request is being written
// to an established socket (client.js `_resume` connects first; client-h1.js
// `writeH1` then calls `request.onConnect`), and onResponseError before that
// when the connection fails (ECONNREFUSED, EHOSTUNREACH, its own connect
// timeout): that boundary is our "connected". connect() therefore dispatches
// the request at once and settles on whichever comes first: onRequestStart
// (resolve), onResponseError (reject, CONNECT_FAILED with undici's reason)
// or our own timer of `req.timeoutMs` (reject). A request that loses to the
// timer is abandoned: its body stream is destroyed with an error (undici
// then aborts it the moment it would start) and a late onRequestStart aborts
// it too, so an abandoned request never reaches the upstream. This uses one
// shared connection pool per endpoint (keep-alive reuse, no extra probe
// connection) rather than a connect-then-request dance; a reused idle
// connection counts as connected. The pools live in one undici Agent per
// cluster (one Pool per origin, dropped by undici when it has no
// connections left), destroyed in close().
//
// Flow control: send() pushes into a Readable that undici drains into the
// socket (undici pauses it when the socket is full); push() returning false
// makes send() return false, and the Readable's next _read() is our drain.
// The response body goes out through deliver(); pause()/resume() map to the
// undici controller, which stops reading the socket.

import { Readable } from 'node:stream';
import { isIP } from 'node:net';
import { Agent, type Dispatcher } from 'undici';
import { BaseChannel, type ChannelKind, type ChannelSink } from '../../dataplane/channel.js';
import { GatewayError, reasonPhrase } from '../../core/errors.js';
import type {
  ClusterContext, ClusterImpl, ConnectRequest, HttpExchange, SessionView,
} from '../types.js';
import * as v from '../common/validate.js';

/** How much request body we hold ahead of the upstream socket before send() says stop. */
const BODY_HIGH_WATER = 64 * 1024;
/**
 * undici's own connect timeout. Ours (req.timeoutMs) is shorter in practice;
 * this only bounds how long an abandoned attempt may linger in the pool.
 */
const POOL_CONNECT_TIMEOUT_MS = 10_000;

/**
 * Hop-by-hop headers (RFC 9110 7.6.1) and the ones undici refuses or that
 * we set ourselves. `proxy-*` is matched by prefix; headers named in a
 * Connection header are dropped as well.
 */
const HOP_BY_HOP = new Set([
  'connection', 'keep-alive', 'transfer-encoding', 'upgrade', 'te', 'trailer', 'trailers',
  'http2-settings', 'expect', 'host',
]);

/** Response headers we do not pass on: hop-by-hop ones (the listener frames the body itself). */
const HOP_BY_HOP_RESPONSE = new Set([
  'connection', 'keep-alive', 'transfer-encoding', 'upgrade', 'te', 'trailer', 'trailers', 'http2-settings',
]);

type HeaderValue = string | string[];

function headerValue(v: unknown): HeaderValue | undefined {
  if (typeof v === 'string') return v;
  if (typeof v === 'number' || typeof v === 'boolean') return String(v);
  if (Array.isArray(v)) return v.filter((x) => x !== undefined && x !== null).map(String);
  return undefined;
}

function connectionTokens(v: unknown): Set<string> | undefined {
  const raw = headerValue(v);
  if (raw === undefined) return undefined;
  const joined = Array.isArray(raw) ? raw.join(',') : raw;
  const set = new Set<string>();
  for (const t of joined.split(',')) {
    const n = t.trim().toLowerCase();
    if (n !== '') set.add(n);
  }
  return set;
}

/** Copy headers without hop-by-hop ones; keys lower-cased. */
function endToEnd(src: Record<string, unknown>, drop: ReadonlySet<string>): Record<string, HeaderValue> {
  const listed = connectionTokens(src.connection ?? src.Connection);
  const out: Record<string, HeaderValue> = {};
  for (const key of Object.keys(src)) {
    const k = key.toLowerCase();
    if (drop.has(k) || k.startsWith('proxy-') || listed?.has(k)) continue;
    const val = headerValue(src[key]);
    if (val === undefined) continue;
    const prev = out[k];
    out[k] = prev === undefined ? val : [...(Array.isArray(prev) ? prev : [prev]), ...(Array.isArray(val) ? val : [val])];
  }
  return out;
}

function hostPort(address: string, port: number): string {
  return isIP(address) === 6 ? `[${address}]:${port}` : `${address}:${port}`;
}

function joinPath(prefix: string, path: string): string {
  if (prefix === '') return path;
  if (prefix.endsWith('/') && path.startsWith('/')) return prefix + path.slice(1);
  return prefix + path;
}

/** An origin-form path from the metadata: absolute-form URLs give their path, anything else gets a slash. */
function originPath(raw: unknown): string {
  if (typeof raw !== 'string' || raw === '') return '/';
  if (raw.startsWith('/')) return raw;
  try {
    return new URL(raw).pathname;
  } catch {
    return `/${raw}`;
  }
}

interface UpstreamRequest {
  readonly method: string;
  readonly path: string;
  readonly headers: Record<string, HeaderValue>;
  /** Whether the request has a body to stream (else send() drops data). */
  readonly hasBody: boolean;
}

/** Build the upstream request from the session metadata, as the HTTP listener sets it (common/http-head.ts httpMetadata). */
export function upstreamRequest(session: SessionView, prefix: string, upstreamHost: string): UpstreamRequest {
  const md = session.metadata;
  const h = v.isObject(md.HTTP) ? md.HTTP : undefined;
  const url = h && v.isObject(h.url) ? h.url : undefined;
  const inHeaders = h && v.isObject(h.headers) ? h.headers : {};

  const method = h && typeof h.method === 'string' && h.method !== '' ? h.method.toUpperCase() : 'POST';
  const query = url && typeof url.query === 'string' ? url.query : '';
  const path = joinPath(prefix, originPath(url?.path)) + (query !== '' ? `?${query}` : '');

  const headers = endToEnd(inHeaders, HOP_BY_HOP);
  headers.host = upstreamHost;

  // The client's address joins whatever X-Forwarded-For chain it brought.
  const ip = v.isObject(md.IP) ? md.IP : undefined;
  const client = session.priv.http?.remoteAddress || (typeof ip?.src_addr === 'string' ? ip.src_addr : '');
  if (client !== '') {
    const prev = headers['x-forwarded-for'];
    const chain = prev === undefined ? [] : Array.isArray(prev) ? prev : [prev];
    headers['x-forwarded-for'] = [...chain, client].join(', ');
  }

  // HTTP/1.1 framing: a request has a body iff it says so (RFC 9112 6.3).
  // Without HTTP metadata the session's byte stream is the body.
  let hasBody = h === undefined;
  const te = inHeaders['transfer-encoding'];
  if (te !== undefined) {
    hasBody = true;
    delete headers['content-length']; // chunked wins; undici re-frames the body
  } else if (headers['content-length'] !== undefined) {
    const cl = Number(Array.isArray(headers['content-length']) ? headers['content-length'][0] : headers['content-length']);
    hasBody = cl > 0;
  }
  return { method, path, headers, hasBody };
}

/** The l7mp error body, as the gateway sends it for failed sessions. */
function errorBody(status: number, content: string): { status: number; message: string; content: string } {
  return { status, message: reasonPhrase(status), content };
}

class HttpUpstreamChannel extends BaseChannel implements Dispatcher.DispatchHandler {
  readonly kind: ChannelKind = 'byte';
  /** Settles the pending connect() promise; undefined once settled. */
  settle: ((err?: Error) => void) | undefined;
  readonly body: Readable | undefined;
  private controller: Dispatcher.DispatchController | undefined;
  private abandoned: Error | undefined;
  private bodyEnded = false;
  private bodyBlocked = false;
  private upstreamPaused = false;
  private pendingHead: { status: number; headers: Record<string, HeaderValue> } | undefined;
  private headForwarded = false;
  private responseDone = false;
  /** Told the final status of the answer (passive health: 5xx is a failure). */
  onStatus: ((status: number) => void) | undefined;

  constructor(peer: string, private readonly session: SessionView, hasBody: boolean) {
    super();
    this.peer = peer;
    if (hasBody) {
      this.body = new Readable({
        highWaterMark: BODY_HIGH_WATER,
        read: () => {
          if (!this.bodyBlocked) return;
          this.bodyBlocked = false;
          this.emitDrain();
        },
      });
    }
  }

  private get exchange(): HttpExchange | undefined {
    return this.session.priv.http;
  }

  // ------------------------------------------------------------ channel side

  send(chunk: Uint8Array): boolean {
    const b = this.body;
    if (b === undefined || this.bodyEnded || this.closed || b.destroyed) return true;
    if (b.push(chunk)) return true;
    this.bodyBlocked = true;
    return false;
  }

  end(): void {
    if (this.bodyEnded) return;
    this.bodyEnded = true;
    const b = this.body;
    if (b !== undefined && !b.destroyed) b.push(null);
  }

  /**
   * The session links us here. The response head waits for it, so that a
   * session failing in setup (another stage) can still answer with an error.
   * BaseChannel pauses the peer when its early queue overflows but does not
   * resume it when the sink arrives; do that here.
   */
  override setSink(sink: ChannelSink | undefined): void {
    if (sink !== undefined) this.forwardHead();
    super.setSink(sink);
    if (sink !== undefined && !this.paused && this.upstreamPaused) this.doResume();
  }

  protected doPause(): void {
    this.upstreamPaused = true;
    this.controller?.pause();
  }

  protected doResume(): void {
    this.upstreamPaused = false;
    this.controller?.resume();
  }

  protected doClose(err: Error | undefined): void {
    // A closed session has nobody to deliver to: an unfinished exchange is
    // aborted even on a graceful close (the HTTP client went away).
    const c = this.controller;
    if (c !== undefined && !this.responseDone && !c.aborted) {
      c.abort(err ?? new GatewayError('CONNECT_FAILED', 'session closed before the upstream response completed'));
    } else if (c === undefined && this.abandoned === undefined) {
      // Not sent yet (a client that went away at once, e.g. one uWS dropped
      // for pipelining): it must never reach the upstream now.
      this.abandon(err ?? new GatewayError('CONNECT_FAILED', 'session closed before the request was sent'));
    }
    this.finish(err);
  }

  // ---------------------------------------------------------- connect phase

  /** Our connect timer fired first: give up on this request for good. */
  abandon(err: Error): void {
    this.abandoned = err;
    this.body?.destroy(err); // undici aborts a request whose body errored as soon as it would start
    this.settle?.(err);
  }

  // ---------------------------------------------------------- undici handler

  onRequestStart(controller: Dispatcher.DispatchController): void {
    this.controller = controller;
    if (this.abandoned !== undefined) {
      controller.abort(this.abandoned);
      return;
    }
    if (this.upstreamPaused) controller.pause();
    this.settle?.();
  }

  onResponseStart(_c: Dispatcher.DispatchController, status: number, headers: Record<string, unknown>): void {
    if (status < 200 || this.closed) return; // 1xx: informational, the final head follows
    this.onStatus?.(status);
    if (this.exchange === undefined) return; // not an HTTP session: only the body goes back
    this.pendingHead = { status, headers: endToEnd(headers, HOP_BY_HOP_RESPONSE) };
    if (this.sink !== undefined) this.forwardHead();
  }

  onResponseData(_c: Dispatcher.DispatchController, chunk: Buffer): void {
    if (this.closed) return;
    this.deliver(chunk);
  }

  onResponseEnd(): void {
    this.responseDone = true;
    if (this.closed) return;
    this.deliverEnd();
  }

  onResponseError(_c: Dispatcher.DispatchController | undefined, err: Error): void {
    if (this.abandoned !== undefined) return;
    if (this.settle !== undefined) {
      // No connection (or a request undici refused to send): connect() fails.
      const code = (err as { code?: string }).code;
      const bad = code === 'UND_ERR_INVALID_ARG' || code === 'UND_ERR_NOT_SUPPORTED';
      this.body?.destroy();
      this.settle(new GatewayError(bad ? 'INVALID_INPUT' : 'CONNECT_FAILED', `HTTP ${this.peer}: ${err.message}`, undefined, { cause: err }));
      return;
    }
    if (this.closed) return; // our own abort
    // The upstream failed after connect. Before its head reached the client
    // the client gets a 502 now: the gateway closes an HTTP source gracefully,
    // which would otherwise read as an empty 200, and the exchange cannot be
    // replayed elsewhere because its body was streamed already.
    const ex = this.exchange;
    if (ex !== undefined && !this.headForwarded && !ex.headSent) {
      // The peer and the errno reach the log with the session's end reason (below), not the client.
      this.session.priv.error?.(502, errorBody(502, 'the upstream failed before its response began (details in the gateway log)'));
    }
    this.close(new GatewayError('CONNECT_FAILED', `HTTP ${this.peer}: ${err.message}`, undefined, { cause: err }));
  }

  private forwardHead(): void {
    const head = this.pendingHead;
    if (head === undefined) return;
    this.pendingHead = undefined;
    const ex = this.exchange;
    if (ex === undefined || ex.headSent) return;
    this.headForwarded = true;
    ex.writeHead(head.status, head.headers);
  }
}

export class HttpCluster implements ClusterImpl {
  private readonly agent: Agent;

  constructor(private readonly port: number, private readonly prefix: string, private readonly ctx: ClusterContext) {
    this.agent = new Agent({
      connectTimeout: POOL_CONNECT_TIMEOUT_MS,
      // A streaming proxy sees legitimate idle gaps (long polls, SSE, a paused
      // slow client); sessions are bounded by the client side instead.
      bodyTimeout: 0,
    });
  }

  connect(req: ConnectRequest): Promise<HttpUpstreamChannel> {
    const ep = req.endpoint;
    if (!ep) return Promise.reject(new GatewayError('CONNECT_FAILED', `HTTP cluster "${this.ctx.clusterName}" has no endpoint`));
    const upstream = hostPort(ep.address, this.port);
    const r = upstreamRequest(req.session, this.prefix, upstream);
    const ch = new HttpUpstreamChannel(upstream, req.session, r.hasBody);
    const outcomes = this.ctx.outcomes;
    if (outcomes !== undefined) {
      ch.onStatus = (status) => {
        if (status >= 500) outcomes.failure(ep.name, `HTTP ${status}`);
        else outcomes.success(ep.name);
      };
    }
    return new Promise<HttpUpstreamChannel>((resolve, reject) => {
      const timer = setTimeout(() => {
        ch.abandon(new GatewayError('CONNECT_FAILED', `HTTP ${upstream}: connect timed out after ${req.timeoutMs} ms`));
      }, req.timeoutMs);
      ch.settle = (err) => {
        clearTimeout(timer);
        ch.settle = undefined;
        if (err) reject(err);
        else resolve(ch);
      };
      this.agent.dispatch({
        origin: `http://${upstream}`,
        path: r.path,
        method: r.method as Dispatcher.HttpMethod,
        headers: r.headers,
        body: ch.body ?? null,
      }, ch);
    });
  }

  close(): void {
    this.agent.destroy().catch(() => undefined);
  }
}
