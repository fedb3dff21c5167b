// The PIPE listener: reads the FIFO peers write into, one session per
// writer, answers into the reply FIFO (index.ts describes the protocol).

import fs from 'node:fs';
import type net from 'node:net';
import { StreamPairChannel } from '../../dataplane/streampair.js';
import type { ListenerContext, ListenerImpl } from '../types.js';
import { O_RDONLY, O_NONBLOCK, ensureFifo, fifoStream, openWriter } from './fifo.js';

export class PipeListener implements ListenerImpl {
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
