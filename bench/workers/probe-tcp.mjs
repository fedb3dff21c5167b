// 1(a): can two workers (processes or threads) listen on one TCP port with
// SO_REUSEPORT on Node 20, and does the kernel spread connections over them?
// Engines: "addon" (native socket with SO_REUSEPORT, then net.Server.listen({fd}))
// and "uws" (uWebSockets.js, whose listen defaults to SO_REUSEPORT).
// Usage: node probe-tcp.mjs fork|thread addon|uws [connections]
import net from 'node:net';
import { parentPort } from 'node:worker_threads';
const closeThread = () => parentPort?.close();
import { fileURLToPath } from 'node:url';
import { addon, once, startWorker, workerSide } from './probe-common.mjs';

const self = fileURLToPath(import.meta.url);
const w = workerSide();
if (w) {
  const { engine, port } = w.args;
  let count = 0;
  let listenToken;
  let closeUws = () => {};
  if (engine === 'addon') {
    const fd = addon.socket(addon.constants.AF_INET, addon.constants.SOCK_STREAM, 0);
    addon.bindInet(fd, '127.0.0.1', port, true, true);
    addon.listen(fd, 511);
    const srv = net.createServer((s) => { count++; s.end(String(w.id)); });
    srv.listen({ fd }, () => w.send({ type: 'listening', port: addon.localAddress(fd).port }));
  } else {
    // The gateway's own loader (npm run build first) picks the uWS build for this Node.
    const { loadUws } = await import('../../dist/gateway/src/protocols/common/uws.js');
    const uws = loadUws().uws;
    const app = uws.App().ws('/*', {});
    // A raw TCP server is not in uWS's JS API: an HTTP answer shows which worker took the connection.
    app.any('/*', (res) => { count++; res.end(String(w.id)); });
    // uSockets sets SO_REUSEPORT only for a port other than 0: the parent picks one.
    app.listen('127.0.0.1', port, (tok) => {
      listenToken = tok;
      w.send(tok ? { type: 'listening', port: uws.us_socket_local_port(tok) } : { type: 'failed' });
    });
    closeUws = () => { if (listenToken) uws.us_listen_socket_close(listenToken); };
  }
  w.on((m) => {
    if (m.type === 'count') w.send({ type: 'count', id: w.id, count });
    // A thread terminated with a uWS socket open aborts the whole process
    // (uv_loop_close with open handles): close first, then let the loop end.
    if (m.type === 'stop') { closeUws(); if (process.send) process.exit(0); else closeThread(); }
  });
} else {
  const [mode = 'fork', engine = 'addon', nArg = '400'] = process.argv.slice(2);
  const n = Math.min(Number(nArg), 2000);
  const free = await new Promise((r) => { const s = net.createServer().listen(0, '127.0.0.1', () => { const p = s.address().port; s.close(() => r(p)); }); });
  const a = startWorker(mode, self, 0, { engine, port: engine === 'uws' ? free : 0 });
  const first = await once(a, 'listening');
  const b = startWorker(mode, self, 1, { engine, port: first.port });
  const second = await once(b, 'listening').catch(() => ({ port: -1 }));
  const seen = [0, 0];
  for (let i = 0; i < n; i++) {
    const id = await new Promise((resolve, reject) => {
      const s = net.connect(first.port, '127.0.0.1');
      let buf = '';
      if (engine === 'uws') s.write('GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
      s.on('data', (d) => { buf += d; if (engine === 'uws' && /\r\n\r\n[01]$/.test(buf)) s.destroy(); });
      s.on('close', () => resolve(Number(buf.slice(-1))));
      s.on('error', reject);
      s.setTimeout(2000, () => s.destroy(new Error('timeout')));
    });
    seen[id]++;
  }
  const counted = Promise.all([once(a, 'count'), once(b, 'count')]);
  a.send({ type: 'count' }); b.send({ type: 'count' });
  const [ca, cb] = await counted;
  console.log(JSON.stringify({ mode, engine, node: process.version, port: first.port, secondBound: second.port === first.port, connections: n, answeredBy: seen, workerCounts: [ca.count, cb.count] }));
  if (process.argv[5] !== 'terminate') {
    a.send({ type: 'stop' }); b.send({ type: 'stop' });
    await new Promise((r) => setTimeout(r, 300)); // the worker closes its socket, then its loop ends
  }
  await a.stop(); await b.stop();
  process.exit(0);
}
