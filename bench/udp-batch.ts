// Batched UDP (recvmmsg/sendmmsg through the sockets addon) against the plain
// node:dgram path, in the same run, on 64-byte datagrams.
//
//   client (addon, batched) -> gateway UDP listener -> UDP cluster -> C echo (bench/echo/udp_echo.c)
//
// The same gateway build runs twice per round: with L7MP_UDP_BATCH=off (the
// plain path) and with batching on. The client keeps a window of datagrams in
// flight per flow (closed loop: one new datagram per echo) and counts echoes
// per second; datagrams not back after a tick are taken as lost and replaced.
// The client and the echo batch too, so that the gateway is the bottleneck.
//
// Usage: npx tsc -p tsconfig.json && node dist/bench/udp-batch.js [--seconds 5] [--rounds 2] [--flows 4] [--window 256] [--size 64]

import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { NativeSocket } from '../gateway/src/native/fdsocket.js';
import { socketsAddon, socketsUnavailable, type SocketsAddon } from '../gateway/src/native/sockets.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const { values } = parseArgs({
  options: {
    seconds: { type: 'string', default: '5' },
    rounds: { type: 'string', default: '2' },
    flows: { type: 'string', default: '4' },
    window: { type: 'string', default: '256' },
    size: { type: 'string', default: '64' },
    out: { type: 'string' },
  },
});
const SECONDS = Number(values.seconds);
const ROUNDS = Number(values.rounds);
const FLOWS = Number(values.flows);
const WINDOW = Number(values.window);
const SIZE = Number(values.size);

const delay = (ms: number) => new Promise((r) => setTimeout(r, ms));

function lineFrom(child: ChildProcess, re: RegExp, ms: number): Promise<RegExpMatchArray> {
  return new Promise((resolve, reject) => {
    let buf = '';
    const timer = setTimeout(() => reject(new Error(`no ${re} within ${ms} ms: ${buf}`)), ms);
    const on = (d: Buffer) => {
      buf += String(d);
      const m = buf.match(re);
      if (m) { clearTimeout(timer); child.stdout!.off('data', on); resolve(m); }
    };
    child.stdout!.on('data', on);
    child.once('exit', (c) => { clearTimeout(timer); reject(new Error(`exited ${c}: ${buf}`)); });
  });
}

async function startEcho(): Promise<{ port: number; child: ChildProcess }> {
  const bin = path.join(os.tmpdir(), 'l7mp-bench-udp_echo');
  if (!fs.existsSync(bin)) {
    const r = spawnSync('cc', ['-O2', '-o', bin, path.join(root, 'bench/echo/udp_echo.c')], { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`cannot build the C echo: ${r.stderr}`);
  }
  const child = spawn(bin, ['0', String(60 + ROUNDS * 2 * (SECONDS + 5))], { stdio: ['ignore', 'pipe', 'inherit'] });
  const m = await lineFrom(child, /PORT (\d+)/, 5000);
  return { port: Number(m[1]), child };
}

async function freeUdpPort(): Promise<number> {
  const dgram = await import('node:dgram');
  const s = dgram.createSocket('udp4');
  await new Promise<void>((r) => s.bind(0, '127.0.0.1', () => r()));
  const p = s.address().port;
  await new Promise<void>((r) => s.close(() => r()));
  return p;
}

async function startGateway(batched: boolean, listenPort: number, echoPort: number): Promise<ChildProcess> {
  const cfgFile = path.join(os.tmpdir(), `l7mp-bench-udp-batch-${process.pid}.json`);
  fs.writeFileSync(cfgFile, JSON.stringify({
    admin: { log_level: 'warn', metrics: { enabled: false } },
    listeners: [{
      name: 'bench', spec: { protocol: 'UDP', address: '127.0.0.1', port: listenPort },
      rules: [{ action: { route: { destination: { name: 'echo', spec: { protocol: 'UDP', port: echoPort }, endpoints: [{ spec: { address: '127.0.0.1' } }] } } } }],
    }],
  }));
  const child = spawn(process.execPath, [path.join(root, 'dist/gateway/src/main.js'), '-c', cfgFile], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, L7MP_UDP_BATCH: batched ? 'on' : 'off' },
  });
  child.stdout!.resume();
  child.stderr!.resume();
  // Ready once a datagram comes back through it.
  const probeDeadline = Date.now() + 10_000;
  const a = socketsAddon()!;
  for (;;) {
    if (await roundTrip(a, listenPort)) return child;
    if (Date.now() > probeDeadline) throw new Error('gateway did not answer');
    await delay(100);
  }
}

