// A session: the source channel from a listener, linked through the ingress
// chain to the destination and back through the egress chain.
//
//   ingress: source -> ingress[0] -> ... -> destination
//   egress:  destination -> egress[0] -> ... -> source
//
// Every stage has exactly one link feeding it and one link it feeds, so a
// stage that is reconnected (retry) is re-linked by pointing two links at the
// new channel. Links carry backpressure and count bytes and packets.
//
// Bulk byte-stream sessions may leave the JavaScript path: once a link has
// carried `spliceAt` bytes it offers its chunk to the session's Splicer
// (gateway/src/fastpath/splice.ts), which can hand both sockets to the kernel
// (splice(2)); `splice` then keeps the links' counters up to date.

import type { ListenerCount } from '../core/admission.js';
import { CLOCK_EPOCH, clockNow, clockSince } from './clock.js';
import type { Channel, ChannelSink, CloseListener, DrainListener } from './channel.js';
import type { SessionPriv, SessionView } from '../protocols/types.js';
import type { EndKind } from '../core/drain.js';
import type { EndpointObj, RetryPolicy } from '../core/model.js';

export type SessionStatus = 'INIT' | 'CONNECTED' | 'FINALIZING' | 'DESTROYED';
export type StageStatus = 'INIT' | 'CONNECTED' | 'READY' | 'DISCONNECTED' | 'RETRYING' | 'END';
export type StageRole = 'source' | 'destination' | 'ingress' | 'egress';

export interface SessionEvent {
  event: string;
  timestamp: string;
  message: string;
  content?: unknown;
}

export class Stage {
  channel: Channel | undefined;
  endpoint: EndpointObj | undefined;
  status: StageStatus = 'INIT';
  /** The link that feeds this stage, and the link this stage feeds. */
  inLink: Link | undefined;
  outLink: Link | undefined;

  constructor(readonly role: StageRole, readonly origin: string) {}
}

/** Where the session reports its stages' EOF and close (dataplane/pipeline.ts). */
export interface SessionOwner {
  stageClosed(session: Session, stage: Stage, err: Error | undefined): void;
  stageEnded(session: Session, stage: Stage): void;
}

export class Link implements ChannelSink, DrainListener {
  bytes = 0;
  packets = 0;
  /** The stage feeding this link sent EOF. */
  ended = false;

  constructor(
    public from: Channel,
    public to: Channel,
    readonly fromStage: Stage,
    private readonly session: Session,
  ) {}

  attach(): void {
    this.from.setSink(this);
    this.to.setDrainListener(this);
  }

  data(chunk: Uint8Array): void {
    this.bytes += chunk.byteLength;
    this.packets++;
    const at = this.session.spliceAt;
    if (at !== SPLICE_NEVER && this.bytes >= at && this.session.splicer!.offer(this.session, this, chunk)) return;
    if (!this.to.send(chunk)) this.from.pause();
  }

  end(): void {
    this.ended = true;
    this.session.owner.stageEnded(this.session, this.fromStage);
  }

  drain(): void {
    // A congested flow is quiescent right when its writes have drained.
    const at = this.session.spliceAt;
    if (at !== SPLICE_NEVER && this.bytes >= at && this.session.splicer!.offer(this.session, this, undefined)) return;
    this.from.resume();
  }
}

/**
 * A fast path's view of a session it forwards: the kernel offload
 * (gateway/src/fastpath/offload) or splice (gateway/src/fastpath/splice.ts).
 * While `active`, the kernel forwards the session's packets and `sync()`
 * folds the kernel's counts into the links, so every reader of the link
 * counters (counters(), metrics, the access log) sees user-space and kernel
 * traffic together.
 */
export interface FastPath {
  readonly active: boolean;
  /** 'raw': the raw stream path (fastpath/raw.ts) took the session from the start; shown in the dump. */
  readonly path?: 'raw';
  sync(): void;
  /** For the session dump: state, why not offloaded, the kernel's share of the counters. */
  toJSON(): Record<string, unknown>;
}

/** The splice fast path (gateway/src/fastpath/splice.ts): decides and performs the handover. */
export interface Splicer {
  /**
   * A link reached session.spliceAt: take over, with `chunk` in hand (from
   * data()) or without (from drain())? true: the kernel path has the session
   * now, and the chunk.
   */
  offer(s: Session, link: Link, chunk: Uint8Array | undefined): boolean;
}

/**
 * Session.spliceAt when the session is never offered to a splicer. Not
 * Infinity: a double in a field is a heap number of its own per session,
 * which every session would carry for the few that splice.
 */
