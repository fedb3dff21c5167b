// The SCTP-over-UDP listener: one UDP socket, one association and session
// per remote UDP address and port (index.ts describes the protocol).

import dgram from 'node:dgram';
import type { ListenerContext, ListenerImpl } from '../types.js';
import { bindDgram, dgramType } from '../common/datagram.js';
import { IdleSweep } from '../common/flows.js';
import { bindError } from '../common/socket.js';
import { SctpChannel } from './channel.js';
import { checksumOk, isInit } from './packet.js';
import { MAX_SCTP_PORT, newSctpSocket } from './package.js';
import { FlowTransport } from './transport.js';

/** An association that is not up this long after its INIT is given up. */
const SETUP_TIMEOUT_MS = 10_000;
/** Associations being set up at once on one listener (each holds a little state per INIT). */
const MAX_PENDING_ASSOCIATIONS = 1024;

export interface SctpUdpListenerConfig {
  address: string;
  /** The SCTP port the associations are for. */
  port: number;
  /** The UDP encapsulation port bound. */
  udpPort: number;
  idleTimeout: number;
}

export class SctpUdpListener implements ListenerImpl {
  private main: dgram.Socket | undefined;
  private readonly flows = new Map<string, SctpChannel>();
  private pending = 0;
  private seq = 0;
  private readonly idle: IdleSweep<SctpChannel>;
  private stopped = false;

  constructor(private readonly cfg: SctpUdpListenerConfig, private readonly ctx: ListenerContext) {
    // Associations being set up are left to the setup timeout, and ones
    // shutting down to the shutdown guard; their entries must stay, the
    // shutdown's packets still come to them.
    this.idle = new IdleSweep<SctpChannel>(cfg.idleTimeout, {
      table: () => this.flows,
      flow: (entry) => {
        const flow = entry as SctpChannel;
        return flow.established && !flow.closed ? flow : undefined;
      },
      takeActivity: (flow) => {
        const n = flow.activity;
        flow.resetActivity();
        return n;
      },
      expired: (flow) => {
        this.ctx.log.info({ listener: this.ctx.listenerName, peer: flow.peer }, 'SCTP/UDP session idle timeout');
        flow.close();
      },
    });
  }

  async start(): Promise<void> {
    const { address, udpPort } = this.cfg;
    const sock = dgram.createSocket({ type: dgramType(address) });
    try {
      await bindDgram(sock, udpPort, address, true);
    } catch (err) {
      sock.close();
      throw bindError(err, `SCTP/UDP listener "${this.ctx.listenerName}" cannot bind UDP ${address}:${udpPort}`);
    }
    this.main = sock;
    sock.on('message', (msg, rinfo) => this.onPacket(msg, rinfo));
    sock.on('error', (err) => this.ctx.log.warn({ listener: this.ctx.listenerName, err: err.message }, 'SCTP/UDP listener socket error'));
    this.idle.start();
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

  bound(): boolean {
    return this.main !== undefined;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.idle.stop();
    // Sessions are ended by the gateway; associations not yet up have none.
    for (const flow of [...this.flows.values()]) if (!flow.established) flow.close();
    const main = this.main;
    this.main = undefined;
    if (main) await new Promise<void>((resolve) => {
      try { main.close(() => resolve()); } catch { resolve(); }
    });
  }
}
