// Free ports for tests, the suite and benchmarks.
//
// Ports come from below the kernel's ephemeral range (32768-60999 on Linux),
// so no outgoing connection can take one between the check and the bind, and
// a port is never handed out twice by one process. Asking the kernel for
// port 0 and closing it races with every client socket on the machine.

import { execFile } from 'node:child_process';
import dgram from 'node:dgram';
import fs from 'node:fs';
import net from 'node:net';

export const PORT_MIN = 20_000;
export const PORT_MAX = 32_000;
/**
 * Listening ports (PortAllocator) come from [PORT_MIN, CLIENT_PORT_MIN),
 * client source ports (clientPort) from [CLIENT_PORT_MIN, PORT_MAX): a client
 * bound to a port that was just handed out for a listener made that
 * listener's bind fail (EADDRINUSE in a suite run).
 */
export const CLIENT_PORT_MIN = 28_000;

export function tcpBindable(port: number, host: string): Promise<boolean> {
  return new Promise((resolve) => {
    const srv = net.createServer();
    srv.once('error', () => resolve(false));
    srv.listen({ port, host, exclusive: true }, () => srv.close(() => resolve(true)));
  });
}

export function udpBindable(port: number, host: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = dgram.createSocket('udp4');
    s.once('error', () => { try { s.close(); } catch { /* not open */ } resolve(false); });
    s.bind({ port, address: host, exclusive: true }, () => s.close(() => resolve(true)));
  });
}

/**
 * Whether some UDP socket has `port` as its local port, read from the
 * kernel's tables without binding anything. A readiness check for a peer that
 * is about to bind the port must not bind it itself: a probe bind that falls
 * between the peer's start and its bind makes the peer's bind fail with
 * EADDRINUSE (seen in a suite run: a restarted udp-echo exited at once).
 * Host network only: the drivers' containers share it.
 */
export function udpBound(port: number): boolean {
  return socketInodes(port, 'udp').size > 0;
}

/** Inodes of the sockets whose local port is `port`, from the kernel's tables (TCP: listening ones only). */
function socketInodes(port: number, proto: 'tcp' | 'udp'): Set<string> {
  const hex = `:${port.toString(16).toUpperCase().padStart(4, '0')}`;
  const inodes = new Set<string>();
  for (const table of [`/proc/net/${proto}`, `/proc/net/${proto}6`]) {
    let text: string;
    try {
      text = fs.readFileSync(table, 'utf8');
    } catch {
      continue; // no IPv6
    }
    // sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode ...
    for (const line of text.split('\n').slice(1)) {
      const f = line.trim().split(/\s+/);
      if (f[1]?.endsWith(hex) !== true || (proto === 'tcp' && f[3] !== '0A')) continue; // 0A: LISTEN
      if (f[9] !== undefined) inodes.add(f[9]);
    }
  }
  return inodes;
}

/**
 * Whether process `pid` itself holds a socket on local port `port` (TCP:
 * listening on it). A readiness check by port alone is also true when some
 * other process holds the port, while the peer being started fails its bind.
 */
export function portHeldBy(pid: number, port: number, proto: 'tcp' | 'udp'): boolean {
  const inodes = socketInodes(port, proto);
  if (inodes.size === 0) return false;
  let fds: string[];
  try {
    fds = fs.readdirSync(`/proc/${pid}/fd`);
  } catch {
    return false; // gone
  }
  for (const fd of fds) {
    let target: string;
    try {
      target = fs.readlinkSync(`/proc/${pid}/fd/${fd}`);
    } catch {
      continue; // closed meanwhile
    }
    const m = /^socket:\[(\d+)\]$/.exec(target);
    if (m !== null && inodes.has(m[1]!)) return true;
  }
  return false;
}

/** Hands out ports free for TCP and UDP on every one of `hosts`, each at most once. */
export class PortAllocator {
  private readonly handedOut = new Set<number>();

  constructor(private readonly hosts: readonly string[] = ['127.0.0.1']) {}

  async next(): Promise<number> {
    for (let tries = 0; tries < 500; tries++) {
      const port = PORT_MIN + Math.floor(Math.random() * (CLIENT_PORT_MIN - PORT_MIN));
      if (this.handedOut.has(port)) continue;
      // Taken before the checks: calls that overlap (tests of one file run
      // concurrently) must not both check, and then both get, the same port.
      this.handedOut.add(port);
      let ok = true;
      for (const host of this.hosts) {
        if (!(await tcpBindable(port, host)) || !(await udpBindable(port, host))) {
          ok = false;
          break;
        }
      }
      if (!ok) continue; // stays in handedOut: something else holds it
      return port;
    }
    throw new Error(`no free port in ${PORT_MIN}-${CLIENT_PORT_MIN - 1} after 500 tries`);
  }
}

/**
 * Source ports for UDP client sessions: a rotating counter over their own
 * range, so that a port comes back only after thousands of other sessions.
 * An ephemeral port (bind to 0) can come back at once; a new UDP client on a
 * recently used port is then taken for the previous flow, by the gateway
 * (whose session for it may still be live) or by an echo peer (which then
 * does not tag the new flow), and the case fails for a reason of the suite's
 * own making. The caller retries with the next port when a bind fails.
 */
let nextClientPort = CLIENT_PORT_MIN + Math.floor(Math.random() * (PORT_MAX - CLIENT_PORT_MIN));

export function clientPort(): number {
  const p = nextClientPort;
  nextClientPort = p + 1 >= PORT_MAX ? CLIENT_PORT_MIN : p + 1;
  return p;
}

/** Who holds a local port (ss), for an error message; best effort. */
export function portHolders(port: number, address: string): Promise<string> {
  return new Promise((resolve) => {
    execFile('ss', ['-Hantup', `sport = :${port}`], { timeout: 2_000 }, (err, stdout) => {
      const lines = stdout?.trim();
      resolve(err !== null ? `(ss failed: ${err.message})` : lines ? lines.replace(/\s+/g, ' ') : `nothing listed on ${address}:${port} (gone by now)`);
    });
  });
}
