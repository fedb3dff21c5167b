// NativeSocket: the TypeScript side of the addon's FdSocket. Reads arrive in
// batches (one call per recvmmsg); sends made in one turn of the event loop
// are queued and leave in one sendmmsg per socket from a setImmediate, i.e.
// right after the poll phase. Sends made while a batch of more than
// SMALL_BATCH datagrams is handed out leave earlier, after its 1st, 2nd, 4th,
// 8th... datagram and at its end: held until the whole batch was processed,
// a batch travels as one convoy (proxy, then upstream, then client, each idle
// while another works), and a closed-loop client of 16 datagrams in flight
// got 90k/s at 65 % proxy CPU against 150k/s at 97 % with the early flushes
// (bench/README.md, "the batch convoy"); the growing steps keep a full batch
// of 64 at 7 sendmmsg calls per destination socket. A small batch is not
// flushed by itself: with many sockets ready in one poll phase (the upstream
// sockets of UDP sessions, a datagram or two each) what their batches queue
// for one socket (the listener's, to every client) leaves in one sendmmsg
// instead of one each, and each sendmmsg to a sleeping receiver pays its
// wake-up (perf: try_to_wake_up's _raw_spin_unlock_irqrestore is the top
// kernel symbol of the proxy). Measured with 16 ping-pong flows: see the
// commit that made batches of up to SMALL_BATCH wait.
// Not from a microtask: uWebSockets.js and node's
// stream callbacks run microtasks after every message callback, so a
// microtask flush would send one datagram per system call (measured in one
// bench run: 48k WebSocket -> UDP messages/s flushing per microtask against
// 170-200k per loop turn, and 85k against ~100k UDP ping-pong datagrams/s).
// No closure or promise is created per datagram; the queue arrays are reused.
// Nor per socket: a NativeSocket's socket is a bare one of the addon's
// (fdOpen), a number rather than a wrapped object (which costs three heap
// objects, a global handle and a weak callback), and the addon calls the same
// four callbacks for every socket with that number first (setCallbacks),
// which finds the NativeSocket in `byId`; one immediate flushes every socket
// that queued in a turn. Per-socket closures with their contexts would be
// ~600 B of an idle UDP session's memory.

import { errnoCode, type SocketsAddon } from './sockets.js';

export interface NativeSocketHandler {
  /** One datagram (a fresh copy the receiver may keep); slot: its index in the batch, for sourceAddress(). */
  message(msg: Buffer, slot: number): void;
  /** A datagram larger than a receive slot arrived (it was truncated, so it is dropped). */
  oversized?(slot: number): void;
  /** The addon's UDP flow table refused a new flow's datagram: its source is over the flow rate. */
  flowRate?(slot: number): void;
  /** Listening sockets: a new connection (a non-blocking fd the receiver now owns). */
  accepted?(fd: number): void;
  /** The send queue drained after send() returned false. */
  drained?(): void;
  /** A send to one address failed (unconnected sockets): the datagram is dropped, the socket lives on. */
  sendFailed?(code: string, addr: Uint8Array): void;
  /** The socket failed; it is stopped and the owner should close it. */
  error(code: string): void;
}

/** Datagrams held while the socket buffer is full, beyond which new ones are dropped. */
const MAX_QUEUE = 4096;
/** Batches up to this long leave their sends to the per-turn immediate (see the header). */
const SMALL_BATCH = 4;

interface Area { slab: Buffer; meta: Int32Array; addrs: Buffer; slot: number; addr: number }
let area: Area | undefined;

/**
 * The process-wide receive slab, shared with the addon (callbacks are
 * synchronous, so one is enough); the first call also gives the addon the
 * callbacks of every socket.
 */
function batchArea(addon: SocketsAddon): Area {
  if (area === undefined) {
    const { batch, slot, addr } = addon.batchLayout;
    const a: Area = {
      slab: Buffer.alloc(batch * slot),
      meta: new Int32Array(batch * 2),
      addrs: Buffer.alloc(batch * addr),
      slot,
      addr,
    };
    addon.initBatch(a.slab, a.meta, a.addrs);
    addon.setCallbacks(onData, onAccepted, onWritable, onError);
    area = a;
  }
  return area;
}

/** The raw source address (sockaddr bytes) of a slot of the current batch; valid during message(). */
export function sourceAddress(slot: number): Buffer {
  const a = area!;
  const len = a.meta[2 * slot + 1]!;
  return a.addrs.subarray(slot * a.addr, slot * a.addr + Math.max(0, Math.min(len, a.addr)));
}

/** IPv4 source of a slot as one number (address * 65536 + port), or -1 if not IPv4. */
export function sourceIPv4Key(slot: number): number {
  const a = area!;
  const off = slot * a.addr;
  if (a.addrs.readUInt16LE(off) !== 2 /* AF_INET */) return -1;
  return a.addrs.readUInt32BE(off + 4) * 65536 + a.addrs.readUInt16BE(off + 2);
}

/** Open NativeSockets by their addon socket's number (numbers are reused once closed). */
const byId: (NativeSocket | undefined)[] = [];

function onData(id: number, n: number): void {
  byId[id]?.onBatch(n);
}

function onAccepted(id: number, fd: number): void {
  byId[id]?.handler.accepted?.(fd);
}

function onWritable(id: number): void {
  byId[id]?.onWritable();
}

