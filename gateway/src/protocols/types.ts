// What a protocol plug-in declares and implements. The registry (registry.ts)
// lists every plug-in; the config validator, the REST API and the conformance
// matrix read their capabilities from there.

import type { CompiledHandle, ForwarderOptions } from '../native/sockets.js';
import type { Channel, ChannelKind } from '../dataplane/channel.js';
import type { GatewayError } from '../core/errors.js';
import type { Logger } from '../observe/log.js';
import type { RefusalReason, Refusals } from '../observe/refusals.js';
import type { EdgeLimits } from '../core/limits.js';

export type Spec = Record<string, unknown>;

/** What a cluster connection sees of the session it serves. */
export interface SessionView {
  readonly name: string;
  /** The listener the session came from (refusal counters are kept per listener). */
  readonly listener?: string;
  readonly metadata: Record<string, unknown>;
  readonly priv: SessionPriv;
}

/** Listener-private per-session data: how to answer a failed session. */
export interface SessionPriv {
  /** Report a setup failure to the peer (HTTP status page, JSONSocket error header, ...). */
  error?(status: number, body: unknown): void;
  /** Routing succeeded and every stage is connected, just before data flows (the JSONSocket 200 answer). */
  connected?(): void;
  /** The HTTP exchange, for listeners that serve HTTP. */
  http?: HttpExchange;
}

export interface HttpExchange {
  readonly method: string;
  readonly url: string;
  readonly headers: Record<string, string | string[] | undefined>;
  readonly remoteAddress: string;
  /** The address the listener is bound to (its spec address), when the listener knows it. */
  readonly localAddress?: string;
  /** Write a complete response (status, headers and the whole body). */
  respond(status: number, headers: Record<string, string>, body: string | Uint8Array): void;
  /**
   * Start a streamed response: the status line and headers now, the body
   * through the session's channel (whatever the destination sends back).
   * Without it the first body chunk goes out as 200 with no extra headers.
   */
  writeHead(status: number, headers: Record<string, string | string[]>): void;
  /** Whether a status line went out already (respond or writeHead). */
  readonly headSent: boolean;
  readonly responded: boolean;
}

export interface NewSession {
  /** Protocol-specific base name; the gateway de-duplicates it. */
  readonly name: string;
  readonly metadata: Record<string, unknown>;
  readonly channel: Channel;
  readonly priv?: SessionPriv;
  /** The listener asked ListenerContext.admit() already (before it spent a descriptor on the flow). */
  readonly admitted?: boolean;
  /**
   * The destination's first connect attempt was made already, by the addon
   * for a compiled listener (fastpath/compiled.ts), and failed: the session
   * goes on from there, with the retries its route allows.
   */
  readonly failedAttempt?: FailedAttempt;
}

/** A connect attempt made before the session existed: to which endpoint, and how it failed. */
export interface FailedAttempt {
  readonly endpoint: string;
  readonly message: string;
}

export interface ListenerContext {
  readonly listenerName: string;
  readonly log: Logger;
  /** Count (and rate-limit the logging of) an input refused at the edge. */
  readonly refusals: Refusals;
  /** Edge limits (admin.limits) and the gateway-wide message-byte budget. */
  readonly limits: EdgeLimits;
  /** Hand a new session to the router. */
  emit(session: NewSession): void;
  /**
   * Admission of a new flow (core/admission.ts) for listeners that must spend
   * a descriptor before emit(): false means refused (counted and logged
   * already); emit it then with `admitted: true`. Others leave it to emit().
   */
  admit(candidate: { readonly metadata: Record<string, unknown> }): boolean;
  /** Where a stream listener on the addon's Forwarder attaches it (fastpath/compiled.ts); absent: no compiling. */
  readonly compiled?: CompiledSite;
}

/** How a compiled listener's sessions are named and their metadata filled (fastpath/compiled.ts). */
export interface PairNaming {
  readonly protocol: 'TCP' | 'UNIX' | 'UDP';
  /** The listener's address and port (TCP, UDP), or its socket file (UNIX). */
  readonly address: string;
  readonly port: number;
  /** A TCP wildcard address: each session's local end is its own (getsockname). (UDP: the listener's address names them.) */
  readonly wildcard: boolean;
}

/** What a listener on the addon's Forwarder needs of fastpath/compiled.ts. */
export interface CompiledSite {
  options(listener: string, connectTimeoutMs: number): ForwarderOptions;
  attach(listener: string, f: CompiledHandle, naming: PairNaming): void;
  detach(listener: string, f: CompiledHandle): void;
  ended(listener: string): void;
  /** The addon's connect to `target` of `generation` failed with `code`: which endpoint, and the message the ordinary path would give. */
  failedAttempt(listener: string, generation: number, target: number, code: string): FailedAttempt | undefined;
}

