// The parts of the `sctp` npm package (RFC 4960 in JavaScript; CommonJS,
// untyped) that SCTP over UDP uses: typings, the loader, the socket options
// we create it with, and patchAssociation(), which works around two gaps of
// its shutdown sequence.

import type { EventEmitter } from 'node:events';
import { createRequire } from 'node:module';

/**
 * The largest message sent as one SCTP message; a longer chunk (from a byte
 * stream) goes out as several. 64 KiB: what every other datagram protocol
 * here carries, and well inside the receive window below.
 */
export const MAX_SCTP_MESSAGE = 65536;

/**
 * The receive window we advertise (the `sctp` package takes it from the
 * socket's readableHighWaterMark). It must hold a whole message: the package
 * drops new fragments once its window is used up, and has no partial delivery,
 * so a message larger than the window would never complete.
 */
const RECEIVE_WINDOW = 4 * MAX_SCTP_MESSAGE;

/** The `sctp` package asserts port < 65535 (local and remote). */
export const MAX_SCTP_PORT = 65534;

export interface SctpAssociation extends EventEmitter {
  ABORT(reason?: string): void;
  state: string;
  flightsize: number;
  peer_rwnd: number;
  peer_tag?: number;
  onSack(chunk: { c_tsn_ack: number; a_rwnd: number }): void;
  _sendChunk(type: string, options: Record<string, unknown>, destination: undefined, cb: () => void): void;
  _startT2(): void;
}

const patched = new WeakSet<SctpAssociation>();

/**
 * Works around two gaps of the `sctp` package (1.0.0) in the shutdown
 * sequence; applied to every association, the gateway's and the test clients'.
 *
 * 1. In SHUTDOWN-SENT, a DATA chunk made it read `this.duplicates` (meant:
 *    `this.reassembly.duplicates`), which is undefined: a TypeError out of its
 *    packet handler (seen in the conformance suite when an echo crossed our
 *    SHUTDOWN). The property is supplied.
 * 2. It completes a SHUTDOWN the peer started while our DATA was in flight
 *    badly. It answers a SHUTDOWN with SHUTDOWN ACK only if nothing of ours
 *    is outstanding, ignores the Cumulative TSN Ack the SHUTDOWN carries, and
 *    never answers later: the association hung in SHUTDOWN-RECEIVED (seen
 *    when a client shut down right after its last echo arrived, before its
 *    delayed SACK). RFC 4960 9.2: the SHUTDOWN's cumulative ack counts as a
 *    SACK, and once everything is acknowledged the receiver sends SHUTDOWN ACK.
 */
export function patchAssociation(assoc: SctpAssociation): void {
  if (patched.has(assoc)) return;
  patched.add(assoc);
  if (!('duplicates' in assoc)) {
    Object.defineProperty(assoc, 'duplicates', { get(this: { reassembly?: { duplicates?: unknown[] } }) { return this.reassembly?.duplicates ?? []; } });
  }
  const ackIfDone = (): void => {
    if (assoc.state !== 'SHUTDOWN-RECEIVED' || assoc.flightsize !== 0) return;
    assoc._sendChunk('shutdown_ack', {}, undefined, () => { assoc.state = 'SHUTDOWN-ACK-SENT'; });
    assoc._startT2();
  };
  // Listeners added after the package's own: they see the state it left.
  assoc.on('shutdown', (chunk: { c_tsn_ack?: number }) => {
    if (assoc.state !== 'SHUTDOWN-RECEIVED' || assoc.flightsize === 0) return;
    if (typeof chunk.c_tsn_ack === 'number') assoc.onSack({ c_tsn_ack: chunk.c_tsn_ack, a_rwnd: assoc.peer_rwnd });
    ackIfDone();
  });
  assoc.on('sack', ackIfDone);
}

export interface SctpSocket extends EventEmitter {
  association?: SctpAssociation;
  remotePort?: number;
  localPort?: number;
  connect(options: Record<string, unknown>): void;
  write(chunk: Uint8Array): boolean;
  end(): void;
  destroy(err?: Error): void;
  readonly writableLength: number;
}

interface SctpModule {
  Socket: new (options: Record<string, unknown>) => SctpSocket;
}

let sctpModule: SctpModule | undefined;
function sctp(): SctpModule {
  sctpModule ??= createRequire(import.meta.url)('sctp') as SctpModule;
  return sctpModule;
}

let crc32c: ((buf: Uint8Array) => number) | undefined;

/** RFC 4960 appendix B CRC32c; polycrc is the `sctp` package's own CRC library, resolved from there, not hoisting. */
export function crc32cOf(buf: Uint8Array): number {
  crc32c ??= (createRequire(createRequire(import.meta.url).resolve('sctp'))('polycrc') as { crc32c: (b: Uint8Array) => number }).crc32c;
  return crc32c(buf);
}

export function newSctpSocket(): SctpSocket {
  return new (sctp().Socket)({ readableHighWaterMark: RECEIVE_WINDOW });
}
