// The "bare" bench peer: a proxy on the gateway's own native primitives with
// the least JavaScript a per-session decision in JavaScript can have. It
// answers one question: with the system calls the gateway already makes, how
// far is a JavaScript-decided session from nginx on this machine? The gap
// between the gateway and this is what the session machinery costs; the gap
// between this and nginx is what no JavaScript-side change can close
// (bench/README.md, "Session setup: the floor under JavaScript").
//
//   tcp  accept4 (FdSocket), connectStream, connectedNow (else a RawStream
//        and waitConnect), one Splice (copy mode, in C) that owns both fds:
//        two callbacks and one wrapped object per connection, as the raw
//        stream path (gateway/src/fastpath/raw.ts) without its session,
//        route, balancer, timers, metrics or access log.
//   udp  one listener socket read with recvmmsg (NativeSocket); a new source
//        address gets a connected upstream socket (socket, connect, receive
//        buffer: the gateway's calls) and a map entry; replies go back
//        through the listener with sendmmsg; idle flows are swept once a
//        second. No session object, no route, no quarantine, no metrics.
//
//   tcp-forwarder  the addon's Forwarder (native/sockets/src/forward.cc):
//        accept4, connect and the pair all in C, JavaScript not called per
//        connection at all; the ceiling of a listener whose route is decided
//        once, when the configuration changes (docs/compiled-listeners.md).
//
// PROCESSES > 1 (the worker matrix's bare-Nw): this process forks that many
// copies, each with its own SO_REUSEPORT listener, as the gateway's workers
// and nginx's worker_processes have: the same floor with N event loops.
//
// Not a proxy to run: no limits, no errors reported, IPv4 loopback only.
// Usage: node dist/bench/bare-proxy.js tcp|udp|tcp-forwarder PORT UPSTREAM_PORT [IDLE_SECONDS=60] [PROCESSES=1]

import { fork, type ChildProcess } from 'node:child_process';
import { NativeSocket, sourceAddress, sourceIPv4Key } from '../gateway/src/native/fdsocket.js';
import { rawAddon } from '../gateway/src/native/rawstream.js';
import { ENDED_RECORD, socketsAddon } from '../gateway/src/native/sockets.js';
import { portSharing, reusePortSocket, streamListenSocket } from '../gateway/src/protocols/common/reuseport.js';

const [kind, portArg, upstreamArg, idleArg = '60', procArg = '1'] = process.argv.slice(2);
const port = Number(portArg);
const upstream = Number(upstreamArg);
const processes = Number(procArg);
if ((kind !== 'tcp' && kind !== 'udp' && kind !== 'tcp-forwarder') || !(port > 0) || !(upstream > 0) || !(Number.isInteger(processes) && processes >= 1 && processes <= 64)) {
  console.error('usage: bare-proxy.js tcp|udp|tcp-forwarder PORT UPSTREAM_PORT [IDLE_SECONDS] [PROCESSES 1..64]');
  process.exit(2);
}

if (processes > 1) {
  // The parent only holds the copies: they start, serve and stop together.
  const kids: ChildProcess[] = [];
  const stop = (code: number): void => {
    for (const k of kids) k.kill('SIGTERM');
    process.exit(code);
  };
  for (let i = 0; i < processes; i++) {
    const k = fork(process.argv[1]!, [kind, portArg!, upstreamArg!, idleArg, '1'], { env: { ...process.env, BARE_SHARED: '1' }, stdio: 'inherit' });
    k.on('exit', (code) => stop(code ?? 1));
    kids.push(k);
  }
  process.on('SIGTERM', () => stop(0));
} else if (kind === 'tcp-forwarder') {
  portSharing.on = process.env.BARE_SHARED === '1';
  const a = socketsAddon();
  if (a?.Forwarder === undefined || a.closeStream === undefined) throw new Error('bare-proxy: the sockets addon with Forwarder is not built (npm run build:native)');
  const close = a.closeStream.bind(a);
  const f = new a.Forwarder(streamListenSocket('127.0.0.1', port, 4096), (fd, _addr, _port, code) => {
    if (fd >= 0) close(fd, true); // not expected on loopback: the bench's errors show it
    else console.error(`bare-proxy: accept: ${code}`);
  }, () => {
    while (f.takeEnded(ended) === ended.length / ENDED_RECORD) { /* records dropped: no metrics here */ }
  }, { max: 1_000_000, connectTimeoutMs: 5000 });
  const ended = new Float64Array(256 * ENDED_RECORD);
  f.targets([['127.0.0.1', upstream]], 1);
  f.start();
} else if (kind === 'tcp') {
  // A copy binds the port's SO_REUSEPORT group, as a gateway worker does.
  portSharing.on = process.env.BARE_SHARED === '1';
  const a = rawAddon();
  if (a === undefined) throw new Error('bare-proxy: the sockets addon is not built (npm run build:native)');
  const Splice = (a as unknown as { Splice: new (x: unknown, y: unknown, done: () => void, owned: boolean) => { start(): void } }).Splice;
  const accepted = (fd: number): void => {
    const ufd = a.connectStream('127.0.0.1', upstream);
    const now = a.connectedNow(ufd);
    if (now === true) {
      new Splice(fd, ufd, () => {}, true).start();
      return;
    }
    if (now !== undefined) {
      a.closeStream(ufd);
      a.closeStream(fd, true);
      return;
    }
    const up = new a.RawStream(ufd);
    up.waitConnect((code) => {
      if (code !== undefined) {
        up.close();
        a.closeStream(fd, true);
        return;
      }
      new Splice(fd, up, () => {}, true).start();
    });
  };
  const h = new a.FdSocket(streamListenSocket('127.0.0.1', port, 4096), 2, accepted as (...args: never[]) => void, () => {}, (code: string) => {
    console.error(`bare-proxy: accept: ${code}`);
  });
  h.readStart();
} else {
  const a = socketsAddon();
  if (a === undefined) throw new Error('bare-proxy: the sockets addon is not built (npm run build:native)');
  const idleMs = Number(idleArg) * 1000;
  interface Flow { up: NativeSocket; addr: Buffer; last: number }
  const flows = new Map<number, Flow>();
  let now = Date.now();
  const listener: NativeSocket = new NativeSocket(a, reusePortSocket('udp', '127.0.0.1', port, false), 'data', {
    message(msg, slot) {
      const key = sourceIPv4Key(slot);
      let f = flows.get(key);
      if (f === undefined) {
        const fd = a.socket(a.constants.AF_INET, a.constants.SOCK_DGRAM, 0);
        a.connectInet(fd, '127.0.0.1', upstream);
        a.setBuffers(fd, 1 << 20, 0);
        const flow: Flow = { up: undefined as unknown as NativeSocket, addr: Buffer.from(sourceAddress(slot)), last: now };
        flow.up = new NativeSocket(a, fd, 'data', {
          message(reply) {
            flow.last = now;
            listener.send(reply, flow.addr);
          },
          error() {
            flow.up.close();
            flows.delete(key);
          },
        });
        flow.up.readStart();
        flows.set(key, flow);
        f = flow;
      }
      f.last = now;
      f.up.send(msg);
    },
    error(code) {
      console.error(`bare-proxy: listener: ${code}`);
    },
  }, true);
  listener.readStart();
  setInterval(() => {
    now = Date.now();
    for (const [key, f] of flows) {
      if (now - f.last < idleMs) continue;
      f.up.close();
      flows.delete(key);
    }
  }, 1000);
}
if (processes === 1) process.on('SIGTERM', () => process.exit(0));
