// SCTP listener and cluster: one SCTP message is one channel message
// (datagram semantics: boundaries kept, no half-close).
//
// Two transports, chosen by the spec's `encapsulation` field:
//
// - absent (or "none"): kernel SCTP (IPPROTO_SCTP sockets through the sockets
//   addon, sctp-kernel.ts). On a kernel without SCTP (no sctp module) the
//   config is rejected with the kernel's reason, "SCTP not supported by this
//   kernel".
// - "udp": SCTP over UDP encapsulation (RFC 6951), entirely in user space, on
//   the `sctp` npm package (RFC 4960 in JavaScript). Needs no kernel support
//   and no privileges, and interoperates with usrsctp (the conformance peer,
//   conformance/sctp_udp_echo.c).
//
//   listener: {protocol: SCTP, port: 9000, encapsulation: udp, udp_port: 9899,
//              address: 0.0.0.0, idle_timeout: 120}
//     One UDP socket bound to address:udp_port (udp_port defaults to port).
//     Every remote UDP address:port is one SCTP association and one session,
//     as UDP server-mode listeners make a session per flow. A new association
//     must start with an INIT to SCTP port `port`; anything else from an
//     unknown flow is dropped. The session starts once the association is up.
//   cluster:  {protocol: SCTP, port: 9000, encapsulation: udp, udp_port: 9899}
//     Per session a UDP socket connected to endpoint:udp_port (udp_port
//     defaults to port) and one association to SCTP port `port` over it; the
//     local SCTP port is the socket's (ephemeral) UDP port.
//
// Session end: a SHUTDOWN from the peer ends the session (after the messages
// that came before it), an ABORT ends it with an error, and ending the session
// (DELETE /api/v1/sessions/..., the other side closing) shuts the association
// down, or aborts it on an error. idle_timeout (listener, seconds of no
// messages either way; 0 = never) ends idle associations, as for UDP: the
// JavaScript stack does not notice a peer that vanished without a word.
// Packets with a wrong CRC32c are dropped (RFC 4960 6.8); a packet the stack
// chokes on ends that association's session only. A graceful SHUTDOWN that is
// not complete within 2 s is cut short with an ABORT. An INIT with a new tag
// on a live flow (the peer restarted on the same UDP port) ends the old
// session and starts a new one. Messages are up to 64 KiB; a longer chunk
// (from a byte stream) goes out as several messages. patchAssociation() works
// around two shutdown bugs of the package.

import dgram from 'node:dgram';
import { EventEmitter } from 'node:events';
import { isIPv6 } from 'node:net';
import { createRequire } from 'node:module';
import { BaseChannel, type ChannelKind } from '../../dataplane/channel.js';
import { EofLinger } from '../../dataplane/linger.js';
import { GatewayError, invalid } from '../../core/errors.js';
import type { Logger } from '../../observe/log.js';
import type {
  ClusterContext, ClusterImpl, ConnectRequest, ListenerContext, ListenerImpl, ProtocolDef, Spec,
} from '../types.js';
import { KernelSctpCluster, KernelSctpListener, kernelSctpUnavailable } from './kernel.js';
import { UDP_EOF_LINGER_MS } from '../udp/index.js';
import * as v from '../common/validate.js';

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

/** An association that is not up this long after its INIT is given up (listener). */
const SETUP_TIMEOUT_MS = 10_000;
/** A graceful SHUTDOWN that is not complete this long after we asked for it is cut short. */
const SHUTDOWN_GUARD_MS = 2000;
/** The `sctp` package asserts port < 65535 (local and remote). */
const MAX_SCTP_PORT = 65534;
/** Associations being set up at once on one listener (each holds a little state per INIT). */
const MAX_PENDING_ASSOCIATIONS = 1024;

// ---------------------------------------------------------------------------
// The parts of the `sctp` package (CommonJS, untyped) this module uses.

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
 *    badly. It answers a SHUTDOWN with SHUTDOWN ACK only if nothing of
 * ours is outstanding, ignores the Cumulative TSN Ack the SHUTDOWN carries,
 * and never answers later: the association hung in SHUTDOWN-RECEIVED (seen
 * when a client shut down right after its last echo arrived, before its
 * delayed SACK). RFC 4960 9.2: the SHUTDOWN's cumulative ack counts as a
 * SACK, and once everything is acknowledged the receiver sends SHUTDOWN ACK.
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

