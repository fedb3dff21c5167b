// The AF_PACKET fuzz driver (see fuzz-dataplane.test.ts).
//
// The listener is bound to the host end of a veth pair; the far end is in a
// namespace the test creates. Two python3 processes there: the healthy
// client (a packet socket of the listener's ethertype: sends a frame, waits
// for the echoed copy among everything echoed) and the injector (a packet
// socket of protocol 0, which receives nothing and sends any frame as is).
// The attacks' destination MAC is a unicast address nobody has, so the
// host's own stack ignores what arrives on its end (packet sockets still get
// it); their ethertypes are the listener's or not (kernel-filtered for the
// 0x88B5 listener, read and echoed by the ETH_P_ALL one). Runts shorter than
// an Ethernet header and frames above the MTU are refused by the sending
// kernel (EINVAL, EMSGSIZE): the injector counts and ignores that.

import type { ExecutionContext } from 'ava';
import fc from 'fast-check';
import { waitFor } from './helpers.js';
import { needAddon } from './native-helpers.js';
import { ETHERTYPE, frame, makeVeth, nsPython, type Veth } from './veth.js';
import { IO_TIMEOUT_MS, withTimeout, type Attack, type Client, type Variant, type Where } from './fuzz-drivers.js';

const PACKET_MTU = 9000;
const ATTACK_DST = Buffer.from('020000fe00fe', 'hex');
const ATTACK_SRC = Buffer.from('020000fe00fd', 'hex');

export interface PacketRig {
  veth: Veth;
  /** Send one frame from the far end (resolves once sent, or refused by the kernel). */
  inject(f: Buffer): Promise<void>;
  refused(): number;
  /** Attack frames of the listener's ethertype that the Echo cluster sent back (so the gateway read them). */
  echoed: number;
  /** python3 in the namespace, killed at the test's teardown. */
  python(script: string): ReturnType<typeof pyLines>;
}

/** python3 in the namespace, talking hex lines on stdin/stdout. */
function pyLines(t: ExecutionContext, v: Veth, script: string): { write(line: string): void; onLine(fn: (l: string) => void): () => void; ready: Promise<void>; kill(): void } {
  const p = nsPython(t, v, script);
  const handlers = new Set<(l: string) => void>();
  let buf = '';
  let err = '';
  let readyFn: () => void = () => undefined;
  let failFn: (e: Error) => void = () => undefined;
  const ready = new Promise<void>((resolve, reject) => { readyFn = resolve; failFn = reject; });
  p.stderr!.on('data', (d: Buffer) => { err += d.toString(); });
  p.stdout!.on('data', (d: Buffer) => {
    buf += d.toString();
    let i: number;
    while ((i = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, i);
      buf = buf.slice(i + 1);
      if (line === 'READY') readyFn();
      else for (const h of [...handlers]) h(line);
    }
  });
  p.once('exit', (code) => failFn(new Error(`python3 in ${v.ns} exited (${code}): ${err.trim()}`)));
  return {
    write: (line) => { p.stdin!.write(`${line}\n`); },
    onLine: (fn) => { handlers.add(fn); return () => handlers.delete(fn); },
    ready: withTimeout(ready, `python3 in ${v.ns} to start`, 10_000),
    kill: () => { p.kill('SIGKILL'); },
  };
}

const PY_HEALTHY = (v: Veth) => `
import os, select, socket, sys
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(${ETHERTYPE}))
s.bind((${JSON.stringify(v.far)}, ${ETHERTYPE}))
print("READY")
buf = b""
while True:
    r, _, _ = select.select([0, s], [], [])
    if s in r:
        data, addr = s.recvfrom(65535)
        if addr[2] != socket.PACKET_OUTGOING:
            sys.stdout.write(data.hex() + "\\n")
    if 0 in r:
        d = os.read(0, 65536)
        if not d:
            break
        buf += d
        while b"\\n" in buf:
            line, buf = buf.split(b"\\n", 1)
            s.send(bytes.fromhex(line.decode()))
`;

const PY_INJECTOR = (v: Veth) => `
import socket, sys
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
s.bind((${JSON.stringify(v.far)}, 0))
print("READY")
for line in sys.stdin:
    try:
        s.send(bytes.fromhex(line.strip()))
        print("ok")
    except OSError as e:
        print("err", e.errno)
`;

