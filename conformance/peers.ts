// Long file: the peer tables of every protocol, kept in one place so that a protocol's listener and cluster peers are read together.
// What each protocol needs to be exercised, keyed by the registry's protocol
// name. The matrix itself comes from the registry (matrix.ts); this file only
// says, for a protocol:
//
//   LISTENER_PEERS[name]  how to write a listener spec on a port/path, and the
//                         client that talks to it
//   CLUSTER_PEERS[name]   how to write a cluster spec, and the echo peer(s)
//                         behind it
//   TRANSFORM_PEERS       how to insert transform clusters (transform: true)
//                         into the ingress/egress chains of a base pair
//
// A protocol in the registry without an entry here still shows in the matrix,
// as "skipped: no conformance peer for X". See CONTRIBUTING.md, "Adding a protocol".

import type { Driver, L2Link, PeerHandle, PeerKind } from './driver.js';
import {
  curlPost, curlPostMany, jsonSocketClient, tcpClient, udpClient, unixClient, wsClient,
  type ClientSession, type HttpResult, type OpenOptions, type RequestOptions, type Target,
} from './clients.js';
import { pipeClient, unixDgramClient, unixSeqpacketClient } from './native-clients.js';
import { portHolders } from './ports.js';
import { sctpUdpClient } from './sctp-client.js';
import { FRAME_MTU, packetClient } from './l2.js';
import { udpEchoPeer } from './udp-echo.js';

type Spec = Record<string, unknown>;

/**
 * node, at the path it has in the gateway image (and, from a Debian package,
 * on the host): STDIO-fork's allow-list needs an argv that is the same in
 * every mode.
 */
const STDIO_ECHO_NODE = '/usr/bin/node';

/** Largest UDP payload over IPv4 (65535 − 20 B IP header − 8 B UDP header). */
export const UDP_MAX_PAYLOAD = 65507;

export interface ListenerAt {
  /** Address to bind. */
  readonly address: string;
  readonly port: number;
  /** A fresh socket path, for file-based listeners. */
  readonly path: string;
  /** A fresh veth pair, for listeners with `link` set (AF_PACKET): bind its host end. */
  readonly link?: L2Link;
}

interface ListenerPeerBase {
  /** The listener spec (without name and rules). */
  spec(at: ListenerAt): Spec;
  /** Largest payload one client message can carry (bytes); Infinity for byte streams. */
  readonly maxMessage: number;
  /** The client can half-close and sees the gateway's EOF. */
  readonly halfClose: boolean;
  /** Metadata path that tells sources apart, for the ConsistentHash case. */
  readonly hashKey: string;
  /** Local addresses the client can send from (several: the hash case uses each as one source). */
  readonly sources: readonly string[];
  /** The cluster protocol of this listener's representative pair (retry, load balancing, convergence). */
  readonly representative: string;
  /** Set (to the reason) when the listener serves one session at a time: the concurrent case is skipped. */
  readonly oneSessionAtATime?: string;
  /** Set (to the reason) when only process mode can run this peer: other modes skip the pair. */
  readonly processOnly?: string;
  /** The listener binds an interface: every listener gets a veth pair of its own (ListenerAt.link), its client sends from the far end. */
  readonly link?: boolean;
  /**
   * Set (to the reason) when the listener is one session for all its clients
   * (AF_PACKET: emitted when it starts): the counters case measures what its
   * traffic added to that session; the load-balancing and convergence cases,
   * which need new sessions, are skipped.
   */
  readonly singleton?: string;
  /** The client's messages are whole Ethernet frames already (AF_PACKET): it goes unwrapped to a `frames` cluster. */
  readonly frames?: boolean;
  /** Bytes the gateway sees on top of each payload the client sends (a frame header); the counters case adds them. */
  readonly frameOverhead?: number;
  /** This gateway's raw socket path can take the listener's sessions (TCP, Unix stream): the cases check which path they took (path-check.ts). */
  readonly rawPath?: boolean;
}

export interface SessionListenerPeer extends ListenerPeerBase {
  /** One client session per open(). */
  readonly mode: 'session';
  open(t: Target, o: OpenOptions): Promise<ClientSession>;
}

