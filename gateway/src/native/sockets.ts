// Loads the sockets addon (native/sockets), built by scripts/build-native.mjs
// on `npm ci`. When it is missing the gateway still runs: the protocols that
// need it are reported unavailable with the reason from here (the build's
// BUILD_FAILED marker, or why loading failed).
//
// L7MP_NATIVE=off disables the addon (the plain-Node fallbacks, and the
// baseline of bench/udp-batch.ts).

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

export interface FdSocketHandle {
  readonly fd: number;
  readStart(): void;
  readStop(): void;
  watchWritable(on: boolean): void;
  /** Datagrams sent (>= 0; fewer than count: buffer full), or -errno. */
  send(bufs: Uint8Array[], count: number, addrs?: Uint8Array[]): number;
  close(): void;
}

export interface SockAddress { family: string | number; address?: string; port?: number; path?: string }

export interface SocketsAddon {
  readonly platform: string;
  readonly constants: {
    AF_UNIX: number; AF_INET: number; AF_INET6: number; AF_PACKET: number;
    SOCK_STREAM: number; SOCK_DGRAM: number; SOCK_SEQPACKET: number; SOCK_RAW: number;
    IPPROTO_SCTP: number; ETH_P_ALL: number;
  };
  readonly batchLayout: { batch: number; slot: number; addr: number };
  /**
   * The reactor's own waits (native/sockets/src/reactor.cc, "Owning the wait"), this thread's: out[0] waits
   * begun, [1] wakeups served in them, how they ended: [2] libuv had a ready fd, [3] libuv had work, [4] the deadline.
   */
  reactorStats?(out: Float64Array): void;
  socket(family: number, type: number, protocol: number): number;
  close(fd: number): void;
  bindUnix(fd: number, path: string): void;
  connectUnix(fd: number, path: string): void;
  /** reusePort: SO_REUSEPORT, so that every worker binds the same address (docs/workers.md). */
  bindInet(fd: number, host: string, port: number, reuseAddr: boolean, reusePort?: boolean): void;
  connectInet(fd: number, host: string, port: number): void;
  localAddress(fd: number): SockAddress;
  /** The bound port of an IP socket (getsockname), without localAddress's object; throws on any other. */
  localPort(fd: number): number;
  /** getpeername(2); throws ENOTCONN on a socket that is not connected. */
  peerAddress(fd: number): SockAddress;
  /** The pending error (SO_ERROR) as a code, e.g. how a non-blocking connect failed; undefined if none. */
  socketError(fd: number): string | undefined;
  listen(fd: number, backlog: number): void;
  shutdown(fd: number, how: 0 | 1 | 2): void;
  bindPacket(fd: number, ifname: string, ethertype: number): void;
  mkfifo(path: string, mode: number): boolean;
  setBuffers(fd: number, rcvbuf: number, sndbuf: number): void;
  sctpProbe(): string | undefined;
  initBatch(slab: Uint8Array, meta: Int32Array, addrs: Uint8Array): void;
  /**
   * mode 0: datagrams, onData(count); 1: accept, onData(fd); 2: accept TCP,
   * onData(fd, peerAddress, peerPort); 3: as 2 plus (localAddress, localPort).
   */
  FdSocket: new (
    fd: number, mode: 0 | 1 | 2 | 3,
    onData: (...args: never[]) => void, onWritable: () => void, onError: (code: string) => void,
  ) => FdSocketHandle;
  /**
   * The callbacks of every bare socket (fdOpen), called with its number
   * first; onAccepted for modes 1-3, with FdSocket's onData arguments after it.
   */
  setCallbacks(
    onData: (id: number, count: number) => void, onAccepted: (id: number, ...args: never[]) => void,
    onWritable: (id: number) => void, onError: (id: number, code: string) => void,
  ): void;
  /** A socket named by a number instead of a wrapped FdSocket (modes as FdSocket's); after setCallbacks(). */
  fdOpen(fd: number, mode: 0 | 1 | 2 | 3): number;
  fdReadStart(id: number): void;
  fdReadStop(id: number): void;
  fdWatchWritable(id: number, on: boolean): void;
  /** As FdSocketHandle.send; -EBADF once closed. */
  fdSend(id: number, bufs: Uint8Array[], count: number, addrs?: Uint8Array[]): number;
  /** Closes the fd; the number may name another socket afterwards. */
  fdClose(id: number): void;
  /** Raw stream path (rawstream.cc); absent from an addon built before it. */
  RawStream?: new (fd: number) => RawStreamHandle;
  /** A non-blocking stream connect: (host, port, bindHost?, bindPort?) or (unixPath, -1); returns the fd. */
  connectStream?(target: string, port: number, bindHost?: string, bindPort?: number): number;
  /** RawStreamHandle.connectedNow for a bare stream fd. */
  connectedNow?(fd: number): true | string | undefined;
  /** Close a bare stream fd; `reset`: with an RST (SO_LINGER 0). */
  closeStream?(fd: number, reset?: boolean): void;
  /** Accepts, connects and pairs in C (forward.cc); absent from an addon built before it. */
  Forwarder?: new (
    listenFd: number,
    onHandoff: (fd: number, address: string | undefined, port: number | undefined, code: string | undefined, target: number, generation: number) => void,
    onEnded: () => void,
    options: ForwarderOptions,
  ) => ForwarderHandle;
  /** Takes a UDP listener socket's new flows in C (udpfwd.cc); absent from an addon built before it. */
  UdpForwarder?: new (socket: number, onEnded: () => void, options: UdpForwarderOptions) => UdpForwarderHandle;
}

