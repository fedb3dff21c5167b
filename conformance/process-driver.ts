// Process mode: the gateway under test is `node dist/gateway/src/main.js -c
// <generated config>` (or the --gateway-cmd command), and the peers are local processes on 127.0.0.x:
// socat for TCP and Unix sockets, a one-socket node echo for UDP
// (udp-echo.ts), peer-server.js (node's http and the `ws` library) for HTTP
// and WebSocket, C programs for Unix datagram, SCTP and AF_PACKET.
//
// Every child runs in its own process group, and stop() kills the group, so
// that socat's per-connection fork children go with their parent. Children
// still alive when the suite exits are killed from an 'exit' hook, or when a
// signal stops it.

import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import dgram from 'node:dgram';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Driver, GatewayHandle, GatewayStartOptions, L2Link, PeerArgs, PeerHandle, PeerKind } from './driver.js';
import { processCommand } from './gateway-under-test.js';
import { createLink, ETHERTYPE, packetPeer } from './l2.js';
import { PortAllocator, tcpBindable, udpBindable, udpBound } from './ports.js';
import { sctpUdpEcho, sctpUdpEchoArgs } from './sctp-peer.js';
import { UDP_ECHO, udpEchoPeer } from './udp-echo.js';
import { api, delay, fifoHasReader, isSocketFile, waitFor } from './util.js';

const HERE = path.dirname(fileURLToPath(import.meta.url));
/** dist/conformance/ -> dist/gateway/src/main.js */
export const GATEWAY_MAIN = path.resolve(HERE, '../gateway/src/main.js');
const PEER_SERVER = path.join(HERE, 'peer-server.js');
/** conformance/unix_dgram_echo.c, next to this module's source (dist/conformance -> conformance). */
const UNIX_DGRAM_ECHO_SRC = path.resolve(HERE, '../../conformance/unix_dgram_echo.c');

let unixDgramEchoBin: string | undefined;

/** Compile the Unix datagram echo peer once per run (cc, as the addon build needs anyway). */
function unixDgramEcho(dir: string): string {
  // A run removes its temporary folder at the end: a later run in this process compiles again.
  if (unixDgramEchoBin === undefined || !fs.existsSync(unixDgramEchoBin)) {
    const out = path.join(dir, 'unix_dgram_echo');
    execFileSync('cc', ['-O2', '-o', out, UNIX_DGRAM_ECHO_SRC], { stdio: ['ignore', 'ignore', 'pipe'], timeout: 60_000 });
    unixDgramEchoBin = out;
  }
  return unixDgramEchoBin;
}

/** Keep at most this much of a child's output. */
const MAX_LOG = 4 * 1024 * 1024;
const START_TIMEOUT_MS = 10_000;
const STOP_TIMEOUT_MS = 4_000;


const live = new Set<Child>();
let exitHookInstalled = false;

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on('exit', () => {
    for (const c of live) c.killNow();
  });
  // A run stopped by a signal does not reach 'exit' (the peers are in process
  // groups of their own, so they would outlive it): kill them, then let the
  // signal do what it would have done.
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    const onSignal = (): void => {
      for (const c of live) c.killNow();
      process.off(sig, onSignal);
      if (process.listenerCount(sig) === 0) process.kill(process.pid, sig);
    };
    process.on(sig, onSignal);
  }
}

/** One spawned process (group) with its output. */
class Child {
  private out = '';
  readonly exited: Promise<number | null>;
  private gone = false;

  constructor(readonly label: string, readonly proc: ChildProcess) {
    live.add(this);
    const add = (d: Buffer) => {
      this.out += d.toString('utf8');
      if (this.out.length > MAX_LOG) this.out = this.out.slice(this.out.length - MAX_LOG / 2);
    };
    proc.stdout?.on('data', add);
    proc.stderr?.on('data', add);
    this.exited = new Promise((resolve) => {
      proc.once('exit', (code) => {
        this.gone = true;
        resolve(code);
      });
      proc.once('error', (err) => {
        this.gone = true;
        this.out += `\nspawn error: ${err.message}\n`;
        resolve(null);
      });
    });
    // The process group may outlive the leader (socat's fork children): it is
    // released only by an explicit kill.
  }

  get isGone(): boolean {
    return this.gone;
  }

  logs(): string {
    return this.out;
  }

  /** SIGKILL the whole group, synchronously. */
  killNow(): void {
    const pid = this.proc.pid;
    if (pid === undefined) return;
    try { process.kill(-pid, 'SIGKILL'); } catch { /* group gone */ }
    try { this.proc.kill('SIGKILL'); } catch { /* gone */ }
  }