export interface RequestListenerPeer extends ListenerPeerBase {
  /** One gateway session per request (HTTP). */
  readonly mode: 'request';
  request(t: Target, body: Buffer, o: RequestOptions): Promise<HttpResult>;
  requestMany(t: Target, count: number, body: string, o: RequestOptions): Promise<HttpResult[]>;
}

export type ListenerPeer = SessionListenerPeer | RequestListenerPeer;

export interface PeerEnv {
  readonly driver: Driver;
}

/** Echo upstreams sharing one cluster spec: endpoint i is upstream i. */
export interface Upstreams {
  readonly spec: Spec;
  readonly endpoints: readonly { readonly address: string; readonly tag: string | undefined }[];
  /** Admin settings the gateway needs for this cluster (STDIO-fork's allow-list). */
  readonly admin?: Spec;
  /** Kill upstream i (the retry case), and start it again on the same address. */
  kill(i: number): Promise<void>;
  restore(i: number): Promise<void>;
  stop(): Promise<void>;
}

export interface ClusterPeer {
  readonly maxMessage: number;
  readonly halfClose: boolean;
  /** This gateway's raw socket path can connect the cluster's upstreams (TCP, Unix stream): see ListenerPeer.rawPath. */
  readonly rawPath?: boolean;
  /**
   * The gateway holds a connection to the upstream and sees it go (TCP,
   * WebSocket...): the retry case then expects a reconnect event. Over UDP a
   * restarted peer is simply there again.
   */
  readonly connectionOriented: boolean;
  /** The upstreams can tag their replies (needed by the load-balancing and convergence cases). */
  readonly canTag: boolean;
  /**
   * The echo peer mishandles datagrams that arrive while a flow starts.
   * socat's UDP-LISTEN,fork forks a child per flow and re-binds; datagrams
   * that arrive meanwhile (of that flow or of a new one) are dropped or taken
   * for another flow, whose child echoes them out of order. With this set the
   * cases establish a flow with one round trip before a burst, never start
   * flows at the same moment, and skip the concurrent case.
   */
  readonly fragileFlowStart: boolean;
  /** Set (to the reason) when an upstream serves one session at a time: the concurrent case is skipped. */
  readonly oneSessionAtATime?: string;
  /**
   * Extra time (ms) the concurrent case allows for the first answers, when
   * every new session starts a program (STDIO-fork): a burst of them takes
   * seconds of CPU before the first byte comes back.
   */
  readonly sessionStartMs?: number;
  /** Set (to the reason) when only process mode can run this peer: other modes skip the pair. */
  readonly processOnly?: string;
  /**
   * Every message the gateway sends to this cluster is a whole Ethernet frame
   * (AF_PACKET): clients of other listeners put a header in front of each
   * payload (l2.ts, framedListener). Listeners whose messages are frames
   * already (`frames` on the listener side) pass theirs on as they are.
   */
  readonly frames?: boolean;
  /**
   * Every session of this cluster reads all the traffic of its endpoint
   * (AF_PACKET: every frame of the type on the interface), an ended one too
   * while it lingers for late replies. Behind listeners whose sessions share
   * one reply path (request mode, or `oneSessionAtATime`) the cases then run
   * one at a time, each after the sessions before it ended.
   */
  readonly sharedReads?: boolean;
  /** Only these listener protocols can route here; other pairs are skipped with `onlyFromReason`. */
  readonly onlyFrom?: readonly string[];
  readonly onlyFromReason?: string;
  /**
   * An endpoint address of this cluster spec that nothing serves (the health
   * case's dead endpoint): an IP nobody binds on the cluster's port, or a
   * socket path nothing is bound at. Unset: the health case is skipped.
   */
  deadAddress?(driver: Driver): string;
  /** Start `n` echo upstreams behind one cluster spec; with `tags`, upstream i sends tags[i] first. */
  start(env: PeerEnv, n: number, tags?: readonly string[]): Promise<Upstreams>;
}

export interface TransformPeer {
  /** Column label. */
  readonly label: string;
  /** The registry protocols (transform: true) this entry exercises together. */
  readonly covers: readonly string[];
  /** identity: traffic passes unchanged; drop: nothing passes. */
  readonly effect: 'identity' | 'drop';
  /** The route's chains on a base pair of `kind`; `id` is unique per gateway (use it in log prefixes). */
  chains(kind: 'datagram' | 'byte', id: string): { ingress: unknown[]; egress: unknown[] };
  /** A smaller message limit than the base pair's, with the reason. */
  limit?(kind: 'datagram' | 'byte'): { bytes: number; reason: string } | undefined;
  /** Extra evidence after traffic carrying `token` passed: return an error message, or undefined. */
  verify?(logs: string, id: string, token: string): string | undefined;
}

