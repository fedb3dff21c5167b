// The PIPE cluster: writes into each endpoint's FIFO and reads the answers
// from its reply FIFO (index.ts describes the protocol).

import fs from 'node:fs';
import type net from 'node:net';
import { StreamPairChannel } from '../../dataplane/streampair.js';
import { GatewayError } from '../../core/errors.js';
import type { ClusterImpl, ConnectRequest } from '../types.js';
import { O_RDONLY, O_NONBLOCK, fifoStream, isFifo, openWriter } from './fifo.js';

export class PipeCluster implements ClusterImpl {
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
