// Layer 2 for the AF_PACKET peers: a veth pair per listener or upstream (made
// with the shared rig, netns.ts), the far end in a network namespace of its
// own, and the framing that turns the cases' payloads into Ethernet frames and
// back.
//
//   host end  (the suite's namespace; the gateway binds it: host network in
//             container mode too)       l7a<pid><n>h   MAC 02:6c:37:00:00:01
//   far end   (namespace l7mp-conf-<pid>-<n>, where packet_peer runs as the
//             client or the echo)       l7a<pid><n>p   MAC 02:6c:37:00:00:02
//
// No IP addresses and no IPv6 link-local address (addrgenmode none): nothing
// but the suite's frames crosses the pair, and nothing leaves it. Both ends
// have MTU FRAME_MTU. Every pair is deleted (with its namespace) by remove(),
// and from an exit hook if the suite ends first.
//
// Framing: an AF_PACKET message is a whole frame, header included (the
// gateway sends what a session gives it as the frame, and hands on what it
// reads with the header). So the client of an AF_PACKET listener puts a
// header in front of every payload and takes it off every frame that comes
// back; and where an AF_PACKET cluster is the destination (framedListener),
// every payload a client sends gets a header first, so that the gateway's
// message is a frame. The cases still compare bare payloads.

import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Inbox, type ClientSession, type OpenOptions, type Target } from './clients.js';
import type { L2Link } from './driver.js';
import type { ListenerPeer } from './peers.js';
import { withTimeout } from './util.js';
import { netnsUnavailable, vethToNs, type VethToNs } from './netns.js';

const HERE = path.dirname(fileURLToPath(import.meta.url));
/** conformance/packet_peer.c, next to this module's source (dist/conformance -> conformance). */
const PACKET_PEER_SRC = path.resolve(HERE, '../../conformance/packet_peer.c');

/** The IEEE "local experimental" ethertype, the AF_PACKET protocol's default. */
export const ETHERTYPE = 0x88b5;
export const ETH_HLEN = 14;
/**
 * The veth MTU, so frames are at most 8192 B: what the byte-stream echo peers
 * (socat, 8192-byte reads) hand back in one piece. Where a byte stream meets
 * an AF_PACKET side, every read of the gateway becomes one frame, so a frame
 * must never be cut by a read: with frames of at most 8192 B (and bursts of at
 * most that much in the cases) it never is.
 */
export const FRAME_MTU = 8192 - ETH_HLEN;
export const HOST_MAC = '02:6c:37:00:00:01';
export const PEER_MAC = '02:6c:37:00:00:02';

function header(dst: string, src: string): Buffer {
  const h = Buffer.alloc(ETH_HLEN);
  Buffer.from(dst.replace(/:/g, ''), 'hex').copy(h, 0);
  Buffer.from(src.replace(/:/g, ''), 'hex').copy(h, 6);
  h.writeUInt16BE(ETHERTYPE, 12);
  return h;
}

/** From the far end to the host end: what an AF_PACKET listener's client sends. */
export const TO_HOST = header(HOST_MAC, PEER_MAC);
/** From the host end to the far end: what goes out of an AF_PACKET cluster's interface. */
export const TO_PEER = header(PEER_MAC, HOST_MAC);

// ------------------------------------------------------------ veth pairs

let linkSeq = 0;
const liveLinks = new Set<VethToNs>();
let exitHook = false;

/** Why veth pairs cannot be made here, or undefined. */
export function linksUnavailable(): string | undefined {
  return netnsUnavailable('AF_PACKET peers need root (a network namespace and a veth pair per listener or upstream, CAP_NET_RAW)');
}

/** A new veth pair with its far end in a new namespace; both ends up, no addresses. */
export async function createLink(): Promise<L2Link> {
  const why = linksUnavailable();
  if (why !== undefined) throw new Error(why);
  if (!exitHook) {
    exitHook = true;
    process.on('exit', () => { for (const v of liveLinks) v.remove(); });
  }
  const id = `${process.pid.toString(36)}${(linkSeq++).toString(36)}`;
  const host = `l7a${id}h`;
  const peer = `l7a${id}p`;
  const netns = `l7mp-conf-${process.pid}-${linkSeq - 1}`;
  let v: VethToNs;
  try {
    v = vethToNs({ host, far: peer, ns: netns, mtu: FRAME_MTU, hostMac: HOST_MAC, farMac: PEER_MAC, noAddrGen: true });
  } catch (err) {
    throw new Error(`veth pair ${host}/${peer} (namespace ${netns}): ${(err as Error).message}`);
  }
  liveLinks.add(v);
  return {
    host,
    peer,
    netns,
    netnsPath: `/run/netns/${netns}`,
    mtu: FRAME_MTU,
    async remove() {
      v.remove();
      liveLinks.delete(v);
    },
  };
}

