// A compiled UDP listener (fastpath/compiled.ts): the addon's UdpForwarder
// (native/sockets/src/udpfwd.cc) taps the listener's shared socket and sets
// up and carries, in C, the flows of a route that does not look at the
// datagrams; every other datagram stays in the socket's batches for
// SharedUdpSocket, as without it. A source over its flow rate is refused here,
// counted and logged as admission refuses one.
//
// The socket is the listener's: it closes once the listener stopped, the last
// JavaScript flow ended and the forwarder let go of it (close(), when its
// last flow ended: compiled.ts's retired entries).

import type { CompiledHandle, SocketsAddon, UdpForwarderHandle } from '../../native/sockets.js';
import type { CompiledSite, ListenerContext } from '../types.js';
import type { SharedUdpSocket } from './batch.js';

export class CompiledUdp implements CompiledHandle {
  private readonly f: UdpForwarderHandle;
  /** Drops and evictions already counted as refusals. */
  private dropped = 0;
  private evicted = 0;

  constructor(
    Udp: NonNullable<SocketsAddon['UdpForwarder']>,
    private readonly shared: SharedUdpSocket,
    private readonly ctx: ListenerContext & { readonly compiled: CompiledSite },
    local: { readonly address: string; readonly port: number },
    idleTimeoutS: number,
  ) {
    const site = ctx.compiled;
    const name = ctx.listenerName;
    const { connectTimeoutMs: _unused, ...options } = site.options(name, 0);
    this.f = new Udp(shared.sock.socketNumber, () => site.ended(name), { ...options, idleTimeoutMs: idleTimeoutS * 1000 });
    shared.useTap(this.f);
    site.attach(name, this, { protocol: 'UDP', address: local.address, port: local.port, wildcard: false });
  }

  /** The listener stops: no new flows; the live ones go on until they end or are cut (compiled.ts). */
  detach(): void {
    this.ctx.compiled.detach(this.ctx.listenerName, this);
  }

  targets(list: ([string, number] | [string, number, number] | [string])[], generation: number): void {
    this.f.targets(list, generation);
  }

  stopAccepting(): void {
    this.f.stopAccepting();
  }

  /**
   * Also counts, as refusals, what the addon counted since the last call: the
   * datagrams it dropped (cell 10) and the flows it evicted to make room (cell 11,
   * as admission counts JavaScript's early drops).
   */
  stats(out: Float64Array): void {
    this.f.stats(out);
    const { refusals, listenerName } = this.ctx;
    const dropped = out.length > 10 ? out[10]! : this.dropped;
    for (; this.dropped < dropped; this.dropped++) refusals.refuse('udp_dropped', listenerName);
    const evicted = out.length > 11 ? out[11]! : this.evicted;
    for (; this.evicted < evicted; this.evicted++) refusals.refuse('flow_evicted', listenerName, { because: 'a cap' });
  }

  list(): ReturnType<CompiledHandle['list']> {
    return this.f.list();
  }

  takeEnded(out: Float64Array, detail?: ([string, number, string, number] | undefined)[]): number {
    return this.f.takeEnded(out, detail);
  }

  setDetail(on: boolean): void {
    this.f.setDetail(on);
  }

  setMax(max: number): void {
    this.f.setMax(max);
  }

  closePair(id: number, reset?: boolean, kind?: number): boolean {
    return this.f.closePair(id, reset, kind);
  }

  /** The listener's socket failed: every flow ends with an error (end kind 1, core/drain.ts END_KINDS). */
  fail(): void {
    this.close(false, 1);
  }

  /** Every flow ends; the forwarder lets go of the socket, which closes if the listener is gone too. */
  close(reset?: boolean, kind?: number): void {
    this.f.close(reset, kind);
    this.shared.tapGone(this.f);
  }
}
