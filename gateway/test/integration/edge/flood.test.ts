// Denial of service from flows and file descriptors (issue 13, "Safe at the
// edge"). Each test runs the real gateway as a child process, most under
// `prlimit --nofile=N:N` so that a modest, bounded UDP flood (a few thousand
// datagrams from as many source ports) reaches the descriptor limit in a
// second, against real echo peers. Each failed on the code before admission
// (core/admission.ts, core/fd-budget.ts, protocols/flow-evict.ts).

import test, { type ExecutionContext } from 'ava';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import dgram from 'node:dgram';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort, startGw, tmpPath, waitFor } from '../helpers.js';

const bin = path.join(path.dirname(fileURLToPath(import.meta.url)), '../../../src/main.js');
const havePrlimit = spawnSync('prlimit', ['--version']).status === 0;

function needPrlimit(t: ExecutionContext): boolean {
  if (havePrlimit) return true;
  if (process.env.CI === 'true') t.fail('prlimit (util-linux) is not installed (CI=true)');
  else t.log('skipped: prlimit (util-linux) is not installed');
  if (process.env.CI !== 'true') t.pass();
  return false;
}

// ------------------------------------------------------------------ peers

async function udpEchoServer(t: ExecutionContext): Promise<number> {
  const port = await freePort();
  const s = dgram.createSocket('udp4');
  s.on('message', (m, r) => s.send(m, r.port, r.address));
  await new Promise<void>((r) => s.bind(port, '127.0.0.1', r));
  t.teardown(() => s.close());
  return port;
}

async function tcpEchoServer(t: ExecutionContext): Promise<number> {
  const port = await freePort();
  const conns = new Set<net.Socket>();
  const srv = net.createServer((c) => { conns.add(c); c.on('close', () => conns.delete(c)); c.on('error', () => undefined); c.pipe(c); });
  await new Promise<void>((r) => srv.listen(port, '127.0.0.1', r));
  t.teardown(() => { for (const c of conns) c.destroy(); srv.close(); });
  return port;
}

// ---------------------------------------------------------------- gateway

interface Child {
  proc: ChildProcess;
  rest: string;
  admin: string;
  /** Every log line so far, parsed. */
  logs: Array<Record<string, unknown>>;
}

interface Ports { rest: number; admin: number; udp: number; tcp: number; udpEcho: number; tcpEcho: number }

async function ports(t: ExecutionContext): Promise<Ports> {
  return { rest: await freePort(), admin: await freePort(), udp: await freePort(), tcp: await freePort(), udpEcho: await udpEchoServer(t), tcpEcho: await tcpEchoServer(t) };
}

function config(p: Ports, limits: Record<string, unknown> = {}, udpOptions?: Record<string, unknown>): Record<string, unknown> {
  return {
    admin: { log_level: 'warn', metrics: { address: '127.0.0.1', port: p.admin }, limits: { api_rate: 0, ...limits } },
    listeners: [
      { name: 'controller-listener', spec: { protocol: 'HTTP', address: '127.0.0.1', port: p.rest },
        rules: [{ action: { route: { destination: { name: 'controller', spec: { protocol: 'L7mpController' } } } } }] },
      { name: 'udp-in', spec: { protocol: 'UDP', address: '127.0.0.1', port: p.udp, options: { mode: 'server' } },
        rules: [{ action: { route: { destination: { name: 'udp-echo', spec: { protocol: 'UDP', port: p.udpEcho }, endpoints: [{ spec: { address: '127.0.0.1' } }] } } } }],
        ...(udpOptions ? { options: udpOptions } : {}) },
      { name: 'tcp-in', spec: { protocol: 'TCP', address: '127.0.0.1', port: p.tcp },
        rules: [{ action: { route: { destination: { name: 'tcp-echo', spec: { protocol: 'TCP', port: p.tcpEcho }, endpoints: [{ spec: { address: '127.0.0.1' } }] } } } }] },
    ],
  };
}

