// L7mpController: the virtual cluster that serves the REST API. It collects
// the request body (up to the limit), hands the exchange to the API, and
// closes, which ends the session.

import { BaseChannel, type ChannelKind } from '../../dataplane/channel.js';
import { YAML_TYPES, mediaType } from '../../api/media.js';
import { GatewayError } from '../../core/errors.js';
import type { ClusterContext, HttpExchange, ProtocolDef } from '../types.js';

export const DEFAULT_MAX_BODY = 1024 * 1024;

class ControllerChannel extends BaseChannel {
  readonly kind: ChannelKind = 'byte';
  private readonly parts: Uint8Array[] = [];
  private size = 0;
  private tooLarge = false;
  private done = false;
  /** Bytes of this body reserved from the gateway-wide message budget. */
  private reserved = 0;

  constructor(private readonly ex: HttpExchange, private readonly ctx: ClusterContext, private readonly maxBody: number, private readonly session: string) {
    super();
    this.peer = 'controller';
  }

  send(chunk: Uint8Array): boolean {
    if (this.done || this.tooLarge) return true;
    this.size += chunk.byteLength;
    if (this.size > this.maxBody) {
      this.tooLarge = true;
      this.parts.length = 0;
      this.reject413();
      return true;
    }
    // Bodies held by all REST calls together count against the gateway-wide
    // message budget: many parallel uploads just under the limit must not add up unbounded.
    if (!this.ctx.limits.messages.reserve(chunk.byteLength)) {
      this.ctx.refusals.refuse('message_buffer', this.ctx.clusterName, { remote: this.ex.remoteAddress, held: this.ctx.limits.messages.used });
      this.reject(new GatewayError('UNAVAILABLE', 'the gateway holds too many request bodies right now (admin.limits.message_buffer_bytes); retry later'), { 'retry-after': '1' }, true);
      return true;
    }
    this.reserved += chunk.byteLength;
    this.parts.push(chunk);
    return true;
  }

  /** Answer 413 at once and end the session; the rest of the upload is not read. */
  reject413(): void {
    this.ctx.refusals.refuse('body_size', this.ctx.clusterName, { remote: this.ex.remoteAddress, limit: this.maxBody });
    const yaml = this.maxBody < this.ctx.services.maxBodyBytes() ? ' for a YAML body (admin.limits.yaml_body_bytes; send larger ones as JSON)' : '';
    this.reject(new GatewayError('BODY_TOO_LARGE', `request body exceeds the limit of ${this.maxBody} bytes${yaml}`), {}, true);
  }

  /** Give the body's bytes back to the message budget (once). */
  private releaseBody(): void {
    this.ctx.limits.messages.release(this.reserved);
    this.reserved = 0;
  }

  /**
   * Answer an error at once and end the session without reading the body.
   * A request that still has body bytes in flight gets its connection closed,
   * so that the unread rest is never parsed as the next request.
   */
  reject(err: GatewayError, headers: Record<string, string>, closeConnection: boolean): void {
    this.done = true;
    this.parts.length = 0;
    this.releaseBody();
    const h: Record<string, string> = { ...headers, 'content-type': 'application/json' };
    if (closeConnection) h.connection = 'close';
    this.ex.respond(err.status, h, JSON.stringify(err.toBody(), null, 4));
    this.close();
  }

  end(): void {
    if (this.done) return;
    this.done = true;
    const body = Buffer.concat(this.parts);
    this.parts.length = 0;
    // Released when the call is done: the parse and the handler hold the body until then.
    this.ctx.services.handleApi(this.ex, body, this.session).finally(() => this.releaseBody()).then(
      () => this.close(),
      (err: unknown) => {
        this.ctx.log.error({ err }, 'controller: unhandled error');
        this.close();
      },
    );
  }

  protected doPause(): void {}
  protected doResume(): void {}
  protected doClose(err: Error | undefined): void {
    if (!this.done) {
      // The client went away mid-upload: nothing will read the body.
      this.done = true;
      this.parts.length = 0;
      this.releaseBody();
    }
    queueMicrotask(() => this.finish(err));
  }
}

export const controllerProtocol: ProtocolDef = {
  name: 'L7mpController',
  kind: 'byte',
  summary: 'Serves the REST API to the HTTP listener that routes to it',
  cluster: {
    virtual: true,
    retriable: false,
    create(_spec, ctx) {
      return {
        async connect(req) {
          const ex = req.session.priv.http;
          if (!ex) throw new GatewayError('INVALID_INPUT', 'L7mpController serves HTTP sessions only: route an HTTP listener to it');
          const cl = Number(ex.headers['content-length'] ?? 0);
          // YAML parses far slower than JSON (measurements in core/limits.ts): its own, smaller limit, checked before any byte is read.
          const yaml = YAML_TYPES.has(mediaType(ex.headers['content-type']));
          const max = yaml ? Math.min(ctx.services.maxBodyBytes(), ctx.limits.settings.yaml_body_bytes) : ctx.services.maxBodyBytes();
          const ch = new ControllerChannel(ex, ctx, max, req.session.name);
          // Rate limit and token first, from the head alone: a refused call is never parsed.
          const refused = ctx.services.admitApi?.(ex);
          if (refused) {
            const hasBody = cl > 0 || ex.headers['transfer-encoding'] !== undefined;
            // A flood of 429s must not become a flood of log lines: those log at verbose only.
            const line = { remote: ex.remoteAddress, method: ex.method, url: ex.url, code: refused.error.code };
            if (refused.refusal !== undefined) ctx.refusals.refuse(refused.refusal, '', line);
            else if (refused.error.code === 'RATE_LIMITED') ctx.log.verbose(line, 'REST call refused');
            else ctx.log.info(line, 'REST call refused');
            ch.reject(refused.error, refused.headers, hasBody);
          } else if (cl > max) {
            ch.reject413();
          }
          return ch;
        },
      };
    },
  },
};
