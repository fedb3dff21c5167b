// Plumbing for stream-path.test.ts: a gateway child process with one stream
// listener "in" routed to one stream cluster "up" (TCP or UnixDomainSocket on
// either side), upstream servers and clients built on node:net so a test can
// half-close, reset and see how its peer's stream ended, and the gateway's
// access log, metrics, sessions and descriptors.

import fs from 'node:fs';
import net from 'node:net';
import { api, freePort, tmpPath, waitFor } from './helpers.js';
import { metricValue, startChild, type ChildGateway } from './edge/edge-helpers.js';

export type Kind = 'TCP' | 'UnixDomainSocket';

/** A stream address: a port on a loopback host, or a Unix socket path in a fresh temp dir. */
export type Addr = { host: string; port: number } | { path: string };

export function connectOpts(a: Addr): net.NetConnectOpts {
  return 'path' in a ? { path: a.path, allowHalfOpen: true } : { host: a.host, port: a.port, allowHalfOpen: true };
}

/** An address nobody listens on: a free port on 127.0.0.1, or a path in a fresh temp dir. */
export async function deadAddr(kind: Kind): Promise<Addr> {
  return kind === 'TCP' ? { host: '127.0.0.1', port: await freePort() } : { path: tmpPath('nobody.sock') };
}

/** ECONNRESET, or EPIPE for a writer whose peer is gone: the ways a reset shows. */
export const isReset = (code: string | undefined): boolean => code === 'ECONNRESET' || code === 'EPIPE';

/**
 * A socket whose reads and ending are recorded. EOF and errors are kept
 * apart: 'end' is a clean EOF, an error code is a reset (or worse), and the
 * first of them is what the peer learnt first.
 */
export class Watched {
  private readonly parts: Buffer[] = [];
  bytes = 0;
  eof = false;
  error: string | undefined;
  closed = false;
  /** 'end' or the error code, whichever came first. */
  first: string | undefined;
  /** false: count what is read without keeping it (bulk transfers). */
  keep = true;

  constructor(readonly sock: net.Socket) {
    sock.on('data', (d: Buffer) => { if (this.keep) this.parts.push(d); this.bytes += d.length; });
    sock.on('end', () => { this.eof = true; this.first ??= 'end'; });
    sock.on('error', (e: NodeJS.ErrnoException) => { this.error ??= e.code ?? e.message; this.first ??= this.error; });
    sock.on('close', () => { this.closed = true; });
  }

  data(): Buffer {
    return Buffer.concat(this.parts);
  }

  /** At least n bytes read. */
  next(n: number, timeoutMs = 5000): Promise<Buffer> {
    return waitFor(() => (this.bytes >= n ? this.data() : undefined), timeoutMs, `${n} bytes`);
  }

  /** The first way the stream ended ('end' or an error code). */
  ended(timeoutMs = 5000): Promise<string> {
    return waitFor(() => this.first, timeoutMs, 'the stream to end');
  }

  /** Closed, with the first way it ended. */
  async gone(timeoutMs = 5000): Promise<string> {
    await waitFor(() => this.closed, timeoutMs, 'the socket to close');
    return this.first ?? 'closed';
  }

  /**
   * Reset the connection. A TCP socket sends an RST; a Unix stream socket
   * has none, and closing one with unread bytes in its receive queue is what
   * makes the kernel report ECONNRESET to its peer, so the caller keeps this
   * socket paused with bytes waiting before it calls this.
   */
  reset(): void {
    if (this.sock.remotePort !== undefined) this.sock.resetAndDestroy();
    else this.sock.destroy();
  }
}

/** A client connection to `a`, paused before it reads anything if `paused`. */
export function connect(t: { teardown(fn: () => unknown): void }, a: Addr, paused = false): Promise<Watched> {
  return new Promise((resolve, reject) => {
    const sock = net.connect(connectOpts(a));
    if (paused) sock.pause();
    const w = new Watched(sock);
    t.teardown(() => { sock.destroy(); });
    sock.once('connect', () => resolve(w));
    sock.once('error', reject);
  });
}

export interface Upstream {
  addr: Addr;
  conns: Watched[];
  /** The n-th connection the upstream accepted (0-based), once it is there. */
  conn(i?: number, timeoutMs?: number): Promise<Watched>;
}

/**
 * An upstream server of `kind` on an ephemeral port (on `host`, default
 * 127.0.0.1, or `port` if given) or a temp-dir path; `onConn` gets each
 * connection; `paused`: connections read nothing until resumed.
 */
export async function upstream(t: { teardown(fn: () => unknown): void }, kind: Kind, onConn: (w: Watched) => void = () => undefined, opts: { paused?: boolean; host?: string; port?: number } = {}): Promise<Upstream> {
  const conns: Watched[] = [];
  const srv = net.createServer({ allowHalfOpen: true, pauseOnConnect: opts.paused === true }, (s) => {
    const w = new Watched(s);
    conns.push(w);
    onConn(w);
  });
  let addr: Addr;
  if (kind === 'TCP') {
    const host = opts.host ?? '127.0.0.1';
    await new Promise<void>((r) => srv.listen(opts.port ?? 0, host, () => r()));
    addr = { host, port: (srv.address() as net.AddressInfo).port };
  } else {
    const p = tmpPath('up.sock');
    await new Promise<void>((r) => srv.listen(p, () => r()));
    addr = { path: p };
  }
  t.teardown(() => { for (const c of conns) c.sock.destroy(); return new Promise<void>((r) => srv.close(() => r())); });
  return {
    addr, conns,
    conn: (i = 0, timeoutMs = 5000) => waitFor(() => conns[i], timeoutMs, `upstream connection #${i}`),
  };
}