function roundTrip(a: SocketsAddon, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const fd = a.socket(a.constants.AF_INET, a.constants.SOCK_DGRAM, 0);
    a.connectInet(fd, '127.0.0.1', port);
    let done = false;
    const s = new NativeSocket(a, fd, 'data', {
      message() { if (!done) { done = true; s.close(); resolve(true); } },
      error() { if (!done) { done = true; s.close(); resolve(false); } },
    });
    s.readStart();
    s.send(Buffer.alloc(SIZE));
    setTimeout(() => { if (!done) { done = true; s.close(); resolve(false); } }, 300);
  });
}

/** Closed-loop load over FLOWS flows; echoes per second during the measured window. */
async function measure(a: SocketsAddon, port: number): Promise<{ pps: number; lost: number }> {
  const payload = Buffer.alloc(SIZE, 0x61);
  let received = 0;
  let sent = 0;
  let lost = 0;
  const socks: NativeSocket[] = [];
  for (let f = 0; f < FLOWS; f++) {
    const fd = a.socket(a.constants.AF_INET, a.constants.SOCK_DGRAM, 0);
    a.connectInet(fd, '127.0.0.1', port);
    a.setBuffers(fd, 4 << 20, 4 << 20);
    const s: NativeSocket = new NativeSocket(a, fd, 'data', {
      message() { received++; sent++; s.send(payload); },
      error(code) { throw new Error(`client socket: ${code}`); },
    });
    s.readStart();
    socks.push(s);
  }
  for (const s of socks) for (let i = 0; i < WINDOW; i++) { s.send(payload); sent++; }
  // Replace what was lost: anything sent before the previous tick and not back is gone.
  let sentAtPrevTick = sent;
  const tick = setInterval(() => {
    const gone = sentAtPrevTick - received - lost;
    if (gone > 0) {
      lost += gone;
      for (let i = 0; i < gone; i++) { socks[i % FLOWS]!.send(payload); sent++; }
    }
    sentAtPrevTick = sent;
  }, 100);
  await delay(1000); // warm-up: sessions set up, JIT warm
  const r0 = received;
  const l0 = lost;
  const t0 = process.hrtime.bigint();
  await delay(SECONDS * 1000);
  const r1 = received;
  const t1 = process.hrtime.bigint();
  clearInterval(tick);
  for (const s of socks) s.close();
  return { pps: (r1 - r0) / (Number(t1 - t0) / 1e9), lost: lost - l0 };
}

function stop(child: ChildProcess): Promise<void> {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolve();
    child.once('exit', () => resolve());
    child.kill('SIGTERM');
    setTimeout(() => child.kill('SIGKILL'), 3000).unref();
  });
}

async function main(): Promise<void> {
  const a = socketsAddon();
  if (a === undefined) throw new Error(`needs the sockets addon (the load client and the batched path): ${socketsUnavailable()}`);
  const echo = await startEcho();
  const results: { mode: string; pps: number; lost: number }[] = [];
  try {
    for (let r = 0; r < ROUNDS; r++) {
      // Alternate the order so that neither mode always runs on a warmer machine.
      const order = r % 2 === 0 ? [false, true] : [true, false];
      for (const batched of order) {
        const port = await freeUdpPort();
        const gw = await startGateway(batched, port, echo.port);
        try {
          const m = await measure(a, port);
          results.push({ mode: batched ? 'batched' : 'plain', ...m });
          process.stdout.write(`round ${r + 1} ${batched ? 'batched' : 'plain  '}: ${Math.round(m.pps)} echoes/s (${m.lost} lost)\n`);
        } finally {
          await stop(gw);
        }
      }
    }
  } finally {
    await stop(echo.child);
  }
  const mean = (mode: string) => {
    const xs = results.filter((x) => x.mode === mode).map((x) => x.pps);
    return xs.reduce((s, x) => s + x, 0) / xs.length;
  };
  const plain = mean('plain');
  const batched = mean('batched');
  const summary = `${SIZE} B datagrams, ${FLOWS} flows x ${WINDOW} in flight, ${SECONDS} s x ${ROUNDS} rounds: plain ${Math.round(plain)} echoes/s, batched ${Math.round(batched)} echoes/s, ratio ${(batched / plain).toFixed(2)}x`;
  process.stdout.write(`${summary}\n`);
  if (values.out) fs.writeFileSync(values.out, `${summary}\n${results.map((x) => `${x.mode} ${Math.round(x.pps)} lost ${x.lost}`).join('\n')}\n`);
}

main().catch((err) => {
  process.stderr.write(`udp-batch: ${(err as Error).message}\n`);
  process.exit(1);
});