  /**
   * A polite signal first (the gateway shuts down cleanly on SIGTERM), to the
   * whole group: a --gateway-cmd gateway runs under /bin/sh, which may not
   * pass a signal on. Then SIGKILL for the group.
   */
  async stop(polite: boolean): Promise<void> {
    const pid = this.proc.pid;
    if (polite && !this.gone && pid !== undefined) {
      try { process.kill(-pid, 'SIGTERM'); } catch { /* group gone */ }
      await Promise.race([this.exited, delay(STOP_TIMEOUT_MS)]);
    }
    this.killNow();
    await Promise.race([this.exited, delay(STOP_TIMEOUT_MS)]);
    live.delete(this);
  }
}

function spawnChild(label: string, cmd: string, args: string[], env?: Readonly<Record<string, string>>): Child {
  installExitHook();
  const proc = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], detached: true, ...(env !== undefined ? { env: { ...process.env, ...env } } : {}) });
  return new Child(label, proc);
}

function tcpAccepts(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const c = net.connect({ host, port });
    c.once('connect', () => { c.destroy(); resolve(true); });
    c.once('error', () => resolve(false));
  });
}

function unixAccepts(p: string): Promise<boolean> {
  return new Promise((resolve) => {
    const c = net.connect({ path: p });
    c.once('connect', () => { c.destroy(); resolve(true); });
    c.once('error', () => resolve(false));
  });
}

export class ProcessDriver implements Driver {
  readonly mode = 'process' as const;
  readonly listenAddress = '127.0.0.1';
  readonly peerAddresses: readonly string[] = ['127.0.0.1', '127.0.0.2', '127.0.0.3', '127.0.0.4'];
  private readonly udpPeer = udpEchoPeer();
  private readonly ports = new PortAllocator([...new Set([this.listenAddress, ...this.peerAddresses])]);
  private readonly children = new Set<Child>();
  private readonly dir: string;
  private tmpSeq = 0;

  /**
   * @param gatewayCmd --gateway-cmd: the gateway under test, run by /bin/sh
   *   with {config} replaced (gateway-under-test.ts); default: this build.
   * @param forOtherUsers the peers' sockets and FIFOs must be usable by a
   *   gateway running as another user (a gateway container next to local
   *   peers): peers start with umask 0 and FIFOs are made 0666.
   * @param gatewayEnv variables set for the gateway on top of this process's
   *   environment (L7MP_TCP_FASTPATH; see DriverOptions in driver.ts).
   */
  constructor(private readonly gatewayCmd?: string, private readonly forOtherUsers = false, private readonly gatewayEnv?: Readonly<Record<string, string>>) {
    // Short: Unix socket paths must stay under 108 bytes.
    this.dir = fs.mkdtempSync(path.join(os.tmpdir(), 'l7c-'));
  }

  freePort(): Promise<number> {
    return this.ports.next();
  }

  tmpPath(name: string): string {
    return path.join(this.dir, `${(this.tmpSeq++).toString(36)}-${name}`);
  }

  async startGateway(config: Record<string, unknown>, opts: GatewayStartOptions = {}): Promise<GatewayHandle> {
    const name = opts.name ?? 'gateway';
    const apiPort = await this.freePort();
    const full = {
      ...config,
      // The admin metrics listener would take one fixed port for every gateway of the run: off.
      // A case's sessions are over when it stops the gateway: no drain to wait for (see README "Stopping, draining").
      // REST calls of a case (convergence) name the run's socket paths: they live under file_root.
      admin: { log_level: opts.logLevel ?? 'info', drain_timeout: 0, file_root: this.dir, metrics: { enabled: false }, ...((config.admin as Record<string, unknown> | undefined) ?? {}) },
      listeners: [
        {
          name: 'controller-listener',
          spec: { protocol: 'HTTP', address: '127.0.0.1', port: apiPort },
          rules: [{ action: { route: { destination: { name: 'l7mp-controller', spec: { protocol: 'L7mpController' } } } } }],
        },
        ...((config.listeners as unknown[] | undefined) ?? []),
      ],
    };
    const file = this.tmpPath(`${name.replace(/[^A-Za-z0-9_.-]/g, '_').slice(0, 40)}.json`);
    fs.writeFileSync(file, JSON.stringify(full, null, 2));
    const child = this.gatewayCmd !== undefined
      ? spawnChild(`gateway ${name}`, '/bin/sh', ['-c', processCommand(this.gatewayCmd, file)], this.gatewayEnv)
      : spawnChild(`gateway ${name}`, process.execPath, [GATEWAY_MAIN, '-c', file], this.gatewayEnv);
    this.children.add(child);
    const apiBase = `http://127.0.0.1:${apiPort}`;
    try {
      const up = await waitFor(async () => {
        if (child.isGone) return 'exited';
        const r = await api(apiBase, 'GET', '/api/v1/admin', undefined, 1000).catch(() => undefined);
        return r?.status === 200 ? 'ready' : undefined;
      }, START_TIMEOUT_MS, `gateway "${name}" to answer on ${apiBase}`, 50);
      if (up === 'exited') throw new Error(`the gateway "${name}" exited: ${child.logs().slice(-2000).trim()}`);
    } catch (err) {
      await child.stop(false);
      this.children.delete(child);
      throw new Error(`${(err as Error).message}\n--- config ${file} ---\n--- gateway output ---\n${child.logs().slice(-3000)}`);
    }
    return {
      name,
      apiBase,
      reach: (port) => ({ host: this.listenAddress, port }),
      logs: () => child.logs(),
      stop: async () => {
        await child.stop(true);
        this.children.delete(child);
      },
    };
  }

