// The proxies under test and how to start each with its own config file in a
// temp directory, listening on a loopback port and forwarding to the echo
// server. One fresh process per measured run, so a run's memory and CPU
// figures are its own and a proxy that degrades cannot taint the next run.
//
//   gateway  ours: node dist/gateway/src/main.js -c <json>, one JS thread
//   nginx    stream module, one process (master_process off = the worker)
//   haproxy  nbthread 1, mode tcp (haproxy has no UDP proxying)
//   socat    fork per connection / per UDP peer (its only concurrency model)
//   direct   no proxy: the load generator talks to the echo server
//   bare     the gateway's native primitives with the least JavaScript per
//            session (bench/bare-proxy.ts): the floor under a session decided
//            in JavaScript, for session setup (tcp-connrate, udp-sessions);
//            with env.workers N, N processes on one SO_REUSEPORT port
//   cref     a C proxy making the raw TCP path's system calls, with no Node
//            (bench/cref/tcp_cref.c): the machine's floor for those calls, on
//            tcp-connrate and tcp-pingpong

import fs from 'node:fs';
import path from 'node:path';
import { freeDualPort, start, waitReady, type Proc } from './procs.js';

export type Peer = 'direct' | 'gateway' | 'bare' | 'forwarder' | 'cref' | 'nginx' | 'haproxy' | 'socat';
/** What the proxy forwards: UDP datagrams, TCP bytes, or WebSocket messages to UDP. */
export type Carriage = 'udp' | 'tcp' | 'ws-uws' | 'ws-ws';

export interface Env {
  root: string;
  tmp: string;
  udpEcho: number;
  tcpEcho: number;
  /** The echo servers' pids, so a run can tell their CPU from the proxy's and from other work on the machine. */
  echoPids?: number[];
  /** Seconds a proxy process may live (its own deadline where it has one). */
  lifetime: number;
  /** The tree whose build the gateway runs from (bench/ab.ts: another revision's); default `root`. */
  gatewayRoot?: string;
  /** Extra node flags for the gateway process (bench/profile.ts: --cpu-prof). */
  gatewayNodeArgs?: string[];
  /** Extra admin settings for the gateway (bench/profile.ts: drain_timeout 0, so that it exits, and writes its profile, within stop()'s grace). */
  gatewayAdmin?: Record<string, unknown>;
  /** Data-plane workers: the gateway's admin.workers and nginx's worker_processes (default 1; docs/workers.md). */
  workers?: number;
  /** taskset CPU lists (bench/run.ts --pin): proxies, and load generators with the echo servers. */
  proxyCpus?: string;
  loadCpus?: string;
}

export interface Running {
  port: number;
  /** The proxy process (undefined for direct runs). */
  proc: Proc | undefined;
  /** Gateway only: where its Prometheus metrics are served. */
  metricsPort?: number;
}

export const UDP_IDLE_TIMEOUT_S = 60;

function gatewayConfig(c: Carriage, port: number, env: Env, metricsPort: number | undefined): unknown {
  const udpCluster = { name: 'udp-echo', spec: { protocol: 'UDP', port: env.udpEcho }, endpoints: [{ spec: { address: '127.0.0.1' } }] };
  const tcpCluster = { name: 'tcp-echo', spec: { protocol: 'TCP', port: env.tcpEcho }, endpoints: [{ spec: { address: '127.0.0.1' } }] };
  const listener = c === 'udp'
    ? { name: 'bench', spec: { protocol: 'UDP', address: '127.0.0.1', port, idle_timeout: UDP_IDLE_TIMEOUT_S }, rules: [{ action: { route: { destination: 'udp-echo' } } }] }
    : c === 'tcp'
      ? { name: 'bench', spec: { protocol: 'TCP', address: '127.0.0.1', port }, rules: [{ action: { route: { destination: 'tcp-echo' } } }] }
      : { name: 'bench', spec: { protocol: 'WebSocket', engine: c === 'ws-uws' ? 'uws' : 'ws', address: '127.0.0.1', port }, rules: [{ action: { route: { destination: 'udp-echo' } } }] };
  const listeners: unknown[] = [listener];
  if (metricsPort !== undefined) {
    listeners.push({
      name: 'metrics',
      spec: { protocol: 'HTTP', address: '127.0.0.1', port: metricsPort },
      rules: [{ action: { route: { destination: { name: 'prometheus', spec: { protocol: 'Prometheus' } } } } }],
    });
  }
  const workers = env.workers ?? 1;
  return { admin: { log_level: 'warn', log_file: 'stderr', ...(workers > 1 ? { workers } : {}), ...env.gatewayAdmin }, listeners, clusters: [c === 'tcp' ? tcpCluster : udpCluster] };
}

function nginxConfig(c: 'udp' | 'tcp', port: number, env: Env): string {
  const upstream = c === 'udp' ? env.udpEcho : env.tcpEcho;
  const workers = env.workers ?? 1;
  // Several workers: a master and N workers, each with its own SO_REUSEPORT
  // socket (`reuseport`), as the gateway's workers have (docs/workers.md).
  const reuse = workers > 1 ? ' reuseport' : '';
  return [
    '# One process: with master_process off nginx runs its event loop in the',
    '# process we start, i.e. exactly one worker.',
    'load_module /usr/lib/nginx/modules/ngx_stream_module.so;',
    'daemon off;',
    workers > 1 ? 'master_process on;' : 'master_process off;',
    `worker_processes ${workers};`,
    'pid nginx.pid;',
    'error_log stderr error;',
    // A UDP session takes two of nginx's connections (the client's and the
    // upstream's) and one fd, and every session of a run stays for
    // proxy_timeout: the session-rate run keeps up to 2 × 6000 (warm-up and
    // measured), the idle-memory one 2 × --sessions (<= 16000). With 16000
    // connections a fast nginx ran out during the warm-up and dropped every
    // measured datagram ("worker_connections are not enough").
    'worker_rlimit_nofile 20000;',
    'events { worker_connections 40000; }',
    'stream {',
    c === 'udp'
      ? `  server { listen 127.0.0.1:${port} udp${reuse}; proxy_pass 127.0.0.1:${upstream}; proxy_timeout ${UDP_IDLE_TIMEOUT_S}s; }`
      : `  server { listen 127.0.0.1:${port} backlog=4096${reuse}; proxy_pass 127.0.0.1:${upstream}; tcp_nodelay on; }`,
    '}',
    '',
  ].join('\n');
}

