// The operator's probe endpoints for the kubelet: GET /healthz (live: no pass
// is wedged) and GET /readyz (ready: the caches are listed and a first pass
// has run). 200 or 503 with a one-line JSON reason; nothing else is served,
// request bodies are never read, and connections are few and short-lived.

import http from 'node:http';
import type { AddressInfo } from 'node:net';

export interface HealthSource {
  health(): { live: boolean; ready: boolean; reason: string };
}

export interface HealthServer {
  port: number;
  close(): Promise<void>;
}

export async function startHealthServer(src: HealthSource, port: number, address = '0.0.0.0'): Promise<HealthServer> {
  const server = http.createServer((req, res) => {
    const path = (req.url ?? '').split('?')[0];
    const h = src.health();
    let ok: boolean;
    if (req.method !== 'GET' && req.method !== 'HEAD') ok = false;
    else if (path === '/healthz' || path === '/livez') ok = h.live;
    else if (path === '/readyz') ok = h.ready;
    else {
      res.writeHead(404, { 'content-type': 'application/json', connection: 'close' }).end('{"error":"not found"}\n');
      return;
    }
    const status = req.method !== 'GET' && req.method !== 'HEAD' ? 405 : ok ? 200 : 503;
    res.writeHead(status, { 'content-type': 'application/json', connection: 'close' })
      .end(`${JSON.stringify({ live: h.live, ready: h.ready, reason: h.reason })}\n`);
  });
  server.headersTimeout = 5000;
  server.requestTimeout = 5000;
  server.maxConnections = 16;
  server.maxHeadersCount = 32;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, address, () => { server.off('error', reject); resolve(); });
  });
  return {
    port: (server.address() as AddressInfo).port,
    close: () => new Promise<void>((r) => { server.closeAllConnections(); server.close(() => r()); }),
  };
}