  startPeer(kind: PeerKind, args: PeerArgs): Promise<PeerHandle> {
    if (!this.forOtherUsers) return this.spawnPeer(kind, args);
    // A child takes the umask it is spawned with, and spawnPeer spawns before
    // its first await: the sockets its peer creates are open to every user.
    const old = process.umask(0);
    try {
      return this.spawnPeer(kind, args);
    } finally {
      process.umask(old);
    }
  }

  private async spawnPeer(kind: PeerKind, args: PeerArgs): Promise<PeerHandle> {
    const host = args.address ?? '127.0.0.1';
    const port = args.port ?? 0;
    // The tag is a short [A-Za-z0-9] token; checked so that it is safe inside the SYSTEM command.
    if (args.tag !== undefined && !/^[A-Za-z0-9]{1,16}$/.test(args.tag)) throw new Error(`bad peer tag "${args.tag}"`);
    const tagged = (plain: string) => (args.tag !== undefined ? `SYSTEM:printf ${args.tag}; exec cat` : plain);
    let cmd: string;
    let argv: string[];
    let ready: (c: Child) => Promise<boolean>;
    switch (kind) {
      case 'udp-echo':
        if (this.udpPeer === 'node') {
          // One socket, no fork per flow (see udp-echo.ts for why not socat).
          cmd = process.execPath;
          argv = ['-e', UDP_ECHO, host, String(port), args.tag ?? ''];
          ready = async (c) => c.logs().includes('ready\n');
          break;
        }
        // L7MP_UDP_PEER=socat: one child per flow (UDP-LISTEN,fork), talking
        // to cat over a datagram socketpair (socktype=2 = SOCK_DGRAM), so that
        // every datagram comes back as one datagram even in a burst: PIPE, a
        // byte stream, merges datagrams that queue up in it. -b 65536: a
        // 65507-byte datagram in one read. -T 3: the children of finished flows go.
        cmd = 'socat';
        argv = ['-b', '65536', '-T', '3', `UDP-LISTEN:${port},bind=${host},reuseaddr,fork`, `${tagged('EXEC:cat')},socktype=2`];
        ready = async () => udpBound(port);
        break;
      case 'tcp-echo':
        cmd = 'socat';
        // backlog=128: socat's default of 5 refuses bursts of new connections.
        // -t 10: after the client's EOF socat waits this long (default 0.5 s)
        // for cat's echo; on a loaded machine cat can take longer than 0.5 s,
        // and socat then closed without echoing (an empty HTTP response).
        argv = ['-t', '10', `TCP-LISTEN:${port},bind=${host},reuseaddr,fork,backlog=128`, tagged('EXEC:cat')];
        ready = () => tcpAccepts(host, port);
        break;
      case 'unix-echo':
        if (args.path === undefined) throw new Error('unix-echo needs a path');
        cmd = 'socat';
        // backlog=128: with socat's default of 5 a burst of connects fails with EAGAIN.
        argv = ['-t', '10', `UNIX-LISTEN:${args.path},fork,unlink-early,backlog=128`, tagged('EXEC:cat')];
        ready = () => unixAccepts(args.path!);
        break;
      case 'http-echo':
      case 'ws-echo':
        cmd = process.execPath;
        argv = [PEER_SERVER, kind, '--address', host, '--port', String(port), ...(args.tag !== undefined ? ['--tag', args.tag] : [])];
        ready = async (c) => c.logs().includes('ready\n');
        break;
      case 'unix-dgram-echo':
        if (args.path === undefined) throw new Error('unix-dgram-echo needs a path');
        // conformance/unix_dgram_echo.c: one loop, so replies keep their order
        // (socat's UNIX-RECVFROM,fork answers each datagram from a racing child).
        cmd = unixDgramEcho(this.dir);
        argv = [args.path];
        ready = async () => isSocketFile(args.path!);
        break;
      case 'unix-seqpacket-echo':
        if (args.path === undefined) throw new Error('unix-seqpacket-echo needs a path');
        cmd = 'socat';
        // type=5 / socktype=5: SOCK_SEQPACKET, on the listening socket and towards cat, so boundaries hold.
        argv = ['-b', '65536', '-t', '10', `UNIX-LISTEN:${args.path},type=5,fork,unlink-early,backlog=128`, 'EXEC:cat,socktype=5'];
        ready = async () => isSocketFile(args.path!);
        break;
      case 'pipe-echo':
        if (args.path === undefined) throw new Error('pipe-echo needs a path');
        for (const f of [args.path, `${args.path}.reply`]) {
          if (!fs.existsSync(f)) execFileSync('mkfifo', ['-m', this.forOtherUsers ? '666' : '600', f]);
        }
        cmd = 'socat';
        // Reads the FIFO, answers through cat on the reply FIFO. Both are opened
        // read-write: socat then never sees EOF when a session's writer goes
        // (a read-only PIPE: address ends socat with the first session), and
        // opening the reply FIFO does not wait for a reader.
        argv = [`OPEN:${args.path},rdwr!!OPEN:${args.path}.reply,rdwr`, 'EXEC:cat'];
        ready = async () => fifoHasReader(args.path!);
        break;
      case 'sctp-udp-echo':
        // conformance/sctp_udp_echo.c on usrsctp: an SCTP stack independent of the gateway's.
        if (args.port === undefined) throw new Error('sctp-udp-echo needs a port');
        cmd = sctpUdpEcho(this.dir);
        argv = sctpUdpEchoArgs(host, port, args.tag);
        ready = async (c) => c.logs().includes('ready\n');
        break;
      case 'packet-echo':
        if (args.link === undefined) throw new Error('packet-echo needs a veth pair');
        // conformance/packet_peer.c in the far end's namespace (it enters it itself): one loop, order kept.
        cmd = packetPeer();
        argv = ['--netns', args.link.netnsPath, 'echo', args.link.peer, String(ETHERTYPE)];
        ready = async (c) => c.logs().includes('ready\n');
        break;
      default:
        throw new Error(`unknown peer kind "${String(kind)}"`);
    }
    const child = spawnChild(`${kind} ${host}:${port}${args.path ?? ''}`, cmd, argv);
    this.children.add(child);
    try {
      const up = await waitFor(async () => (child.isGone ? 'exited' : (await ready(child)) ? 'ready' : undefined),
        START_TIMEOUT_MS, `${kind} peer on ${args.path ?? `${host}:${port}`}`, 20);
      if (up === 'exited') throw new Error(`${kind} peer on ${args.path ?? `${host}:${port}`}: ${cmd} exited: ${child.logs().slice(-1000).trim()}`);
    } catch (err) {
      await child.stop(false);
      this.children.delete(child);
      throw err;
    }
    return {
      kind,
      args,
      logs: () => child.logs(),
      stop: async () => {
        await child.stop(false);
        this.children.delete(child);
        // A killed peer's port must be free again before a restart binds it.
        if (kind === 'tcp-echo' || kind === 'http-echo' || kind === 'ws-echo') {
          await waitFor(() => tcpBindable(port, host), 3000, `${host}:${port} to be released`).catch(() => undefined);
        } else if (kind === 'udp-echo') {
          await waitFor(() => udpBindable(port, host), 3000, `${host}:${port}/udp to be released`).catch(() => undefined);
        }
      },
    };
  }

  l2Link(): Promise<L2Link> {
    return createLink();
  }

  async close(): Promise<void> {
    await Promise.all([...this.children].map((c) => c.stop(false)));
    this.children.clear();
    fs.rmSync(this.dir, { recursive: true, force: true });
  }
}