function haproxyConfig(port: number, env: Env): string {
  return [
    'global',
    '  nbthread 1',
    '  maxconn 9000', // haproxy raises RLIMIT_NOFILE to ~2 × maxconn + extra; the hard limit here is 20000
    '  log stderr format raw local0 emerg',
    'defaults',
    '  mode tcp',
    '  timeout connect 5s',
    '  timeout client 60s',
    '  timeout server 60s',
    'frontend bench',
    `  bind 127.0.0.1:${port}`,
    '  default_backend echo',
    'backend echo',
    `  server echo 127.0.0.1:${env.tcpEcho}`,
    '',
  ].join('\n');
}

/** Start `peer` carrying `c`; resolves once it forwards. */
export async function startPeer(peer: Peer, c: Carriage, env: Env, opts: { metrics?: boolean } = {}): Promise<Running> {
  const proto = c === 'udp' ? 'udp' : 'tcp';
  if (peer === 'direct') {
    if (c === 'udp') return { port: env.udpEcho, proc: undefined };
    if (c === 'tcp') return { port: env.tcpEcho, proc: undefined };
    // WebSocket has no echo of its own: the ceiling is a bare uWS echo server.
    const port = await freeDualPort();
    const proc = start(process.execPath, [path.join(env.root, 'dist/bench/uws-echo.js'), String(port), String(env.lifetime)], 'uWS echo', { cpus: env.proxyCpus });
    await waitReady(proc, port, 'tcp');
    return { port, proc };
  }
  const port = await freeDualPort();
  const dir = fs.mkdtempSync(path.join(env.tmp, `${peer}-`));
  let proc: Proc;
  let metricsPort: number | undefined;
  switch (peer) {
    case 'gateway': {
      if (opts.metrics) metricsPort = await freeDualPort();
      const cfg = path.join(dir, 'gateway.json');
      fs.writeFileSync(cfg, JSON.stringify(gatewayConfig(c, port, env, metricsPort), null, 2));
      proc = start(process.execPath, [...(env.gatewayNodeArgs ?? []), path.join(env.gatewayRoot ?? env.root, 'dist/gateway/src/main.js'), '-c', cfg, '-l', 'warn'], 'gateway', { cpus: env.proxyCpus });
      break;
    }
    case 'bare': {
      if (c !== 'udp' && c !== 'tcp') throw new Error('the bare proxy carries only udp and tcp');
      const upstream = c === 'udp' ? env.udpEcho : env.tcpEcho;
      proc = start(process.execPath, [path.join(env.root, 'dist/bench/bare-proxy.js'), c, String(port), String(upstream), String(UDP_IDLE_TIMEOUT_S), String(env.workers ?? 1)], 'bare', { cpus: env.proxyCpus });
      break;
    }
    case 'forwarder': {
      if (c !== 'tcp') throw new Error('the forwarder peer carries only tcp');
      proc = start(process.execPath, [path.join(env.root, 'dist/bench/bare-proxy.js'), 'tcp-forwarder', String(port), String(env.tcpEcho)], 'forwarder', { cpus: env.proxyCpus });
      break;
    }
    case 'cref': {
      if (c !== 'tcp') throw new Error('the C reference proxy carries only tcp');
      proc = start(path.join(env.root, 'dist/bench/bin/tcp_cref'), [String(port), String(env.tcpEcho), String(env.lifetime)], 'cref', { cpus: env.proxyCpus });
      break;
    }
    case 'nginx': {
      if (c !== 'udp' && c !== 'tcp') throw new Error('nginx carries only udp and tcp here');
      fs.writeFileSync(path.join(dir, 'nginx.conf'), nginxConfig(c, port, env));
      proc = start('nginx', ['-p', dir, '-c', path.join(dir, 'nginx.conf'), '-e', 'stderr'], 'nginx', { cpus: env.proxyCpus });
      break;
    }
    case 'haproxy': {
      if (c !== 'tcp') throw new Error('haproxy carries only tcp');
      fs.writeFileSync(path.join(dir, 'haproxy.cfg'), haproxyConfig(port, env));
      proc = start('haproxy', ['-db', '-f', path.join(dir, 'haproxy.cfg')], 'haproxy', { cpus: env.proxyCpus });
      break;
    }
    case 'socat': {
      // -T: an idle UDP child exits after this long, as the other proxies' idle timeouts.
      const args = c === 'udp'
        ? ['-T', String(UDP_IDLE_TIMEOUT_S), `UDP4-LISTEN:${port},bind=127.0.0.1,reuseaddr,fork`, `UDP4:127.0.0.1:${env.udpEcho}`]
        : [`TCP4-LISTEN:${port},bind=127.0.0.1,reuseaddr,fork,backlog=4096,nodelay`, `TCP4:127.0.0.1:${env.tcpEcho},nodelay`];
      proc = start('socat', args, 'socat', { cpus: env.proxyCpus });
      break;
    }
  }
  await waitReady(proc, port, proto);
  return { port, proc, metricsPort };
}
