// The images, for real: build l7mp/gateway and l7mp/peers from their
// Dockerfiles on the Node 24 base (scripts/build-images.sh, which makes the
// base node:24-trixie-slim locally when the engine lacks it: no registry),
// check what the gateway image is (Node 24, labels, size, non-root, health
// check), start it with testcontainers on the host network, and check from
// the host that its REST API answers, that its health check turns healthy,
// and that UDP and TCP round trips pass through it to socat echo peers
// running in the peers image.
//
// Needs a Docker engine (scripts/setup-docker.sh starts one). Without one it
// is skipped with the reason on a developer machine, and fails with CI=true.

import test, { type ExecutionContext } from 'ava';
import { execFile, spawn } from 'node:child_process';
import dgram from 'node:dgram';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { StartedTestContainer } from 'testcontainers';
import { freePort, udpBound } from './helpers.js';

/** dist/gateway/test/ -> the repository root. */
const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../..');
// A fresh machine builds the base (mmdebstrap) and runs npm ci in the build stage.
const BUILD_TIMEOUT_MS = 20 * 60_000;
/** The gateway image's budget (issue 15): the Node 24 binary alone is 109 MB of it. */
const GATEWAY_IMAGE_MAX_BYTES = 150e6;
const START_TIMEOUT_MS = 60_000;
const IO_TIMEOUT_MS = 5_000;

// testcontainers reads these when it first talks to the engine: no Ryuk
// container (it would need a registry to pull from), and the engine's host is
// this machine's loopback (inside a container, testcontainers would otherwise
// look for a `bridge` network, which `dockerd --bridge=none` does not have).
process.env.TESTCONTAINERS_RYUK_DISABLED ??= 'true';
process.env.TESTCONTAINERS_HOST_OVERRIDE ??= '127.0.0.1';

function run(cmd: string, args: string[], timeoutMs: number): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve) => {
    const p = spawn(cmd, args, { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    let out = '';
    p.stdout.on('data', (d: Buffer) => { out += d.toString(); });
    p.stderr.on('data', (d: Buffer) => { out += d.toString(); });
    const timer = setTimeout(() => {
      out += `\n(killed after ${timeoutMs} ms)`;
      try { process.kill(-p.pid!, 'SIGKILL'); } catch { /* gone */ }
    }, timeoutMs);
    p.once('error', (err) => { out += `\n${err.message}`; });
    p.once('close', (code) => { clearTimeout(timer); resolve({ code, out }); });
  });
}

/** Why no engine can be used here, or undefined when `docker info` answers. */
function engineUnavailable(): Promise<string | undefined> {
  return new Promise((resolve) => {
    execFile('docker', ['info', '--format', '{{.ServerVersion}}'], { timeout: 15_000 }, (err, stdout, stderr) => {
      if (err) resolve(`no Docker engine answers (docker info: ${(stderr || err.message).trim().split('\n').slice(-1)[0]}); run 'bash scripts/setup-docker.sh'`);
      else if (stdout.trim() === '') resolve('docker info printed no server version');
      else resolve(undefined);
    });
  });
}

let unavailable: string | undefined;
let built: string | undefined;

test.before(async () => {
  unavailable = await engineUnavailable();
});

/** Skip on a developer machine, fail on CI. Returns true when the test must stop here. */
function gate(t: ExecutionContext): boolean {
  const reason = unavailable ?? built;
  if (reason === undefined) return false;
  if (process.env.CI === 'true') t.fail(reason);
  else {
    t.log(`skipped: ${reason}`);
    t.pass();
  }
  return true;
}

async function poll(what: string, fn: () => Promise<boolean>, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await fn().catch(() => false))) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

function tcpAccepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const c = net.connect({ host: '127.0.0.1', port });
    c.once('connect', () => { c.destroy(); resolve(true); });
    c.once('error', () => resolve(false));
  });
}


