// Connecting an upstream stream socket below Node (the raw stream path): the
// addon makes the socket and starts a non-blocking connect. One that is over
// at once gives the session its channel without a wait (no promise, timer or
// callback: dataplane/pipeline.ts links such a session straight away);
// otherwise the reactor waits for the outcome, and its registration is the
// one the pair keeps afterwards.

import { GatewayError } from '../../core/errors.js';
import { BareStream, type RawAddon } from '../../native/rawstream.js';
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

/**
 * Connect below Node: the channel at once where the connect is over when
 * connect() returns (a loopback upstream, whose handshake runs inside the
 * call, or a Unix socket), else its promise. A failure throws or rejects.
 */
export function rawConnect(addon: RawAddon, t: RawTarget, timeoutMs: number): RawStreamChannel | Promise<RawStreamChannel> {
  let fd: number;
  try {
    fd = addon.connectStream(t.host, t.port, t.bindHost, t.bindPort);
  } catch (err) {
    // Same wording as the net.Socket path: "<what>: connect ECONNREFUSED <target>".
    const e = err as NodeJS.ErrnoException;
    throw new GatewayError('CONNECT_FAILED', `${t.what}: ${e.syscall ?? 'connect'} ${e.code ?? e.message} ${t.peer}`, undefined, { cause: err });
  }
  const now = addon.connectedNow(fd);
  if (now === true) return new RawStreamChannel(new BareStream(addon, fd), t.peer);
  if (now !== undefined) {
    addon.closeStream(fd);
    throw new GatewayError('CONNECT_FAILED', `${t.what}: connect ${now} ${t.peer}`);
  }
  const raw = new addon.RawStream(fd); // registered in the reactor while it waits, a registration its Splice keeps
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