export interface UdpForwarderOptions extends Omit<ForwarderOptions, 'connectTimeoutMs'> {
  /** A flow ends after this long without a datagram either way (0: never). */
  idleTimeoutMs: number;
}

export interface ForwarderOptions {
  /** The listener's cap of live sessions. */
  max: number;
  connectTimeoutMs: number;
  /** Shared with core/admission.ts: the listener's live sessions (1 cell). */
  listenerLive?: Float64Array;
  /** Shared with core/admission.ts: [live sessions, max_sessions, descriptors sampled, sessions since the sample, descriptor ceiling or -1]. */
  global?: Float64Array;
  /** New connections per source address per second (0: no limit), the burst, and how many sources are tracked. */
  flowRate?: number;
  flowBurst?: number;
  flowSources?: number;
}

/** A live pair: [id, generation, started (ms since the epoch), address, port, local address, local port, target, bytes c->u, reads c->u, bytes u->c, reads u->c]. */
export type ForwarderPair = [number, number, number, string, number, string, number, number, number, number, number, number];

/** Doubles per record of ForwarderHandle.takeEnded. */
export const ENDED_RECORD = 12;

/**
 * What fastpath/compiled.ts drives of a compiled listener in the addon: the
 * stream Forwarder's pairs, or the UdpForwarder's flows (both "pairs" here).
 */
export interface CompiledHandle {
  /** Where new sessions go, by weight (default 1): [numeric host, port, weight?] or [unix path, -1, weight?] or [unix path]; [] hands every one over. */
  targets(list: ([string, number] | [string, number, number] | [string])[], generation: number, connectTimeoutMs?: number): void;
  /** No new sessions; live pairs go on. */
  stopAccepting(): void;
  /**
   * [live, accepted, paired, handed off, ended, failed, bytes c->u, bytes u->c, pending connects, connect failures]
   * (UdpForwarder: accepted counts datagrams taken, paired flows opened, handed off datagrams left to JavaScript, and an 11th cell the datagrams dropped).
   */
  stats(out: Float64Array): void;
  list(): ForwarderPair[];
  /**
   * Ended pairs, oldest first, ENDED_RECORD doubles each: [id, generation,
   * started, duration ms, bytes c->u, reads c->u, bytes u->c, reads u->c,
   * errno (0: none), end kind (END_KINDS' index), target, side of the error
   * (0 client, 1 upstream, -1)]; returns how many. In detail mode (setDetail)
   * `detail` gets, per record, [address, port, local address, local port].
   */
  takeEnded(out: Float64Array, detail?: ([string, number, string, number] | undefined)[]): number;
  /** Keep each pair's addresses for its ended record (for an access log, or ended sessions kept listed). */
  setDetail(on: boolean): void;
  /** The listener's cap of live sessions (options.max_sessions, read again at every change). */
  setMax(max: number): void;
  /** End one pair (FINs, or RSTs with reset) with end kind `kind` (default 2, deleted); false: no live pair has that id. */
  closePair(id: number, reset?: boolean, kind?: number): boolean;
  /** Stop accepting and close the listener, every pair (end kind `kind`, default 2) and pending connect. */
  close(reset?: boolean, kind?: number): void;
}