/** The base pairs transforms are inserted into: listener and cluster protocol of the same name. */
export const TRANSFORM_BASES: readonly string[] = ['UDP', 'TCP'];

// ------------------------------------------------------------- upstreams

/** Peers started by a driver, restartable one by one. */
function processUpstreams(env: PeerEnv, spec: Spec, kind: PeerKind, args: { address?: string; port?: number; path?: string; tag?: string }[], addressOf: (i: number) => string): Promise<Upstreams> {
  return startAll(spec, args.map((a) => () => env.driver.startPeer(kind, a)), args.map((a, i) => ({ address: addressOf(i), tag: a.tag })));
}

async function startAll(
  spec: Spec,
  starters: (() => Promise<{ stop(): Promise<void> }>)[],
  endpoints: { address: string; tag: string | undefined }[],
): Promise<Upstreams> {
  const handles: ({ stop(): Promise<void> } | undefined)[] = [];
  try {
    for (const s of starters) handles.push(await s());
  } catch (err) {
    await Promise.all(handles.map((h) => h?.stop()));
    throw err;
  }
  return {
    spec,
    endpoints,
    async kill(i) {
      const h = handles[i];
      handles[i] = undefined;
      await h?.stop();
    },
    async restore(i) {
      if (handles[i] === undefined) handles[i] = await restart(starters[i]!, endpoints[i]!.address);
    },
    async stop() {
      await Promise.all(handles.map((h) => h?.stop()));
      handles.fill(undefined);
    },
  };
}

/**
 * A peer started again on the port it had. The port was free to anyone while
 * the peer was down; if its bind fails, the error names what holds the port.
 */
async function restart(start: () => Promise<{ stop(): Promise<void> }>, address: string): Promise<{ stop(): Promise<void> }> {
  try {
    return await start();
  } catch (err) {
    const msg = (err as Error).message;
    const port = /EADDRINUSE [^\s]*:(\d+)/.exec(msg)?.[1];
    if (port === undefined) throw err;
    throw new Error(`${msg}; the port is held by: ${await portHolders(Number(port), address)}`);
  }
}

/** A loopback address no peer binds (the drivers' peers use 127.0.0.1-4): connects are refused, datagrams answered by ICMP. */
const DEAD_IP = '127.0.0.9';

/** A socket or FIFO path in the suite's folder that nothing is bound at. */
const deadPath = (driver: Driver): string => driver.tmpPath('dead-endpoint');

function ipPeer(protocol: string, kind: PeerKind, extra: Partial<ClusterPeer>): ClusterPeer {
  return {
    maxMessage: Infinity,
    halfClose: false,
    connectionOriented: true,
    canTag: true,
    fragileFlowStart: false,
    deadAddress: (driver) => {
      if (driver.peerAddresses.includes(DEAD_IP)) throw new Error(`${DEAD_IP} is a peer address: pick another dead endpoint`);
      return DEAD_IP;
    },
    ...extra,
    async start(env, n, tags) {
      const addrs = env.driver.peerAddresses;
      if (n > addrs.length) throw new Error(`${protocol}: ${n} upstreams need ${n} peer addresses, the driver has ${addrs.length}`);
      const port = await env.driver.freePort();
      const args = Array.from({ length: n }, (_, i) => ({ address: addrs[i]!, port, ...(tags?.[i] !== undefined ? { tag: tags[i] } : {}) }));
      return processUpstreams(env, { protocol, port }, kind, args, (i) => addrs[i]!);
    },
  };
}

// --------------------------------------------------------------- listeners

const LOOPBACK_SOURCES = ['127.0.0.1', '127.0.0.2', '127.0.0.3'] as const;