export const SPLICE_NEVER = 0;

/** The ingress or egress chain of a route without transforms: shared, never written to. */
const NO_STAGES: readonly Stage[] = Object.freeze([]);

export class Session implements SessionView, CloseListener {
  status: SessionStatus = 'INIT';
  /**
   * The event log. Every session has INIT (at `started`), and a routed one
   * LOOKUP SUCCESS and CONNECT: those are kept as two numbers (ms after
   * start, -1: not logged) and the route's message, so that an idle session
   * holds no log at all. Any other event goes into `log`, flat: [event, ms
   * since start, message, content] each, made by the first. `events`
   * expands them all, in order (nothing is logged between the lookup and
   * the setup's CONNECT: pipeline.ts).
   */
  private lookupAt = -1;
  private connectAt = -1;
  private lookupMessage = '';
  private log: unknown[] | undefined;
  /** dataplane/clock.ts's ms at creation (a small integer, where a Date.now() in a field is a heap number per session). */
  private readonly startedAt = clockNow();
  ended: number | undefined;
  readonly source: Stage;
  /** The route's stages: set together, once, by setStages (stages() keeps them in one array). */
  private dst: Stage | undefined;
  private ing: readonly Stage[] = NO_STAGES;
  private eg: readonly Stage[] = NO_STAGES;
  /** Every stage once routed (setStages), in the order stages() gives. */
  private all: Stage[] | undefined;
  route: string | undefined;
  retry: RetryPolicy | undefined;
  /** All links in order: ingress links then egress links. */
  links: Link[] = [];
  endReason: string | undefined;
  /** Set when the session ended with a failure. */
  failed = false;
  /** Set when the gateway cut the session (core/drain.ts SessionCut): deleted, drain timeout, shutdown. */
  endKind: EndKind | undefined;
  warnedDowngrade = false;
  /** Set by the offload bridge when offload is enabled. */
  kernel: FastPath | undefined;
  /** Link byte count at which to offer the session to `splicer`, or SPLICE_NEVER. */
  spliceAt = SPLICE_NEVER;
  splicer: Splicer | undefined;
  /** Set once the kernel splice path took over. */
  splice: FastPath | undefined;
  /** The data-plane count this session is charged to (admission.ts); undefined for the control plane. */
  admitted: ListenerCount | undefined;

  constructor(
    readonly name: string,
    readonly listener: string,
    readonly metadata: Record<string, unknown>,
    sourceChannel: Channel,
    readonly priv: SessionPriv,
    readonly owner: SessionOwner,
  ) {
    this.source = new Stage('source', listener);
    this.source.channel = sourceChannel;
    this.source.status = 'CONNECTED';
    sourceChannel.setCloseListener(this);
  }

  event(event: string, message: string, content?: unknown): void {
    // Messages are often templates: flatten the rope (see udp-batch.ts flat()).
    message.charCodeAt(0);
    const log = (this.log ??= []);
    log.push(event, this.sinceStart(), message, content);
    // At most 64 events: INIT stays, the oldest of the others go.
    if (1 + (this.lookupAt >= 0 ? 1 : 0) + (this.connectAt >= 0 ? 1 : 0) + log.length / 4 <= 64) return;
    if (this.lookupAt >= 0) this.lookupAt = -1;
    else if (this.connectAt >= 0) this.connectAt = -1;
    else log.splice(0, 4);
  }

  /** LOOKUP SUCCESS: the route was chosen (`message` names it; one string per route). */
  lookedUp(message: string): void {
    this.lookupAt = this.sinceStart();
    this.lookupMessage = message;
  }

  /** The setup's CONNECT: every stage connected and linked. */
  connectedAll(): void {
    this.connectAt = this.sinceStart();
  }

  /** Date.now() at creation. */
  get started(): number {
    return CLOCK_EPOCH + this.startedAt;
  }

  /** ms since start, as a small integer where it is one (a double in a field or array is a heap object). */
  private sinceStart(): number {
    return clockSince(this.startedAt);
  }

  get events(): SessionEvent[] {
    const at = (ms: number) => new Date(this.started + ms).toISOString();
    const out: SessionEvent[] = [{ event: 'INIT', timestamp: at(0), message: 'Session created' }];
    if (this.lookupAt >= 0) out.push({ event: 'LOOKUP SUCCESS', timestamp: at(this.lookupAt), message: this.lookupMessage });
    if (this.connectAt >= 0) out.push({ event: 'CONNECT', timestamp: at(this.connectAt), message: 'Session connected' });
    const l = this.log ?? [];
    for (let i = 0; i < l.length; i += 4) {
      const e: SessionEvent = { event: l[i] as string, timestamp: at(l[i + 1] as number), message: l[i + 2] as string };
      if (l[i + 3] !== undefined) e.content = l[i + 3];
      out.push(e);
    }
    return out;
  }