function onError(id: number, code: string): void {
  byId[id]?.handler.error(code);
}

/** Sockets that queued sends this turn; one immediate flushes them all. */
const toFlush: NativeSocket[] = [];
let flushScheduled = false;

function flushQueued(): void {
  flushScheduled = false;
  flushNow();
}

/** Flush every socket that queued; an immediate still pending finds nothing left, or what was queued after. */
function flushNow(): void {
  // A flush can queue more (an error closes a session, whose other stage sends): the length is re-read.
  for (let i = 0; i < toFlush.length; i++) toFlush[i]!.flush();
  toFlush.length = 0;
}

export class NativeSocket {
  private readonly addon: SocketsAddon;
  private readonly id: number;
  private fdNum: number;
  private readonly area: Area;
  private readonly out: Uint8Array[] = [];
  private readonly outAddrs: Uint8Array[] | undefined;
  private flushPending = false;
  private waiting = false;
  private _closed = false;

  constructor(
    addon: SocketsAddon,
    fd: number,
    mode: 'data' | 'accept',
    readonly handler: NativeSocketHandler,
    /** Unconnected sockets: every send names its destination. */
    withAddresses = false,
  ) {
    this.addon = addon;
    this.area = batchArea(addon);
    this.outAddrs = withAddresses ? [] : undefined;
    this.id = addon.fdOpen(fd, mode === 'accept' ? 1 : 0);
    this.fdNum = fd;
    byId[this.id] = this;
  }

  /** The addon's number for the socket (fdOpen), which its UdpForwarder taps. */
  get socketNumber(): number {
    return this.id;
  }

  /** The fd, or -1 once closed. */
  get fd(): number {
    return this.fdNum;
  }

  get closed(): boolean {
    return this._closed;
  }

  /** Datagrams waiting to be sent. */
  get queued(): number {
    return this.out.length;
  }

  readStart(): void {
    if (!this._closed) this.addon.fdReadStart(this.id);
  }

  readStop(): void {
    if (!this._closed) this.addon.fdReadStop(this.id);
  }

  /** @internal the addon's read callback (through onData). */
  onBatch(n: number): void {
    const { slab, meta, slot } = this.area;
    for (let i = 0; i < n && !this._closed; i++) {
      const len = meta[2 * i]!;
      if (len < 0) {
        // -2: the addon's UDP flow table took it (udpfwd.cc); -3: it refused it for its source's flow rate.
        if (len === -1) this.handler.oversized?.(i);
        else if (len === -3) this.handler.flowRate?.(i);
        continue;
      }
      const msg = Buffer.allocUnsafe(len);
      slab.copy(msg, 0, i * slot, i * slot + len);
      this.handler.message(msg, i);
      // After datagram 1, 2, 4, 8, ... (i + 1 a power of two) of a batch that is not small: see the header.
      if (n > SMALL_BATCH && (i & (i + 1)) === 0 && toFlush.length > 0) flushNow();
    }
    if (n > SMALL_BATCH && toFlush.length > 0) flushNow();
  }

  /** Queue one datagram. false: the socket buffer is full (or the queue is), wait for drained(). */
  send(chunk: Uint8Array, addr?: Uint8Array): boolean {
    if (this._closed) return true;
    if (this.out.length >= MAX_QUEUE) return false; // datagram semantics: dropped
    this.out.push(chunk);
    if (this.outAddrs !== undefined) this.outAddrs.push(addr!);
    if (!this.flushPending && !this.waiting) {
      this.flushPending = true;
      toFlush.push(this);
      if (!flushScheduled) {
        flushScheduled = true;
        setImmediate(flushQueued);
      }
    }
    return !this.waiting;
  }

  /** Send what is queued now (also runs from the per-turn immediate). */
  flush(): void {
    this.flushPending = false;
    const out = this.out;
    while (out.length > 0 && !this._closed && !this.waiting) {
      const addrs = this.outAddrs;
      const r = this.addon.fdSend(this.id, out, out.length, addrs);
      if (r < 0) {
        const code = errnoCode(r);
        if (addrs !== undefined) {
          // One unreachable peer (its socket file is gone) must not stop the others.
          const a = addrs.shift()!;
          out.shift();
          this.handler.sendFailed?.(code, a);
          continue;
        }
        out.length = 0;
        this.handler.error(code);
        return;
      }
      if (r === out.length) {
        out.length = 0;
        if (addrs !== undefined) addrs.length = 0;
        return;
      }
      out.splice(0, r);
      addrs?.splice(0, r);
      if (r === 0) {
        this.waiting = true;
        this.addon.fdWatchWritable(this.id, true);
      }
    }
  }

  /** Call drained() once the socket is writable (a non-blocking connect completes so). */
  awaitWritable(): void {
    if (this._closed || this.waiting) return;
    this.waiting = true;
    this.addon.fdWatchWritable(this.id, true);
  }

  /** @internal the addon's writable callback. */
  onWritable(): void {
    this.waiting = false;
    this.flush();
    if (!this.waiting && !this._closed) this.handler.drained?.();
  }

  close(): void {
    if (this._closed) return;
    this._closed = true;
    this.out.length = 0;
    this.fdNum = -1;
    if (byId[this.id] === this) byId[this.id] = undefined;
    this.addon.fdClose(this.id);
  }
}
