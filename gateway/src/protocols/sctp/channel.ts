// One SCTP-over-UDP association as a channel: one SCTP message is one
// channel message (datagram semantics: boundaries kept, no half-close).

import { BaseChannel, type ChannelKind } from '../../dataplane/channel.js';
import { EofLinger } from '../../dataplane/linger.js';
import type { Logger } from '../../observe/log.js';
import { sendInPieces } from '../common/datagram.js';
import { MAX_SCTP_MESSAGE, patchAssociation, type SctpAssociation, type SctpSocket } from './package.js';
import type { FlowTransport } from './transport.js';

/** A graceful SHUTDOWN that is not complete this long after we asked for it is cut short. */
const SHUTDOWN_GUARD_MS = 2000;

/** One association as a channel. */
export class SctpChannel extends BaseChannel {
  readonly kind: ChannelKind = 'datagram';
  private ended = false;
  private received = 0;
  private linger: EofLinger | undefined;
  private guard: NodeJS.Timeout | undefined;
  private aborted: Error | undefined;
  private up = false;
  private released = false;
  private messages = 0;

  constructor(
    readonly socket: SctpSocket,
    readonly transport: FlowTransport,
    peer: string,
    /** Release the flow's resources (UDP socket, listener table entry); called once. */
    private readonly release: () => void,
    /** > 0: report EOF this long after end() once no more messages arrive (cluster side, as UDP). */
    private readonly eofLingerMs: number,
    log: Logger,
  ) {
    super();
    this.peer = peer;
    socket.on('data', (msg: Buffer) => {
      this.received++;
      this.messages++;
      this.deliver(msg);
    });
    socket.on('drain', () => this.emitDrain());
    // 'error' without an argument: the peer sent an ERROR chunk, which reports
    // a problem (an unrecognised chunk or parameter, a stale cookie) without
    // ending the association; an ABORT would. With an argument: a write
    // failed and the package has aborted the association.
    socket.on('error', (err?: Error) => {
      if (err === undefined) {
        log.warn({ peer }, 'SCTP/UDP: the peer sent an ERROR chunk');
        return;
      }
      this.close(err);
    });
    // 'end': SHUTDOWN COMPLETE or COMMUNICATION LOST (ABORT, transport closed).
    socket.on('end', () => this.onAssociationEnd());
    socket.once('connect', () => {
      this.up = true;
      this.watch();
    });
  }

  /** The peer's verification tag (the Initiate Tag of its INIT or INIT ACK), once known. */
  peerTag(): number | undefined {
    return this.socket.association?.peer_tag;
  }

  /** Whether the association is up (COMMUNICATION UP seen). */
  get established(): boolean {
    return this.up;
  }

  private watched: SctpAssociation | undefined;

  /**
   * Hook into the association once it exists: at once for an active
   * connect, at COMMUNICATION UP for a passive one. Idempotent.
   */
  watch(): void {
    const assoc = this.socket.association;
    if (assoc === undefined || assoc === this.watched) return;
    this.watched = assoc;
    patchAssociation(assoc);
    // Tell an ABORT from a SHUTDOWN: the package reports both as 'end'. This
    // runs before its own handler (prepend), which emits that 'end'.
    assoc.prependOnceListener('COMMUNICATION LOST', (event?: string) => {
      if (event === 'abort') this.aborted = new Error(`SCTP association with ${this.peer} aborted by the peer${this.up ? '' : ' while being set up'}`);
    });
  }

  private onAssociationEnd(): void {
    this.up = false; // nothing left to shut down or abort
    if (this.closed) {
      // Our SHUTDOWN completed; or re-entered from finishOnce (transport close).
      if (!this.released) this.finishOnce(undefined);
      return;
    }
    if (this.aborted) {
      this.close(this.aborted);
      return;
    }
    // The peer shut down: what it sent before has been delivered; nothing more
    // can go to it (no half-close in SCTP), so the session ends.
    this.deliverEnd();
    this.close();
  }

  /**
   * Activity for the listener's idle sweep: messages either way. Not packets:
   * HEARTBEATs (every 30 s from either side) would keep an idle association
   * alive for ever.
   */
  get activity(): number {
    return this.messages;
  }

  resetActivity(): void {
    this.messages = 0;
  }

  send(chunk: Uint8Array): boolean {
    if (this.closed || this.ended) return true;
    this.messages++;
    if (chunk.byteLength <= MAX_SCTP_MESSAGE) return this.socket.write(chunk);
    return sendInPieces(chunk, MAX_SCTP_MESSAGE, this.writePiece);
  }

  private readonly writePiece = (piece: Uint8Array): boolean => this.socket.write(piece);

  /**
   * SCTP has no half-close: a SHUTDOWN would stop the peer from sending the
   * answers still to come. As for UDP: stop sending; on the cluster side
   * report EOF once the answers have stopped for eofLingerMs.
   */
  end(): void {
    if (this.ended) return;
    this.ended = true;
    if (this.eofLingerMs > 0) this.linger = new EofLinger(this.eofLingerMs, () => this.received, () => { if (!this.closed) this.deliverEnd(); });
  }

  protected doPause(): void {}
  protected doResume(): void {}

  protected doClose(err: Error | undefined): void {
    this.linger?.cancel();
    const assoc = this.socket.association;
    if (err !== undefined || !this.up || assoc === undefined) {
      // Abort (or nothing to shut down yet): ABORT chunk, then the transport goes.
      if (this.up && assoc !== undefined && err !== this.aborted) {
        try { assoc.ABORT(err?.message.slice(0, 200)); } catch { /* already down */ }
      }
      this.finishOnce(err);
      return;
    }
    // Graceful: the package sends SHUTDOWN once the queued messages are out;
    // 'end' (SHUTDOWN COMPLETE) finishes, the guard cuts a silent peer short.
    this.guard = setTimeout(() => {
      try { assoc.ABORT('shutdown timed out'); } catch { /* already down */ }
      this.finishOnce(undefined);
    }, SHUTDOWN_GUARD_MS);
    this.guard.unref();
    try {
      this.socket.end();
    } catch {
      this.finishOnce(undefined);
    }
  }

  private finishOnce(err: Error | undefined): void {
    if (this.guard) clearTimeout(this.guard);
    if (!this.released) {
      this.released = true;
      this.transport.close();
      this.release();
    }
    this.finish(err);
  }
}
