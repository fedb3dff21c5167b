// The JSONSocket listener: the transport's listener, built with a private
// ListenerContext, hands each raw flow to a server handshake here; a valid
// request header makes the flow a session (index.ts describes the protocol).

import type { ChannelSink, CloseListener } from '../../dataplane/channel.js';
import type { Logger } from '../../observe/log.js';
import type { ListenerContext, ListenerImpl, NewSession, ProtocolDef, SessionPriv, Spec } from '../types.js';
import { isObject } from '../common/validate.js';
import { checkRequestHeader, responseHeader } from './header.js';

export interface Transport {
  protocol: ProtocolDef;
  spec: Spec;
  field: string;
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

export class JsonSocketListener implements ListenerImpl {
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