  /** The route's stages (router.ts): set once, before any is connected. */
  setStages(destination: Stage, ingress: readonly Stage[], egress: readonly Stage[]): void {
    this.dst = destination;
    this.ing = ingress.length === 0 ? NO_STAGES : ingress;
    this.eg = egress.length === 0 ? NO_STAGES : egress;
    // A literal of the exact size: a spread builds its array by appending and
    // leaves room for 17 stages in every session.
    this.all = this.ing === NO_STAGES && this.eg === NO_STAGES
      ? [this.source, destination]
      : [this.source, ...this.ing, ...this.eg, destination];
  }

  get destination(): Stage | undefined {
    return this.dst;
  }

  get ingress(): readonly Stage[] {
    return this.ing;
  }

  get egress(): readonly Stage[] {
    return this.eg;
  }

  /** Source, ingress, egress, destination; the same array every time once routed: do not change it. */
  stages(): readonly Stage[] {
    return this.all ?? [this.source];
  }

  stageOf(channel: Channel): Stage | undefined {
    for (const s of this.stages()) if (s.channel === channel) return s;
    return undefined;
  }

  closed(channel: Channel, err: Error | undefined): void {
    const stage = this.stageOf(channel);
    if (stage) this.owner.stageClosed(this, stage, err);
  }

  /** Build and attach the links once every stage has a channel. */
  link(): void {
    const dst = this.destination!;
    // Sized up front: an array grown by push() keeps room for 17.
    this.links = new Array<Link>(this.ingress.length + this.egress.length + 2);
    let n = 0;
    let from = this.source;
    for (const to of this.ingress) from = this.addLink(n++, from, to);
    this.addLink(n++, from, dst);
    from = dst;
    for (const to of this.egress) from = this.addLink(n++, from, to);
    this.addLink(n, from, this.source);
    for (const s of this.stages()) s.status = 'READY';
    for (const l of this.links) l.attach();
  }

  private addLink(i: number, from: Stage, to: Stage): Stage {
    const l = new Link(from.channel!, to.channel!, from, this);
    from.outLink = l;
    to.inLink = l;
    this.links[i] = l;
    return to;
  }

  /** Point the links around `stage` at its new channel. */
  relink(stage: Stage, channel: Channel): void {
    stage.channel = channel;
    channel.setCloseListener(this);
    const inL = stage.inLink!;
    const outL = stage.outLink!;
    inL.to = channel;
    outL.from = channel;
    channel.setDrainListener(inL);
    channel.setSink(outL);
    stage.status = 'READY';
    inL.from.resume();
  }

  counters(): { ingress: { bytes: number; packets: number }; egress: { bytes: number; packets: number } } {
    this.kernel?.sync();
    this.splice?.sync();
    const first = this.links[0];
    const last = this.links[this.links.length - 1];
    return {
      ingress: { bytes: first?.bytes ?? 0, packets: first?.packets ?? 0 },
      egress: { bytes: last?.bytes ?? 0, packets: last?.packets ?? 0 },
    };
  }

  toJSON(): Record<string, unknown> {
    const { name: _n, ...metadata } = this.metadata;
    const stage = (s: Stage) => ({
      origin: s.origin,
      endpoint: s.endpoint ? { name: s.endpoint.name, spec: s.endpoint.spec } : undefined,
      peer: s.channel?.peer,
      status: s.status,
    });
    return {
      name: this.name,
      metadata,
      source: { origin: this.listener, peer: this.source.channel?.peer, status: this.source.status },
      destination: this.destination ? stage(this.destination) : { status: 'PENDING' },
      ingress: this.ingress.map(stage),
      egress: this.egress.map(stage),
      route: this.route,
      retry: this.retry,
      status: this.status,
      started: new Date(this.started).toISOString(),
      counters: this.counters(),
      offloaded: this.kernel?.active === true,
      ...(this.kernel ? { offload: this.kernel.toJSON() } : {}),
      ...(this.splice ? { spliced: true, path: this.splice.path, splice: this.splice.toJSON() } : {}),
      events: this.events,
    };
  }
}
