// Container mode: the gateway under test is the l7mp/gateway:local image (or
// the --gateway-image one) and every echo peer runs in the l7mp/peers:local
// image (or, with localPeers, as a local process, as in process mode), each as its own
// container started with testcontainers on the host network (no bridge, no
// port mapping: the same 127.0.0.x addresses and ports as process mode).
//
//   tcp-echo, unix-echo            socat in the peers image (process mode's
//                                  arguments plus backlog=128; the tag via
//                                  /bin/sh)
//   udp-echo                       a small node echo in the peers image (see
//                                  udp-echo.ts for why not socat)
//   unix-dgram-echo,               unix_dgram_echo (C) and socat in the peers image, process mode's
//   unix-seqpacket-echo,           arguments; pipe-echo's two FIFOs are
//   pipe-echo                      created from here, mode 0666 (the image
//                                  has no mkfifo; its user is not root)
//   sctp-udp-echo                  sctp_udp_echo (C, usrsctp) in the peers image,
//                                  process mode's arguments
//   http-echo, ws-echo             node /peers/peer-server.js in the peers
//                                  image (conformance/peer-server.ts, built
//                                  into the image by scripts/build-images.sh)
//
// The clients (sockets, curl, the ws and JSONSocket clients) stay in the
// suite's process, as driver.ts says for every mode. Files both sides must
// reach (Unix sockets) live in one temporary folder that is bind-mounted at
// the same path into every container. The containers run as the images'
// unprivileged user (65534), so the folder is world-writable (sticky).
//
// The images are built (cached, a few seconds when nothing changed) when the
// driver is created, unless L7MP_IMAGES_PREBUILT=1. Ryuk is disabled (it would
// need a registry): containers still running when the suite exits are
// removed from an 'exit' hook, and those of a run that was killed are removed
// when the next run starts (reapDeadRuns).

import { execFile, execFileSync, spawnSync } from 'node:child_process';
import dgram from 'node:dgram';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { StartedTestContainer } from 'testcontainers';
import { DriverUnavailableError, type Driver, type GatewayHandle, type GatewayStartOptions, type L2Link, type PeerArgs, type PeerHandle, type PeerKind } from './driver.js';
import { CONTAINER_CONFIG_PATH, containerCommand } from './gateway-under-test.js';
import { ETHERTYPE } from './l2.js';
import { ProcessDriver } from './process-driver.js';
import { tcpBindable, udpBindable, udpBound } from './ports.js';
import { sctpUdpEchoArgs } from './sctp-peer.js';
import { UDP_ECHO, udpEchoPeer } from './udp-echo.js';
import { api, fifoHasReader, isSocketFile, waitFor } from './util.js';

const HERE = path.dirname(fileURLToPath(import.meta.url));
/** dist/conformance/ -> the repository root. */
const ROOT = path.resolve(HERE, '../..');

export const GATEWAY_IMAGE = 'l7mp/gateway:local';
export const PEERS_IMAGE = 'l7mp/peers:local';
/** The user the containers run as: the gateway image's default. */
const CONTAINER_USER = '65534:65534';
// A fresh machine makes the base image and runs npm ci in the build stage first.
const BUILD_TIMEOUT_MS = 20 * 60_000;
/** Container start plus the gateway's own start; longer than process mode's 10 s. */
const START_TIMEOUT_MS = 30_000;
const STOP_TIMEOUT_S = 4;
const MAX_LOG = 4 * 1024 * 1024;

/** Every container of a run carries this label, with the run's id. */
const RUN_LABEL = 'org.l7mp.conformance-run';

