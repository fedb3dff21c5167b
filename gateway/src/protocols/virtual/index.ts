// Virtual (in-process) clusters: Echo, Discard, Logger, JSONEncap, JSONDecap,
// and Stdio (Sync: protocols/sync). Each session gets a fresh channel; endpoints are ignored.

import fs from 'node:fs';
import { BaseChannel, type ChannelKind } from '../../dataplane/channel.js';
import { GatewayError, invalid } from '../../core/errors.js';
import type { ClusterImpl, ConnectRequest, ProtocolDef, SessionView, Spec } from '../types.js';
import { TransformChannel } from '../common/transform.js';
import * as v from '../common/validate.js';

class EchoChannel extends TransformChannel {
  protected transform(chunk: Uint8Array): void {
    this.deliver(chunk);
  }
}

class DiscardChannel extends TransformChannel {
  protected transform(): void {}
}

interface LogSink { write(line: string): void }

/**
 * Where Logger clusters write: one append stream per file, shared by the
 * clusters that name it and closed with the last of them, so a deleted
 * Logger leaves no descriptor behind.
 */
const fileSinks = new Map<string, { sink: LogSink; refs: number; stream: fs.WriteStream }>();

function isStream(file: string): boolean {
  return file === '-' || file === 'stdout' || file === 'stderr';
}

/** Open (or share) the sink of `file`; throws the open error. */
function acquireSink(file: string): LogSink {
  if (file === '-' || file === 'stdout') return { write: (l) => process.stdout.write(l) };
  if (file === 'stderr') return { write: (l) => process.stderr.write(l) };
  let s = fileSinks.get(file);
  if (!s) {
    // Append, never truncate: l7mp truncated the file for every session.
    // Opened synchronously, so that a file that cannot be opened refuses the change.
    const fd = fs.openSync(file, 'a', 0o640);
    const stream = fs.createWriteStream(file, { fd, autoClose: true });
    stream.on('error', () => { /* an open file fails only with the disk; the cluster reported the open */ });
    s = { sink: { write: (l) => stream.write(l) }, refs: 0, stream };
    fileSinks.set(file, s);
  }
  s.refs++;
  return s.sink;
}

function releaseSink(file: string): void {
  const s = fileSinks.get(file);
  if (!s || --s.refs > 0) return;
  fileSinks.delete(file);
  s.stream.end(); // flushes what is queued, then closes the descriptor
}

class LoggerChannel extends TransformChannel {
  constructor(
    private readonly sink_: { write(line: string): void },
    private readonly session: string,
    private readonly direction: string,
    private readonly prefix: string,
  ) {
    super();
  }

  protected transform(chunk: Uint8Array): void {
    const text = Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength).toString('utf8');
    this.sink_.write(JSON.stringify({
      time: new Date().toISOString(),
      session: this.session,
      direction: this.direction,
      prefix: this.prefix,
      bytes: chunk.byteLength,
      data: text,
    }) + '\n');
    this.deliver(chunk);
  }
}

class EncapChannel extends TransformChannel {
  constructor(private readonly session: SessionView) {
    super();
  }
  protected transform(chunk: Uint8Array): void {
    const payload = Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength).toString('base64');
    this.deliver(Buffer.from(JSON.stringify({ metadata: this.session.metadata, payload })));
  }
}

class DecapChannel extends TransformChannel {
  dropped = 0;
  constructor(private readonly onBad: (reason: string) => void) {
    super();
  }
  protected transform(chunk: Uint8Array): void {
    let msg: unknown;
    try {
      msg = JSON.parse(Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength).toString('utf8'));
    } catch {
      this.drop('not JSON');
      return;
    }
    const payload = (msg as { payload?: unknown } | null)?.payload;
    if (typeof payload !== 'string') {
      this.drop('no string "payload" field');
      return;
    }
    this.deliver(Buffer.from(payload, 'base64'));
  }
  private drop(reason: string): void {
    // Logged once per session: a flood of bad messages must not flood the log.
    if (this.dropped++ === 0) this.onBad(reason);
  }
}

/** Stdio: the gateway's own stdin and stdout. One session at a time. */
let stdioBusy = false;
class StdioChannel extends BaseChannel {
  readonly kind: ChannelKind = 'byte';
  private readonly onData = (chunk: Buffer) => this.deliver(chunk);
  private readonly onEnd = () => this.deliverEnd();

  constructor() {
    super();
    this.peer = 'stdio';
    process.stdin.on('data', this.onData);
    process.stdin.on('end', this.onEnd);
    process.stdin.resume();
  }
  send(chunk: Uint8Array): boolean {
    return process.stdout.write(chunk);
  }
  end(): void {}
  protected doPause(): void { process.stdin.pause(); }
  protected doResume(): void { process.stdin.resume(); }
  protected doClose(err: Error | undefined): void {
    process.stdin.off('data', this.onData);
    process.stdin.off('end', this.onEnd);
    process.stdin.pause();
    stdioBusy = false;
    this.finish(err);
  }
}

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
        if (stdioBusy) throw new GatewayError('CONNECT_FAILED', 'Stdio is already in use by another session');
        stdioBusy = true;
        return new StdioChannel();
      },
    }),
  },
};
