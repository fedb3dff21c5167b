// JSONSocket v1 (l7mp's doc/jsonsocket-spec.org): a JSON header handshake in
// front of a datagram transport, so that plain datagram flows carry
// per-stream metadata the way an HTTP upgrade does for WebSocket.
//
// Both sides compose a transport protocol from the registry instead of
// re-implementing one:
//
// - The listener builds the transport's listener (today UDP) with a private
//   ListenerContext. Each raw transport session gets the server handshake on
//   its own channel: the first datagram must be a JSON object with a numeric
//   JSONSocketVersion (400 otherwise, 505 for a version we do not speak). A
//   valid header becomes the session's `JSONSocket` metadata and the session
//   goes to the router on the same channel. The 200 answer is sent only when
//   routing succeeded (SessionPriv.connected); a failed route answers with the
//   error status (SessionPriv.error). Bad input ends that flow only.
// - The cluster builds the transport's cluster, connects it, sends the request
//   header made from the `header` recipe and hands the channel to the session
//   once a 2xx response arrived.
//
// Only datagram transports that are real sockets qualify: the handshake is one
// message each way, which a byte stream cannot delimit, and a virtual cluster
// (Echo...) is no peer. Today that is UDP; further ones (UNIX/dgram,
// WebSocket...) qualify by being registered.
//
// This module and registry.ts import each other (the registry lists this
// protocol; this protocol looks its transports up in the registry). That is
// safe because the registry is only read at run time, in create(); import this
// module through registry.ts, not on its own.

import type { Channel, ChannelSink, CloseListener } from '../../dataplane/channel.js';
import { exceedsDepth } from '../../core/depth.js';
import { GatewayError, invalid } from '../../core/errors.js';
import { compilePath, compileSetter, splitPath, type PathGetter, type PathSetter } from '../../routing/jsonpath.js';
import { checkResponseHeader, JSONSOCKET_VERSION } from '../../tools/jsonsocket-client.js';
import type { Logger } from '../../observe/log.js';
import { protocolFor } from '../registry.js';
import type {
  ClusterContext, ClusterImpl, ConnectRequest, ListenerContext, ListenerImpl, NewSession, ProtocolDef, SessionPriv, Spec,
} from '../types.js';
import * as v from '../common/validate.js';

export const DEFAULT_HANDSHAKE_TIMEOUT_MS = 5000;

function isObject(x: unknown): x is Record<string, unknown> {
  return typeof x === 'object' && x !== null && !Array.isArray(x);
}

/** `{"JSONSocketVersion":1,"JSONSocketStatus":status,"JSONSocketMessage":message}` as one datagram. */
export function responseHeader(status: number, message: string): Uint8Array {
  return Buffer.from(JSON.stringify({ JSONSocketVersion: JSONSOCKET_VERSION, JSONSocketStatus: status, JSONSocketMessage: message }));
}

export type RequestCheck =
  | { readonly ok: true; readonly header: Record<string, unknown> }
  | { readonly ok: false; readonly status: 400 | 413 | 505; readonly message: string; readonly refused?: 'header_size' | 'header_depth' };

/**
 * The server's check of a request header (l7mp-facts §4.1): not a JSON object
 * or no numeric JSONSocketVersion → 400; a non-integer version → 400; a
 * version below 0 or above 1 → 505. l7mp's message for a missing version was
 * the literal "Bad Request: err"; ours says what is wrong.
 */
export function checkRequestHeader(chunk: Uint8Array, maxBytes = Infinity, maxDepth = Infinity): RequestCheck {
  const bad = (reason: string): RequestCheck => ({ ok: false, status: 400, message: `Bad Request: ${reason}` });
  // Bounded before parsing: the header becomes session metadata, which every
  // session dump and JSONEncap walk; a huge or deep one would
  // make them slow or overflow the stack (GET /api/v1/sessions answering 500).
  if (chunk.byteLength > maxBytes) {
    return { ok: false, status: 413, message: `Payload Too Large: the request header is ${chunk.byteLength} bytes, the limit is ${maxBytes} (admin.limits.jsonsocket_header_bytes)`, refused: 'header_size' };
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength).toString('utf8'));
  } catch (err) {
    return bad(`the request header is not valid JSON (${(err as Error).message})`);
  }
  if (!isObject(parsed)) return bad('the request header is not a JSON object');
  if (exceedsDepth(parsed, maxDepth)) {
    return { ok: false, status: 400, message: `Bad Request: the request header is nested deeper than ${maxDepth} levels (admin.limits.jsonsocket_header_depth)`, refused: 'header_depth' };
  }
  const version = parsed.JSONSocketVersion;
  if (typeof version !== 'number' || !Number.isFinite(version)) return bad('the request header lacks a numeric JSONSocketVersion');
  if (!Number.isInteger(version)) return bad(`JSONSocketVersion ${version} is not an integer`);
  if (version < 0 || version > JSONSOCKET_VERSION) {
    return { ok: false, status: 505, message: `Version Not Supported: JSONSocketVersion ${version} (this server speaks version ${JSONSOCKET_VERSION})` };
  }
  return { ok: true, header: parsed };
}

