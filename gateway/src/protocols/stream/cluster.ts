// TCP and Unix stream clusters: one connection per session.

import net from 'node:net';
import { GatewayError } from '../../core/errors.js';
import { rawAddon } from '../../native/rawstream.js';
import type { ClusterContext, ClusterImpl, ConnectRequest } from '../types.js';
import { SocketChannel } from './channel.js';
import type { RawStreamChannel } from './raw-channel.js';
import { rawConnect, type RawTarget } from './raw-connect.js';
import { AddressMemo } from '../common/address-memo.js';

function connectSocket(opts: net.NetConnectOpts, timeoutMs: number, what: string): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const sock = net.connect({ ...opts, allowHalfOpen: true } as net.NetConnectOpts);
    const timer = setTimeout(() => {
      sock.destroy();
      reject(new GatewayError('CONNECT_FAILED', `${what}: connect timed out after ${timeoutMs} ms`));
    }, timeoutMs);
    sock.once('connect', () => {
      clearTimeout(timer);
      sock.off('error', onError);
      resolve(sock);
    });
    const onError = (err: Error) => {
      clearTimeout(timer);
      reject(new GatewayError('CONNECT_FAILED', `${what}: ${err.message}`, undefined, { cause: err }));
    };
    sock.once('error', onError);
  });
}

export class TcpCluster implements ClusterImpl {
  constructor(
    private readonly port: number,
    private readonly bindAddress: string | undefined,
    private readonly bindPort: number | undefined,
    private readonly ctx: ClusterContext,
  ) {}

  /** Endpoint address -> its raw connect target, or null for a host name (which takes Node's connect, which resolves it). */
  private readonly targets = new AddressMemo<RawTarget | null>((address) => {
    const peer = `${address}:${this.port}`;
    return net.isIP(address) === 0 ? null : { host: address, port: this.port, bindHost: this.bindAddress, bindPort: this.bindPort, what: `TCP ${peer}`, peer };
  });

  /** A compiled listener's target (fastpath/compiled.ts): a numeric address without a bind. */
  compiledTarget(ep: { readonly address: string }): [string, number] | undefined {
    const t = this.bindAddress === undefined && this.bindPort === undefined ? this.targets.get(ep.address) : null;
    return t === null ? undefined : [t.host, t.port];
  }

  /** The raw path (raw-connect.ts): the channel at once where the connect is over already, else its promise; undefined: connect(). */
  connectNow(req: ConnectRequest): RawStreamChannel | Promise<RawStreamChannel> | undefined {
    const ep = req.endpoint;
    const addon = ep !== undefined && req.raw === true ? rawAddon() : undefined;
    const t = addon === undefined ? null : this.targets.get(ep!.address);
    return t === null ? undefined : rawConnect(addon!, t, req.timeoutMs);
  }

  async connect(req: ConnectRequest): Promise<SocketChannel | RawStreamChannel> {
    const ep = req.endpoint;
    if (!ep) throw new GatewayError('CONNECT_FAILED', `cluster "${this.ctx.clusterName}" has no endpoint`);
    const raw = this.connectNow(req);
    if (raw !== undefined) return raw;
    const sock = await connectSocket({
      host: ep.address, port: this.port, localAddress: this.bindAddress, localPort: this.bindPort, noDelay: true,
    } as net.NetConnectOpts, req.timeoutMs, `TCP ${ep.address}:${this.port}`);
    return new SocketChannel(sock, `${ep.address}:${this.port}`);
  }
}

export class UnixCluster implements ClusterImpl {
  /** A compiled listener's target (fastpath/compiled.ts): the socket's path, when it fits a sockaddr_un. */
  compiledTarget(ep: { readonly address: string }): [string] | undefined {
    return ep.address !== '' && Buffer.byteLength(ep.address) < 108 ? [ep.address] : undefined;
  }

  /** The raw path, as TcpCluster's: a Unix connect is over at once, so the channel comes at once. */
  connectNow(req: ConnectRequest): RawStreamChannel | Promise<RawStreamChannel> | undefined {
    const ep = req.endpoint;
    const addon = ep !== undefined && req.raw === true ? rawAddon() : undefined;
    if (addon === undefined) return undefined;
    return rawConnect(addon, { host: ep!.address, port: -1, what: `UnixDomainSocket ${ep!.address}`, peer: ep!.address }, req.timeoutMs);
  }

  async connect(req: ConnectRequest): Promise<SocketChannel | RawStreamChannel> {
    const ep = req.endpoint;
    if (!ep) throw new GatewayError('CONNECT_FAILED', 'UnixDomainSocket cluster has no endpoint');
    const raw = this.connectNow(req);
    if (raw !== undefined) return raw;
    const sock = await connectSocket({ path: ep.address }, req.timeoutMs, `UnixDomainSocket ${ep.address}`);
    return new SocketChannel(sock, ep.address);
  }
}
