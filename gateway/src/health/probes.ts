// Active health probes, one per endpoint per interval, each on a socket of
// its own (never one that carries user traffic):
//
// - HTTP clusters (or `health_check.protocol: HTTP`): a GET of `path` on a
//   fresh connection (no pooling); the status must be in `expect`.
// - Every other non-virtual cluster: the cluster's own connect() with a
//   probe session, so each protocol checks the way it connects (TCP and
//   UNIX stream: a connect; SCTP: an association; WebSocket: the upgrade;
//   JSONSocket: its request/response handshake, which the peer must answer;
//   UNIX/dgram: a connect, which fails when no socket is bound at the path).
//   With `send`, the bytes go out and the answer must contain `receive`
//   (any answer when no `receive` is given) before the timeout.
// - Connectionless clusters (ClusterSide.connectionless: UDP) without `send`:
//   no active check, since their "connect" proves nothing about the peer.

import http from 'node:http';
import type { Channel, ChannelSink } from '../dataplane/channel.js';
import type { ClusterImpl, ProtocolDef, Spec } from '../protocols/types.js';
import type { HealthCheckSettings } from './settings.js';

export interface ProbeTarget {
  readonly name: string;
  readonly address: string;
}

/** Resolves with a short success reason, rejects with the failure reason. */
export type Probe = (ep: ProbeTarget, timeoutMs: number) => Promise<string>;

export class ProbeTimeout extends Error {}

/** Largest answer we read while looking for `receive`. */
const MAX_ANSWER = 64 * 1024;

export interface ProbeCluster {
  readonly name: string;
  readonly protocol: ProtocolDef;
  readonly spec: Spec;
  readonly impl: ClusterImpl;
}

/** The probe for a cluster, or a reason there is none. */
export function probeFor(c: ProbeCluster, hc: HealthCheckSettings): Probe | string {
  const kind = hc.protocol ?? (c.protocol.name === 'HTTP' ? 'HTTP' : 'connect');
  if (kind === 'HTTP') {
    const port = c.spec.port;
    if (typeof port !== 'number') return `an HTTP probe needs the cluster's port`;
    return (ep, timeoutMs) => httpProbe(ep.address, port, hc, timeoutMs);
  }
  if (c.protocol.cluster?.connectionless && hc.send === undefined) {
    return `${c.protocol.name} has no connection to check: give health_check.send (and receive) for an active check`;
  }
  return (ep, timeoutMs) => connectProbe(c, ep, hc, timeoutMs);
}

function httpProbe(address: string, port: number, hc: HealthCheckSettings, timeoutMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = http.request({
      host: address, port, path: hc.path, method: 'GET', agent: false,
      headers: { 'user-agent': 'l7mp-health-check', connection: 'close' },
    });
    const timer = setTimeout(() => req.destroy(new ProbeTimeout(`HTTP probe timed out after ${timeoutMs} ms`)), timeoutMs);
    req.on('response', (res) => {
      clearTimeout(timer);
      const status = res.statusCode ?? 0;
      res.resume();
      req.destroy();
      if (hc.expect.some(([lo, hi]) => status >= lo && status <= hi)) resolve(`HTTP ${status}`);
      else reject(new Error(`HTTP ${status} not in the expected statuses`));
    });
    req.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    req.end();
  });
}

function connectProbe(c: ProbeCluster, ep: ProbeTarget, hc: HealthCheckSettings, timeoutMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    let ch: Channel | undefined;
    let done = false;
    const finish = (err: Error | undefined, ok?: string): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      ch?.setSink(undefined);
      ch?.setCloseListener(undefined);
      ch?.close();
      if (err) reject(err);
      else resolve(ok!);
    };
    const timer = setTimeout(() => finish(new ProbeTimeout(`probe timed out after ${timeoutMs} ms`)), timeoutMs);
    const session = { name: `health-check:${c.name}:${ep.name}`, metadata: {}, priv: {} };
    c.impl.connect({ endpoint: ep, session, timeoutMs, role: 'destination' }).then((channel) => {
      ch = channel;
      if (done) {
        channel.close();
        return;
      }
      if (hc.send === undefined) {
        finish(undefined, 'connected');
        return;
      }
      const want = hc.receive === undefined ? undefined : Buffer.from(hc.receive);
      let answer = Buffer.alloc(0);
      const sink: ChannelSink = {
        data(chunk) {
          if (want === undefined) {
            finish(undefined, 'answered');
            return;
          }
          answer = Buffer.concat([answer, chunk]).subarray(-MAX_ANSWER);
          if (answer.includes(want)) finish(undefined, 'expected answer received');
        },
        end() {
          finish(new Error('peer closed before the expected answer'));
        },
      };
      channel.setSink(sink);
      channel.setCloseListener({ closed: (_c, err) => finish(err ?? new Error('peer closed before the expected answer')) });
      channel.send(hc.send);
    }, (err: unknown) => finish(err instanceof Error ? err : new Error(String(err))));
  });
}