// ----------------------------------------------------------- packet_peer

let packetPeerBin: string | undefined;

/** conformance/packet_peer.c, compiled once per process (cc, as the addon build needs anyway). */
export function packetPeer(): string {
  if (packetPeerBin === undefined) {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'l7c-pp-'));
    const out = path.join(dir, 'packet_peer');
    execFileSync('cc', ['-O2', '-o', out, PACKET_PEER_SRC], { stdio: ['ignore', 'ignore', 'pipe'], timeout: 60_000 });
    process.on('exit', () => fs.rmSync(dir, { recursive: true, force: true }));
    packetPeerBin = out;
  }
  return packetPeerBin;
}

// --------------------------------------------------------------- framing

function isHeader(b: Buffer, at: number): boolean {
  return b.length - at >= ETH_HLEN && (b.compare(TO_HOST, 0, ETH_HLEN, at, at + ETH_HLEN) === 0 || b.compare(TO_PEER, 0, ETH_HLEN, at, at + ETH_HLEN) === 0);
}

/**
 * The payload of one frame (or of one datagram that carries frames): every
 * header of ours taken out. A frame holds more than one header when a byte
 * stream on the way merged frames (a TCP echo: several frames in one read,
 * sent on as one frame). The cases' payloads never contain a header (their
 * consecutive bytes differ by 131), so every match is one of ours.
 */
export function unframe(m: Buffer): Buffer {
  const parts: Buffer[] = [];
  let off = 0;
  while (off < m.length) {
    if (isHeader(m, off)) {
      off += ETH_HLEN;
      continue;
    }
    let next = m.length;
    for (const h of [TO_HOST, TO_PEER]) {
      const i = m.indexOf(h, off + 1);
      if (i >= 0 && i < next) next = i;
    }
    parts.push(m.subarray(off, next));
    off = next;
  }
  return parts.length === 1 ? parts[0]! : Buffer.concat(parts);
}

/**
 * Headers out of a byte stream that carries header + payload units in the
 * order they were sent (chunks may cut anywhere): the lengths sent say where.
 */
class StreamUnframer {
  private readonly sent: number[] = [];
  private skip = 0;
  private left = 0;

  expect(n: number): void {
    this.sent.push(n);
  }

  strip(chunk: Buffer): Buffer {
    const out: Buffer[] = [];
    let off = 0;
    while (off < chunk.length) {
      if (this.skip === 0 && this.left === 0) {
        const n = this.sent.shift();
        if (n === undefined) {
          // More than was sent: let the case see it as it is.
          out.push(chunk.subarray(off));
          break;
        }
        this.skip = ETH_HLEN;
        this.left = n;
      }
      if (this.skip > 0) {
        const k = Math.min(this.skip, chunk.length - off);
        this.skip -= k;
        off += k;
        continue;
      }
      const k = Math.min(this.left, chunk.length - off);
      out.push(chunk.subarray(off, off + k));
      this.left -= k;
      off += k;
    }
    return Buffer.concat(out);
  }
}

/** Replace what the client's inbox receives by `f(chunk)` (empty results are dropped). */
function filterInbox(inbox: Inbox, f: (b: Buffer) => Buffer): void {
  const push = inbox.push.bind(inbox);
  inbox.push = (b: Buffer) => {
    const x = f(b);
    if (x.length > 0) push(x);
  };
}

/**
 * A listener peer whose client puts a frame header (to the far end) in front
 * of every payload and takes the headers off what comes back: for pairs whose
 * destination is an AF_PACKET cluster, where the gateway sends every message
 * as a whole frame. Datagram clients get frames back one per message (or
 * merged frames, unframe() splits them); byte-stream clients a stream of
 * header + payload units in order.
 */