export interface ListenerImpl {
  /** Bind. Rejects with a GatewayError (BIND_FAILED) when it cannot. */
  start(): Promise<void>;
  /** Unbind and release everything; live sessions are ended by the gateway. Never waits for clients. */
  stop(): Promise<void>;
  /**
   * Draining (core/drain.ts): take no new connections, keep the established
   * ones. Absent: the gateway refuses the new sessions instead.
   */
  stopAccepting?(): void;
  /** The listener is part of the configuration now: sessions emitted from here on can be routed. */
  ready?(): void;
  /** Whether the listener holds its socket now (readiness); absent means "bound once started". */
  bound?(): boolean;
  /**
   * Admission found no room for a new session (a cap or the descriptor
   * budget): end one idle session of this listener if there is one (early
   * drop) and say whether it did. Listeners with flow tables (UDP) have it.
   */
  evictIdle?(): boolean;
}

export interface ConnectRequest {
  /** The endpoint chosen by the load balancer; absent for virtual clusters. */
  readonly endpoint: { readonly name: string; readonly address: string } | undefined;
  readonly session: SessionView;
  /** Per-attempt connect timeout. */
  readonly timeoutMs: number;
  /** Where in the session the stage sits. */
  readonly role?: 'destination' | 'ingress' | 'egress';
  /**
   * The session may take the raw stream path (dataplane/raw-route.ts): a
   * stream cluster that can should connect below Node (a RawStreamable channel).
   */
  readonly raw?: boolean;
}

export interface ClusterContext {
  readonly clusterName: string;
  readonly log: Logger;
  /** Count (and rate-limit the logging of) an input refused at the edge. */
  readonly refusals: Refusals;
  /** Edge limits (admin.limits) and the gateway-wide message-byte budget. */
  readonly limits: EdgeLimits;
  /** Services the gateway offers to special clusters (the controller). */
  readonly services: GatewayServices;
  /** Where a cluster that reports outcomes (reportsOutcome) tells how each endpoint answered. */
  readonly outcomes?: EndpointOutcomes;
}

/** Passive health observations about endpoints (gateway/src/health). */
export interface EndpointOutcomes {
  /** The endpoint answered well (e.g. an HTTP status below 500). */
  success(endpoint: string): void;
  /** The endpoint answered with a failure (e.g. HTTP 5xx). */
  failure(endpoint: string, reason: string): void;
}

export interface GatewayServices {
  /** Serve one REST API exchange (used by L7mpController). */
  handleApi(exchange: HttpExchange, body: Uint8Array, session: string): Promise<void>;
  /** The REST body size limit in bytes. */
  maxBodyBytes(): number;
  /** The metrics text exposition (used by the Prometheus cluster); rejects when metrics are off. */
  exposition?(): Promise<{ contentType: string; body: string }>;
  /**
   * Admission of a REST call from its head alone (rate limit, bearer token),
   * before the body is read: undefined to serve it, else the error to answer.
   */
  admitApi?(exchange: HttpExchange): { readonly error: GatewayError; readonly headers: Record<string, string>; readonly refusal?: RefusalReason } | undefined;
  /** The static config's STDIO-fork allow-list (admin.stdio_fork.commands); undefined: STDIO-fork is off. */
  stdioForkCommands?(): readonly (readonly string[])[] | undefined;
}

export interface ClusterImpl {
  connect(req: ConnectRequest): Promise<Channel>;
  /**
   * Optional: connect at once where the channel needs no waiting (a UDP
   * socket, a raw stream connect that was over when connect() returned): the
   * channel, a throw as connect() would reject, or undefined to use
   * connect(). A connect it started that has to wait after all is its
   * promise instead (connect() is not called then). Spares a session the
   * promises of an asynchronous connect.
   */
  connectNow?(req: ConnectRequest): Channel | Promise<Channel> | undefined;
  /**
   * Optional: where the addon's Forwarder connects for this endpoint when a
   * listener's route is compiled (fastpath/compiled.ts): [numeric host, port]
   * or [unix path]; undefined when the addon cannot (a host name, a bind
   * address), and then no listener routing here is compiled.
   */
  compiledTarget?(endpoint: { readonly address: string }): [string, number] | [string] | undefined;
  /** The same for a compiled UDP listener's flows (the addon's UdpForwarder): [numeric IPv4 host, port]. */
  compiledDatagramTarget?(endpoint: { readonly address: string }): [string, number] | undefined;
  /**
   * Take the host resources the cluster needs (open its log file, ...) once
   * the change that adds it is about to commit, after listeners bound: a
   * rejected change must never create or open a file. close() releases them.
   */
  activate?(): void;
  /** Release cluster-wide resources (e.g. Sync rendezvous tables). */
  close?(): void;
}