export const LISTENER_PEERS: Readonly<Record<string, ListenerPeer>> = {
  UDP: {
    mode: 'session',
    spec: (at) => ({ protocol: 'UDP', address: at.address, port: at.port }),
    maxMessage: UDP_MAX_PAYLOAD,
    halfClose: false,
    hashKey: 'IP/src_addr',
    sources: LOOPBACK_SOURCES,
    representative: 'UDP',
    open: udpClient,
  },
  TCP: {
    mode: 'session',
    spec: (at) => ({ protocol: 'TCP', address: at.address, port: at.port }),
    maxMessage: Infinity,
    halfClose: true,
    hashKey: 'IP/src_addr',
    sources: LOOPBACK_SOURCES,
    representative: 'TCP',
    rawPath: true,
    open: tcpClient,
  },
  UnixDomainSocket: {
    mode: 'session',
    spec: (at) => ({ protocol: 'UnixDomainSocket', filename: at.path }),
    maxMessage: Infinity,
    halfClose: true,
    // A Unix client has no address: every session of the listener is one source.
    hashKey: 'UNIX/filename',
    sources: [],
    representative: 'UnixDomainSocket',
    rawPath: true,
    open: unixClient,
  },
  HTTP: {
    mode: 'request',
    spec: (at) => ({ protocol: 'HTTP', address: at.address, port: at.port }),
    maxMessage: Infinity,
    halfClose: true,
    hashKey: 'IP/src_addr',
    sources: LOOPBACK_SOURCES,
    representative: 'HTTP',
    request: curlPost,
    requestMany: curlPostMany,
  },
  WebSocket: {
    mode: 'session',
    spec: (at) => ({ protocol: 'WebSocket', address: at.address, port: at.port }),
    // The listener's default max_message_size is 1 MiB: far above every payload here.
    maxMessage: 1024 * 1024,
    halfClose: false,
    hashKey: 'IP/src_addr',
    sources: LOOPBACK_SOURCES,
    representative: 'WebSocket',
    open: wsClient,
  },
  JSONSocket: {
    mode: 'session',
    spec: (at) => ({ protocol: 'JSONSocket', transport: { protocol: 'UDP', address: at.address, port: at.port } }),
    // JSONSocket over UDP: one message is one UDP datagram.
    maxMessage: UDP_MAX_PAYLOAD,
    halfClose: false,
    hashKey: 'IP/src_addr',
    sources: LOOPBACK_SOURCES,
    // The JSONSocket echo upstream is a gateway (Echo cannot tag), so the heavy cases use UDP upstreams.
    representative: 'UDP',
    open: jsonSocketClient,
  },
  AF_PACKET: {
    mode: 'session',
    // A veth pair per listener: the gateway binds the host end, the client
    // (packet_peer in the far end's namespace) sends frames to it.
    spec: (at) => ({ protocol: 'AF_PACKET', interface: at.link!.host, ethertype: 0x88b5 }),
    link: true,
    // The frame's payload: the veth MTU (l2.ts says why it is 8178).
    maxMessage: FRAME_MTU,
    // The gateway's messages are whole frames, header included.
    frames: true,
    frameOverhead: 14,
    halfClose: false,
    hashKey: 'AF_PACKET/interface',
    sources: [],
    representative: 'AF_PACKET',
    singleton: 'an AF_PACKET listener is one session per interface and ethertype, emitted when it starts (a singleton)',
    oneSessionAtATime: 'an AF_PACKET listener is one session per interface (a singleton): clients on the link share it, and each sees every frame that comes back',
    open: packetClient,
  },
  'UNIX/dgram': {
    mode: 'session',
    spec: (at) => ({ protocol: 'UNIX/dgram', filename: at.path }),
    // One receive slot of the gateway's batch; also what a Unix datagram socket takes by default.
    maxMessage: 65536,
    halfClose: false,
    hashKey: 'UNIX/filename',
    sources: [],
    representative: 'UNIX/dgram',
    open: unixDgramClient,
  },
  'UNIX/seqpacket': {
    mode: 'session',
    spec: (at) => ({ protocol: 'UNIX/seqpacket', filename: at.path }),
    maxMessage: 65536,
    halfClose: true,
    hashKey: 'UNIX/filename',
    sources: [],
    representative: 'UNIX/seqpacket',
    open: unixSeqpacketClient,
  },
  PIPE: {
    mode: 'session',
    spec: (at) => ({ protocol: 'PIPE', filename: at.path, reply_filename: `${at.path}.reply` }),
    maxMessage: Infinity,
    // The client holds the reply FIFO open read-write (so that opening it never blocks): it sees no EOF.
    halfClose: false,
    hashKey: 'PIPE/filename',
    sources: [],
    representative: 'PIPE',
    oneSessionAtATime: 'a FIFO is one channel: writers that overlap share one session (see the PIPE protocol notes)',
    open: pipeClient,
  },
  SCTP: {
    mode: 'session',
    // SCTP over UDP (RFC 6951): the kernel here has no SCTP. UDP and SCTP port are one number.
    spec: (at) => ({ protocol: 'SCTP', encapsulation: 'udp', address: at.address, port: at.port }),
    // MAX_SCTP_MESSAGE of gateway/src/protocols/sctp/package.ts.
    maxMessage: 65536,
    halfClose: false,
    hashKey: 'IP/src_addr',
    sources: LOOPBACK_SOURCES,
    // usrsctp binds its UDP port on the wildcard address, so several echo
    // peers cannot share one port on 127.0.0.1-4 (load balancing): the heavy
    // cases run towards UDP upstreams, exercising the SCTP listener.
    representative: 'UDP',
    open: (t, o) => sctpUdpClient(t, o),
  },
};

