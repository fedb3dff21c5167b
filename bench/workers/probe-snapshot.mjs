// What a worker snapshot (workers/snapshot.ts) costs on a large graph: the
// supervisor takes one on the REST commit path every 1,000 changes, so its
// time is added to that one change's answer; a worker restarted after it
// builds the whole graph from it. N clusters (2 endpoints each), N routes,
// N rules and one rulelist of them: 5N + 1 objects on a 2-worker gateway.
// Needs `npm run build`. Usage: node probe-snapshot.mjs [N=20000]
import net from 'node:net';
import { startGateway } from '../../dist/gateway/src/app.js';

const N = Number(process.argv[2] ?? 20000);
const freePort = () => new Promise((resolve) => {
  const s = net.createServer().listen(0, '127.0.0.1', () => { const { port } = s.address(); s.close(() => resolve(port)); });
});
const [api, probes] = [await freePort(), await freePort()];
const clusters = [], routes = [], rules = [];
for (let i = 0; i < N; i++) {
  clusters.push({ name: `c${i}`, spec: { protocol: 'UDP', port: 5000 + (i % 1000) }, endpoints: [{ name: `e${i}a`, spec: { address: '127.0.0.1' } }, { name: `e${i}b`, spec: { address: '127.0.0.2' } }] });
  routes.push({ name: `r${i}`, destination: `c${i}`, retry: { retry_on: 'connect-failure', num_retries: 2, timeout: 500 } });
  rules.push({ name: `ru${i}`, match: { op: 'starts', path: '/IP/src_addr', value: `10.${i % 255}` }, action: { route: `r${i}` } });
}
const gw = await startGateway({ config: {
  admin: { log_level: 'warn', workers: 2, drain_timeout: 0, metrics: { address: '127.0.0.1', port: probes }, limits: { api_rate: 0 } },
  listeners: [{ name: 'controller-listener', spec: { protocol: 'HTTP', address: '127.0.0.1', port: api }, rules: [{ action: { route: { destination: { name: 'controller', spec: { protocol: 'L7mpController' } } } } }] }],
  clusters, routes, rules, rulelists: [{ name: 'big', rules: rules.map((r) => r.name) }],
} });
const sup = gw.workers;
const ms = (t0) => (Number(process.hrtime.bigint() - t0) / 1e6).toFixed(1);
const times = [];
let bytes = 0;
for (let k = 0; k < 5; k++) {
  const t0 = process.hrtime.bigint();
  const snap = sup.snapshot();
  times.push(ms(t0));
  bytes = JSON.stringify(snap).length;
}
console.log(`${5 * N + 1} objects: snapshot ${times.join(', ')} ms; ${(bytes / 1048576).toFixed(1)} MiB as JSON`);
const post = async (name) => {
  const t0 = process.hrtime.bigint();
  const r = await fetch(`http://127.0.0.1:${api}/api/v1/clusters`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ cluster: { name, spec: { protocol: 'UDP', port: 1 }, endpoints: [] } }) });
  if (r.status !== 200) throw new Error(`POST ${name}: ${r.status}`);
  return ms(t0);
};
const without = [], withSnap = [];
for (let k = 0; k < 5; k++) without.push(await post(`plain${k}`));
sup.compactAt = 1; // every change takes a snapshot
for (let k = 0; k < 5; k++) withSnap.push(await post(`snap${k}`));
console.log(`a REST change: ${without.join(', ')} ms; one that takes the snapshot: ${withSnap.join(', ')} ms`);
const old = sup.pids()[1];
const t0 = process.hrtime.bigint();
process.kill(old, 'SIGKILL');
for (const deadline = Date.now() + 60_000; ;) {
  await new Promise((r) => setTimeout(r, 20));
  const now = sup.pids()[1];
  if (now !== undefined && now !== old && (await fetch(`http://127.0.0.1:${probes}/ready`).catch(() => undefined))?.status === 200) break;
  if (Date.now() > deadline) { console.log('worker 2 did not come back within 60 s'); break; }
}
console.log(`worker 2 SIGKILLed, restarted from the snapshot, /ready 200 after ${ms(t0)} ms (200 ms of it the restart backoff)`);
await gw.stop();
process.exit(0);
