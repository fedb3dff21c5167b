// The SCTP-over-UDP cluster: per session a UDP socket connected to the
// endpoint and one association over it (index.ts describes the protocol).

import dgram from 'node:dgram';
import { GatewayError } from '../../core/errors.js';
import type { ClusterContext, ClusterImpl, ConnectRequest } from '../types.js';
import { EOF_LINGER_MS, closeDgram, connectDgram, dgramType } from '../common/datagram.js';
import { SctpChannel } from './channel.js';
import { newSctpSocket } from './package.js';
import { FlowTransport } from './transport.js';

export interface SctpUdpClusterConfig {
  port: number;
  udpPort: number;
}

export class SctpUdpCluster implements ClusterImpl {
  constructor(private readonly cfg: SctpUdpClusterConfig, private readonly ctx: ClusterContext) {}

  async connect(req: ConnectRequest): Promise<SctpChannel> {
    const ep = req.endpoint;
    if (!ep) throw new GatewayError('CONNECT_FAILED', `cluster "${this.ctx.clusterName}" has no endpoint`);
    const { port, udpPort } = this.cfg;
    const target = `${ep.address}:${udpPort}/sctp:${port}`;
    const sock = dgram.createSocket({ type: dgramType(ep.address) });
    try {
      await connectDgram(sock, udpPort, ep.address);
    } catch (err) {
      closeDgram(sock);
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
    ch = new SctpChannel(socket, transport, target, () => closeDgram(sock), EOF_LINGER_MS, this.ctx.log);
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