interface SctpSocket extends EventEmitter {
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
/** RFC 4960 appendix B CRC32c over a packet whose checksum field reads zero. */
function checksumOk(packet: Buffer): boolean {
  // polycrc is the `sctp` package's own CRC library: resolved from there, not hoisting.
  crc32c ??= (createRequire(createRequire(import.meta.url).resolve('sctp'))('polycrc') as { crc32c: (b: Uint8Array) => number }).crc32c;
  const sent = packet.readUInt32LE(8);
  packet.writeUInt32LE(0, 8);
  const computed = crc32c(packet) >>> 0;
  packet.writeUInt32LE(sent, 8);
  return computed === sent;
}

/** SCTP common header (12 bytes) + one chunk header (4 bytes). */
const MIN_PACKET = 16;
const CHUNK_INIT = 1;

/** Whether a packet opens an association: an INIT chunk, alone, with verification tag 0 (RFC 4960 8.5.1). */
function isInit(packet: Buffer): boolean {
  return packet.byteLength >= MIN_PACKET && packet[12] === CHUNK_INIT && packet.readUInt32BE(4) === 0;
}

// ---------------------------------------------------------------------------

/**
 * What the `sctp` package takes for its "UDP socket" (`udpTransport`): an
 * emitter of 'message', 'error' and 'close' with a send(). It binds the
 * package's one association per transport object to one UDP flow, and is
 * where bad packets stop: a wrong checksum is dropped here, and an exception
 * the package throws while taking a packet closes this flow only.
 */
export class FlowTransport extends EventEmitter {
  /** The last error of the flow's UDP socket (ECONNREFUSED: nobody on the port), for messages. */
  lastError: NodeJS.ErrnoException | undefined;
  private shut = false;

  constructor(
    private readonly out: (packet: Buffer, cb: (err: Error | null) => void) => void,
    private readonly onBadPacket: (err: Error) => void,
    private readonly log: Logger,
    private readonly what: string,
  ) {
    super();
    // The package's handlers for 'error' and 'close' come first; nothing else listens.
    this.setMaxListeners(4);
  }

  /** The package calls send(buffer, port, address, cb) on an unconnected transport; the flow knows its peer. */
  send(packet: Buffer, ...rest: unknown[]): void {
    if (this.shut) return;
    const cb = rest.find((r) => typeof r === 'function') as ((err: Error | null) => void) | undefined;
    this.out(packet, (err) => cb?.(err));
  }

  /** One UDP payload from the flow's peer. */
  feed(packet: Buffer): void {
    if (this.shut) return;
    if (packet.byteLength < MIN_PACKET) {
      this.log.verbose({ flow: this.what, bytes: packet.byteLength }, 'SCTP/UDP: runt packet dropped');
      return;
    }
    if (!checksumOk(packet)) {
      this.log.verbose({ flow: this.what }, 'SCTP/UDP: packet with a bad CRC32c dropped');
      return;
    }
    try {
      this.emit('message', packet, undefined);
    } catch (err) {
      // The package does not guard its parsers: whatever it throws on is the
      // peer's garbage, and ends this association, never the gateway.
      this.onBadPacket(new Error(`SCTP/UDP ${this.what}: malformed packet: ${(err as Error).message}`));
    }
  }

  /** A transport-level error from the flow's UDP socket (the package ends the association on ECONNREFUSED). */
  fail(err: NodeJS.ErrnoException): void {
    if (this.shut) return;
    this.lastError = err;
    try {
      this.emit('error', err);
    } catch {
      /* the package's handler only logs */
    }
  }

  /** Tear down every association on this transport (the package closes its endpoint on 'close'). */
  close(): void {
    if (this.shut) return;
    // Shut first: the package's teardown ends the association, whose 'end'
    // handlers close this transport again.
    this.shut = true;
    try {
      this.emit('close');
    } catch {
      /* the endpoint is gone either way */
    }
    this.removeAllListeners();
  }
}

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
    let ok = true;
    if (chunk.byteLength <= MAX_SCTP_MESSAGE) {
      ok = this.socket.write(chunk);
    } else {
      for (let off = 0; off < chunk.byteLength; off += MAX_SCTP_MESSAGE) {
        ok = this.socket.write(chunk.subarray(off, Math.min(off + MAX_SCTP_MESSAGE, chunk.byteLength)));
      }
    }
    return ok;
  }

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

// ---------------------------------------------------------------------------

function socketType(address: string | undefined): 'udp4' | 'udp6' {
  return address !== undefined && isIPv6(address) ? 'udp6' : 'udp4';
}

function newSctpSocket(): SctpSocket {
  return new (sctp().Socket)({ readableHighWaterMark: RECEIVE_WINDOW });
}

