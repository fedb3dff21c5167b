// Test plumbing for the operator: real gateway processes
// (`node dist/gateway/src/main.js -c FILE`) on loopback, gateway pods and
// resources in the InMemoryKubeApiDouble (a stand-in for the Kubernetes API
// server, which cannot run here), and the operator between them.

import { spawn, type ChildProcess } from 'node:child_process';
import dgram from 'node:dgram';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort, waitFor } from '../../gateway/test/integration/helpers.js';
import { L7mpClient } from '../../gateway/src/api/generated/client.js';
import type { KubeObject } from '../src/kube/api.js';
import { InMemoryKubeApiDouble } from '../src/kube/in-memory-double.js';
import { Operator, PORT_ANNOTATION, type OperatorOptions } from '../src/operator.js';

const HERE = path.dirname(fileURLToPath(import.meta.url));
/** dist/operator/test/ -> dist/gateway/src/main.js */
export const GATEWAY_MAIN = path.resolve(HERE, '../../gateway/src/main.js');

type Teardown = { teardown(fn: () => unknown): void };

export interface GatewayProcess {
  controllerPort: number;
  adminPort: number;
  base: string;
  client: L7mpClient;
  proc(): ChildProcess;
  logs(): string;
  /** SIGKILL and wait for the exit. */
  kill(): Promise<void>;
  /** Start again on the same ports with the same (static) config. */
  restart(): Promise<void>;
}

/** A gateway process managed by the operator (`admin.managed: true`), its controller on 127.0.0.1. */
export async function startGatewayProcess(t: Teardown, extra: Record<string, unknown> = {}, token?: string): Promise<GatewayProcess> {
  const controllerPort = await freePort();
  const adminPort = await freePort();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'l7mp-operator-test-'));
  const file = path.join(dir, 'gateway.json');
  fs.writeFileSync(file, JSON.stringify({
    admin: { log_level: 'warn', managed: true, metrics: { address: '127.0.0.1', port: adminPort }, limits: { api_rate: 0 } },
    listeners: [{
      name: 'controller-listener',
      spec: { protocol: 'HTTP', address: '127.0.0.1', port: controllerPort },
      rules: [{ action: { route: { destination: { name: 'controller', spec: { protocol: 'L7mpController' } } } } }],
    }],
    ...extra,
  }));
  let child: ChildProcess;
  let out = '';
  let exited: Promise<void>;
  const base = `http://127.0.0.1:${controllerPort}`;
  const client = new L7mpClient(base, token !== undefined ? { token } : {});
  const launch = async () => {
    child = spawn(process.execPath, [GATEWAY_MAIN, '-c', file], { stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    const c = child;
    c.stdout!.on('data', (d) => { out += String(d); });
    c.stderr!.on('data', (d) => { out += String(d); });
    let gone = false;
    exited = new Promise((r) => c.once('exit', () => { gone = true; r(); }));
    await waitFor(async () => {
      if (gone) throw new Error(`gateway exited during startup:\n${out}`);
      return client.getAdmin().then(() => true, () => false);
    }, 10_000, `gateway on ${controllerPort}`);
  };
  const kill = async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    try { process.kill(-child.pid!, 'SIGKILL'); } catch { child.kill('SIGKILL'); }
    await exited;
  };
  await launch();
  t.teardown(kill);
  return { controllerPort, adminPort, base, client, proc: () => child, logs: () => out, kill, restart: launch };
}

/** A gateway pod as the kubelet reports it: running, with the process's address and REST port. */
export function gatewayPod(name: string, gw: { controllerPort: number }, opts: { labels?: Record<string, string>; ip?: string; restarts?: number; namespace?: string } = {}): KubeObject {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: {
      name,
      namespace: opts.namespace ?? 'default',
      labels: opts.labels ?? { app: 'l7mp-ingress' },
      annotations: { [PORT_ANNOTATION]: String(gw.controllerPort) },
    },
    spec: { containers: [{ name: 'l7mp', image: 'l7mp/l7mp' }] },
    status: {
      phase: 'Running',
      podIP: opts.ip ?? '127.0.0.1',
      containerStatuses: [{ name: 'l7mp', ready: false, restartCount: opts.restarts ?? 0, state: { running: { startedAt: new Date().toISOString() } } }],
    },
  };
}

export function resource(kind: 'VirtualService' | 'Target' | 'Rule', name: string, spec: unknown, namespace = 'default'): KubeObject {
  return { apiVersion: 'l7mp.io/v1', kind, metadata: { name, namespace }, spec };
}

/** The double and an operator on it with short retry and resync, stopped at teardown. */
export async function startOperator(t: Teardown, opts: Partial<OperatorOptions> = {}): Promise<{ kube: InMemoryKubeApiDouble; op: Operator }> {
  const kube = new InMemoryKubeApiDouble();
  const op = new Operator({ kube, retryMs: 100, resyncMs: 60_000, ...opts });
  t.teardown(() => op.stop());
  await op.start();
  return { kube, op };
}

/** A condition of a resource's status in the double. */
export function condition(kube: InMemoryKubeApiDouble, kind: 'VirtualService' | 'Target' | 'Rule', name: string, type: 'Ready' | 'Degraded', namespace = 'default'): { status: string; reason: string; message: string } | undefined {
  const o = kube.get(kind, namespace, name);
  return (o?.status?.conditions as Array<{ type: string; status: string; reason: string; message: string }> | undefined)?.find((c) => c.type === type);
}

/** Something else holds a UDP port on 127.0.0.1, so a gateway's bind there fails until `release`. */
export async function squatUdp(t: Teardown): Promise<{ port: number; release(): Promise<void> }> {
  const port = await freePort();
  const sock = dgram.createSocket('udp4');
  await new Promise<void>((r) => sock.bind(port, '127.0.0.1', () => r()));
  let held = true;
  const release = () => (held ? new Promise<void>((r) => { held = false; sock.close(() => r()); }) : Promise.resolve());
  t.teardown(release);
  return { port, release };
}

export { waitFor, freePort };
