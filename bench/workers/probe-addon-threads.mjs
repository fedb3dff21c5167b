// 1(c): does the sockets addon work in worker_threads? Two threads at once
// each open the UDP listener's batched channel (FdSocket: uv_poll on the
// thread's own loop, recvmmsg into the per-environment slab of initBatch)
// to an echo in the main thread, exchange datagrams, then the threads are
// terminated with the socket still open (what a crash-restart does).
// Needs `npm run build`. Usage: node probe-addon-threads.mjs [datagrams] [open]
import dgram from 'node:dgram';
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';
import { fileURLToPath } from 'node:url';

if (!isMainThread) {
  const { BatchedUdpChannel, udpBatchAddon } = await import('../../dist/gateway/src/protocols/udp/batch.js');
  const addon = udpBatchAddon();
  const ch = BatchedUdpChannel.open(addon, { remote: { address: '127.0.0.1', port: workerData.port }, eofLingerMs: 0 });
  let got = 0;
  ch.setSink({
    data: (d) => {
      if (String(Buffer.from(d)) !== `t${workerData.id}`) throw new Error('wrong datagram');
      got++;
      if (got === workerData.n) parentPort.postMessage({ id: workerData.id, got });
    },
    end: () => {},
  });
  // 'close' closes the FdSocket first (uv_close on the poll handle), so the thread can end cleanly.
  parentPort.on('message', (m) => { if (m === 'close') { ch.close(); parentPort.postMessage('closed'); } });
  // Paced in rounds of 10 so that the echo's queue never overflows.
  for (let i = 0; i < workerData.n; i++) {
    ch.send(Buffer.from(`t${workerData.id}`));
    if (i % 10 === 9) await new Promise((r) => setTimeout(r, 1));
  }
} else {
  const n = Math.min(Number(process.argv[2] ?? 2000), 20000);
  const echo = dgram.createSocket('udp4');
  echo.on('message', (m, r) => echo.send(m, r.port, r.address));
  await new Promise((r) => echo.bind(0, '127.0.0.1', r));
  const port = echo.address().port;
  const file = fileURLToPath(import.meta.url);
  const start = () => {
    const ws = [0, 1].map((id) => new Worker(file, { workerData: { id, port, n } }));
    return { ws, done: Promise.all(ws.map((w) => new Promise((res, rej) => { w.once('message', res); w.once('error', rej); setTimeout(() => rej(new Error('timeout')), 10000).unref(); }))) };
  };
  const first = start();
  const results = await first.done;
  // Close the sockets, then terminate, then do it all again: a restarted thread loads the addon anew.
  // With "open" the threads are terminated with the FdSocket open (what a crash or a hung thread leaves).
  if (process.argv[3] !== 'open') {
    await Promise.all(first.ws.map((w) => new Promise((r) => { w.on('message', (m) => m === 'closed' && r()); w.postMessage('close'); })));
  }
  await Promise.all(first.ws.map((w) => w.terminate()));
  const second = start();
  const again = await second.done;
  await Promise.all(second.ws.map((w) => new Promise((r) => { w.on('message', (m) => m === 'closed' && r()); w.postMessage('close'); })));
  await Promise.all(second.ws.map((w) => w.terminate()));
  console.log(JSON.stringify({ node: process.version, datagramsPerThread: n, firstRun: results, afterTerminateAndRestart: again, processAlive: true }));
  echo.close();
}