interface SctpUdpListenerConfig {
  address: string;
  /** The SCTP port the associations are for. */
  port: number;
  /** The UDP encapsulation port bound. */
  udpPort: number;
  idleTimeout: number;
}

class SctpUdpListener implements ListenerImpl {
  private main: dgram.Socket | undefined;
  private readonly flows = new Map<string, SctpChannel>();
  private pending = 0;
  private seq = 0;
  private sweepTimer: NodeJS.Timeout | undefined;
  private readonly lastActivity = new WeakMap<SctpChannel, number>();
  private stopped = false;

  constructor(private readonly cfg: SctpUdpListenerConfig, private readonly ctx: ListenerContext) {}

  async start(): Promise<void> {
    const { address, udpPort } = this.cfg;
    const sock = dgram.createSocket({ type: socketType(address) });
    await new Promise<void>((resolve, reject) => {
      sock.once('error', reject);
      sock.bind({ port: udpPort, address, exclusive: true }, () => {
        sock.off('error', reject);
        resolve();
      });
    }).catch((err: NodeJS.ErrnoException) => {
      sock.close();
      const why = err.code === 'EADDRINUSE' ? 'address already in use' : err.code === 'EACCES' ? 'permission denied' : err.message;
      throw new GatewayError('BIND_FAILED', `SCTP/UDP listener "${this.ctx.listenerName}" cannot bind UDP ${address}:${udpPort}: ${why}`, undefined, { cause: err });
    });
    this.main = sock;
    sock.on('message', (msg, rinfo) => this.onPacket(msg, rinfo));
    sock.on('error', (err) => this.ctx.log.warn({ listener: this.ctx.listenerName, err: err.message }, 'SCTP/UDP listener socket error'));
    if (this.cfg.idleTimeout > 0) {
      const every = Math.max(250, Math.min(this.cfg.idleTimeout * 1000 / 4, 10_000));
      this.sweepTimer = setInterval(() => this.sweep(), every);
      this.sweepTimer.unref();
    }
  }

  private onPacket(msg: Buffer, rinfo: dgram.RemoteInfo): void {
    const key = `${rinfo.address}:${rinfo.port}`;
    const flow = this.flows.get(key);
    if (flow !== undefined) {
      if (flow.established && isInit(msg) && msg.byteLength >= 20 && checksumOk(msg)) {
        // A late copy of the INIT that set this association up carries its
        // Initiate Tag: nothing to do. A new tag: the peer restarted and lost
        // the association (the package cannot take a restart on a live one):
        // end it and start afresh.
        if (msg.readUInt32BE(16) === flow.peerTag()) return;
        flow.close(new Error(`SCTP association with ${key} restarted by the peer`));
      } else {
        flow.transport.feed(msg);
        return;
      }
    }
    if (this.stopped) return;
    // No state for a packet that cannot start an association here.
    if (!isInit(msg) || msg.readUInt16BE(2) !== this.cfg.port || !checksumOk(msg)) {
      this.ctx.log.verbose({ listener: this.ctx.listenerName, remote: key }, 'SCTP/UDP listener: packet outside any association dropped');
      return;
    }
    const srcPort = msg.readUInt16BE(0);
    if (srcPort === 0 || srcPort > MAX_SCTP_PORT) {
      this.ctx.log.verbose({ listener: this.ctx.listenerName, remote: key, srcPort }, 'SCTP/UDP listener: INIT from an SCTP port the stack cannot take dropped');
      return;
    }
    if (this.pending >= MAX_PENDING_ASSOCIATIONS) {
      this.ctx.log.warn({ listener: this.ctx.listenerName, remote: key }, 'SCTP/UDP listener: too many associations being set up; INIT dropped');
      return;
    }
    try {
      this.open(key, rinfo, msg);
    } catch (err) {
      // Whatever the package throws while taking one INIT is that flow's problem.
      this.flows.get(key)?.close(err as Error);
      this.ctx.log.warn({ listener: this.ctx.listenerName, remote: key, err: (err as Error).message }, 'SCTP/UDP listener: cannot take an INIT');
    }
  }

