// 1(d): what one more worker costs in memory, as a process or as a thread,
// each having loaded the gateway (dist/gateway/src/app.js: uWS, the addon).
// Also the round trip of one config-sized message over each IPC channel.
// Needs `npm run build`. Usage: node probe-memory.mjs
import { fork } from 'node:child_process';
import { Worker, isMainThread, parentPort } from 'node:worker_threads';
import { fileURLToPath } from 'node:url';
import fs from 'node:fs';

const self = fileURLToPath(import.meta.url);
const rssOf = (pid) => Number(fs.readFileSync(`/proc/${pid}/status`, 'utf8').match(/VmRSS:\s+(\d+)/)[1]) * 1024;
const config = { listeners: Array.from({ length: 200 }, (_, i) => ({ name: `l${i}`, spec: { protocol: 'UDP', port: 40000 + i }, rules: [{ action: { route: { destination: `c${i}` } } }] })) };

if (process.argv[2] === 'child' || !isMainThread) {
  await import('../../dist/gateway/src/app.js');
  const { loadUws } = await import('../../dist/gateway/src/protocols/common/uws.js');
  loadUws();
  const send = (m) => (isMainThread ? process.send(m) : parentPort.postMessage(m));
  const on = (f) => (isMainThread ? process.on('message', f) : parentPort.on('message', f));
  on((m) => { if (m === 'exit') process.exit(0); send(m); }); // echo
  send('ready');
} else {
  const mb = (b) => Math.round(b / 1048576 * 10) / 10;
  const rtt = async (post, on, n = 200) => {
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < n; i++) await new Promise((r) => { on(r); post(config); });
    return Number(process.hrtime.bigint() - t0) / n / 1e3;
  };
  const before = rssOf(process.pid);
  const w = new Worker(self);
  await new Promise((r) => w.once('message', r));
  const threadDelta = rssOf(process.pid) - before;
  const threadUs = await rtt((m) => w.postMessage(m), (f) => w.once('message', f));
  const c = fork(self, ['child']);
  await new Promise((r) => c.once('message', r));
  const childRss = rssOf(c.pid);
  const procUs = await rtt((m) => c.send(m), (f) => c.once('message', f));
  console.log(JSON.stringify({ node: process.version, configBytes: JSON.stringify(config).length, threadAddsRssMB: mb(threadDelta), processRssMB: mb(childRss), roundTripUs: { thread: Math.round(threadUs), process: Math.round(procUs) } }));
  c.send('exit'); await w.terminate();
}