/** "<message>: <content>" from the gateway's error body {status, message, content}. */
function errorMessage(body: unknown): string {
  if (isObject(body)) {
    const { message, content } = body;
    if (typeof message === 'string' && content !== undefined) return `${message}: ${typeof content === 'string' ? content : JSON.stringify(content)}`;
    if (typeof message === 'string') return message;
  }
  return typeof body === 'string' ? body : JSON.stringify(body) ?? 'error';
}

// ------------------------------------------------------------ transports

type Role = 'listener' | 'cluster';

/** Whether a protocol can carry JSONSocket in a role; the reason when not. */
function transportProblem(p: ProtocolDef, role: Role): string | undefined {
  if (p.name === jsonSocketProtocol.name) return 'JSONSocket cannot be its own transport';
  if (p.kind !== 'datagram') {
    return `protocol "${p.name}" is a byte stream; JSONSocket needs a datagram transport that keeps the header a message of its own (e.g. UDP)`;
  }
  // A static-only transport (AF_PACKET) is refused over REST by the gateway (checkStaticOnly follows nestedSpecs).
  if (role === 'cluster' && (p.cluster!.virtual || p.transform)) {
    return `protocol "${p.name}" is an in-process cluster, not a transport; use one that reaches a peer (e.g. UDP)`;
  }
  return undefined;
}

interface Transport {
  protocol: ProtocolDef;
  spec: Spec;
  field: string;
}

/** Read `transport` (alias `transport_spec`) and resolve its protocol for a role. */
function readTransport(spec: Spec, field: string, role: Role): Transport {
  const key = spec.transport !== undefined || spec.transport_spec === undefined ? 'transport' : 'transport_spec';
  const raw = spec[key];
  const tf = `${field}.${key}`;
  if (!isObject(raw)) {
    throw invalid(tf, `is required: the ${role} spec of the datagram transport JSONSocket runs over, e.g. {protocol: UDP, port: 9000}`);
  }
  const protocol = protocolFor(raw.protocol, role, `${tf}.protocol`);
  const problem = transportProblem(protocol, role);
  if (problem) throw invalid(`${tf}.protocol`, problem);
  return { protocol, spec: structuredClone(raw) as Spec, field: tf };
}

// ---------------------------------------------------------------- listener

class JsonSocketListener implements ListenerImpl {
  private readonly inner: ListenerImpl;
  private readonly handshakes = new Set<ServerHandshake>();
  private seq = 0;
  private stopped = false;

  constructor(transport: Transport, readonly handshakeTimeoutMs: number, readonly ctx: ListenerContext) {
    // The transport listener is internal: its sessions come here, not to the router.
    this.inner = transport.protocol.listener!.create(transport.spec, {
      listenerName: ctx.listenerName,
      log: ctx.log,
      refusals: ctx.refusals,
      limits: ctx.limits,
      emit: (raw) => this.accept(raw),
      // A transport that admits early (UDP on node:dgram) admits for this listener; the handshake's session then is not asked again.
      admit: (c) => ctx.admit(c),
    }, transport.field);
  }

  start(): Promise<void> {
    this.stopped = false;
    return this.inner.start();
  }

  ready(): void {
    this.inner.ready?.();
  }

  bound(): boolean {
    return this.inner.bound?.() ?? !this.stopped;
  }

  /** Early drop in the transport's flow table (UDP), which admits for this listener. */
  evictIdle(): boolean {
    return this.inner.evictIdle?.() ?? false;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    for (const h of [...this.handshakes]) h.abort('listener stopped');
    await this.inner.stop();
  }

  private accept(raw: NewSession): void {
    if (this.stopped) {
      raw.channel.close();
      return;
    }
    new ServerHandshake(this, raw).start();
  }

  track(h: ServerHandshake, on: boolean): void {
    if (on) this.handshakes.add(h);
    else this.handshakes.delete(h);
  }

  /** A valid header: the session goes to the router on the transport's channel. */
  established(raw: NewSession, header: Record<string, unknown>): void {
    const ch = raw.channel;
    let answered = false;
    const answer = (status: number, message: string): void => {
      if (answered || ch.closed) return;
      answered = true;
      ch.send(responseHeader(status, message));
    };
    const priv: SessionPriv = {
      error: (status, body) => answer(status, errorMessage(body)),
      connected: () => answer(200, 'OK'),
    };
    this.ctx.emit({
      name: `JSONSocket:${this.ctx.listenerName}-${this.seq++}`,
      metadata: { ...raw.metadata, JSONSocket: header },
      channel: ch,
      priv,
      ...(raw.admitted === true ? { admitted: true } : {}),
    });
  }
}