export interface ContainerDriverOptions {
  /** Run scripts/build-images.sh first (default: true unless L7MP_IMAGES_PREBUILT=1). */
  readonly build?: boolean;
  /** --gateway-image: the gateway under test (default l7mp/gateway:local; another image is never built here). */
  readonly gatewayImage?: string;
  /** --gateway-cmd: the gateway container's command ({config} = its config path); default `-c <config>`. */
  readonly gatewayCmd?: string;
  readonly peersImage?: string;
  /**
   * Run the echo peers as local processes (ProcessDriver's) instead of
   * containers of the peers image: what the conformance image does, which
   * carries the peers itself (host network, so the gateway container reaches them).
   */
  readonly localPeers?: boolean;
  /** Where build output goes (default: stderr). */
  readonly progress?: (line: string) => void;
  /** Environment variables of the gateway container (L7MP_TCP_FASTPATH). */
  readonly gatewayEnv?: Readonly<Record<string, string>>;
}

// testcontainers reads these when it first talks to the engine: no Ryuk, and
// the engine's host is loopback (inside a container it would otherwise look
// for the `bridge` network, which `dockerd --bridge=none` does not have).
function configureTestcontainers(): void {
  process.env.TESTCONTAINERS_RYUK_DISABLED ??= 'true';
  process.env.TESTCONTAINERS_HOST_OVERRIDE ??= '127.0.0.1';
}

const liveIds = new Set<string>();
/** Removals of stopped containers still in flight; close() waits for them. */
const removals = new Set<Promise<void>>();
let exitHookInstalled = false;

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on('exit', () => {
    if (liveIds.size === 0) return;
    spawnSync('docker', ['rm', '-f', ...liveIds], { stdio: 'ignore', timeout: 20_000 });
  });
}

/**
 * Remove the containers of earlier runs whose process is gone (killed before
 * its exit hook ran): the run id starts with the pid. A pid that is alive
 * again for another program keeps its containers; they are only disk.
 */
function reapDeadRuns(): number {
  const r = docker(['ps', '-a', '--filter', `label=${RUN_LABEL}`, '--format', `{{.ID}} {{.Label "${RUN_LABEL}"}}`], 15_000);
  if (!r.ok) return 0;
  const dead: string[] = [];
  for (const line of r.out.split('\n')) {
    const [id, run] = line.trim().split(' ');
    const pid = Number(run?.split('-')[0]);
    if (id === undefined || !/^[0-9a-f]+$/.test(id) || !Number.isInteger(pid) || pid <= 0 || pid === process.pid) continue;
    try {
      process.kill(pid, 0);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ESRCH') dead.push(id);
    }
  }
  if (dead.length > 0) docker(['rm', '-f', ...dead], 60_000);
  return dead.length;
}

function docker(args: string[], timeoutMs: number): { ok: boolean; out: string } {
  const r = spawnSync('docker', args, { encoding: 'utf8', timeout: timeoutMs });
  return { ok: r.status === 0, out: `${r.stdout ?? ''}${r.stderr ?? ''}${r.error ? r.error.message : ''}`.trim() };
}

function connects(opts: net.NetConnectOpts): Promise<boolean> {
  return new Promise((resolve) => {
    const c = net.connect(opts);
    c.once('connect', () => { c.destroy(); resolve(true); });
    c.once('error', () => resolve(false));
  });
}

/** One container: its output (collected from start) and whether it is gone. */
class Box {
  private out = '';
  private gone = false;
  private stopped: Promise<void> | undefined;
  container: StartedTestContainer | undefined;

  constructor(readonly label: string) {}

  /** For GenericContainer.withLogConsumer: attached before the container starts. */
  readonly consume = (stream: NodeJS.ReadableStream): void => {
    stream.on('data', (d: Buffer | string) => {
      this.out += d.toString();
      if (this.out.length > MAX_LOG) this.out = this.out.slice(this.out.length - MAX_LOG / 2);
    });
    stream.on('end', () => { this.gone = true; });
    stream.on('error', () => { this.gone = true; });
  };

  get isGone(): boolean {
    return this.gone;
  }

  logs(): string {
    return this.out;
  }

  started(c: StartedTestContainer): void {
    this.container = c;
    liveIds.add(c.getId());
  }