export function framedListener(l: ListenerPeer, kind: 'datagram' | 'byte'): ListenerPeer {
  const maxMessage = Number.isFinite(l.maxMessage) ? l.maxMessage - ETH_HLEN : l.maxMessage;
  const frameOverhead = (l.frameOverhead ?? 0) + ETH_HLEN;
  if (l.mode === 'request') {
    return {
      ...l,
      maxMessage,
      frameOverhead,
      async request(t, body, o) {
        const r = await l.request(t, Buffer.concat([TO_PEER, body]), o);
        const u = new StreamUnframer();
        u.expect(body.length);
        return { status: r.status, body: r.status === 200 ? u.strip(r.body) : r.body };
      },
      async requestMany() {
        throw new Error('framed listeners do not take many requests at once (the load-balancing probes need tagged upstreams)');
      },
    };
  }
  return {
    ...l,
    maxMessage,
    frameOverhead,
    async open(t, o) {
      const s = await l.open(t, o);
      const u = kind === 'byte' ? new StreamUnframer() : undefined;
      filterInbox(s.inbox, u === undefined ? unframe : (b) => u.strip(b));
      return {
        ...s,
        inbox: s.inbox,
        send(b) {
          u?.expect(b.length);
          s.send(Buffer.concat([TO_PEER, b]));
        },
      };
    },
  };
}

// ---------------------------------------------------- the listener client

const READY_MS = 5000;

/**
 * The client of an AF_PACKET listener: packet_peer in client mode in the far
 * end's namespace, every payload sent as one frame to the host end (where the
 * gateway listens), every frame of the type that comes back unframed into the
 * inbox. The listener is one session for the whole link, so clients that
 * overlap would see each other's frames: the cases run them one at a time.
 */
export async function packetClient(t: Target, _o: OpenOptions): Promise<ClientSession> {
  const link = t.link;
  if (link === undefined) throw new Error('an AF_PACKET client needs the listener\'s veth pair');
  const p = spawn(packetPeer(), ['--netns', link.netnsPath, 'client', link.peer, String(ETHERTYPE)], { stdio: ['pipe', 'pipe', 'pipe'] });
  const inbox = new Inbox();
  let err = '';
  let buf: Buffer = Buffer.alloc(0);
  let ready!: () => void;
  const isReady = new Promise<void>((resolve) => { ready = resolve; });
  p.stderr.on('data', (d: Buffer) => { err += d.toString(); });
  p.stdin.on('error', () => { /* gone: reported by the exit */ });
  p.stdout.on('data', (d: Buffer) => {
    buf = buf.length === 0 ? d : Buffer.concat([buf, d]);
    while (buf.length >= 4) {
      const n = buf.readUInt32BE(0);
      if (buf.length < 4 + n) break;
      const frame = buf.subarray(4, 4 + n);
      buf = buf.subarray(4 + n);
      if (n === 0) ready();
      else {
        const body = unframe(Buffer.from(frame));
        if (body.length > 0) inbox.push(body);
      }
    }
  });
  const exited = new Promise<void>((resolve) => {
    p.once('exit', (code, sig) => {
      inbox.close(code === 0 || sig === 'SIGTERM' || sig === 'SIGKILL' ? undefined : new Error(`packet_peer client exited ${code ?? sig}: ${err.trim()}`));
      resolve();
    });
    p.once('error', (e) => { inbox.close(e); resolve(); });
  });
  try {
    await withTimeout(Promise.race([isReady, exited.then(() => { throw new Error(`packet_peer client on ${link.peer} exited: ${err.trim()}`); })]), READY_MS, `the AF_PACKET client on ${link.peer}`);
  } catch (e) {
    p.kill('SIGKILL');
    throw e;
  }
  return {
    inbox,
    send(b) {
      const len = Buffer.alloc(4);
      len.writeUInt32BE(ETH_HLEN + b.length, 0);
      p.stdin.write(Buffer.concat([len, TO_HOST, b]));
    },
    async close() {
      p.stdin.end();
      await Promise.race([exited, new Promise((r) => setTimeout(r, 2000))]);
      p.kill('SIGKILL');
      await exited;
    },
  };
}
