// Virtual (in-process) clusters: Echo, Discard, Logger, JSONEncap, JSONDecap,
// and Stdio (Sync: protocols/sync). Each session gets a fresh channel;
// endpoints are ignored. This file holds the declarations and spec parsing;
// the channels are in channels.ts and stdio.ts, Logger's files in log-sink.ts.

import type { BaseChannel } from '../../dataplane/channel.js';
import { GatewayError, invalid } from '../../core/errors.js';
import type { ClusterImpl, ConnectRequest, ProtocolDef, Spec } from '../types.js';
import * as v from '../common/validate.js';
import { DecapChannel, DiscardChannel, EchoChannel, EncapChannel, LoggerChannel } from './channels.js';
import { acquireSink, isStream, releaseSink, type LogSink } from './log-sink.js';
import { openStdio } from './stdio.js';

function virtual(make: (req: ConnectRequest) => BaseChannel): ClusterImpl {
  return { connect: async (req) => make(req) };
}

export const echoProtocol: ProtocolDef = {
  name: 'Echo',
  kind: 'datagram',
  transform: true,
  summary: 'Writes back everything it receives',
  cluster: { virtual: true, retriable: true, create: () => virtual(() => new EchoChannel()) },
};

export const discardProtocol: ProtocolDef = {
  name: 'Discard',
  kind: 'datagram',
  transform: true,
  summary: 'Drops everything it receives',
  cluster: { virtual: true, retriable: true, create: () => virtual(() => new DiscardChannel()) },
};

export const loggerProtocol: ProtocolDef = {
  name: 'Logger',
  kind: 'datagram',
  transform: true,
  summary: 'Passes traffic through unchanged and logs every chunk with session name, direction and log_prefix',
  files: { cluster: [{ key: 'log_file', streams: ['-', 'stdout', 'stderr'] }] },
  cluster: {
    virtual: true,
    retriable: true,
    create(spec: Spec, ctx, field) {
      const file = v.optString(spec, 'log_file', field) ?? '-';
      const prefix = v.optString(spec, 'log_prefix', field) ?? '';
      if (file === '' || file.includes('\0')) throw invalid(`${field}.log_file`, 'must be stdout, stderr or a file path');
      // The file is opened on activate(), when the change commits: a refused change creates none.
      let sink: LogSink | undefined;
      return {
        activate() {
          if (sink) return;
          try {
            sink = acquireSink(file);
          } catch (err) {
            throw invalid(`${field}.log_file`, `cannot open "${file}" for appending: ${(err as Error).message}`);
          }
        },
        close() {
          if (sink && !isStream(file)) releaseSink(file);
          sink = undefined;
        },
        connect: async (req) => {
          if (!sink) throw new GatewayError('CONNECT_FAILED', `Logger "${ctx.clusterName}" is not active`);
          return new LoggerChannel(sink, req.session.name, req.role ?? 'ingress', prefix);
        },
      };
    },
  },
};

export const jsonEncapProtocol: ProtocolDef = {
  name: 'JSONEncap',
  kind: 'datagram',
  transform: true,
  summary: 'Wraps each message and the session metadata into {"metadata":…,"payload":"<base64>"}',
  cluster: { virtual: true, retriable: true, create: () => virtual((req) => new EncapChannel(req.session)) },
};

export const jsonDecapProtocol: ProtocolDef = {
  name: 'JSONDecap',
  kind: 'datagram',
  transform: true,
  summary: 'Unwraps JSONEncap messages back into their payload; drops and logs anything else',
  cluster: {
    virtual: true,
    retriable: true,
    create: (_spec, ctx) => virtual((req) => new DecapChannel((reason) =>
      ctx.log.warn({ cluster: ctx.clusterName, session: req.session.name, reason }, 'JSONDecap: dropped a message that is not a JSONEncap message'))),
  },
};

export const stdioProtocol: ProtocolDef = {
  name: 'Stdio',
  kind: 'byte',
  summary: "The gateway's own standard input and output (one session at a time)",
  // Network bytes written to the gateway's stdout would read as its own log lines.
  staticOnly: "writes to the gateway's own standard output",
  cluster: {
    virtual: true,
    retriable: false,
    create: () => ({
      async connect() {
        return openStdio();
      },
    }),
  },
};