// ---------------------------------------------------------------- clusters

/** AF_PACKET echo upstreams: a veth pair each, the echo (packet_peer) in the far end's namespace. */
const AF_PACKET_PEER: ClusterPeer = {
  // The frame's payload; the cases' payloads get a 14-byte header on top.
  maxMessage: FRAME_MTU,
  halfClose: false,
  connectionOriented: false,
  // An L2 echo has no flows to tag: it cannot tell the gateway's sessions apart.
  canTag: false,
  fragileFlowStart: false,
  frames: true,
  sharedReads: true,
  oneSessionAtATime: 'every AF_PACKET session on an interface reads every frame of the ethertype: sessions that overlap see each other\'s echoes',
  async start(env, n) {
    const links: L2Link[] = [];
    try {
      for (let i = 0; i < n; i++) links.push(await env.driver.l2Link());
      const ups = await startAll(
        { protocol: 'AF_PACKET', ethertype: 0x88b5 },
        links.map((link) => () => env.driver.startPeer('packet-echo', { link })),
        links.map((link) => ({ address: link.host, tag: undefined })),
      );
      return {
        ...ups,
        async stop() {
          await ups.stop();
          await Promise.all(links.map((l) => l.remove()));
        },
      };
    } catch (err) {
      await Promise.all(links.map((l) => l.remove()));
      throw err;
    }
  },
};