async function containerLogs(c: StartedTestContainer): Promise<string> {
  const stream = await c.logs();
  let out = '';
  stream.on('data', (d: Buffer | string) => { out += d.toString(); });
  await new Promise((r) => { stream.once('end', r); setTimeout(r, 1000); });
  stream.destroy();
  return out;
}

/** One UDP datagram out, the echo back (resent a few times: the first may race the session setup). */
async function udpRoundTrip(port: number, msg: Buffer): Promise<Buffer> {
  const s = dgram.createSocket('udp4');
  try {
    return await new Promise<Buffer>((resolve, reject) => {
      const timer = setTimeout(() => { clearInterval(resend); reject(new Error(`no UDP echo within ${IO_TIMEOUT_MS} ms`)); }, IO_TIMEOUT_MS);
      const resend = setInterval(() => s.send(msg, port, '127.0.0.1'), 500);
      s.once('message', (m) => { clearTimeout(timer); clearInterval(resend); resolve(m); });
      s.once('error', (e) => { clearTimeout(timer); clearInterval(resend); reject(e); });
      s.bind(0, '127.0.0.1', () => s.send(msg, port, '127.0.0.1'));
    });
  } finally {
    s.close();
  }
}

/** Write `msg` over TCP and read back as many bytes. */
function tcpRoundTrip(port: number, msg: Buffer): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const c = net.connect({ host: '127.0.0.1', port });
    const chunks: Buffer[] = [];
    let n = 0;
    const timer = setTimeout(() => { c.destroy(); reject(new Error(`TCP echo: ${n} of ${msg.length} B within ${IO_TIMEOUT_MS} ms`)); }, IO_TIMEOUT_MS);
    c.once('connect', () => c.write(msg));
    c.on('data', (d) => {
      chunks.push(d);
      n += d.length;
      if (n >= msg.length) { clearTimeout(timer); c.end(); resolve(Buffer.concat(chunks)); }
    });
    c.once('error', (e) => { clearTimeout(timer); reject(e); });
  });
}

test.serial('images: build-images.sh builds gateway and peers from their Dockerfiles on node:24-trixie-slim', async (t) => {
  t.timeout(BUILD_TIMEOUT_MS + 30_000, 'build-images.sh did not finish');
  if (gate(t)) return;
  const started = Date.now();
  const r = await run('bash', ['scripts/build-images.sh'], BUILD_TIMEOUT_MS);
  if (r.code !== 0) {
    built = `scripts/build-images.sh failed (exit ${r.code})`;
    t.fail(`${built}:\n${r.out.slice(-4000)}`);
    return;
  }
  t.log(`built in ${((Date.now() - started) / 1000).toFixed(1)} s\n${r.out.trim()}`);
  const images = await run('docker', ['image', 'inspect', '--format', '{{.Id}}', 'node:24-trixie-slim', 'l7mp/gateway:local', 'l7mp/peers:local'], 30_000);
  t.is(images.code, 0, `the engine holds the base and both images: ${images.out}`);
});

interface ImageInspect {
  Size: number;
  Config: {
    User: string;
    Labels: Record<string, string>;
    Healthcheck?: { Test: string[] };
    Entrypoint: string[];
  };
}

