// PIPE: named pipes (FIFOs) as a byte stream.
//
// A FIFO carries one direction, so a PIPE object names up to two:
// - listener: `filename` is the FIFO the gateway reads (peers write into it);
//   `reply_filename`, if set, the FIFO the gateway writes the answers to.
//   The listener creates missing FIFOs (mode 0600; mkfifo needs the native
//   addon). One session per writer: it starts with the first bytes and ends
//   when every writer has closed the FIFO (EOF); the listener then opens the
//   FIFO again for the next writer. Writers that overlap share a session,
//   as they share the FIFO.
// - cluster: each endpoint `address` is a FIFO the gateway writes into (it
//   must exist and have a reader, else the connect fails and may be retried);
//   with `reply_suffix` (e.g. ".reply") the gateway reads the answers from
//   the FIFO at address + suffix.
//
// Node can drive a FIFO fd as a pipe handle (new net.Socket({fd})), so the
// data path is libuv's; only mkfifo() comes from the addon.

import fs from 'node:fs';
import net from 'node:net';
import { StreamPairChannel } from '../../dataplane/streampair.js';
import { GatewayError, invalid } from '../../core/errors.js';
import { socketsAddon, socketsUnavailable } from '../../native/sockets.js';
import type { ClusterImpl, ConnectRequest, ListenerContext, ListenerImpl, ProtocolDef, Spec } from '../types.js';
import * as v from '../common/validate.js';

const { O_RDONLY, O_WRONLY, O_RDWR, O_NONBLOCK } = fs.constants;

/** Make sure `path` is a FIFO, creating it when missing; true when it was created. */
function ensureFifo(path: string, what: string): boolean {
  let st: fs.Stats | undefined;
  try { st = fs.statSync(path); } catch { st = undefined; }
  if (st !== undefined) {
    if (!st.isFIFO()) throw new GatewayError('BIND_FAILED', `${what}: ${path} exists and is not a FIFO`);
    return false;
  }
  const addon = socketsAddon();
  if (addon === undefined) {
    throw new GatewayError('BIND_FAILED', `${what}: ${path} does not exist and cannot be created (${socketsUnavailable()}); create it with mkfifo`);
  }
  try {
    addon.mkfifo(path, 0o600);
  } catch (err) {
    throw new GatewayError('BIND_FAILED', `${what}: ${(err as Error).message}`, undefined, { cause: err });
  }
  return true;
}

function isFifo(path: string): boolean {
  try { return fs.statSync(path).isFIFO(); } catch { return false; }
}

/** A FIFO fd as a libuv pipe handle, one direction only. */
function fifoStream(fd: number, dir: 'read' | 'write'): net.Socket {
  return new net.Socket({ fd, readable: dir === 'read', writable: dir === 'write', allowHalfOpen: true });
}

/**
 * Open the writing end. O_WRONLY|O_NONBLOCK fails with ENXIO while nobody
 * reads; `waitForReader` then opens O_RDWR, which never fails and keeps the
 * bytes in the FIFO until a reader comes (the listener's answers).
 */
function openWriter(path: string, waitForReader: boolean): number {
  try {
    return fs.openSync(path, O_WRONLY | O_NONBLOCK);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENXIO' && waitForReader) return fs.openSync(path, O_RDWR | O_NONBLOCK);
    throw err;
  }
}

class PipeListener implements ListenerImpl {
  private reader: net.Socket | undefined;
  private seq = 0;
  private stopped = false;

  /** The FIFOs this listener made: removed on stop, so that a change rolled back leaves no file behind. */
  private readonly created: string[] = [];

  constructor(private readonly filename: string, private readonly reply: string | undefined, private readonly ctx: ListenerContext) {}

  async start(): Promise<void> {
    const what = `PIPE listener "${this.ctx.listenerName}" cannot open its FIFO`;
    if (ensureFifo(this.filename, what)) this.created.push(this.filename);
    if (this.reply !== undefined && ensureFifo(this.reply, what)) this.created.push(this.reply);
    this.arm();
  }

  /** Open the FIFO for the next writer. Before a writer comes, a reader sees neither data nor EOF. */
  private arm(): void {
    if (this.stopped) return;
    let fd: number;
    try {
      fd = fs.openSync(this.filename, O_RDONLY | O_NONBLOCK);
    } catch (err) {
      this.ctx.log.warn({ listener: this.ctx.listenerName, err: (err as Error).message }, 'PIPE listener cannot open its FIFO');
      return;
    }
    const rx = fifoStream(fd, 'read');
    this.reader = rx;
    const onEnd = (): void => {
      // Writers came and went without a byte: wait for the next one.
      rx.destroy();
      if (this.reader === rx) this.arm();
    };
    rx.once('end', onEnd);
    rx.once('error', (err) => {
      this.ctx.log.warn({ listener: this.ctx.listenerName, err: err.message }, 'PIPE listener read error');
      onEnd();
    });
    rx.once('data', (first: Buffer) => {
      rx.off('end', onEnd);
      rx.pause();
      this.open(rx, first);
    });
  }

