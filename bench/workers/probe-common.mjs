// Shared by the SO_REUSEPORT probes (docs/workers.md): start two workers as
// processes (child_process.fork) or threads (worker_threads), talk to them
// with one message shape, and stop them. Loopback only, bounded.
import { fork } from 'node:child_process';
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
export const addon = createRequire(import.meta.url)(path.join(here, '../../native/sockets/build/Release/l7mp_sockets.node'));

/** In a worker: its id and how to send to the parent. */
export function workerSide() {
  if (!isMainThread) return { id: workerData.id, args: workerData.args, send: (m) => parentPort.postMessage(m), on: (f) => parentPort.on('message', f) };
  if (process.send) process.on('disconnect', () => process.exit(0)); // never outlive the probe
  if (process.send) return { id: Number(process.env.PROBE_ID), args: JSON.parse(process.env.PROBE_ARGS), send: (m) => process.send(m), on: (f) => process.on('message', f) };
  return undefined;
}

/** Start a worker running `file` as a process or a thread. */
export function startWorker(mode, file, id, args) {
  const handlers = [];
  if (mode === 'thread') {
    const w = new Worker(file, { workerData: { id, args } });
    w.on('message', (m) => handlers.forEach((h) => h(m)));
    w.on('error', (e) => console.error('worker error', e));
    return { on: (h) => handlers.push(h), send: (m) => w.postMessage(m), stop: () => w.terminate() };
  }
  const c = fork(file, [], { env: { ...process.env, PROBE_ID: String(id), PROBE_ARGS: JSON.stringify(args) } });
  c.on('message', (m) => handlers.forEach((h) => h(m)));
  return { on: (h) => handlers.push(h), send: (m) => c.send(m), stop: () => c.kill() };
}

export function once(w, type, ms = 5000) {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`timeout waiting for ${type}`)), ms);
    w.on((m) => { if (m.type === type) { clearTimeout(t); resolve(m); } });
  });
}