test.serial('gateway image: Node 24, --version, OCI labels, non-root, an exec-form health check, within its size budget', async (t) => {
  if (gate(t)) return;
  const version = (await import('../../src/version.js')).packageVersion();
  const inspect = await run('docker', ['image', 'inspect', 'l7mp/gateway:local'], 30_000);
  t.is(inspect.code, 0, inspect.out);
  const img = (JSON.parse(inspect.out) as ImageInspect[])[0]!;
  t.log(`l7mp/gateway:local is ${(img.Size / 1e6).toFixed(1)} MB`);
  t.true(img.Size <= GATEWAY_IMAGE_MAX_BYTES, `${img.Size} B > ${GATEWAY_IMAGE_MAX_BYTES} B`);
  t.is(img.Config.User, '65534:65534');
  t.is(img.Config.Labels['org.opencontainers.image.version'], version);
  t.is(img.Config.Labels['org.opencontainers.image.licenses'], 'MIT');
  t.regex(img.Config.Labels['org.opencontainers.image.revision'] ?? '', /^([0-9a-f]{40}(-dirty)?|unknown)$/);
  t.truthy(img.Config.Labels['org.opencontainers.image.source']);
  // Exec form: the image has no shell for CMD-SHELL to run.
  t.deepEqual(img.Config.Healthcheck?.Test, ['CMD', '/usr/local/bin/node', '/app/dist/gateway/src/main.js', 'health']);
  const tagged = await run('docker', ['image', 'inspect', '--format', '{{.Id}}', `l7mp/gateway:${version}`], 30_000);
  t.is(tagged.code, 0, `tagged with the package version: ${tagged.out}`);

  const v = await run('docker', ['run', '--rm', '--network', 'host', 'l7mp/gateway:local', '--version'], 60_000);
  t.is(v.code, 0, v.out);
  t.is(v.out.trim(), version);
  const node = await run('docker', ['run', '--rm', '--network', 'host', '--entrypoint', '/usr/local/bin/node', 'l7mp/gateway:local', '-p',
    'process.version + " " + process.report.getReport().header.glibcVersionRuntime'], 60_000);
  t.regex(node.out.trim(), /^v24\.\d+\.\d+ 2\.41$/);
  // No Kubernetes client in the gateway image: only the operator image has it.
  const kube = await run('docker', ['run', '--rm', '--network', 'host', '--entrypoint', '/usr/local/bin/node', 'l7mp/gateway:local', '-e',
    'try { require.resolve("@kubernetes/client-node"); process.exit(3); } catch { process.exit(0); }'], 60_000);
  t.is(kube.code, 0, '@kubernetes/client-node is not in the gateway image');
});