/** The server side of one handshake: wait for the first datagram and judge it. */
class ServerHandshake implements ChannelSink, CloseListener {
  private timer: NodeJS.Timeout | undefined;
  private done = false;

  constructor(private readonly listener: JsonSocketListener, private readonly raw: NewSession) {}

  private get log(): Logger {
    return this.listener.ctx.log;
  }

  private logFields(extra: Record<string, unknown> = {}): Record<string, unknown> {
    return { listener: this.listener.ctx.listenerName, peer: this.raw.channel.peer, ...extra };
  }

  start(): void {
    this.listener.track(this, true);
    const ms = this.listener.handshakeTimeoutMs;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.log.warn(this.logFields({ timeout_ms: ms }), 'JSONSocket handshake timed out: no request header, flow closed');
      this.finish();
      this.raw.channel.close();
    }, ms);
    this.timer.unref();
    this.raw.channel.setCloseListener(this);
    // The transport may have queued the first datagram already: this can call data() at once.
    this.raw.channel.setSink(this);
  }

  data(chunk: Uint8Array): void {
    if (this.done) return;
    const ch = this.raw.channel;
    this.finish();
    const limits = this.listener.ctx.limits.settings;
    const check = checkRequestHeader(chunk, limits.jsonsocket_header_bytes, limits.jsonsocket_header_depth);
    if (!check.ok) {
      // A limit refusal is logged once per interval by Refusals, not once per flow.
      if (check.refused) this.listener.ctx.refusals.refuse(check.refused, this.listener.ctx.listenerName, { peer: ch.peer, status: check.status });
      else this.log.warn(this.logFields({ status: check.status, reason: check.message }), 'JSONSocket request header rejected, flow closed');
      ch.send(responseHeader(check.status, check.message));
      ch.close();
      return;
    }
    this.listener.established(this.raw, check.header);
  }

  end(): void {
    if (this.done) return;
    this.log.warn(this.logFields(), 'JSONSocket peer closed before sending a request header');
    this.finish();
    this.raw.channel.close();
  }

  closed(): void {
    if (this.done) return;
    this.log.info(this.logFields(), 'JSONSocket flow closed during the handshake');
    this.finish();
  }

  abort(reason: string): void {
    if (this.done) return;
    this.log.info(this.logFields({ reason }), 'JSONSocket handshake aborted');
    this.finish();
    this.raw.channel.close();
  }

  /** Hand the channel back: no sink (later datagrams wait in its queue for the session), no close listener. */
  private finish(): void {
    this.done = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    this.raw.channel.setSink(undefined);
    this.raw.channel.setCloseListener(undefined);
    this.listener.track(this, false);
  }
}

// ----------------------------------------------------------------- cluster

/** One step of the request header recipe. */
type HeaderStep = (metadata: Record<string, unknown>, header: Record<string, unknown>, log: Logger, cluster: string) => void;

const ROOT = (path: string): boolean => splitPath(path).length === 0;

/** Compile the `header` recipe: `{path: {from, to}}`, `{path: "<from>"}`, `{set: {key, value}}`. */
export function compileHeaderRecipe(raw: unknown, field: string): HeaderStep[] {
  if (raw === undefined || raw === null) return [];
  if (!Array.isArray(raw)) throw invalid(field, 'must be an array of {path: {from, to}}, {path: "<from>"} or {set: {key, value}} entries');
  return raw.map((e, i): HeaderStep => {
    const f = `${field}[${i}]`;
    if (!isObject(e) || (e.path === undefined) === (e.set === undefined)) {
      throw invalid(f, 'must be one of {path: {from, to}}, {path: "<from>"} or {set: {key, value}}');
    }
    if (e.path !== undefined) {
      let from: unknown;
      let to: unknown = '/';
      if (typeof e.path === 'string') {
        from = e.path;
      } else if (isObject(e.path)) {
        from = e.path.from;
        if (e.path.to !== undefined) to = e.path.to;
      } else {
        throw invalid(`${f}.path`, 'must be a metadata path or {from, to}');
      }
      if (typeof from !== 'string') throw invalid(`${f}.path.from`, 'is required: the metadata path to copy from');
      if (typeof to !== 'string') throw invalid(`${f}.path.to`, 'must be a header path');
      const get: PathGetter = compilePath(from);
      const set: PathSetter = compileSetter(to, `${f}.path.to`);
      const toRoot = ROOT(to);
      const src = from;
      return (metadata, header, log, cluster) => {
        const value = get(metadata);
        if (value === undefined) {
          log.info({ cluster, path: src }, 'JSONSocket header: metadata path not found, entry skipped');
          return;
        }
        if (toRoot && !isObject(value)) {
          log.info({ cluster, path: src }, 'JSONSocket header: a value copied to the header root must be an object, entry skipped');
          return;
        }
        set(header, value);
      };
    }
    const s = e.set;
    if (!isObject(s) || typeof s.key !== 'string' || !Object.hasOwn(s, 'value')) {
      throw invalid(`${f}.set`, 'must be {key: "<header path>", value: <any JSON value>}');
    }
    if (ROOT(s.key) && !isObject(s.value)) throw invalid(`${f}.set.value`, "must be an object when key is the header root '/'");
    const set = compileSetter(s.key, `${f}.set.key`);
    const value = s.value;
    return (_metadata, header) => set(header, value);
  });
}

