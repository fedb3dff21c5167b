// 1(b), continued: what a worker's restart does to the UDP flows of the
// workers that did NOT die. Three workers as processes, each with a
// SO_REUSEPORT socket on one port; 96 flows; worker 0 is killed and a new
// worker 0 binds again; then every flow sends once more.
// With `bpf` the parent attaches the SO_REUSEPORT selector
// (offload/reuseport_flows.bpf.c, via the bpf addon) and puts each worker's
// socket into its slot, as the gateway's main process does (needs root).
// Usage: node probe-udp-restart.mjs [flows] [bpf]
import dgram from 'node:dgram';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { addon, once, startWorker, workerSide } from './probe-common.mjs';

const self = fileURLToPath(import.meta.url);
const w = workerSide();
if (w) {
  const fd = addon.socket(addon.constants.AF_INET, addon.constants.SOCK_DGRAM, 0);
  addon.bindInet(fd, '127.0.0.1', w.args.port, true, true);
  const sock = dgram.createSocket('udp4');
  sock.on('message', (m, r) => sock.send(String(w.args.name), r.port, r.address));
  sock.bind({ fd }, () => w.send({ type: 'listening', port: sock.address().port, fd, pid: process.pid }));
} else {
  const n = Math.min(Number(process.argv[2] ?? 96), 500);
  const bpf = process.argv[3] === 'bpf' ? new (createRequire(import.meta.url)('../../native/bpf/build/Release/l7mp_bpf.node').ReuseportGroup)(fileURLToPath(new URL('../../offload/build/reuseport_flows.bpf.o', import.meta.url)), 3) : undefined;
  const slot = (i, m) => bpf?.add(m.pid, m.fd, i, '127.0.0.1', m.port);
  const a = startWorker('fork', self, 0, { port: 0, name: 'w0' });
  const first = await once(a, 'listening');
  const { port } = first;
  slot(0, first);
  const b = startWorker('fork', self, 1, { port, name: 'w1' });
  const c = startWorker('fork', self, 2, { port, name: 'w2' });
  const [mb, mc] = await Promise.all([once(b, 'listening'), once(c, 'listening')]);
  slot(1, mb);
  slot(2, mc);
  const open = () => Promise.all(Array.from({ length: n }, () => new Promise((r) => { const s = dgram.createSocket('udp4'); s.bind(0, '127.0.0.1', () => r(s)); })));
  let clients = await open();
  const round = async () => {
    const got = new Array(n);
    const waits = clients.map((s, i) => new Promise((r) => { s.once('message', (m) => { got[i] = String(m); r(); }); setTimeout(r, 2000); }));
    clients.forEach((s) => s.send('x', port, '127.0.0.1'));
    await Promise.all(waits);
    return got;
  };
  const before = await round();
  await a.stop();
  await new Promise((r) => setTimeout(r, 200));
  const during = await round();
  const a2 = startWorker('fork', self, 0, { port, name: 'w0new' });
  slot(0, await once(a2, 'listening'));
  const after = await round();
  const old = clients;
  clients = await open();
  const fresh = await round();
  old.forEach((s) => s.close());
  const count = (xs) => xs.reduce((m, x) => ({ ...m, [x]: (m[x] ?? 0) + 1 }), {});
  const survivors = before.map((x, i) => [x, after[i]]).filter(([x]) => x !== 'w0');
  const survivorsMoved = survivors.filter(([x, y]) => x !== y).length;
  const survivorsMovedDuringOutage = before.filter((x, i) => x !== 'w0' && during[i] !== x).length;
  console.log(JSON.stringify({ node: process.version, flows: n, before: count(before), whileW0Dead: count(during), afterRestart: count(after), survivingWorkersFlows: survivors.length, movedWhileW0Dead: survivorsMovedDuringOutage, movedAfterRestart: survivorsMoved, newFlowsAfterRestart: count(fresh), ...(bpf ? { selector: 'bpf' } : {}) }));
  clients.forEach((s) => s.close());
  await Promise.all([b.stop(), c.stop(), a2.stop()]);
  process.exit(0);
}
