// UNIX/dgram and UNIX/seqpacket clusters: one socket per session connected
// to the endpoint's path.

import { GatewayError } from '../../core/errors.js';
import { NativeDatagramChannel } from '../../native/channel.js';
import type { SocketsAddon } from '../../native/sockets.js';
import type { ClusterImpl, ConnectRequest } from '../types.js';
import { EOF_LINGER_MS } from '../common/datagram.js';

export class UnixNativeCluster implements ClusterImpl {
  constructor(private readonly addon: SocketsAddon, private readonly seqpacket: boolean) {}

  async connect(req: ConnectRequest): Promise<NativeDatagramChannel> {
    const a = this.addon;
    const name = this.seqpacket ? 'UNIX/seqpacket' : 'UNIX/dgram';
    const ep = req.endpoint;
    if (!ep) throw new GatewayError('CONNECT_FAILED', `${name} cluster has no endpoint`);
    const fd = a.socket(a.constants.AF_UNIX, this.seqpacket ? a.constants.SOCK_SEQPACKET : a.constants.SOCK_DGRAM, 0);
    try {
      if (!this.seqpacket) a.bindUnix(fd, ''); // autobind: an abstract address the peer can reply to
      a.connectUnix(fd, ep.address);
    } catch (err) {
      a.close(fd);
      const code = (err as NodeJS.ErrnoException).code;
      const why = code === 'ECONNREFUSED' ? 'nobody is bound to it' : code === 'ENOENT' ? 'no such socket file'
        : code === 'EAGAIN' ? 'its backlog is full' : (err as Error).message;
      throw new GatewayError('CONNECT_FAILED', `${name} ${ep.address}: ${why}`, undefined, { cause: err });
    }
    return new NativeDatagramChannel(a, fd, ep.address, {
      seqpacket: this.seqpacket,
      eofLingerMs: this.seqpacket ? 0 : EOF_LINGER_MS,
      what: `${name} ${ep.address}`,
    });
  }
}