  private open(key: string, rinfo: dgram.RemoteInfo, init: Buffer): void {
    const main = this.main!;
    const remoteSctpPort = init.readUInt16BE(0);
    let ch: SctpChannel | undefined;
    const transport = new FlowTransport(
      (packet, cb) => {
        if (this.main === undefined) cb(new Error('the listener is stopped'));
        else main.send(packet, rinfo.port, rinfo.address, cb);
      },
      (err) => ch?.close(err),
      this.ctx.log,
      key,
    );
    const socket = newSctpSocket();
    this.pending++;
    let counted = true;
    const settle = (): void => {
      if (counted) {
        counted = false;
        this.pending--;
      }
    };
    ch = new SctpChannel(socket, transport, key, () => {
      settle();
      if (this.flows.get(key) === ch) this.flows.delete(key);
    }, 0, this.ctx.log);
    this.flows.set(key, ch);
    const setup = setTimeout(() => {
      this.ctx.log.info({ listener: this.ctx.listenerName, remote: key }, 'SCTP/UDP listener: association not up in time');
      ch!.close(new Error(`SCTP association with ${key} not up within ${SETUP_TIMEOUT_MS} ms`));
    }, SETUP_TIMEOUT_MS);
    setup.unref();
    ch.setCloseListener({ closed: () => clearTimeout(setup) });
    socket.once('connect', () => {
      clearTimeout(setup);
      settle();
      if (this.stopped || ch!.closed) return;
      this.emit(ch!, rinfo, remoteSctpPort);
    });
    // passive: wait for the peer's INIT from this SCTP port on this transport.
    socket.connect({
      passive: true,
      localPort: this.cfg.port,
      port: remoteSctpPort,
      udpTransport: transport,
      udpPeer: { address: rinfo.address, port: rinfo.port },
    });
    transport.feed(init);
  }

  private emit(ch: SctpChannel, rinfo: dgram.RemoteInfo, remoteSctpPort: number): void {
    const { address, udpPort, port } = this.cfg;
    this.ctx.emit({
      name: `SCTP:${rinfo.address}:${rinfo.port}-${address}:${udpPort}-${this.seq++}`,
      channel: ch,
      metadata: {
        IP: { src_addr: rinfo.address, dst_addr: address },
        UDP: { src_port: rinfo.port, dst_port: udpPort },
        SCTP: { src_port: remoteSctpPort, dst_port: port },
      },
    });
  }

  /** Ends associations that carried nothing for idle_timeout seconds. */
  private sweep(): void {
    const now = Date.now();
    const limit = this.cfg.idleTimeout * 1000;
    for (const flow of this.flows.values()) {
      if (!flow.established) continue; // the setup timeout covers these
      const seen = this.lastActivity.get(flow);
      if (flow.activity > 0 || seen === undefined) {
        flow.resetActivity();
        this.lastActivity.set(flow, now);
      } else if (now - seen >= limit) {
        this.ctx.log.info({ listener: this.ctx.listenerName, peer: flow.peer }, 'SCTP/UDP session idle timeout');
        flow.close();
      }
    }
  }

  bound(): boolean {
    return this.main !== undefined;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.sweepTimer) clearInterval(this.sweepTimer);
    // Sessions are ended by the gateway; associations not yet up have none.
    for (const flow of [...this.flows.values()]) if (!flow.established) flow.close();
    const main = this.main;
    this.main = undefined;
    if (main) await new Promise<void>((resolve) => {
      try { main.close(() => resolve()); } catch { resolve(); }
    });
  }
}

interface SctpUdpClusterConfig {
  port: number;
  udpPort: number;
}

class SctpUdpCluster implements ClusterImpl {
  constructor(private readonly cfg: SctpUdpClusterConfig, private readonly ctx: ClusterContext) {}

  async connect(req: ConnectRequest): Promise<SctpChannel> {
    const ep = req.endpoint;
    if (!ep) throw new GatewayError('CONNECT_FAILED', `cluster "${this.ctx.clusterName}" has no endpoint`);
    const { port, udpPort } = this.cfg;
    const target = `${ep.address}:${udpPort}/sctp:${port}`;
    const sock = dgram.createSocket({ type: socketType(ep.address) });
    try {
      await new Promise<void>((resolve, reject) => {
        sock.once('error', reject);
        sock.connect(udpPort, ep.address, () => {
          sock.off('error', reject);
          resolve();
        });
      });
    } catch (err) {
      try { sock.close(); } catch { /* not open */ }
      throw new GatewayError('CONNECT_FAILED', `SCTP/UDP ${target}: ${(err as Error).message}`, undefined, { cause: err });
    }
    let ch: SctpChannel | undefined;
    const transport = new FlowTransport(
      (packet, cb) => sock.send(packet, cb),
      (err) => ch?.close(err),
      this.ctx.log,
      target,
    );
    sock.on('message', (msg) => transport.feed(msg));
    // ECONNREFUSED: nobody on the UDP port (the package ends the association).
    sock.on('error', (err) => transport.fail(err));
    const socket = newSctpSocket();
    ch = new SctpChannel(socket, transport, target, () => {
      try { sock.close(); } catch { /* closed */ }
    }, UDP_EOF_LINGER_MS, this.ctx.log);
    const channel = ch;
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => fail(new GatewayError('TIMEOUT', `SCTP/UDP ${target}: association not up after ${req.timeoutMs} ms`)), req.timeoutMs);
      const fail = (err: Error): void => {
        clearTimeout(timer);
        channel.setCloseListener(undefined);
        channel.close(err);
        reject(err instanceof GatewayError ? err : new GatewayError('CONNECT_FAILED', `SCTP/UDP ${target}: ${err.message}`, undefined, { cause: err }));
      };
      channel.setCloseListener({
        closed: (_c, err) => fail(err ?? new Error(transport.lastError?.code === 'ECONNREFUSED'
          ? `connection refused: nothing listens on UDP ${ep.address}:${udpPort}`
          : 'the association ended while being set up')),
      });
      socket.once('connect', () => {
        clearTimeout(timer);
        channel.setCloseListener(undefined);
        resolve();
      });
      // The local SCTP port: the UDP socket's own, so each session's is its own too.
      try {
        socket.connect({
          port,
          localPort: sock.address().port,
          udpTransport: transport,
          udpPeer: { address: ep.address, port: udpPort },
        });
      } catch (err) {
        fail(err as Error);
        return;
      }
      channel.watch();
    });
    return channel;
  }
}

