// Helpers for the tests of a gateway with workers (docs/workers.md).

import net from 'node:net';

/** /ready's status on the probe port; 0 when it does not answer. */
export async function ready(port: number): Promise<number> {
  const r = await fetch(`http://127.0.0.1:${port}/ready`).catch(() => undefined);
  return r?.status ?? 0;
}

/** Open a TCP connection through the gateway and check that it echoes; kept open. */
export async function openEchoed(port: number, t: { teardown(fn: () => void): void }): Promise<net.Socket> {
  const c = net.connect(port, '127.0.0.1');
  t.teardown(() => c.destroy());
  await new Promise<void>((resolve, reject) => {
    c.once('error', reject);
    c.once('data', () => resolve());
    c.write('ping');
  });
  return c;
}

/** The worker pids by index (1-based index i at [i - 1]). */
export function workerPids(gw: { workers?: unknown }): (number | undefined)[] {
  return (gw.workers as { pids(): (number | undefined)[] }).pids();
}

/** A gateway config with `workers` workers, the REST API on `api` and /ready and /metrics on `probes`. */
export function workersConfig(workers: number, api: number, probes: number, objects: { listeners: unknown[]; clusters: unknown[] }, admin: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    admin: { log_level: 'warn', workers, drain_timeout: 0, metrics: { address: '127.0.0.1', port: probes }, limits: { api_rate: 0 }, ...admin },
    listeners: [
      { name: 'controller-listener', spec: { protocol: 'HTTP', address: '127.0.0.1', port: api }, rules: [{ action: { route: { destination: { name: 'controller', spec: { protocol: 'L7mpController' } } } } }] },
      ...objects.listeners,
    ],
    clusters: objects.clusters,
  };
}