async function packetPrepare(t: ExecutionContext): Promise<Partial<Where> | undefined> {
  if (!needAddon(t)) return undefined;
  const veth = makeVeth(t, { mtu: PACKET_MTU });
  if (veth === undefined) return undefined;
  const py = pyLines(t, veth, PY_INJECTOR(veth));
  await py.ready;
  // One frame at a time: each send is acknowledged ("ok" or "err <errno>").
  let queue = Promise.resolve();
  let refused = 0;
  const inject = (f: Buffer): Promise<void> => {
    const next = queue.then(() => withTimeout(new Promise<void>((resolve) => {
      const off = py.onLine((l) => { off(); if (l !== 'ok') refused++; resolve(); });
      py.write(f.length === 0 ? '' : f.toString('hex'));
    }), 'the frame injector'));
    queue = next.catch(() => undefined);
    return next;
  };
  return { packet: { veth, inject, refused: () => refused, echoed: 0, python: (script) => pyLines(t, veth, script) } };
}

async function packetClient(w: Where): Promise<Client> {
  const rig = w.packet!;
  const py = rig.python(PY_HEALTHY(rig.veth));
  await py.ready;
  const attackDst = ATTACK_DST.toString('hex');
  py.onLine((l) => { if (l.startsWith(attackDst)) rig.echoed++; });
  const roundTrip = (payload: Buffer, ms = IO_TIMEOUT_MS): Promise<Buffer> => {
    const hex = frame(payload).toString('hex');
    let off: () => void = () => undefined;
    return withTimeout(new Promise<Buffer>((resolve) => {
      // Everything of the type is echoed (the attacks too): wait for this frame's copy.
      off = py.onLine((l) => { if (l === hex) { off(); resolve(Buffer.from(l, 'hex').subarray(14)); } });
      py.write(hex);
    }), 'AF_PACKET echo', ms).finally(() => off());
  };
  // The veth's carrier may come up after the listener binds: repeat a first frame until it is echoed.
  await waitFor(() => roundTrip(Buffer.from('warm-up'), 500).catch(() => undefined), 10_000, 'a first AF_PACKET echo');
  return { roundTrip: (p) => roundTrip(p), close: () => py.kill() };
}

function header(ethertype: number): Buffer {
  const b = Buffer.alloc(14);
  ATTACK_DST.copy(b, 0);
  ATTACK_SRC.copy(b, 6);
  b.writeUInt16BE(ethertype, 12);
  return b;
}

const frameAttack = (kind: string) => (b: Buffer): Attack => ({ kind, bytes: new Uint8Array(b), cut: b.length, end: 'fin' });
const wrongTypes = fc.oneof(
  fc.constantFrom(0x0800, 0x86dd, 0x0806, 0x8100, 0x88a8, 0x8847, 0x0000, 0x05dc, 0x0600, 0xffff, ETHERTYPE + 1),
  fc.integer({ min: 0, max: 0xffff }).filter((e) => e !== ETHERTYPE),
);

function packetAttacks(): fc.Arbitrary<Attack> {
  return fc.oneof(
    // Shorter than an Ethernet header (the sending kernel refuses most of these).
    fc.uint8Array({ maxLength: 13 }).map((b) => frameAttack('runt')(Buffer.from(b))),
    // A header and less than the 60-byte Ethernet minimum (veth does not pad).
    fc.uint8Array({ maxLength: 45 }).map((b) => frameAttack('short')(Buffer.concat([header(ETHERTYPE), b]))),
    // A frame like the healthy client's, cut anywhere.
    fc.tuple(fc.uint8Array({ minLength: 1, maxLength: 1500 }), fc.nat()).map(([b, cut]) => {
      const f = Buffer.concat([header(ETHERTYPE), b]);
      return frameAttack('truncated')(f.subarray(0, cut % (f.length + 1)));
    }),
    fc.tuple(wrongTypes, fc.uint8Array({ maxLength: 1500 })).map(([e, b]) => frameAttack('wrong-ethertype')(Buffer.concat([header(e), b]))),
    // Above 1500 up to the veth MTU, and beyond it (refused by the sender).
    fc.tuple(fc.constantFrom(ETHERTYPE, 0x0800, 0x86dd), fc.integer({ min: 1501, max: PACKET_MTU + 64 }), fc.integer({ min: 0, max: 255 }))
      .map(([e, n, fill]) => frameAttack('oversized')(Buffer.concat([header(e), Buffer.alloc(n, fill)]))),
    // Random bytes after the destination MAC (kept unicast to nobody, for the host's sake).
    fc.uint8Array({ minLength: 0, maxLength: 2048 }).map((b) => frameAttack('random')(Buffer.concat([ATTACK_DST, Buffer.from(b)]))),
  );
}

export function packetVariant(title: string, ethertype: number): Variant {
  return {
    title,
    protocol: 'AF_PACKET',
    sessionsEnd: false, // one singleton session for the listener
    prepare: packetPrepare,
    spec: (w) => ({ protocol: 'AF_PACKET', interface: w.packet!.veth.host, ethertype }),
    open: packetClient,
    attacks: packetAttacks(),
    attack: (w, a) => w.packet!.inject(Buffer.from(a.bytes)),
  };
}