/**
 * A stream listener whose connections the addon accepts, connects upstream
 * and pairs itself (native/sockets/src/forward.cc); what it does not take
 * (a cap, the flow rate, no target, a failed or slow connect) goes to
 * onHandoff with the client's socket.
 */
export interface ForwarderHandle extends CompiledHandle {
  start(): void;
}

/**
 * A UDP listener socket's flows set up and carried in C (native/sockets/src/
 * udpfwd.cc); the datagrams it does not take stay in the socket's batches for
 * JavaScript. close() lets go of the socket, which stays JavaScript's.
 */
export interface UdpForwarderHandle extends CompiledHandle {
  /** A source (address * 65536 + port) whose flow JavaScript serves: the addon leaves its datagrams alone. */
  claim(key: number): void;
  release(key: number): void;
}

/** A stream socket held by the addon below net.Socket (native/sockets/src/rawstream.cc). */
export interface RawStreamHandle {
  readonly fd: number;
  /** true: the connect is over and succeeded; a code: it failed; undefined: still in progress (waitConnect). */
  connectedNow(): true | string | undefined;
  /** cb(undefined) once connected, cb(code) when the connect failed. */
  waitConnect(cb: (code: string | undefined) => void): void;
  /** Give the fd to Node (net.Socket({ fd })); the handle is empty afterwards. */
  release(): number;
  /** Close the socket; `reset`: with an RST (SO_LINGER 0). */
  close(reset?: boolean): void;
}

/** The repository root: the directory that holds native/sockets/binding.gyp. */
function findRoot(): string | undefined {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 8; i++) {
    if (fs.existsSync(path.join(dir, 'native', 'sockets', 'binding.gyp'))) return dir;
    const up = path.dirname(dir);
    if (up === dir) break;
    dir = up;
  }
  return undefined;
}

let loaded: { addon?: SocketsAddon; reason?: string } | undefined;

function load(): { addon?: SocketsAddon; reason?: string } {
  if (process.env.L7MP_NATIVE === 'off') return { reason: 'the native sockets addon is disabled (L7MP_NATIVE=off)' };
  if (process.platform !== 'linux') return { reason: `the native sockets addon supports Linux only (this is ${process.platform})` };
  const root = findRoot();
  if (root === undefined) return { reason: 'the native sockets addon was not found (no native/sockets next to the gateway)' };
  const dir = path.join(root, 'native', 'sockets', 'build');
  const file = path.join(dir, 'Release', 'l7mp_sockets.node');
  if (!fs.existsSync(file)) {
    let why = 'it was never built (run `npm run build:native`)';
    try {
      const marker = fs.readFileSync(path.join(dir, 'BUILD_FAILED'), 'utf8').trim().split('\n');
      why = `its build failed (native/sockets/build/BUILD_FAILED): ${marker.slice(-3).join(' | ')}`;
    } catch { /* no marker: never built */ }
    return { reason: `the native sockets addon is not available: ${why}` };
  }
  try {
    const addon = createRequire(import.meta.url)(file) as SocketsAddon;
    if (addon.platform !== 'linux') return { reason: 'the native sockets addon was built without Linux support' };
    return { addon };
  } catch (err) {
    return { reason: `the native sockets addon failed to load: ${(err as Error).message}` };
  }
}

/** The addon, or undefined (see socketsUnavailable() for why). */
export function socketsAddon(): SocketsAddon | undefined {
  loaded ??= load();
  return loaded.addon;
}

/** Why the addon cannot be used, or undefined when it can. */
export function socketsUnavailable(): string | undefined {
  loaded ??= load();
  return loaded.reason;
}

/** Node-style error code of a negative errno (-ENOENT -> "ENOENT"). */
export function errnoCode(neg: number): string {
  const n = -neg;
  for (const [name, v] of Object.entries(os.constants.errno)) if (v === n) return name;
  return `E${n}`;
}