// ---------------------------------------------------------------------------

/**
 * Validate `encapsulation`: true for SCTP over UDP, false for kernel SCTP
 * (sctp-kernel.ts) where this kernel has it; else throw the kernel's reason.
 */
function wantsUdp(spec: Spec, field: string): boolean {
  const enc = v.optString(spec, 'encapsulation', field);
  if (enc !== undefined && enc.toLowerCase() !== 'udp' && enc.toLowerCase() !== 'none') {
    throw invalid(`${field}.encapsulation`, `must be "udp" (SCTP over UDP, RFC 6951) or "none" (kernel SCTP), got "${enc}"`);
  }
  if (enc !== undefined && enc.toLowerCase() === 'udp') return true;
  const kernel = kernelSctpUnavailable();
  if (kernel !== undefined) {
    throw new GatewayError('NOT_SUPPORTED', `${field}: kernel SCTP is unavailable: ${kernel}; set encapsulation: udp for SCTP over UDP (RFC 6951) in user space`, field);
  }
  if (spec.udp_port !== undefined) throw invalid(`${field}.udp_port`, 'applies to encapsulation: udp only (kernel SCTP runs directly on IP)');
  return false;
}

export const sctpProtocol: ProtocolDef = {
  name: 'SCTP',
  kind: 'datagram',
  summary: 'SCTP messages, one association per session; kernel SCTP or, with encapsulation: udp, SCTP over UDP (RFC 6951) in user space',
  listener: {
    modes: ['server'],
    create(spec, ctx, field) {
      const udp = wantsUdp(spec, field);
      const port = v.port(spec, 'port', field, true)!;
      if (port === 0 || port > MAX_SCTP_PORT) throw invalid(`${field}.port`, `an SCTP listener needs a fixed port from 1 to ${MAX_SCTP_PORT} (the peers address associations to it)`);
      if (!udp) return new KernelSctpListener(v.host(spec, 'address', field, false) ?? '0.0.0.0', port, ctx);
      const udpPort = v.port(spec, 'udp_port', field, false) ?? port;
      if (udpPort === 0) throw invalid(`${field}.udp_port`, 'must be a fixed port');
      const address = v.host(spec, 'address', field, false) ?? '0.0.0.0';
      const idleTimeout = v.optNumber(spec, 'idle_timeout', field, 0, 86400 * 365) ?? 120;
      return new SctpUdpListener({ address, port, udpPort, idleTimeout }, ctx);
    },
  },
  cluster: {
    virtual: false,
    retriable: true,
    create(spec, ctx, field) {
      const udp = wantsUdp(spec, field);
      const port = v.port(spec, 'port', field, true)!;
      if (port === 0 || port > MAX_SCTP_PORT) throw invalid(`${field}.port`, `must be the SCTP port of the endpoints, from 1 to ${MAX_SCTP_PORT}`);
      if (!udp) return new KernelSctpCluster(port, ctx);
      const udpPort = v.port(spec, 'udp_port', field, false) ?? port;
      if (udpPort === 0) throw invalid(`${field}.udp_port`, 'must be the UDP encapsulation port of the endpoints');
      return new SctpUdpCluster({ port, udpPort }, ctx);
    },
    checkEndpoint(spec, field) {
      v.host(spec, 'address', field, true);
    },
  },
};
