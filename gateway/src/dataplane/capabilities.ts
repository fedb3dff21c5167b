// What a channel declares to the kernel fast paths (fastpath/): capabilities
// as data on the channel, so that fastpath/ reads them without knowing which
// protocol built the channel, and protocols do not import fastpath/.

/** The channel's handle on the splice path: close() aborts it (both sockets; `reset`: with RSTs). */
export interface SpliceControl {
  close(reset?: boolean): void;
}

/** What the session's channels must offer to be spliced (fastpath/splice.ts; the TCP and Unix stream channel implements it). */
export interface SpliceableChannel {
  /**
   * Could the socket be handed over right now? -1: no (a write still queued
   * in Node, EOF seen or sent, closing); else the bytes read from it and not
   * yet forwarded, which spliceAttach() will hand over.
   */
  spliceCheck(): number;
  /** Node's fd for the socket, or -1. */
  spliceFd(): number;
  /**
   * Hand over: stop using the Node socket (the addon owns dup()s of its fd)
   * and return the bytes read but not yet forwarded, oldest first (undefined:
   * some could not be taken; the session must then fail, not lose them).
   */
  spliceAttach(path: SpliceControl): Uint8Array[] | undefined;
  /** The kernel path ended: finish the channel (once). */
  spliceEnded(err: Error | undefined): void;
}

/**
 * A stream socket still held below Node (the raw stream path: the TCP and
 * Unix stream listeners and clusters make these when the path is on).
 * fastpath/raw.ts pairs two of them in the addon when the session's route
 * needs no user-space bytes; any other use moves the socket to Node first.
 */
export interface RawStreamable {
  /** The addon's RawStream handle while the socket is still raw (not paired, not moved to Node, not closed). */
  rawHandle(): unknown;
  /** Paired: the addon owns the socket now; closing the channel closes the pair through `path`. */
  rawAttach(path: SpliceControl): void;
  /** The pair ended: finish the channel (once). */
  spliceEnded(err: Error | undefined): void;
}

export function isRawStream(ch: unknown): ch is RawStreamable {
  return typeof (ch as Partial<RawStreamable> | undefined)?.rawAttach === 'function' && (ch as RawStreamable).rawHandle() !== undefined;
}

export interface FlowAddress {
  address: string;
  port: number;
}

/**
 * A datagram flow the kernel offload (fastpath/offload) may forward in user
 * space's stead: a channel that only relays datagrams (the offload program
 * rewrites addresses and ports, nothing else). A subclass that does more per
 * datagram sets kernelOffload to false.
 */
export interface OffloadableFlow {
  readonly kernelOffload: boolean;
  readonly closed: boolean;
  /** The flow's 5-tuple as a connected socket has it (undefined if unconnected or closed). */
  addresses(): { local: FlowAddress; remote: FlowAddress } | undefined;
  /** Set by the offload while the kernel forwards: packets forwarded since the last call, for the idle sweep. */
  kernelActivity: (() => number) | undefined;
}

export function isOffloadable(ch: unknown): ch is OffloadableFlow {
  return (ch as Partial<OffloadableFlow> | undefined)?.kernelOffload === true;
}