export const CLUSTER_PEERS: Readonly<Record<string, ClusterPeer>> = {
  // Only socat's fork-per-flow echo needs flows started one at a time (udp-echo.ts).
  UDP: ipPeer('UDP', 'udp-echo', { maxMessage: UDP_MAX_PAYLOAD, connectionOriented: false, fragileFlowStart: udpEchoPeer() === 'socat' }),
  TCP: ipPeer('TCP', 'tcp-echo', { halfClose: true, rawPath: true }),
  UnixDomainSocket: {
    maxMessage: Infinity,
    halfClose: true,
    rawPath: true,
    connectionOriented: true,
    canTag: true,
    fragileFlowStart: false,
    deadAddress: deadPath,
    async start(env, n, tags) {
      const paths = Array.from({ length: n }, (_, i) => env.driver.tmpPath(`up${i}.sock`));
      const args = paths.map((p, i) => ({ path: p, ...(tags?.[i] !== undefined ? { tag: tags[i] } : {}) }));
      return processUpstreams(env, { protocol: 'UnixDomainSocket' }, 'unix-echo', args, (i) => paths[i]!);
    },
  },
  HTTP: ipPeer('HTTP', 'http-echo', {
    halfClose: true,
    onlyFrom: ['HTTP'],
    onlyFromReason: 'HTTP cluster needs an HTTP session',
  }),
  WebSocket: ipPeer('WebSocket', 'ws-echo', {}),
  JSONSocket: {
    maxMessage: UDP_MAX_PAYLOAD,
    halfClose: false,
    connectionOriented: false,
    canTag: false,
    fragileFlowStart: false,
    // The upstream is a real JSONSocket server: a second gateway, JSONSocket listener -> Echo.
    async start(env, n) {
      const port = await env.driver.freePort();
      const addrs = env.driver.peerAddresses.slice(0, n);
      const starters = addrs.map((address, i) => async () => {
        const gw = await env.driver.startGateway({
          listeners: [{
            name: 'jsonsocket-echo',
            spec: { protocol: 'JSONSocket', transport: { protocol: 'UDP', address, port } },
            rules: [{ action: { route: { destination: { name: 'echo', spec: { protocol: 'Echo' } } } } }],
          }],
        }, { name: `jsonsocket-echo-${i}`, logLevel: 'warn' });
        return { stop: () => gw.stop() };
      });
      return startAll({ protocol: 'JSONSocket', transport: { protocol: 'UDP', port } }, starters, addrs.map((address) => ({ address, tag: undefined })));
    },
  },
  'UNIX/dgram': unixPeer('UNIX/dgram', 'unix-dgram-echo', { maxMessage: 65536, halfClose: false, connectionOriented: false }),
  'UNIX/seqpacket': unixPeer('UNIX/seqpacket', 'unix-seqpacket-echo', { maxMessage: 65536, halfClose: true, connectionOriented: true }),
  PIPE: {
    maxMessage: Infinity,
    // The peer (socat PIPE) holds its FIFOs open read-write: it never sees nor sends EOF.
    halfClose: false,
    connectionOriented: false,
    canTag: false,
    fragileFlowStart: false,
    oneSessionAtATime: 'a FIFO pair is one channel: a new session takes the FIFOs over from the one before',
    // The peer holds its FIFOs open, so it never sends EOF, and an HTTP response ends with the upstream's EOF.
    onlyFrom: ['UDP', 'TCP', 'UnixDomainSocket', 'WebSocket', 'JSONSocket', 'UNIX/dgram', 'UNIX/seqpacket', 'PIPE', 'AF_PACKET', 'SCTP'],
    onlyFromReason: 'an HTTP response ends with the upstream\'s EOF, and a FIFO peer (which keeps its FIFOs open) never sends one',
    async start(env, n) {
      const paths = Array.from({ length: n }, (_, i) => env.driver.tmpPath(`up${i}.fifo`));
      return processUpstreams(env, { protocol: 'PIPE', reply_suffix: '.reply' }, 'pipe-echo', paths.map((p) => ({ path: p })), (i) => paths[i]!);
    },
  },
  AF_PACKET: AF_PACKET_PEER,
  SCTP: {
    maxMessage: 65536,
    // SCTP has no half-close: a SHUTDOWN ends both directions.
    halfClose: false,
    connectionOriented: true,
    canTag: true,
    fragileFlowStart: false,
    // usrsctp (conformance/sctp_udp_echo.c), SCTP over UDP on one port number for both.
    async start(env, n, tags) {
      // usrsctp binds its UDP encapsulation socket on the wildcard address:
      // one port cannot front several peers (no listener uses SCTP as its representative).
      if (n > 1) throw new Error(`SCTP: ${n} upstreams on one port are not possible with usrsctp (its UDP socket binds the wildcard address)`);
      const port = await env.driver.freePort();
      const address = env.driver.peerAddresses[0]!;
      return processUpstreams(env, { protocol: 'SCTP', encapsulation: 'udp', port }, 'sctp-udp-echo',
        [{ address, port, ...(tags?.[0] !== undefined ? { tag: tags[0] } : {}) }], () => address);
    },
  },
  'STDIO-fork': {
    maxMessage: Infinity,
    halfClose: true,
    connectionOriented: true,
    canTag: false,
    fragileFlowStart: false,
    // A node per session: about 0.2 s of CPU before it echoes, so the
    // concurrent case's 24 at once take several seconds on a small, busy
    // machine (measured: 1.6 to 2.5 s with 2 cores, both modes).
    sessionStartMs: 12_000,
    // No upstream process: the gateway runs an echo program itself, one per
    // session. Not cat: the gateway image (container mode) holds only node.
    // Its stdin back to stdout, EOF answered by EOF.
    async start() {
      const cmd = [STDIO_ECHO_NODE, '-e', 'process.stdin.pipe(process.stdout)'];
      return {
        ...(await startAll({ protocol: 'STDIO-fork', cmd }, [], [])),
        admin: { stdio_fork: { commands: [cmd] } },
      };
    },
  },
};

