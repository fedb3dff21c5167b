// Connecting an upstream stream socket below Node (the raw stream path): the
// addon makes the socket and starts a non-blocking connect; its poll handle
// waits for the outcome and is the one the pair keeps polling afterwards.

import { GatewayError } from '../../core/errors.js';
import type { RawAddon } from '../../native/rawstream.js';
import { RawStreamChannel } from './raw-channel.js';

export interface RawTarget {
  /** A numeric host, or a Unix socket path (port -1). */
  readonly host: string;
  readonly port: number;
  readonly bindHost?: string;
  readonly bindPort?: number;
  /** For messages and the channel's peer: "TCP 10.0.0.1:80", "UnixDomainSocket /run/x.sock". */
  readonly what: string;
  readonly peer: string;
}

export function rawConnect(addon: RawAddon, t: RawTarget, timeoutMs: number): Promise<RawStreamChannel> {
  let fd: number;
  try {
    fd = addon.connectStream(t.host, t.port, t.bindHost, t.bindPort);
  } catch (err) {
    // Same wording as the net.Socket path: "<what>: connect ECONNREFUSED <target>".
    const e = err as NodeJS.ErrnoException;
    return Promise.reject(new GatewayError('CONNECT_FAILED', `${t.what}: ${e.syscall ?? 'connect'} ${e.code ?? e.message} ${t.peer}`, undefined, { cause: err }));
  }
  const raw = new addon.RawStream(fd);
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      raw.close();
      reject(new GatewayError('CONNECT_FAILED', `${t.what}: connect timed out after ${timeoutMs} ms`));
    }, timeoutMs);
    raw.waitConnect((code) => {
      clearTimeout(timer);
      if (code === undefined) {
        resolve(new RawStreamChannel(raw, t.peer));
        return;
      }
      raw.close();
      reject(new GatewayError('CONNECT_FAILED', `${t.what}: connect ${code} ${t.peer}`));
    });
  });
}
