// l7mp's two metrics clusters.
//
// Prometheus: a virtual cluster that answers any request routed to it with
// the metrics text exposition and ends the session. l7mp's ingress chart puts
// it behind an HTTP listener with the rule
// `match: {op: starts, path: /HTTP/url/path, value: /metrics}`.
//
// Metric: a passthrough transform that counts the bytes and packets of each
// session through it. It counts in two plain number fields; the metrics module
// reads them when it is scraped (session_byte_counter_total and
// session_packet_counter_total{sessionName, clusterName}), so no metrics
// library call happens per packet, and a session's series go away when the
// session ends (l7mp kept them forever).

import { BaseChannel, type ChannelKind } from '../../dataplane/channel.js';
import { GatewayError, invalid, reasonPhrase } from '../../core/errors.js';
import { TransformChannel } from '../common/transform.js';
import type { ClusterContext, HttpExchange, ProtocolDef, Spec } from '../types.js';
import * as v from '../common/validate.js';

class PrometheusChannel extends BaseChannel {
  readonly kind: ChannelKind = 'byte';
  private answered = false;

  constructor(private readonly ex: HttpExchange | undefined, private readonly ctx: ClusterContext, private readonly session: string) {
    super();
    this.peer = 'prometheus';
  }

  /** Any request (its first chunk, or its end when it has no body) is answered. */
  send(): boolean {
    this.answer();
    return true;
  }

  end(): void {
    this.answer();
  }

  private answer(): void {
    if (this.answered) return;
    this.answered = true;
    const services = this.ctx.services;
    const render = services.exposition
      ? services.exposition()
      : Promise.reject(new GatewayError('NOT_SUPPORTED', 'metrics are not enabled in this gateway'));
    render.then(({ contentType, body }) => {
      if (this.closed) return;
      if (this.ex) {
        this.ex.respond(200, { 'content-type': contentType }, body);
      } else {
        this.deliver(Buffer.from(body));
        this.deliverEnd();
      }
      this.close();
    }, (err: unknown) => {
      if (this.closed) return;
      const e = err instanceof GatewayError ? err : new GatewayError('INTERNAL', `metrics exposition failed: ${(err as Error).message}`);
      this.ctx.log.warn({ cluster: this.ctx.clusterName, session: this.session, err: e.message }, 'Prometheus: cannot render metrics');
      if (this.ex) {
        const status = e.code === 'NOT_SUPPORTED' ? 503 : e.status;
        this.ex.respond(status, { 'content-type': 'application/json' }, JSON.stringify({ status, message: reasonPhrase(status), content: e.message }));
        this.close();
      } else {
        this.close(e);
      }
    });
  }

  protected doPause(): void {}
  protected doResume(): void {}
  protected doClose(err: Error | undefined): void {
    queueMicrotask(() => this.finish(err));
  }
}

/** Counts what passes through; read by the metrics module at scrape time. */
export class MetricChannel extends TransformChannel {
  bytes = 0;
  packets = 0;

  protected transform(chunk: Uint8Array): void {
    this.bytes += chunk.byteLength;
    this.packets++;
    this.deliver(chunk);
  }
}

const COUNTER_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;

export const prometheusProtocol: ProtocolDef = {
  name: 'Prometheus',
  kind: 'byte',
  summary: 'Answers any request with the metrics text exposition and ends the session (route an HTTP listener to it)',
  cluster: {
    virtual: true,
    retriable: false,
    create(_spec, ctx) {
      return {
        async connect(req) {
          return new PrometheusChannel(req.session.priv.http, ctx, req.session.name);
        },
      };
    },
  },
};

export const metricProtocol: ProtocolDef = {
  name: 'Metric',
  kind: 'datagram',
  transform: true,
  summary: 'Passes traffic through unchanged and counts bytes and packets per session (session_byte_counter_total, session_packet_counter_total)',
  cluster: {
    virtual: true,
    retriable: true,
    create(spec: Spec, _ctx, field) {
      // Accepted for compatibility and, as in l7mp, not used: the metric names are fixed.
      for (const key of ['byteCounterName', 'packetCounterName']) {
        const name = v.optString(spec, key, field);
        if (name !== undefined && !COUNTER_NAME.test(name)) throw invalid(`${field}.${key}`, 'must match [a-zA-Z_][a-zA-Z0-9_]*');
      }
      return { connect: async () => new MetricChannel() };
    },
  },
};