async function startChild(t: ExecutionContext, cfg: Record<string, unknown>, p: Ports, nofile?: number): Promise<Child> {
  const file = tmpPath('flood.json');
  fs.writeFileSync(file, JSON.stringify(cfg));
  const argv = [process.execPath, bin, '-c', file];
  const proc = nofile === undefined ? spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'] })
    : spawn('prlimit', [`--nofile=${nofile}:${nofile}`, ...argv], { stdio: ['ignore', 'pipe', 'pipe'] });
  const logs: Array<Record<string, unknown>> = [];
  let buf = '';
  proc.stdout!.on('data', (d: Buffer) => {
    buf += String(d);
    let nl: number;
    while ((nl = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, nl);
      buf = buf.slice(nl + 1);
      try { logs.push(JSON.parse(line) as Record<string, unknown>); } catch { logs.push({ msg: line }); }
    }
  });
  let stderr = '';
  proc.stderr!.on('data', (d: Buffer) => { stderr += String(d); });
  let exited = false;
  proc.on('exit', () => { exited = true; });
  t.teardown(() => { if (!exited) proc.kill('SIGKILL'); });
  const rest = `http://127.0.0.1:${p.rest}`;
  await waitFor(async () => {
    if (exited) throw new Error(`the gateway exited: ${stderr}`);
    return (await get(`${rest}/api/v1/listeners`, 1000).catch(() => undefined))?.status === 200;
  }, 10_000, 'the gateway answers on its REST API');
  return { proc, rest, admin: `http://127.0.0.1:${p.admin}`, logs };
}

/**
 * GET on a new connection (a kept-alive one would need no accept() and hide
 * a listener that accepts nothing), with a deadline: rejects when no answer
 * came within `ms`.
 */
function get(url: string, ms: number): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { agent: false, timeout: ms }, (res) => {
      let text = '';
      res.on('data', (d: Buffer) => { text += String(d); });
      res.on('end', () => resolve({ status: res.statusCode!, text }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(Object.assign(new Error(`no answer within ${ms} ms`), { name: 'TimeoutError' })));
    req.on('error', reject);
  });
}