  /**
   * SIGTERM first when polite (the gateway shuts down cleanly on it), SIGKILL
   * after the timeout. Resolves once the container is stopped (its ports are
   * free); the removal goes on in the background (see `removals`), so that a
   * peer killed and restored by the retry case is back as soon as possible.
   */
  stop(polite: boolean): Promise<void> {
    const c = this.container;
    if (c === undefined) return Promise.resolve();
    this.stopped ??= (async () => {
      const id = c.getId();
      try {
        await c.stop({ timeout: polite ? STOP_TIMEOUT_S : 0, remove: false });
      } catch { /* removed with force below */ }
      const removal = new Promise<void>((resolve) => {
        execFile('docker', ['rm', '-f', id], { timeout: 30_000 }, () => {
          liveIds.delete(id);
          resolve();
        });
      });
      removals.add(removal);
      void removal.then(() => removals.delete(removal));
    })();
    return this.stopped;
  }
}

export class ContainerDriver implements Driver {
  readonly mode = 'container' as const;
  readonly listenAddress = '127.0.0.1';
  /** Host network: the containers bind the same loopback addresses as process mode. */
  readonly peerAddresses: readonly string[] = ['127.0.0.1', '127.0.0.2', '127.0.0.3', '127.0.0.4'];
  private readonly local: ProcessDriver;
  /** The shared folder for Unix sockets, bind-mounted at the same path everywhere. */
  private readonly dir: string;
  private readonly gatewayImage: string;
  /** Our own image: run as its unprivileged user; a foreign one as its image says. */
  private readonly ownGateway: boolean;
  private readonly gatewayCommand: string[];
  private readonly peersImage: string;
  private readonly localPeers: boolean;
  private readonly gatewayEnv: Readonly<Record<string, string>>;
  private readonly runId = `${process.pid}-${Date.now().toString(36)}`;
  private readonly boxes = new Set<Box>();
  private readonly udpPeer = udpEchoPeer();
  private seq = 0;

  /**
   * Checks the engine and builds the images, synchronously (the runner
   * creates its driver synchronously); throws DriverUnavailableError with the
   * reason when either fails.
   */
  constructor(opts: ContainerDriverOptions = {}) {
    configureTestcontainers();
    this.gatewayImage = opts.gatewayImage ?? GATEWAY_IMAGE;
    this.ownGateway = opts.gatewayImage === undefined;
    this.gatewayCommand = containerCommand(opts.gatewayCmd);
    this.peersImage = opts.peersImage ?? PEERS_IMAGE;
    this.localPeers = opts.localPeers ?? false;
    this.gatewayEnv = opts.gatewayEnv ?? {};
    // Local peers serve a gateway that runs as another user (the image's).
    this.local = new ProcessDriver(undefined, this.localPeers);
    const progress = opts.progress ?? ((line: string) => process.stderr.write(`${line}\n`));
    const info = docker(['info', '--format', '{{.ServerVersion}}'], 15_000);
    if (!info.ok || info.out === '') {
      this.local.close().catch(() => undefined);
      throw new DriverUnavailableError(`container mode needs a Docker engine (run 'bash scripts/setup-docker.sh'): ${info.out.split('\n').slice(-1)[0] ?? 'docker info failed'}`);
    }
    // Our images are built from this tree; someone else's gateway image is theirs to build.
    const needOurs = this.ownGateway || !this.localPeers;
    if (opts.build ?? (needOurs && process.env.L7MP_IMAGES_PREBUILT !== '1')) {
      progress(`container mode: building the images (scripts/build-images.sh)`);
      const r = spawnSync('bash', [path.join(ROOT, 'scripts/build-images.sh')], { cwd: ROOT, encoding: 'utf8', timeout: BUILD_TIMEOUT_MS });
      const out = `${r.stdout ?? ''}${r.stderr ?? ''}`.trim();
      if (r.status !== 0) {
        this.local.close().catch(() => undefined);
        throw new DriverUnavailableError(`container mode: scripts/build-images.sh failed (${r.error?.message ?? `exit ${r.status}`}):\n${out.slice(-3000)}`);
      }
      for (const line of out.split('\n')) progress(line);
    }
    for (const image of this.localPeers ? [this.gatewayImage] : [this.gatewayImage, this.peersImage]) {
      if (!docker(['image', 'inspect', image], 15_000).ok) {
        this.local.close().catch(() => undefined);
        throw new DriverUnavailableError(`container mode: image ${image} is missing (${image === GATEWAY_IMAGE || image === PEERS_IMAGE ? "build it with 'npm run images'" : `pull or build it first: the suite does not pull`})`);
      }
    }
    const reaped = reapDeadRuns();
    if (reaped > 0) progress(`container mode: removed ${reaped} container(s) left by earlier runs that were killed`);
    this.dir = path.dirname(this.local.tmpPath('probe'));
    // The containers run as an unprivileged user: they must create sockets here.
    fs.chmodSync(this.dir, 0o1777);
    installExitHook();
  }