class JsonSocketCluster implements ClusterImpl {
  constructor(
    private readonly inner: ClusterImpl,
    private readonly recipe: HeaderStep[],
    private readonly ctx: ClusterContext,
  ) {}

  async connect(req: ConnectRequest): Promise<Channel> {
    const ch = await this.inner.connect(req);
    let header: Record<string, unknown>;
    try {
      header = {};
      for (const step of this.recipe) step(req.session.metadata, header, this.ctx.log, this.ctx.clusterName);
      header.JSONSocketVersion = JSONSOCKET_VERSION;
    } catch (err) {
      ch.close();
      throw new GatewayError('CONNECT_FAILED', `JSONSocket cluster "${this.ctx.clusterName}": cannot build the request header: ${(err as Error).message}`, undefined, { cause: err });
    }
    return clientHandshake(ch, header, req.timeoutMs);
  }

  close(): void {
    this.inner.close?.();
  }
}

/** Send the request header on `ch` and resolve with `ch` once a 2xx response header arrived. */
function clientHandshake(ch: Channel, header: Record<string, unknown>, timeoutMs: number): Promise<Channel> {
  return new Promise((resolve, reject) => {
    let settled = false;
    const settle = (reason: string | undefined): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      ch.setSink(undefined);
      ch.setCloseListener(undefined);
      if (reason === undefined) {
        resolve(ch);
        return;
      }
      ch.close();
      reject(new GatewayError('CONNECT_FAILED', `JSONSocket handshake with ${ch.peer} failed: ${reason}`));
    };
    const timer = setTimeout(() => settle(`no response header within ${timeoutMs} ms`), timeoutMs);
    const sink: ChannelSink = {
      data(chunk) {
        const check = checkResponseHeader(chunk);
        settle(check.ok ? undefined : check.reason);
      },
      end() {
        settle('the peer closed before answering');
      },
    };
    ch.setCloseListener({ closed: (_c, err) => settle(`the transport closed before a response header arrived${err ? ` (${err.message})` : ''}`) });
    ch.setSink(sink);
    ch.send(Buffer.from(JSON.stringify(header)));
  });
}

export const jsonSocketProtocol: ProtocolDef = {
  name: 'JSONSocket',
  nestedSpecs: ['transport', 'transport_spec'],
  kind: 'datagram',
  summary: 'JSON header handshake over a datagram transport (UDP); the header becomes session metadata under /JSONSocket',
  listener: {
    // The transport's mode: a UDP transport with both connect fields serves one known peer.
    modes: ['singleton', 'server'],
    create(spec, ctx, field) {
      const transport = readTransport(spec, field, 'listener');
      const timeout = v.optNumber(spec, 'handshake_timeout', field, 1, 3_600_000) ?? DEFAULT_HANDSHAKE_TIMEOUT_MS;
      return new JsonSocketListener(transport, timeout, ctx);
    },
  },
  cluster: {
    virtual: false,
    retriable: true,
    create(spec, ctx, field) {
      const transport = readTransport(spec, field, 'cluster');
      const recipe = compileHeaderRecipe(spec.header, `${field}.header`);
      const inner = transport.protocol.cluster!.create(transport.spec, {
        clusterName: `${ctx.clusterName}-transport-cluster`,
        log: ctx.log,
        refusals: ctx.refusals,
        limits: ctx.limits,
        services: ctx.services,
      }, transport.field);
      return new JsonSocketCluster(inner, recipe, ctx);
    },
    // An endpoint is an address of the cluster's transport: its check decides.
    checkEndpoint(spec, field, clusterSpec) {
      const transport = readTransport(clusterSpec, 'cluster.spec', 'cluster');
      transport.protocol.cluster!.checkEndpoint?.(spec, field, transport.spec);
    },
  },
};