  private open(rx: net.Socket, first: Buffer): void {
    let tx: net.Socket | undefined;
    if (this.reply !== undefined) {
      try {
        tx = fifoStream(openWriter(this.reply, true), 'write');
      } catch (err) {
        this.ctx.log.warn({ listener: this.ctx.listenerName, err: (err as Error).message }, 'PIPE listener cannot open the reply FIFO; the session is one-way');
      }
    }
    const ch = new StreamPairChannel(rx, tx, this.filename);
    ch.inject(first);
    // The next writer needs a reader once this session's writers are gone
    // (EOF), or once the session ended from the other side.
    const next = (): void => { if (this.reader === rx) this.arm(); };
    rx.once('end', next);
    rx.once('close', next);
    this.ctx.emit({
      name: `PIPE:${this.ctx.listenerName}-${this.seq++}`,
      channel: ch,
      metadata: { PIPE: { filename: this.filename, ...(this.reply !== undefined ? { reply_filename: this.reply } : {}) } },
    });
    rx.resume();
  }

  bound(): boolean {
    return this.reader !== undefined && !this.stopped;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    const r = this.reader;
    this.reader = undefined;
    r?.destroy();
    for (const f of this.created.splice(0)) {
      try { if (fs.lstatSync(f).isFIFO()) fs.unlinkSync(f); } catch { /* gone already */ }
    }
  }
}

class PipeCluster implements ClusterImpl {
  /** The live session of each FIFO: a FIFO is one channel, so a new session takes it over. */
  private readonly live = new Map<string, StreamPairChannel>();

  constructor(private readonly replySuffix: string | undefined, private readonly clusterName: string) {}

  async connect(req: ConnectRequest): Promise<StreamPairChannel> {
    const ep = req.endpoint;
    if (!ep) throw new GatewayError('CONNECT_FAILED', `PIPE cluster "${this.clusterName}" has no endpoint`);
    const path = ep.address;
    if (!isFifo(path)) throw new GatewayError('CONNECT_FAILED', `PIPE ${path}: no such FIFO`);
    let wfd: number;
    try {
      wfd = openWriter(path, false);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      throw new GatewayError('CONNECT_FAILED', `PIPE ${path}: ${code === 'ENXIO' ? 'nobody reads the FIFO' : (err as Error).message}`, undefined, { cause: err });
    }
    let rx: net.Socket | undefined;
    if (this.replySuffix !== undefined) {
      const reply = path + this.replySuffix;
      try {
        if (!isFifo(reply)) throw new Error('no such FIFO');
        rx = fifoStream(fs.openSync(reply, O_RDONLY | O_NONBLOCK), 'read');
      } catch (err) {
        fs.closeSync(wfd);
        throw new GatewayError('CONNECT_FAILED', `PIPE ${reply}: ${(err as Error).message}`, undefined, { cause: err });
      }
    }
    // Two readers of one reply FIFO would split the answers between them
    // (UNIX/dgram and UDP sessions, for one, linger until their idle timeout).
    const previous = this.live.get(path);
    if (previous !== undefined && !previous.closed) {
      previous.close(Object.assign(new Error(`PIPE ${path}: taken over by a newer session`), { graceful: true }));
    }
    const ch = new StreamPairChannel(rx, fifoStream(wfd, 'write'), path);
    this.live.set(path, ch);
    ch.onClosed(() => { if (this.live.get(path) === ch) this.live.delete(path); });
    return ch;
  }

  close(): void {
    for (const ch of this.live.values()) ch.close();
    this.live.clear();
  }
}

function fifoPath(spec: Spec, key: string, field: string, required: boolean): string | undefined {
  const p = v.optString(spec, key, field);
  if (p === undefined) {
    if (required) throw invalid(`${field}.${key}`, 'is required');
    return undefined;
  }
  if (p === '' || p.includes('\0') || p.length > 4095) {
    throw invalid(`${field}.${key}`, 'must be a FIFO path');
  }
  return p;
}

export const pipeProtocol: ProtocolDef = {
  name: 'PIPE',
  kind: 'byte',
  summary: 'named pipes (FIFOs); one session per writer; an optional second FIFO carries the answers',
  // An endpoint's reply FIFO is its address plus reply_suffix (no "/"): the same directory.
  files: { listener: [{ key: 'filename' }, { key: 'reply_filename' }], endpoint: [{ key: 'address' }] },
  listener: {
    modes: ['server'],
    create(spec, ctx, field) {
      return new PipeListener(fifoPath(spec, 'filename', field, true)!, fifoPath(spec, 'reply_filename', field, false), ctx);
    },
  },
  cluster: {
    virtual: false,
    retriable: true,
    create(spec, ctx, field) {
      const suffix = v.optString(spec, 'reply_suffix', field);
      if (suffix !== undefined && (suffix === '' || suffix.includes('/') || suffix.includes('\0'))) {
        throw invalid(`${field}.reply_suffix`, 'must be a non-empty file name suffix');
      }
      return new PipeCluster(suffix, ctx.clusterName);
    },
    checkEndpoint(spec, field) {
      fifoPath(spec, 'address', field, true);
    },
  },
};
