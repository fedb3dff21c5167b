// How the suite starts the gateway under test and the echo peers behind it.
// The cases never spawn a gateway or an upstream themselves: they ask a
// Driver. ProcessDriver (process-driver.ts) runs everything as local
// processes on 127.0.0.1; a container driver (testcontainers) implements the
// same interface to run the gateway image and the peer images instead.
//
// Clients (the sockets, curl, the WebSocket and JSONSocket clients that talk
// to the gateway's listeners) run in the suite's own process in every mode:
// a driver only says where a listener port is reachable (GatewayHandle.reach).

/** The echo peers a cluster can be pointed at. */
export type PeerKind =
  | 'udp-echo'   // each datagram back as one datagram
  | 'tcp-echo'   // the byte stream back; EOF answered by EOF
  | 'unix-echo'  // as tcp-echo, on a Unix stream socket
  | 'http-echo'  // the request body back as the response body
  | 'ws-echo'    // each WebSocket message back, same frame type
  | 'unix-dgram-echo'      // each Unix datagram back to its sender
  | 'unix-seqpacket-echo'  // each seqpacket message back; EOF answered by EOF
  | 'pipe-echo'            // bytes from the FIFO `path` back into `path`.reply
  | 'sctp-udp-echo'        // SCTP over UDP (usrsctp): each message back; UDP and SCTP port both `port`
  | 'packet-echo';         // every Ethernet frame of the type on `link`'s far end back, MACs swapped

export interface PeerArgs {
  /** Bind address (IP peers). */
  readonly address?: string;
  readonly port?: number;
  /** Socket path (Unix peers). */
  readonly path?: string;
  /**
   * When set, the peer sends this tag first on every new flow (connection,
   * UDP flow, WebSocket, HTTP response body) and echoes after it, so that a
   * client can tell which upstream served it.
   */
  readonly tag?: string;
  /** The veth pair whose far end the peer serves (AF_PACKET peers). */
  readonly link?: L2Link;
}

/**
 * A veth pair for AF_PACKET (conformance/l2.ts): the gateway binds `host`
 * (in the host's network namespace, which container mode shares), the peer
 * runs on `peer` inside the namespace `netns`.
 */
export interface L2Link {
  readonly host: string;
  readonly peer: string;
  readonly netns: string;
  /** The namespace's file (`ip netns` makes it), for setns(). */
  readonly netnsPath: string;
  readonly mtu: number;
  /** Delete the pair and its namespace. */
  remove(): Promise<void>;
}

export interface PeerHandle {
  readonly kind: PeerKind;
  readonly args: PeerArgs;
  /** What the peer printed (stdout and stderr), for failure reports. */
  logs(): string;
  /** Kill the peer and everything it forked; resolves once it is gone. */
  stop(): Promise<void>;
}

export interface GatewayStartOptions {
  /** A label for logs and failure reports. */
  readonly name?: string;
  /** admin.log_level of the gateway (default: info, so that warnings and session ends are logged). */
  readonly logLevel?: string;
}

export interface GatewayHandle {
  readonly name: string;
  /** Base URL of the REST API, e.g. http://127.0.0.1:40123 */
  readonly apiBase: string;
  /** Where the suite's clients reach a listener that the config binds on `port`. */
  reach(port: number): { host: string; port: number };
  /** Everything the gateway process logged so far (stdout and stderr). */
  logs(): string;
  stop(): Promise<void>;
}

export interface Driver {
  readonly mode: 'process' | 'container';
  /** The address listeners in generated configs bind to. */
  readonly listenAddress: string;
  /**
   * Addresses upstream peers can bind to, in order; several so that one
   * cluster port can front several endpoints (load balancing).
   */
  readonly peerAddresses: readonly string[];
  /** A port free for TCP and UDP on the listen address and every peer address. */
  freePort(): Promise<number>;
  /** A fresh path for a Unix socket or a file both the gateway and the suite can reach. */
  tmpPath(name: string): string;
  /**
   * Start a gateway on `config` (listeners, clusters, rulelists... as in a
   * config file). The driver adds the REST controller listener itself and
   * resolves once the API answers.
   */
  startGateway(config: Record<string, unknown>, opts?: GatewayStartOptions): Promise<GatewayHandle>;
  /** Start an echo peer and resolve once it accepts traffic. */
  startPeer(kind: PeerKind, args: PeerArgs): Promise<PeerHandle>;
  /** A new veth pair (AF_PACKET listeners and upstreams); the caller removes it. */
  l2Link(): Promise<L2Link>;
  /** Stop everything still running and release temporary files. */
  close(): Promise<void>;
}

/** Thrown by drivers that cannot run here; the CLI maps it to exit code 2. */
export class DriverUnavailableError extends Error {}