test.serial('gateway image: REST API from the host, UDP and TCP round trips to socat peers in the peers image', async (t) => {
  t.timeout(3 * 60_000, 'the container round trips did not finish');
  if (gate(t)) return;
  const { GenericContainer } = await import('testcontainers');
  const started: StartedTestContainer[] = [];
  t.teardown(async () => {
    await Promise.all(started.map((c) => c.stop({ timeout: 1, remove: true }).catch(() => undefined)));
  });

  const ports = new Set<number>();
  while (ports.size < 5) ports.add(await freePort());
  const [apiPort, udpPort, tcpPort, udpPeerPort, tcpPeerPort] = [...ports] as [number, number, number, number, number];
  const peer = (args: string[]) => new GenericContainer('l7mp/peers:local')
    .withNetworkMode('host')
    .withCommand(['/usr/bin/socat', ...args])
    .withStartupTimeout(START_TIMEOUT_MS)
    .start();
  const [udpPeer, tcpPeer] = await Promise.all([
    peer(['-T', '10', `UDP-LISTEN:${udpPeerPort},bind=127.0.0.1,reuseaddr,fork`, 'PIPE']),
    peer([`TCP-LISTEN:${tcpPeerPort},bind=127.0.0.1,reuseaddr,fork`, 'EXEC:cat']),
  ]);
  started.push(udpPeer, tcpPeer);
  await poll('the socat peers', async () => (await tcpAccepts(tcpPeerPort)) && (await udpBound(udpPeerPort)), START_TIMEOUT_MS);

  const adminPort = await freePort();
  const config = {
    admin: { log_level: 'info', metrics: { address: '127.0.0.1', port: adminPort } },
    listeners: [
      {
        name: 'controller-listener',
        spec: { protocol: 'HTTP', address: '127.0.0.1', port: apiPort },
        rules: [{ action: { route: { destination: { name: 'l7mp-controller', spec: { protocol: 'L7mpController' } } } } }],
      },
      {
        name: 'udp-listener',
        spec: { protocol: 'UDP', address: '127.0.0.1', port: udpPort },
        rules: [{ action: { route: { destination: { name: 'udp-echo', spec: { protocol: 'UDP', port: udpPeerPort }, endpoints: [{ spec: { address: '127.0.0.1' } }] } } } }],
      },
      {
        name: 'tcp-listener',
        spec: { protocol: 'TCP', address: '127.0.0.1', port: tcpPort },
        rules: [{ action: { route: { destination: { name: 'tcp-echo', spec: { protocol: 'TCP', port: tcpPeerPort }, endpoints: [{ spec: { address: '127.0.0.1' } }] } } } }],
      },
    ],
  };
  const gw = await new GenericContainer('l7mp/gateway:local')
    .withNetworkMode('host')
    // The image's HEALTHCHECK (`l7mp health`), pointed at this config's admin listener.
    .withEnvironment({ L7MP_HEALTH_URL: `http://127.0.0.1:${adminPort}/ready` })
    .withCopyContentToContainer([{ content: JSON.stringify(config, null, 2), target: '/config/gateway.json', mode: 0o644 }])
    .withCommand(['-c', '/config/gateway.json'])
    .withStartupTimeout(START_TIMEOUT_MS)
    .start();
  started.push(gw);

  const base = `http://127.0.0.1:${apiPort}`;
  try {
    await poll(`the gateway's REST API on ${base}`, async () => (await fetch(`${base}/api/v1/admin`, { signal: AbortSignal.timeout(1000) })).ok, START_TIMEOUT_MS);
    const res = await fetch(`${base}/api/v1/config`, { signal: AbortSignal.timeout(IO_TIMEOUT_MS) });
    t.is(res.status, 200);
    const dump = (await res.json()) as { listeners: { name: string }[]; clusters: { name: string }[] };
    t.deepEqual(dump.listeners.map((l) => l.name).sort(), ['controller-listener', 'tcp-listener', 'udp-listener']);
    t.true(dump.clusters.some((c) => c.name === 'udp-echo') && dump.clusters.some((c) => c.name === 'tcp-echo'));

    const udpMsg = Buffer.from(`udp through the gateway image ${process.pid}`);
    t.deepEqual(await udpRoundTrip(udpPort, udpMsg), udpMsg);
    const tcpMsg = Buffer.alloc(256 * 1024, 'tcp through the gateway image ');
    t.true((await tcpRoundTrip(tcpPort, tcpMsg)).equals(tcpMsg), 'the TCP echo came back unchanged');

    const sessions = (await (await fetch(`${base}/api/v1/sessions`, { signal: AbortSignal.timeout(IO_TIMEOUT_MS) })).json()) as unknown[];
    t.true(Array.isArray(sessions));

    // The engine runs the health check and reports the container healthy.
    await poll('the container to turn healthy', async () => {
      const h = await run('docker', ['inspect', '--format', '{{.State.Health.Status}}', gw.getId()], 15_000);
      return h.out.trim() === 'healthy';
    }, START_TIMEOUT_MS);
  } catch (err) {
    t.log(`--- gateway container logs ---\n${(await containerLogs(gw)).slice(-4000)}`);
    throw err;
  }
});

