// What the datagram protocols (UDP, SCTP, Unix datagram, AF_PACKET) share:
// the largest datagram, how a chunk larger than that goes out, how long a
// connectionless cluster channel waits for answers after its session's EOF,
// and binding and connecting node:dgram sockets (UDP, SCTP over UDP).

import type dgram from 'node:dgram';
import { isIPv6 } from 'node:net';
import { GatewayError } from '../../core/errors.js';

/** Largest UDP payload over IPv4 (65,535 minus the IP and UDP headers). */
export const MAX_UDP_PAYLOAD = 65507;

/**
 * A connectionless channel cannot half-close. When a cluster-side channel has
 * been told end() (its client sent EOF), it keeps taking replies and reports
 * EOF once they have stopped for this long (dataplane/linger.ts); without it a
 * TCP client that closed towards a UDP upstream would leave its session (and
 * a half-open socket) open for ever.
 */
export const EOF_LINGER_MS = 2000;

/**
 * Send `chunk` as datagrams of at most `max` bytes through `send`, which
 * returns false for backpressure; false if any piece did. A byte stream
 * routed into a datagram protocol can hand over more than one datagram
 * holds. Callers test the common case (chunk fits) themselves and pass a
 * `send` made once per channel, so the hot path allocates nothing.
 */
export function sendInPieces(chunk: Uint8Array, max: number, send: (piece: Uint8Array) => boolean): boolean {
  let ok = true;
  for (let off = 0; off < chunk.byteLength; off += max) {
    ok = send(chunk.subarray(off, Math.min(off + max, chunk.byteLength))) && ok;
  }
  return ok;
}

/** The node:dgram socket type for a local or remote address (IPv4 when unknown). */
export function dgramType(address: string | undefined): 'udp4' | 'udp6' {
  return address !== undefined && isIPv6(address) ? 'udp6' : 'udp4';
}

/** Bind a node:dgram socket; rejects with the socket's error. `exclusive`: no sharing the port with other processes' workers. */
export function bindDgram(sock: dgram.Socket, port: number, address: string | undefined, exclusive = false): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (err: Error) => reject(err);
    sock.once('error', onError);
    sock.bind({ port, address, exclusive }, () => {
      sock.off('error', onError);
      resolve();
    });
  });
}

/** Connect a node:dgram socket (a DNS lookup and a route, nothing on the wire); rejects with its error, or TIMEOUT after `timeoutMs`. */
export function connectDgram(sock: dgram.Socket, port: number, address: string, timeoutMs?: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const timer = timeoutMs === undefined ? undefined : setTimeout(() => {
      sock.off('error', onError);
      reject(new GatewayError('TIMEOUT', `UDP connect to ${address}:${port} timed out after ${timeoutMs} ms`));
    }, timeoutMs);
    const onError = (err: Error) => {
      clearTimeout(timer);
      reject(err);
    };
    sock.once('error', onError);
    sock.connect(port, address, () => {
      clearTimeout(timer);
      sock.off('error', onError);
      resolve();
    });
  });
}

/** Close a node:dgram socket that may not be open. */
export function closeDgram(sock: dgram.Socket): void {
  try { sock.close(); } catch { /* not open */ }
}
