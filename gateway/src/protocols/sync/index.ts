// Sync: a rendezvous point. Sessions whose metadata agree at `query` form one
// group, and whatever one member sends reaches every other member.
//
// A member alone in its group has nobody to send to. l7mp's broadcast stream
// holds such data and hands it over once a peer joins (a config that bridges
// two UDP listeners through Sync keeps the first datagram), so we hold it too,
// bounded: per group SYNC_BUFFER.messages and SYNC_BUFFER.bytes, per cluster
// SYNC_BUFFER.clusterBytes. Over a bound the new message is refused (counted
// as `sync_buffer`, logged once per interval), not the oldest dropped: the
// first messages of a conversation (a handshake, a header) are the ones a late
// peer cannot do without.

import { GatewayError, invalid } from '../../core/errors.js';
import type { Refusals } from '../../observe/refusals.js';
import { getAtPath } from '../../routing/jsonpath.js';
import { TransformChannel } from '../common/transform.js';
import type { ClusterImpl, ConnectRequest, ProtocolDef, SessionView } from '../types.js';
import * as v from '../common/validate.js';

export const SYNC_BUFFER = {
  /** Messages held per group while its sender is alone. */
  messages: 64,
  /** Bytes held per group. */
  bytes: 256 * 1024,
  /** Bytes held by all groups of one Sync cluster. */
  clusterBytes: 4 * 1024 * 1024,
} as const;

interface Group {
  readonly members: Set<SyncChannel>;
  /** Sent while no other member was there; handed to the next one to join. */
  pending: Uint8Array[];
  pendingBytes: number;
}

export class SyncCluster implements ClusterImpl {
  private readonly groups = new Map<string, Group>();
  private bufferedBytes = 0;

  constructor(
    private readonly query: string,
    private readonly clusterName: string,
    private readonly refusals: Refusals,
    private readonly limits: { messages: number; bytes: number; clusterBytes: number } = SYNC_BUFFER,
  ) {}

  async connect(req: ConnectRequest): Promise<SyncChannel> {
    const label = getAtPath(req.session.metadata, this.query);
    if (label === undefined || label === null || typeof label === 'object') {
      throw new GatewayError('CONNECT_FAILED', `Sync: session metadata has no scalar value at "${this.query}"`);
    }
    const key = String(label);
    let group = this.groups.get(key);
    if (!group) {
      group = { members: new Set(), pending: [], pendingBytes: 0 };
      this.groups.set(key, group);
    }
    const g = group;
    const ch = new SyncChannel(req.session, (chunk) => this.broadcast(g, ch, chunk), () => this.leave(key, g, ch));
    g.members.add(ch);
    if (g.pending.length > 0) {
      // The channel holds these until the session links it (its early queue).
      const held = g.pending;
      this.release(g);
      for (const c of held) ch.receive(c);
    }
    return ch;
  }

  /** Bytes held for absent peers, all groups (tests, diagnostics). */
  get buffered(): number {
    return this.bufferedBytes;
  }

  private broadcast(g: Group, from: SyncChannel, chunk: Uint8Array): void {
    if (g.members.size > 1) {
      for (const member of g.members) if (member !== from) member.receive(chunk);
      return;
    }
    const n = chunk.byteLength;
    const over = g.pending.length >= this.limits.messages ? 'messages'
      : g.pendingBytes + n > this.limits.bytes ? 'bytes'
      : this.bufferedBytes + n > this.limits.clusterBytes ? 'cluster bytes' : undefined;
    if (over !== undefined) {
      this.refusals.refuse('sync_buffer', from.session.listener ?? '', {
        cluster: this.clusterName, session: from.session.name, bound: over, limits: this.limits,
      });
      return;
    }
    // A copy: the sender's chunk may live in a buffer its protocol reuses.
    g.pending.push(Uint8Array.prototype.slice.call(chunk));
    g.pendingBytes += n;
    this.bufferedBytes += n;
  }

  private release(g: Group): void {
    this.bufferedBytes -= g.pendingBytes;
    g.pending = [];
    g.pendingBytes = 0;
  }

  private leave(key: string, g: Group, ch: SyncChannel): void {
    g.members.delete(ch);
    if (g.members.size > 0) return;
    // The last member went: what it held was for a peer that never came, and
    // the session that sent it has ended.
    this.release(g);
    if (this.groups.get(key) === g) this.groups.delete(key);
  }

  close(): void {
    for (const g of this.groups.values()) {
      for (const ch of g.members) ch.close();
      this.release(g);
    }
    this.groups.clear();
  }
}

export class SyncChannel extends TransformChannel {
  constructor(
    readonly session: SessionView,
    private readonly send_: (chunk: Uint8Array) => void,
    private readonly leave: () => void,
  ) {
    super();
  }
  protected transform(chunk: Uint8Array): void {
    this.send_(chunk);
  }
  receive(chunk: Uint8Array): void {
    this.deliver(chunk);
  }
  protected override doClose(err: Error | undefined): void {
    this.leave();
    super.doClose(err);
  }
}

export const syncProtocol: ProtocolDef = {
  name: 'Sync',
  kind: 'datagram',
  summary: 'Rendezvous point: sessions with equal metadata at `query` exchange their traffic',
  cluster: {
    virtual: true,
    workers: 'one',
    retriable: false,
    create(spec, ctx, field) {
      const query = v.optString(spec, 'query', field);
      if (query === undefined || query === '') throw invalid(`${field}.query`, 'is required: the metadata path that groups sessions');
      return new SyncCluster(query, ctx.clusterName, ctx.refusals);
    },
  },
};