/** An echo upstream: every connection sends back what it reads and ends after its peer's EOF. */
export function echoUpstream(t: { teardown(fn: () => unknown): void }, kind: Kind, opts: { host?: string; port?: number } = {}): Promise<Upstream> {
  return upstream(t, kind, (w) => { w.keep = false; w.sock.pipe(w.sock); }, opts);
}

/**
 * L7MP_TEST_NO_ACCESS_LOG=1 (stream-path-nolog.test.ts): the gateways run
 * without an access log, and ends are read from the metrics instead (a
 * compiled listener then keeps no addresses for its ended sessions).
 */
export const NO_ACCESS_LOG = process.env.L7MP_TEST_NO_ACCESS_LOG === '1';

export interface StreamGateway {
  child: ChildGateway;
  /** Where clients connect. */
  front: Addr;
  pid: number;
  /** Live sessions of listener "in". */
  sessions(): Promise<any[]>;
  /** The one live session of listener "in", once it is there. */
  session(): Promise<any>;
  /** Until listener "in" has no session left. */
  noSessions(timeoutMs?: number): Promise<void>;
  /** The access log's lines of listener "in" (one per ended session). */
  accessLog(): any[];
  /** The access log line of the one ended session, once it is written. */
  ended(timeoutMs?: number): Promise<any>;
  /** A sample of the metrics exposition, e.g. `l7mp_sessions_ended_total{reason="error"}`. */
  metric(sample: string): Promise<number | undefined>;
  /** The gateway process's open descriptors. */
  fds(): number;
}

/**
 * A gateway child process: listener "in" (`front`) routed to cluster "up"
 * with one endpoint per address in `endpoints` (TCP endpoints share one
 * port: a cluster's port is the cluster's), an access log in a temp dir.
 */
export async function streamGateway(t: { teardown(fn: () => unknown): void }, front: Kind, endpoints: Addr[], opts: { retry?: Record<string, unknown>; admin?: Record<string, unknown>; accessLog?: boolean; frontHost?: string } = {}): Promise<StreamGateway> {
  const first = endpoints[0]!;
  const cluster = 'port' in first
    ? { name: 'up', spec: { protocol: 'TCP', port: first.port }, endpoints: endpoints.map((e, i) => ({ name: `ep${i}`, spec: { address: (e as { host: string }).host } })) }
    : { name: 'up', spec: { protocol: 'UnixDomainSocket' }, endpoints: endpoints.map((e, i) => ({ name: `ep${i}`, spec: { address: (e as { path: string }).path } })) };
  const frontAddr: Addr = front === 'TCP' ? { host: opts.frontHost ?? '127.0.0.1', port: await freePort() } : { path: tmpPath('front.sock') };
  const spec = 'port' in frontAddr ? { protocol: 'TCP', address: frontAddr.host, port: frontAddr.port } : { protocol: 'UnixDomainSocket', filename: frontAddr.path };
  const route = { destination: 'up', ...(opts.retry ? { retry: opts.retry } : {}) };
  const log = opts.accessLog === false || NO_ACCESS_LOG ? undefined : tmpPath('access.log');
  const child = await startChild(t, {
    clusters: [cluster],
    listeners: [{ name: 'in', spec, rules: [{ action: { route } }] }],
  }, { ...(log ? { access_log_path: log } : {}), ...opts.admin });
  const sessions = async (): Promise<any[]> => {
    const r = await api(child.base, 'GET', '/api/v1/sessions');
    if (r.status !== 200 || !Array.isArray(r.body)) throw new Error(`GET /api/v1/sessions: ${r.status} ${r.text}`);
    return r.body.filter((s: any) => s.source?.origin === 'in' && s.status !== 'DESTROYED');
  };
  const accessLog = (): any[] => {
    if (log === undefined || !fs.existsSync(log)) return [];
    return fs.readFileSync(log, 'utf8').split('\n').filter((l) => l !== '').map((l) => JSON.parse(l)).filter((l) => l.listener === 'in');
  };
  return {
    child, front: frontAddr, pid: child.proc.pid!, sessions, accessLog,
    session: () => waitFor(async () => { const l = await sessions(); return l.length === 1 ? l[0] : undefined; }, 5000, 'one live session'),
    noSessions: (timeoutMs = 5000) => waitFor(async () => (await sessions()).length === 0, timeoutMs, 'no live session left').then(() => undefined),
    ended: (timeoutMs = 5000) => waitFor(() => { const l = accessLog(); return l.length === 1 ? l[0] : undefined; }, timeoutMs, 'the access log line of the session'),
    metric: async (sample) => metricValue(await (await fetch(`${child.adminBase}/metrics`)).text(), sample),
    fds: () => fs.readdirSync(`/proc/${child.proc.pid}/fd`).length,
  };
}