test.serial('gateway image with 2 workers: UDP flows reach both workers, TCP round trips pass, and the sticky UDP selector is attached or why not is logged once', async (t) => {
  t.timeout(3 * 60_000, 'the 2-worker container did not finish');
  if (gate(t)) return;
  const { GenericContainer } = await import('testcontainers');
  // Echo peers in this process: the container shares the host's loopback.
  const udpEcho = dgram.createSocket('udp4');
  udpEcho.on('message', (m, r) => udpEcho.send(m, r.port, r.address));
  await new Promise<void>((r) => udpEcho.bind(0, '127.0.0.1', () => r()));
  const tcpEcho = net.createServer((s) => { s.on('error', () => undefined); s.pipe(s); });
  await new Promise<void>((r) => tcpEcho.listen(0, '127.0.0.1', () => r()));
  t.teardown(() => { udpEcho.close(); tcpEcho.close(); });
  const [apiPort, udpPort, tcpPort] = [await freePort(), await freePort(), await freePort()];
  const endpoint = [{ spec: { address: '127.0.0.1' } }];
  const config = {
    admin: { log_level: 'info', workers: 2 },
    listeners: [
      { name: 'controller-listener', spec: { protocol: 'HTTP', address: '127.0.0.1', port: apiPort }, rules: [{ action: { route: { destination: { name: 'l7mp-controller', spec: { protocol: 'L7mpController' } } } } }] },
      { name: 'udp-in', spec: { protocol: 'UDP', address: '127.0.0.1', port: udpPort }, rules: [{ action: { route: { destination: { name: 'udp-echo', spec: { protocol: 'UDP', port: (udpEcho.address()).port }, endpoints: endpoint } } } }] },
      { name: 'tcp-in', spec: { protocol: 'TCP', address: '127.0.0.1', port: tcpPort }, rules: [{ action: { route: { destination: { name: 'tcp-echo', spec: { protocol: 'TCP', port: (tcpEcho.address() as net.AddressInfo).port }, endpoints: endpoint } } } }] },
    ],
  };
  const gw = await new GenericContainer('l7mp/gateway:local')
    .withNetworkMode('host')
    .withCopyContentToContainer([{ content: JSON.stringify(config), target: '/config/gateway.json', mode: 0o644 }])
    .withCommand(['-c', '/config/gateway.json'])
    .withStartupTimeout(START_TIMEOUT_MS)
    .start();
  t.teardown(() => gw.stop({ timeout: 1, remove: true }).catch(() => undefined));
  const base = `http://127.0.0.1:${apiPort}`;
  try {
    await poll(`the gateway's REST API on ${base}`, async () => (await fetch(`${base}/api/v1/admin`, { signal: AbortSignal.timeout(1000) })).ok, START_TIMEOUT_MS);
    // 24 flows and 24 connections from distinct source ports: the kernel's hash puts each on one worker.
    for (let i = 0; i < 24; i++) {
      t.is(String(await udpRoundTrip(udpPort, Buffer.from(`flow ${i}`))), `flow ${i}`);
      t.is(String(await tcpRoundTrip(tcpPort, Buffer.from(`conn ${i}`))), `conn ${i}`);
    }
    const sessions = (await (await fetch(`${base}/api/v1/sessions`, { signal: AbortSignal.timeout(IO_TIMEOUT_MS) })).json()) as { name: string; worker: number }[];
    const workers = (listener: string) => [...new Set(sessions.filter((s) => s.name.includes(listener)).map((s) => s.worker))].sort();
    t.deepEqual(workers('UDP:'), [1, 2], 'UDP flows on both workers');
    const logs = await containerLogs(gw);
    const sticky = logs.split('\n').filter((l) => l.includes('UDP flows stay on their worker across worker restarts'));
    const fallback = logs.split('\n').filter((l) => l.includes('UDP flows are not sticky across worker restarts'));
    // Which one depends on the engine's privileges (the image runs without CAP_BPF); either way it is said once.
    t.is(sticky.length + fallback.length, 1, `one line about the selector: ${sticky.length} attached, ${fallback.length} fallback`);
    t.log(sticky.length === 1 ? 'selector attached in the container' : `selector not attached in the container: ${fallback[0]!.slice(0, 400)}`);
    // The plain image has no bpf addon: the line says which image has it.
    if (fallback.length === 1) t.regex(fallback[0]!, /not in the l7mp\/gateway image.*l7mp\/gateway-offload/);
  } catch (err) {
    t.log(`--- gateway container logs ---\n${(await containerLogs(gw)).slice(-4000)}`);
    throw err;
  }
});