  freePort(): Promise<number> {
    // Host network: a port free on the host is free for the containers.
    return this.local.freePort();
  }

  tmpPath(name: string): string {
    return this.local.tmpPath(name);
  }

  private async start(box: Box, image: string, command: string[], configure?: (c: import('testcontainers').GenericContainer) => import('testcontainers').GenericContainer, user: string | undefined = CONTAINER_USER): Promise<void> {
    const { GenericContainer } = await import('testcontainers');
    let gc = new GenericContainer(image)
      .withNetworkMode('host')
      .withCommand(command)
      .withBindMounts([{ source: this.dir, target: this.dir, mode: 'rw' }])
      .withLabels({ [RUN_LABEL]: this.runId })
      .withName(`l7mp-conf-${this.runId}-${this.seq++}`)
      .withLogConsumer(box.consume)
      .withStartupTimeout(START_TIMEOUT_MS);
    if (user !== undefined) gc = gc.withUser(user);
    if (configure) gc = configure(gc);
    this.boxes.add(box);
    box.started(await gc.start());
  }

  async startGateway(config: Record<string, unknown>, opts: GatewayStartOptions = {}): Promise<GatewayHandle> {
    const name = opts.name ?? 'gateway';
    const apiPort = await this.freePort();
    // As process mode: the driver adds the REST controller listener.
    const full = {
      ...config,
      // A case's sessions are over when it stops the gateway: no drain to wait for (see README "Stopping, draining").
      // REST calls of a case (convergence) name the run's socket paths: they live under file_root.
      admin: { log_level: opts.logLevel ?? 'info', drain_timeout: 0, file_root: this.dir, ...((config.admin as Record<string, unknown> | undefined) ?? {}) },
      listeners: [
        {
          name: 'controller-listener',
          spec: { protocol: 'HTTP', address: '127.0.0.1', port: apiPort },
          rules: [{ action: { route: { destination: { name: 'l7mp-controller', spec: { protocol: 'L7mpController' } } } } }],
        },
        ...((config.listeners as unknown[] | undefined) ?? []),
      ],
    };
    const text = JSON.stringify(full, null, 2);
    const box = new Box(`gateway ${name}`);
    const apiBase = `http://127.0.0.1:${apiPort}`;
    try {
      // AF_PACKET needs CAP_NET_RAW: the image's user 65534 has no
      // capabilities, so such a gateway runs as the container's root, with
      // NET_RAW (in Docker's default set anyway) and nothing more.
      const raw = /"protocol": "AF_PACKET"/.test(text);
      await this.start(box, this.gatewayImage, this.gatewayCommand,
        (gc) => {
          const c = gc.withCopyContentToContainer([{ content: text, target: CONTAINER_CONFIG_PATH, mode: 0o644 }]).withEnvironment({ ...this.gatewayEnv });
          return raw ? c.withUser('0:0').withAddedCapabilities('NET_RAW') : c;
        }, this.ownGateway ? CONTAINER_USER : undefined);
      await waitFor(async () => {
        if (box.isGone) throw new Error(`the gateway container exited: ${box.logs().slice(-2000)}`);
        const r = await api(apiBase, 'GET', '/api/v1/admin', undefined, 1000).catch(() => undefined);
        return r?.status === 200;
      }, START_TIMEOUT_MS, `gateway "${name}" (container) to answer on ${apiBase}`, 50);
    } catch (err) {
      await box.stop(false);
      this.boxes.delete(box);
      throw new Error(`${(err as Error).message}\n--- config ---\n${text.slice(0, 3000)}\n--- gateway output ---\n${box.logs().slice(-3000)}`);
    }
    return {
      name,
      apiBase,
      reach: (port) => ({ host: this.listenAddress, port }),
      logs: () => box.logs(),
      stop: async () => {
        await box.stop(true);
        this.boxes.delete(box);
      },
    };
  }