function unixPeer(protocol: string, kind: PeerKind, extra: Pick<ClusterPeer, 'maxMessage' | 'halfClose' | 'connectionOriented'>): ClusterPeer {
  return {
    ...extra,
    canTag: false,
    fragileFlowStart: false,
    deadAddress: deadPath,
    async start(env, n) {
      const paths = Array.from({ length: n }, (_, i) => env.driver.tmpPath(`up${i}.sock`));
      return processUpstreams(env, { protocol }, kind, paths.map((p) => ({ path: p })), (i) => paths[i]!);
    },
  };
}

// -------------------------------------------------------------- transforms

/** Logger lines written to the gateway's stdout that carry `token`, by direction. */
function loggerLines(logs: string, prefix: string, token: string): Set<string> {
  const dirs = new Set<string>();
  for (const line of logs.split('\n')) {
    if (!line.includes(token) || !line.includes(prefix)) continue;
    try {
      const j = JSON.parse(line) as { prefix?: string; direction?: string; data?: string };
      if (j.prefix === prefix && typeof j.data === 'string' && j.data.includes(token) && j.direction) dirs.add(j.direction);
    } catch { /* a pino line or a partial line */ }
  }
  return dirs;
}

export const TRANSFORM_PEERS: readonly TransformPeer[] = [
  {
    label: 'Logger',
    covers: ['Logger'],
    effect: 'identity',
    chains: (_kind, id) => ({
      ingress: [{ name: `log-in-${id}`, spec: { protocol: 'Logger', log_file: 'stdout', log_prefix: `conf-${id}` } }],
      egress: [{ name: `log-out-${id}`, spec: { protocol: 'Logger', log_file: 'stdout', log_prefix: `conf-${id}` } }],
    }),
    verify(logs, id, token) {
      const dirs = loggerLines(logs, `conf-${id}`, token);
      const missing = ['ingress', 'egress'].filter((d) => !dirs.has(d));
      return missing.length === 0 ? undefined : `no Logger line for the ${missing.join(' and ')} direction carrying "${token}" in the gateway's output`;
    },
  },
  {
    label: 'Echo',
    covers: ['Echo'],
    effect: 'identity',
    // In a chain, Echo hands each message to the next stage: an identity transform.
    chains: (_kind, id) => ({ ingress: [{ name: `echo-${id}`, spec: { protocol: 'Echo' } }], egress: [] }),
  },
  {
    label: 'Discard',
    covers: ['Discard'],
    effect: 'drop',
    chains: (_kind, id) => ({ ingress: [{ name: `discard-${id}`, spec: { protocol: 'Discard' } }], egress: [] }),
  },
  {
    label: 'Metric',
    covers: ['Metric'],
    effect: 'identity',
    // Counts and passes traffic on unchanged, both ways.
    chains: (_kind, id) => ({
      ingress: [{ name: `metric-in-${id}`, spec: { protocol: 'Metric' } }],
      egress: [{ name: `metric-out-${id}`, spec: { protocol: 'Metric' } }],
    }),
  },
  {
    label: 'JSONEncap+JSONDecap',
    covers: ['JSONEncap', 'JSONDecap'],
    effect: 'identity',
    chains: (kind, id) => kind === 'datagram'
      // Over datagrams the encapsulated message crosses the wire: the echo
      // peer returns the JSON, JSONDecap unwraps it on the way back.
      ? {
          ingress: [{ name: `encap-${id}`, spec: { protocol: 'JSONEncap' } }],
          egress: [{ name: `decap-${id}`, spec: { protocol: 'JSONDecap' } }],
        }
      // A byte stream may split or merge JSON messages: encap and decap back to back, both ways.
      : {
          ingress: [{ name: `encap-i-${id}`, spec: { protocol: 'JSONEncap' } }, { name: `decap-i-${id}`, spec: { protocol: 'JSONDecap' } }],
          egress: [{ name: `encap-e-${id}`, spec: { protocol: 'JSONEncap' } }, { name: `decap-e-${id}`, spec: { protocol: 'JSONDecap' } }],
        },
    limit: (kind) => kind === 'datagram'
      ? { bytes: 40 * 1024, reason: 'JSONEncap base64-encodes each message (4/3 of its size, plus the metadata): above about 48 KiB it no longer fits one UDP datagram' }
      : undefined,
  },
];