/** l7mp_refusals_total for a reason (all listeners), from the admin listener. */
async function refusals(c: Child, reason: string): Promise<number> {
  const { text } = await get(`${c.admin}/metrics`, 2000);
  let n = 0;
  for (const line of text.split('\n')) {
    if (line.startsWith('l7mp_refusals_total{') && line.includes(`reason="${reason}"`)) n += Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return n;
}

function logLines(c: Child, pred: (l: Record<string, unknown>) => boolean): number {
  return c.logs.filter(pred).length;
}

const refusedLine = (reason: string) => (l: Record<string, unknown>): boolean => typeof l.msg === 'string' && l.msg.startsWith(`refused: ${reason} `);

// ------------------------------------------------------------------ flood

/**
 * `count` datagrams to 127.0.0.1:`port`, each from a socket of its own (a new
 * flow each), `batch` sockets at a time. Bounded in count; `during` runs
 * once `after` datagrams are out, while the rest still go.
 */
async function flood(t: ExecutionContext, port: number, count: number, opts: { batch?: number; after?: number; during?: () => Promise<void> } = {}): Promise<void> {
  const batch = opts.batch ?? 200;
  let sent = 0;
  let during: Promise<void> | undefined;
  // Open until the test ends: a closed client port answers the next datagram
  // with ICMP unreachable, which ends the flow on a connected per-flow socket
  // (the node:dgram path), and the table would empty itself.
  const open: dgram.Socket[] = [];
  t.teardown(() => { for (const s of open) s.close(); });
  await send();
  await during;

  async function send(): Promise<void> {
  while (sent < count) {
    const n = Math.min(batch, count - sent);
    const socks = await Promise.all(Array.from({ length: n }, () => new Promise<dgram.Socket>((resolve) => {
      const s = dgram.createSocket('udp4');
      s.on('error', () => undefined);
      s.bind(0, '127.0.0.1', () => resolve(s));
    })));
    open.push(...socks);
    await Promise.all(socks.map((s) => new Promise<void>((r) => s.send('flood', port, '127.0.0.1', () => r()))));
    sent += n;
    if (during === undefined && opts.during && sent >= (opts.after ?? 0)) during = opts.during();
  }
  }
}

/** A new UDP flow from `src`: resend every 100 ms until the echo comes; the ms it took, or a rejection after `ms`. */
async function newFlow(port: number, ms: number, src = '127.0.0.1'): Promise<number> {
  const s = dgram.createSocket('udp4');
  await new Promise<void>((r) => s.bind(0, src, r));
  const t0 = Date.now();
  try {
    return await new Promise<number>((resolve, reject) => {
      const timer = setInterval(() => s.send('legit', port, '127.0.0.1'), 100);
      const deadline = setTimeout(() => { clearInterval(timer); reject(new Error(`no echo on a new UDP flow within ${ms} ms`)); }, ms);
      s.on('message', (m) => {
        if (String(m) !== 'legit') return;
        clearInterval(timer);
        clearTimeout(deadline);
        resolve(Date.now() - t0);
      });
      s.send('legit', port, '127.0.0.1');
    });
  } finally {
    s.close();
  }
}

/** An established TCP session through the gateway: echo() sends a line and waits (at most `ms`) for it back. */
async function tcpSession(t: ExecutionContext, port: number): Promise<{ echo(payload: string, ms: number): Promise<void> }> {
  const sock = net.connect(port, '127.0.0.1');
  sock.on('error', () => undefined);
  t.teardown(() => sock.destroy());
  await new Promise<void>((resolve, reject) => { sock.once('connect', resolve); sock.once('error', reject); });
  let got = '';
  sock.on('data', (d) => { got += String(d); });
  return {
    async echo(payload, ms) {
      got = '';
      sock.write(payload);
      await waitFor(() => got.includes(payload), ms, `TCP echo of "${payload}"`);
    },
  };
}

/** CPU time (utime + stime, in clock ticks) of a process. */
function cpuTicks(pid: number): number {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return Number(f[11]) + Number(f[12]); // fields 14 and 15 of proc(5)
}

// ------------------------------------------------------------------ tests

test.serial('fault 1: a UDP flood that fills the flow table up to the descriptor limit leaves the REST API, live TCP sessions and new UDP flows working', async (t) => {
  if (!needPrlimit(t)) return;
  const p = await ports(t);
  const c = await startChild(t, config(p), p, 256);
  const tcp = await tcpSession(t, p.tcp);
  await tcp.echo('before', 2000);
  let restMs = -1;
  await flood(t, p.udp, 3000, {
    after: 1000, // a few hundred flows: far past what 256 descriptors hold
    during: async () => {
      const t0 = Date.now();
      const r = await get(`${c.rest}/api/v1/listeners`, 1000);
      restMs = Date.now() - t0;
      t.is(r.status, 200, 'the REST API answers during the flood');
      await tcp.echo('during', 1000);
    },
  });
  t.true(restMs >= 0 && restMs < 1000, `the REST API answered within 1 s during the flood (${restMs} ms)`);
  const ms = await newFlow(p.udp, 1000);
  t.log(`a new UDP flow after the flood got its echo in ${ms} ms`);
  await tcp.echo('after', 1000);
  t.log(`refusals: fd_budget ${await refusals(c, 'fd_budget')}, flow_evicted ${await refusals(c, 'flow_evicted')}, flow_rate ${await refusals(c, 'flow_rate')}`);
  t.true(await refusals(c, 'fd_budget') > 0, 'l7mp_refusals_total{reason="fd_budget"} counts the refused flows');
  // One line per reason per interval, not one per datagram.
  t.true(logLines(c, refusedLine('fd_budget')) <= 2, `fd_budget logged ${logLines(c, refusedLine('fd_budget'))} times`);
  t.true(logLines(c, refusedLine('flow_evicted')) <= 2, `flow_evicted logged ${logLines(c, refusedLine('flow_evicted'))} times`);
  t.is(logLines(c, (l) => String(l.msg).includes('outside connect{}')), 0, 'no "outside connect{}" warnings for a flood without connect{}');
  const warnings = logLines(c, (l) => l.level === 'warn' || l.level === 'error');
  t.true(warnings < 20, `${warnings} warning lines for a flood of 3000 flows`);
});

test.serial('fault 2: data-plane sessions that fill admin.limits.max_sessions do not make the REST API answer 503', async (t) => {
  const p = await ports(t);
  const c = await startChild(t, config(p, { max_sessions: 50 }), p);
  await flood(t, p.udp, 300); // 300 flows, echoed, live for idle_timeout (120 s): far past 50
  for (let i = 0; i < 5; i++) {
    const r = await get(`${c.rest}/api/v1/listeners`, 1000);
    t.is(r.status, 200, `REST call ${i} is served while the data plane is at max_sessions: ${r.text.slice(0, 200)}`);
  }
  t.true(await refusals(c, 'max_sessions') > 0, 'max_sessions refusals counted');
  t.true(logLines(c, refusedLine('max_sessions')) <= 2, 'max_sessions logged once per interval');
});

test.serial('fault 3: at the descriptor limit the uWebSockets.js REST listener neither spins nor becomes unreachable', async (t) => {
  if (!needPrlimit(t)) return;
  const p = await ports(t);
  const c = await startChild(t, config(p), p, 256);
  await flood(t, p.udp, 2000);
  // A connection to the uWS listener while the flood's flows hold their
  // descriptors; the gateway's CPU time is read over the next second (a
  // measuring window, not a wait for an event).
  const before = cpuTicks(c.proc.pid!);
  const answer = get(`${c.rest}/api/v1/listeners`, 1000).then((r) => r.status, (err: Error) => `no answer within 1 s (${err.name})`);
  await new Promise((res) => setTimeout(res, 1000));
  const ticks = cpuTicks(c.proc.pid!) - before;
  t.log(`CPU ticks in the second after the flood: ${ticks}`);
  t.is(await answer, 200, 'the REST API answers at the descriptor limit');
  // 100 ticks per second: a listener spinning on EMFILE burns ~100 in this second.
  t.true(ticks < 50, `the gateway used ${ticks} CPU ticks in the second after the flood`);
});

test.serial('listener cap: a flood that fills a listener\'s options.max_sessions is early-dropped, a new flow gets through, other listeners are untouched', async (t) => {
  const p = await ports(t);
  const c = await startChild(t, config(p, {}, { max_sessions: 20 }), p);
  const tcp = await tcpSession(t, p.tcp);
  await flood(t, p.udp, 400);
  const ms = await newFlow(p.udp, 2000); // the flood's flows must have been idle for EVICT_MIN_IDLE_MS (500 ms) first
  t.log(`a new UDP flow after the flood got its echo in ${ms} ms`);
  await tcp.echo('tcp', 1000);
  t.true(await refusals(c, 'listener_sessions') > 0, 'listener_sessions refusals counted');
  t.true(await refusals(c, 'flow_evicted') > 0, 'the new flow took an idle flow\'s place (flow_evicted counted)');
  t.true(logLines(c, refusedLine('listener_sessions')) <= 2, 'listener_sessions logged once per interval');
});

test.serial('flow rate: one source address beyond admin.limits.flow_rate is refused, another address still gets a new flow', async (t) => {
  const p = await ports(t);
  const c = await startChild(t, config(p, { flow_rate: 5, flow_burst: 10 }), p);
  await flood(t, p.udp, 200, { batch: 25 }); // small batches: node:dgram's default receive buffer drops bigger bursts
  await t.notThrowsAsync(waitFor(async () => await refusals(c, 'flow_rate') >= 150, 3000, 'flow_rate refusals'),
    'at least 150 of the 200 new flows refused by flow_rate');
  await newFlow(p.udp, 1000, '127.0.0.2');
  t.true(logLines(c, refusedLine('flow_rate')) <= 2, 'flow_rate logged once per interval');
});

test.serial('an HTTP data-plane listener at its cap answers 503 and closes the connection; the REST API on the same gateway still answers', async (t) => {
  // An upstream that accepts and never answers keeps the first request's session live.
  const silentPort = await freePort();
  const held = new Set<net.Socket>();
  const silent = net.createServer({ allowHalfOpen: true }, (c) => { held.add(c); c.on('error', () => undefined); });
  await new Promise<void>((r) => silent.listen(silentPort, '127.0.0.1', r));
  t.teardown(() => { for (const c of held) c.destroy(); silent.close(); });
  const httpPort = await freePort();
  const { base } = await startGw(t, {
    listeners: [{ name: 'http-in', spec: { protocol: 'HTTP', address: '127.0.0.1', port: httpPort }, options: { max_sessions: 1 },
      rules: [{ action: { route: { destination: { name: 'silent', spec: { protocol: 'TCP', port: silentPort }, endpoints: [{ spec: { address: '127.0.0.1' } }] } } } }] }],
  });
  const first = http.get({ host: '127.0.0.1', port: httpPort, path: '/', agent: false });
  first.on('error', () => undefined);
  t.teardown(() => first.destroy());
  await waitFor(() => held.size === 1, 3000, 'the first request reached the upstream');
  // A kept-alive HTTP/1.1 request on a raw socket: the refusal must close it.
  const raw = net.connect(httpPort, '127.0.0.1');
  raw.on('error', () => undefined);
  t.teardown(() => raw.destroy());
  let answer = '';
  let ended = false;
  raw.on('data', (d) => { answer += String(d); });
  raw.on('end', () => { ended = true; });
  raw.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n');
  await waitFor(() => ended, 3000, 'the gateway closes the refused connection');
  t.regex(answer, /^HTTP\/1\.1 503 /);
  t.is((await get(`${base}/api/v1/listeners`, 1000)).status, 200);
});
