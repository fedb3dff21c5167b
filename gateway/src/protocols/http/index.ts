// HTTP: the protocol's declaration and spec parsing. The listener serves one
// session per request, on uWebSockets.js (listener.ts) or, with engine: node,
// on node:http (node-engine.ts); the cluster (cluster.ts) is an HTTP/1.1
// reverse proxy stage. The request body flows into the route; whatever the
// destination sends back becomes the response body (as in l7mp), and an
// HTTP-aware destination (the HTTP cluster, the REST controller) sets the
// status and headers through the exchange. The REST API is served the l7mp way: HTTP listener -> rule ->
// L7mpController cluster. With `spec.tls: {cert_file, key_file, passphrase?}`
// the listener serves HTTPS instead (uWS SSLApp; see common/tls.ts).
//
// uWebSockets.js does not expose the client's port, so HTTP session names and
// metadata carry the client address only (TCP/src_port is absent).

import { GatewayError, invalid } from '../../core/errors.js';
import type { ClusterSide, ProtocolDef, Spec } from '../types.js';
import { TLS_FILE_KEYS, parseTls } from '../common/tls.js';
import * as v from '../common/validate.js';
import { HttpCluster } from './cluster.js';
import { HttpListener } from './listener.js';
import { NodeHttpListener } from './node-engine.js';

function pathPrefix(spec: Spec, field: string): string {
  const p = v.optString(spec, 'path_prefix', field);
  if (p === undefined || p === '' || p === '/') return '';
  if (!p.startsWith('/') || /[\s?#\0-\x1f\x7f]/.test(p)) {
    throw invalid(`${field}.path_prefix`, 'must be a path starting with "/" without spaces, "?" or "#"');
  }
  return p;
}

const httpClusterSide: ClusterSide = {
  virtual: false,
  retriable: true,
  reportsOutcome: true,
  create(spec, ctx, field) {
    const port = v.port(spec, 'port', field, true)!;
    const prefix = pathPrefix(spec, field);
    // spec.tls other than false is refused for every cluster (common/tls.ts refuseUnservedTls).
    return new HttpCluster(port, prefix, ctx);
  },
  checkEndpoint(spec, field) {
    v.host(spec, 'address', field, true);
  },
};

export const httpProtocol: ProtocolDef = {
  name: 'HTTP',
  kind: 'byte',
  summary: 'HTTP/1.1 server on uWebSockets.js; one session per request, the request body is the ingress stream',
  files: { listener: TLS_FILE_KEYS },
  listener: {
    modes: ['server'],
    workers: 'every',
    portKind: 'tcp',
    tls: true,
    create(spec: Spec, ctx, field) {
      const port = v.port(spec, 'port', field, true)!;
      const address = v.host(spec, 'address', field, false) ?? '0.0.0.0';
      // engine: node answers pipelined and half-closed requests (node-engine.ts says why).
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
  cluster: httpClusterSide,
};