  /** A file peer's path, which must lie in the folder every container shares. */
  private sharedPath(kind: PeerKind, args: PeerArgs): string {
    if (args.path === undefined) throw new Error(`${kind} needs a path`);
    if (!args.path.startsWith(this.dir + path.sep)) throw new Error(`${kind}: ${args.path} is not under the shared folder ${this.dir} (use driver.tmpPath)`);
    return args.path;
  }

  async startPeer(kind: PeerKind, args: PeerArgs): Promise<PeerHandle> {
    if (this.localPeers) return this.local.startPeer(kind, args);
    const host = args.address ?? '127.0.0.1';
    const port = args.port ?? 0;
    if (args.tag !== undefined && !/^[A-Za-z0-9]{1,16}$/.test(args.tag)) throw new Error(`bad peer tag "${args.tag}"`);
    const tagged = (plain: string) => (args.tag !== undefined ? `SYSTEM:printf ${args.tag}; exec cat` : plain);
    let command: string[];
    let ready: (b: Box) => Promise<boolean>;
    switch (kind) {
      case 'udp-echo':
        command = this.udpPeer === 'socat'
          ? ['/usr/bin/socat', '-b', '65536', '-T', '10', `UDP-LISTEN:${port},bind=${host},reuseaddr,fork`, tagged('PIPE')]
          : ['/usr/bin/node', '-e', UDP_ECHO, host, String(port), args.tag ?? ''];
        ready = async () => udpBound(port);
        break;
      case 'tcp-echo':
        command = ['/usr/bin/socat', '-t', '10', `TCP-LISTEN:${port},bind=${host},reuseaddr,fork,backlog=128`, tagged('EXEC:cat')];
        ready = () => connects({ host, port });
        break;
      case 'unix-echo': {
        const sock = this.sharedPath(kind, args);
        // backlog=128: socat's default of 5 overflows when 24 sessions connect at
        // once (the concurrent case) and a container's socat forks too slowly
        // to keep up: a Unix connect then fails at once with EAGAIN.
        command = ['/usr/bin/socat', '-t', '10', `UNIX-LISTEN:${sock},fork,unlink-early,backlog=128`, tagged('EXEC:cat')];
        ready = () => connects({ path: sock });
        break;
      }
      case 'unix-dgram-echo':
        // As process mode: conformance/unix_dgram_echo.c (built into the
        // image), answering each sender (the gateway's abstract address: host
        // network, so the containers share the abstract namespace).
        command = ['/peers/unix_dgram_echo', this.sharedPath(kind, args)];
        ready = async () => isSocketFile(args.path!);
        break;
      case 'unix-seqpacket-echo':
        command = ['/usr/bin/socat', '-b', '65536', '-t', '10', `UNIX-LISTEN:${this.sharedPath(kind, args)},type=5,fork,unlink-early,backlog=128`, 'EXEC:cat,socktype=5'];
        ready = async () => isSocketFile(args.path!);
        break;
      case 'pipe-echo': {
        const fifo = this.sharedPath(kind, args);
        // Created here (the peers image has no mkfifo), readable and writable
        // by the containers' unprivileged user: mkfifo -m sets the mode as
        // given, whatever the umask.
        for (const f of [fifo, `${fifo}.reply`]) {
          if (!fs.existsSync(f)) execFileSync('mkfifo', ['-m', '666', f]);
        }
        command = ['/usr/bin/socat', `OPEN:${fifo},rdwr!!OPEN:${fifo}.reply,rdwr`, 'EXEC:cat'];
        ready = async () => fifoHasReader(fifo);
        break;
      }
      case 'http-echo':
      case 'ws-echo':
        command = ['/usr/bin/node', '/peers/peer-server.js', kind, '--address', host, '--port', String(port), ...(args.tag !== undefined ? ['--tag', args.tag] : [])];
        // Accepting connections is what "ready" means; quicker to see than the
        // "ready" line, which comes through the engine's log stream.
        ready = async (b) => b.logs().includes('ready\n') || connects({ host, port });
        break;
      case 'sctp-udp-echo':
        // As process mode: conformance/sctp_udp_echo.c on usrsctp (built into the image).
        if (args.port === undefined) throw new Error('sctp-udp-echo needs a port');
        command = ['/peers/sctp_udp_echo', ...sctpUdpEchoArgs(host, port, args.tag)];
        ready = async (b) => b.logs().includes('ready\n');
        break;
      case 'packet-echo':
        if (args.link === undefined) throw new Error('packet-echo needs a veth pair');
        // conformance/packet_peer.c (built into the image) enters the far
        // end's namespace itself: the namespaces' folder is mounted in, and
        // setns() plus a packet socket need root with CAP_SYS_ADMIN (which
        // also lets Docker's seccomp profile allow setns) and CAP_NET_RAW.
        // Not --privileged: it asks for every capability, and an engine
        // that lacks one (here: CAP_SYS_RESOURCE) cannot start the container.
        command = ['/peers/packet_peer', '--netns', args.link.netnsPath, 'echo', args.link.peer, String(ETHERTYPE)];
        ready = async (b) => b.logs().includes('ready\n');
        break;
      default:
        throw new Error(`unknown peer kind "${String(kind)}"`);
    }
    const box = new Box(`${kind} ${host}:${port}${args.path ?? ''}`);
    try {
      await this.start(box, this.peersImage, command, kind !== 'packet-echo' ? undefined : (gc) => gc
        .withUser('0:0')
        .withAddedCapabilities('SYS_ADMIN', 'NET_RAW')
        .withBindMounts([{ source: this.dir, target: this.dir, mode: 'rw' }, { source: '/run/netns', target: '/run/netns', mode: 'ro' }]));
      await waitFor(async () => {
        if (box.isGone) throw new Error(`${command[0]} (container) exited: ${box.logs().slice(-1000)}`);
        return ready(box);
      }, START_TIMEOUT_MS, `${kind} peer (container) on ${args.path ?? `${host}:${port}`}`, 20);
    } catch (err) {
      await box.stop(false);
      this.boxes.delete(box);
      throw err;
    }
    return {
      kind,
      args,
      logs: () => box.logs(),
      stop: async () => {
        await box.stop(false);
        this.boxes.delete(box);
        // A killed peer's port must be free again before a restart binds it.
        if (kind === 'tcp-echo' || kind === 'http-echo' || kind === 'ws-echo') {
          await waitFor(() => tcpBindable(port, host), 3000, `${host}:${port} to be released`).catch(() => undefined);
        } else if (kind === 'udp-echo') {
          await waitFor(() => udpBindable(port, host), 3000, `${host}:${port}/udp to be released`).catch(() => undefined);
        }
      },
    };
  }

  /** On the host, as in process mode: the gateway container (host network) sees the host end. */
  l2Link(): Promise<L2Link> {
    return this.local.l2Link();
  }

  async close(): Promise<void> {
    await Promise.all([...this.boxes].map((b) => b.stop(false)));
    this.boxes.clear();
    await Promise.all([...removals]);
    // Anything of this run that escaped (a start that threw half-way).
    const left = docker(['ps', '-aq', '--filter', `label=${RUN_LABEL}=${this.runId}`], 15_000);
    const ids = left.ok ? left.out.split('\n').filter((x) => /^[0-9a-f]+$/.test(x)) : [];
    if (ids.length > 0) docker(['rm', '-f', ...ids], 30_000);
    await this.local.close();
  }
}
