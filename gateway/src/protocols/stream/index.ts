// TCP and Unix-domain stream sockets (UnixDomainSocket): the protocols'
// declarations and spec parsing. One byte-stream channel per connection
// (channel.ts), listeners in listener.ts, clusters in cluster.ts.

import type { ClusterContext, ProtocolDef, Spec } from '../types.js';
import * as v from '../common/validate.js';
import { TcpCluster, UnixCluster } from './cluster.js';
import { TcpListener, UnixListener } from './listener.js';

export const tcpProtocol: ProtocolDef = {
  name: 'TCP',
  kind: 'byte',
  summary: 'TCP byte streams; one session per connection',
  listener: {
    modes: ['server'],
    workers: 'every',
    portKind: 'tcp',
    create(spec: Spec, ctx, field) {
      const port = v.port(spec, 'port', field, true)!;
      const address = v.host(spec, 'address', field, false) ?? '0.0.0.0';
      return new TcpListener(address, port, ctx);
    },
  },
  cluster: {
    virtual: false,
    retriable: true,
    create(spec, ctx, field) {
      const port = v.port(spec, 'port', field, true)!;
      const bind = v.optObject(spec, 'bind', field);
      return new TcpCluster(
        port,
        bind ? v.host(bind, 'address', `${field}.bind`, false) : undefined,
        bind ? v.port(bind, 'port', `${field}.bind`, false) : undefined,
        ctx,
      );
    },
    checkEndpoint(spec, field) {
      v.host(spec, 'address', field, true);
    },
  },
};

export const unixProtocol: ProtocolDef = {
  name: 'UnixDomainSocket',
  aliases: ['UNIX/stream'],
  kind: 'byte',
  summary: 'Unix-domain stream sockets; the endpoint address is the socket path',
  files: { listener: [{ key: 'filename' }], endpoint: [{ key: 'address' }] },
  listener: {
    modes: ['server'],
    create(spec, ctx, field) {
      return new UnixListener(v.path(spec, 'filename', field, true)!, ctx);
    },
  },
  cluster: {
    virtual: false,
    retriable: true,
    create(_spec, _ctx: ClusterContext) {
      return new UnixCluster();
    },
    checkEndpoint(spec, field) {
      v.path(spec, 'address', field, true);
    },
  },
};