export type ProtocolMode = 'singleton' | 'server';

/** A spec key that names a file; `streams` are its values that are not files (stdout, ...). */
export interface FileKey {
  readonly key: string;
  readonly streams?: readonly string[];
}

/**
 * Where a listener runs when the data plane has several worker processes
 * (admin.workers, docs/workers.md): `every` worker, each with its own socket
 * on a port shared with SO_REUSEPORT, or `one` worker, for what cannot be
 * shared (a path, a FIFO, an interface, per-listener state). A function
 * decides from the spec where that depends on the mode (UDP).
 */
export type WorkerPlacement = 'every' | 'one';

export interface ListenerSide {
  readonly modes: readonly ProtocolMode[];
  /** Absent: `one` (the safe choice for a protocol that does not say). */
  readonly workers?: WorkerPlacement | ((spec: Spec) => WorkerPlacement);
  /**
   * The socket a listener binds on `spec.port` (and `spec.address`) when
   * workers share it: the main process checks that the port is free
   * (workers/stand-in.ts). Absent: the listener binds no shared port.
   */
  readonly portKind?: 'tcp' | 'udp';
  /** Serves TLS with `spec.tls` (common/tls.ts). Absent: a spec with `tls` is refused, never served in the clear. */
  readonly tls?: true;
  /** Validate the spec (throw GatewayError naming the field) and build the listener; do not bind yet. */
  create(spec: Spec, ctx: ListenerContext, field: string): ListenerImpl;
}

export interface ClusterSide {
  /** Virtual clusters ignore endpoints and give each session its own channel. */
  readonly virtual: boolean;
  /**
   * `one`: the cluster's sessions must all live in one process (a FIFO read
   * by one session at a time, an interface's frames, Sync's pairing), so a
   * listener that routes to it runs on one worker. Absent: any worker.
   */
  readonly workers?: 'one';
  /** Whether a broken stage of this cluster can be reconnected. */
  readonly retriable: boolean;
  /**
   * The cluster judges each exchange itself (HTTP status) through
   * ClusterContext.outcomes; bytes received then do not count as a success.
   */
  readonly reportsOutcome?: boolean;
  /** A connect reaches nobody (UDP): only a request/answer exchange shows the endpoint is alive. */
  readonly connectionless?: boolean;
  /** Validate the spec (throw GatewayError naming the field) and build the cluster. */
  create(spec: Spec, ctx: ClusterContext, field: string): ClusterImpl;
  /**
   * Validate one endpoint spec (address or path); throw GatewayError naming
   * the field. `clusterSpec` is the (already validated) spec of the cluster
   * the endpoint joins, for protocols whose endpoints depend on it.
   */
  checkEndpoint?(spec: Spec, field: string, clusterSpec: Spec): void;
}

/**
 * Resolves the protocol of a nested spec for a role, or throws the error the
 * user should see (the registry's protocolFor), for protocols that compose
 * another (JSONSocket over its transport); passed in, so that no protocol
 * imports the registry that lists it.
 */
export type ProtocolLookup = (name: unknown, role: 'listener' | 'cluster', field: string) => ProtocolDef;

export interface ProtocolDef {
  readonly name: string;
  readonly aliases?: readonly string[];
  readonly kind: ChannelKind;
  readonly summary: string;
  readonly listener?: ListenerSide;
  readonly cluster?: ClusterSide;
  /** Set when the protocol is recognised but cannot run here; the reason is shown to users. */
  readonly unavailable?: string;
  /**
   * Set (to why, e.g. "runs programs") when the protocol touches the host
   * beyond its own sockets: allowed only from the static config file, a REST
   * call gets 403.
   */
  readonly staticOnly?: string;
  /**
   * The spec keys (dotted for nested objects) that name files, per place:
   * a REST call may name files only under admin.file_root (core/confine.ts).
   */
  readonly files?: Partial<Record<'listener' | 'cluster' | 'endpoint', readonly FileKey[]>>;
  /** Spec keys that hold the spec of an inner protocol (JSONSocket's transport), checked as that protocol. */
  readonly nestedSpecs?: readonly string[];
  /** Transform clusters sit in ingress/egress chains. */
  readonly transform?: boolean;
}
