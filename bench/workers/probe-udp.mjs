// 1(b): UDP listening sockets with SO_REUSEPORT in two workers (addon
// sockets handed to node:dgram with bind({fd}); node:dgram cannot set
// SO_REUSEPORT on Node 20). Does a flow (4-tuple) stay on one worker? Can a
// worker then open a per-flow connected socket on the same local addr:port
// (what the UDP listener's server mode does on its node:dgram path) without
// taking other workers' flows?
// Usage: node probe-udp.mjs fork|thread [flows] [perflow: none|reuseaddr|reuseport]
import dgram from 'node:dgram';
import { fileURLToPath } from 'node:url';
import { addon, once, startWorker, workerSide } from './probe-common.mjs';

const self = fileURLToPath(import.meta.url);
const w = workerSide();

function reuseSocket(port, reuseAddr, reusePort) {
  const fd = addon.socket(addon.constants.AF_INET, addon.constants.SOCK_DGRAM, 0);
  addon.bindInet(fd, '127.0.0.1', port, reuseAddr, reusePort);
  return fd;
}

if (w) {
  const { port, perflow } = w.args;
  // Reuseaddr too, so that a per-flow socket with only SO_REUSEADDR can bind beside it.
  const fd = reuseSocket(port, true, true);
  const sock = dgram.createSocket('udp4');
  const flows = new Set();
  let onListener = 0; let onFlowSocket = 0;
  const sendErrors = new Set();
  sock.on('message', (msg, r) => {
    onListener++;
    const key = `${r.address}:${r.port}`;
    // Each answer names the worker and the socket that took the datagram.
    sock.send(`${w.id}:L`, r.port, r.address);
    if (perflow === 'none' || flows.has(key)) return;
    flows.add(key);
    const pf = dgram.createSocket('udp4');
    const pfd = reuseSocket(port, perflow === 'reuseaddr', perflow === 'reuseport');
    pf.on('message', () => { onFlowSocket++; pf.send(`${w.id}:F`, (err) => { if (err) sendErrors.add(err.code); }); });
    // node:dgram's connect, so that it knows the socket is connected and sends without an address.
    pf.bind({ fd: pfd }, () => pf.connect(r.port, r.address));
  });
  sock.bind({ fd }, () => w.send({ type: 'listening', port: sock.address().port }));
  w.on((m) => { if (m.type === 'count') w.send({ type: 'count', id: w.id, onListener, onFlowSocket, flowSockets: flows.size, sendErrors: [...sendErrors] }); });
} else {
  const [mode = 'fork', nArg = '64', perflow = 'none'] = process.argv.slice(2);
  const n = Math.min(Number(nArg), 500);
  const rounds = 5;
  const a = startWorker(mode, self, 0, { port: 0, perflow });
  const { port } = await once(a, 'listening');
  const b = startWorker(mode, self, 1, { port, perflow });
  await once(b, 'listening');
  const clients = await Promise.all(Array.from({ length: n }, () => new Promise((r) => { const c = dgram.createSocket('udp4'); c.bind(0, '127.0.0.1', () => r(c)); })));
  const answers = clients.map(() => []);
  clients.forEach((c, i) => c.on('message', (m) => answers[i].push(String(m))));
  for (let round = 0; round < rounds; round++) {
    for (const c of clients) c.send('x', port, '127.0.0.1');
    // Wait for every answer of the round, bounded.
    const t0 = Date.now();
    while (answers.some((x) => x.length < round + 1) && Date.now() - t0 < 2000) await new Promise((r) => setTimeout(r, 10));
  }
  const workersPerFlow = answers.map((x) => new Set(x.map((s) => s.split(':')[0])).size);
  const firstWorker = [0, 0];
  for (const x of answers) if (x[0]) firstWorker[Number(x[0].split(':')[0])]++;
  const counted = Promise.all([once(a, 'count'), once(b, 'count')]);
  a.send({ type: 'count' }); b.send({ type: 'count' });
  const [ca, cb] = await counted;
  // A flow whose first answer came from worker W must get every later answer from W's flow socket (perflow) or W's listener.
  const movedFlows = workersPerFlow.filter((k) => k > 1).length;
  const lost = answers.filter((x) => x.length < rounds).length;
  const laterFromListener = perflow === 'none' ? 0 : answers.filter((x) => x.slice(1).some((s) => s.endsWith(':L'))).length;
  console.log(JSON.stringify({ mode, perflow, flows: n, rounds, flowsStartedOn: firstWorker, flowsThatMovedWorker: movedFlows, flowsMissingAnswers: lost, flowsWithLaterAnswersFromListener: laterFromListener, workers: [ca, cb].map(({ type, ...r }) => r) }));
  for (const c of clients) c.close();
  await a.stop(); await b.stop();
  process.exit(0);
}
