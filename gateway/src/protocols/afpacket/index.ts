// AF_PACKET: raw L2 frames on one interface, one frame per datagram, through
// the native sockets addon (Node has no packet sockets).
//
// listener: `interface` (name), `ethertype` (default 0x88B5, the IEEE
// "local experimental" type; 3 = ETH_P_ALL takes every frame). Like a UDP
// singleton: one session, emitted when the listener starts, carrying every
// frame of that type the interface receives; what the session sends back
// goes out of the interface as whole frames (the sender builds the Ethernet
// header). Frames the gateway sends itself are not read back.
// cluster: each endpoint `address` is an interface name; one packet socket
// per session, same ethertype rule (cluster spec `ethertype`).
// Needs CAP_NET_RAW.

import { GatewayError, invalid } from '../../core/errors.js';
import { NativeDatagramChannel } from '../../native/channel.js';
import type { SocketsAddon } from '../../native/sockets.js';
import type { ClusterImpl, ConnectRequest, ListenerContext, ListenerImpl, ProtocolDef, Spec } from '../types.js';
import { EOF_LINGER_MS } from '../common/datagram.js';
import { needsAddon, requireAddon } from '../common/socket.js';
import * as v from '../common/validate.js';

const DEFAULT_ETHERTYPE = 0x88b5;

function openPacket(a: SocketsAddon, ifname: string, ethertype: number): number {
  // The protocol of a packet socket is in network byte order.
  const proto = ((ethertype & 0xff) << 8) | (ethertype >> 8);
  const fd = a.socket(a.constants.AF_PACKET, a.constants.SOCK_RAW, proto);
  try {
    a.bindPacket(fd, ifname, ethertype);
  } catch (err) {
    a.close(fd);
    throw err;
  }
  return fd;
}

function ifName(spec: Spec, key: string, field: string): string {
  const n = v.optString(spec, key, field);
  if (n === undefined) throw invalid(`${field}.${key}`, 'is required: an interface name');
  if (!/^[A-Za-z0-9_.:-]{1,15}$/.test(n)) throw invalid(`${field}.${key}`, `"${n}" is not an interface name`);
  return n;
}

function ethertypeOf(spec: Spec, field: string): number {
  const t = v.optNumber(spec, 'ethertype', field, 1, 0xffff);
  if (t !== undefined && !Number.isInteger(t)) throw invalid(`${field}.ethertype`, 'must be an integer');
  return t ?? DEFAULT_ETHERTYPE;
}

class PacketListener implements ListenerImpl {
  private ch: NativeDatagramChannel | undefined;
  private pending: NativeDatagramChannel | undefined;

  constructor(private readonly ifname: string, private readonly ethertype: number, private readonly ctx: ListenerContext) {}

  async start(): Promise<void> {
    const a = requireAddon();
    let fd: number;
    try {
      fd = openPacket(a, this.ifname, this.ethertype);
    } catch (err) {
      throw new GatewayError('BIND_FAILED', `AF_PACKET listener "${this.ctx.listenerName}" cannot bind ${this.ifname}: ${(err as Error).message}`, undefined, { cause: err });
    }
    this.ch = new NativeDatagramChannel(a, fd, this.ifname, { what: `AF_PACKET ${this.ifname}` });
    this.pending = this.ch;
  }

  ready(): void {
    const ch = this.pending;
    this.pending = undefined;
    if (ch === undefined) return;
    this.ctx.emit({
      name: `AF_PACKET:${this.ifname}-${this.ctx.listenerName}`,
      channel: ch,
      metadata: { AF_PACKET: { interface: this.ifname, ethertype: this.ethertype } },
    });
  }

  bound(): boolean {
    return this.ch !== undefined && !this.ch.closed;
  }

  async stop(): Promise<void> {
    this.ch?.close();
    this.ch = undefined;
  }
}

class PacketCluster implements ClusterImpl {
  constructor(private readonly ethertype: number) {}

  async connect(req: ConnectRequest): Promise<NativeDatagramChannel> {
    const ep = req.endpoint;
    if (!ep) throw new GatewayError('CONNECT_FAILED', 'AF_PACKET cluster has no endpoint');
    const a = requireAddon();
    let fd: number;
    try {
      fd = openPacket(a, ep.address, this.ethertype);
    } catch (err) {
      throw new GatewayError('CONNECT_FAILED', `AF_PACKET ${ep.address}: ${(err as Error).message}`, undefined, { cause: err });
    }
    // Connectionless, as a UDP or UNIX/dgram cluster: after the session's EOF
    // keep taking replies, and report EOF once none came for a while (an
    // HTTP response through this cluster ends only then).
    return new NativeDatagramChannel(a, fd, ep.address, { what: `AF_PACKET ${ep.address}`, eofLingerMs: EOF_LINGER_MS });
  }
}

export const afPacketProtocol: ProtocolDef = needsAddon({
  name: 'AF_PACKET',
  kind: 'datagram',
  summary: 'raw L2 frames on an interface (one frame per message); listener is a singleton session; needs CAP_NET_RAW',
  // A packet socket sees every frame of its ethertype on the interface, other clients' included.
  staticOnly: 'captures and injects raw frames on host interfaces',
  listener: {
    modes: ['singleton'],
    create(spec, ctx, field) {
      return new PacketListener(ifName(spec, 'interface', field), ethertypeOf(spec, field), ctx);
    },
  },
  cluster: {
    virtual: false,
    workers: 'one',
    retriable: true,
    create(spec, _ctx, field) {
      return new PacketCluster(ethertypeOf(spec, field));
    },
    checkEndpoint(spec, field) {
      ifName(spec, 'address', field);
    },
  },
});
