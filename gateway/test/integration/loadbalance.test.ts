// Load balancing over real endpoints: three socat peers on one port at three
// loopback addresses (Linux routes all of 127/8 to lo). Each peer first
// writes its id and then echoes, so every reply proves which endpoint served
// the session; the session dump must name the same endpoint.

import test, { type ExecutionContext } from 'ava';
import net from 'node:net';
import {
  api, freePort, type Peer, socat, startGw,
} from './helpers.js';

function listening(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const c = net.connect({ port, host });
    c.once('connect', () => { c.destroy(); resolve(true); });
    c.once('error', () => resolve(false));
  });
}

/** A TCP peer on host:port that writes `id` and then echoes. */
function idPeer(host: string, port: number, id: string): Promise<Peer> {
  // -t 10: after the client's EOF socat waits (by default only 0.5 s) for the
  // shell's output; a loaded machine can take longer to start the shell.
  return socat(['-t', '10', `TCP-LISTEN:${port},bind=${host},reuseaddr,fork,backlog=128`, `SYSTEM:printf ${id}; exec cat`], () => listening(host, port));
}

/** The peers' addresses, and what each writes first. */
const ID_BY_HOST: Record<string, string> = { '127.0.0.1': 'A', '127.0.0.2': 'B', '127.0.0.3': 'C' };
/** Nobody listens here: picking it would fail the session. */
const DRAINED = { name: 'ep-0', spec: { address: '127.0.0.4' }, weight: 0 };

let upPort = 0;
const peers: Peer[] = [];

test.before(async () => {
  upPort = await freePort();
  for (const [host, id] of Object.entries(ID_BY_HOST)) peers.push(await idPeer(host, upPort, id));
});

test.after.always(async () => {
  for (const p of peers) await (async (p) => p.stop())(p);
});

/** Endpoints `${prefix}ep-1..3` on 127.0.0.1..3 (endpoint names are global, hence the prefix). */
function endpoints(weights: [number, number, number], prefix = '') {
  return weights.map((weight, i) => ({ name: `${prefix}ep-${i + 1}`, spec: { address: `127.0.0.${i + 1}` }, weight }));
}

function lbListener(name: string, port: number, cluster: Record<string, unknown>) {
  return {
    name,
    spec: { protocol: 'TCP', address: '127.0.0.1', port },
    rules: [{ action: { route: { destination: cluster } } }],
    options: { track: 60 },
  };
}

interface Exchange {
  localAddress: string;
  localPort: number;
  reply: string;
}

/** Connect (optionally from a given loopback address), send, half-close, read to EOF. */
function exchange(port: number, localAddress?: string, timeoutMs = 5000): Promise<Exchange> {
  return new Promise((resolve, reject) => {
    const c = net.connect({ port, host: '127.0.0.1', allowHalfOpen: true, ...(localAddress ? { localAddress } : {}) });
    const parts: Buffer[] = [];
    let local: { address: string; port: number } | undefined;
    const timer = setTimeout(() => { c.destroy(); reject(new Error('exchange timed out')); }, timeoutMs);
    c.on('connect', () => {
      local = { address: c.localAddress!, port: c.localPort! };
      c.end('x');
    });
    c.on('data', (d: Buffer) => parts.push(d));
    c.on('end', () => {
      clearTimeout(timer);
      c.end();
      resolve({ localAddress: local!.address, localPort: local!.port, reply: Buffer.concat(parts).toString() });
    });
    c.on('error', (err) => { clearTimeout(timer); reject(err); });
  });
}

/** Run `n` exchanges, at most `parallel` at a time. */
async function many(n: number, parallel: number, one: (i: number) => Promise<Exchange>): Promise<Exchange[]> {
  const out: Exchange[] = [];
  let next = 0;
  const worker = async () => {
    while (next < n) {
      const i = next++;
      out[i] = await one(i);
    }
  };
  await Promise.all(Array.from({ length: Math.min(parallel, n) }, worker));
  return out;
}

interface Used {
  /** Endpoint name of the tracked session. */
  endpoint: string;
  /** Peer id expected from that endpoint's address. */
  id: string;
  srcAddr: string;
}

/**
 * The endpoint of every tracked session of `listener`, checked against the
 * peers that actually answered: the session dump and the replies must agree
 * on how many sessions each endpoint served. (Sessions are not paired with
 * exchanges one by one: a client port can be reused once a session is over.)
 */
async function endpointsUsed(t: ExecutionContext, gw: { base: string }, listener: string, xs: Exchange[]): Promise<Used[]> {
  const r = await api(gw.base, 'GET', '/api/v1/sessions');
  t.is(r.status, 200);
  const used: Used[] = (r.body as any[]).filter((s) => s.source?.origin === listener).map((s) => ({
    endpoint: s.destination?.endpoint?.name,
    id: ID_BY_HOST[s.destination?.endpoint?.spec?.address] ?? '?',
    srcAddr: s.metadata?.IP?.src_addr,
  }));
  t.is(used.length, xs.length, 'one tracked session per exchange');
  t.deepEqual(tally(used.map((u) => u.id)), tally(xs.map((x) => x.reply.slice(0, -1))), 'the dump names the endpoints that answered');
  for (const x of xs) t.true(x.reply.endsWith('x'), 'the payload was echoed after the id');
  return used;
}

function tally(eps: string[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const e of eps) out[e] = (out[e] ?? 0) + 1;
  return out;
}

test('WeightedRandom 3:1:1: shares follow the weights; a weight-0 endpoint gets nothing', async (t) => {
  const lport = await freePort();
  const gw = await startGw(t, {
    listeners: [lbListener('lb-in', lport, {
      name: 'weighted',
      spec: { protocol: 'TCP', port: upPort },
      endpoints: [...endpoints([3, 1, 1]), DRAINED],
      loadbalancer: { policy: 'WeightedRandom' },
    })],
  });
  const N = 300;
  const xs = await many(N, 10, () => exchange(lport));
  const counts = tally((await endpointsUsed(t, gw, 'lb-in', xs)).map((u) => u.endpoint));
  t.log('sessions per endpoint', counts);
  const share = (ep: string) => (counts[ep] ?? 0) / N;
  t.true(Math.abs(share('ep-1') - 0.6) <= 0.1, `ep-1 share ${share('ep-1')}`);
  t.true(Math.abs(share('ep-2') - 0.2) <= 0.08, `ep-2 share ${share('ep-2')}`);
  t.true(Math.abs(share('ep-3') - 0.2) <= 0.08, `ep-3 share ${share('ep-3')}`);
  t.false('ep-0' in counts, 'weight 0: never picked');
});

test('ConsistentHash on IP/src_addr: a source address sticks to one endpoint; addresses spread', async (t) => {
  const lport = await freePort();
  const gw = await startGw(t, {
    listeners: [lbListener('hash-in', lport, {
      name: 'hashed',
      spec: { protocol: 'TCP', port: upPort },
      endpoints: [...endpoints([3, 1, 1]), DRAINED],
      loadbalancer: { policy: 'ConsistentHash', key: 'IP/src_addr' },
    })],
  });
  // Octets of one, two and three digits and 0: the addon spells the address out itself (fdsock.cc).
  const sources = [...Array.from({ length: 18 }, (_, i) => `127.0.0.${10 + i}`), '127.100.20.3', '127.255.0.254'];
  const perSource = 3;
  const xs = await many(sources.length * perSource, 10, (i) => exchange(lport, sources[i % sources.length]));
  const used = await endpointsUsed(t, gw, 'hash-in', xs);
  // In the session dump: one endpoint per source address.
  const bySource = new Map<string, Set<string>>();
  for (const u of used) bySource.set(u.srcAddr, (bySource.get(u.srcAddr) ?? new Set<string>()).add(u.endpoint));
  t.deepEqual([...bySource.keys()].sort(), [...sources].sort(), 'clients really came from their own addresses');
  for (const [src, set] of bySource) t.is(set.size, 1, `${src} always lands on the same endpoint: ${[...set].join(', ')}`);
  // In the replies: each source address was always answered by the same peer, the one the dump names.
  for (const src of sources) {
    const ids = new Set(xs.filter((x) => x.localAddress === src).map((x) => x.reply.slice(0, -1)));
    const expected = used.find((u) => u.srcAddr === src)?.id;
    t.deepEqual([...ids], [expected], `peers that answered ${src}`);
  }
  const eps = new Set(used.map((u) => u.endpoint));
  t.log('endpoints used', tally(used.map((u) => u.endpoint)));
  t.true(eps.size > 1, 'different source addresses spread over more than one endpoint');
  t.false(eps.has('ep-0'), 'weight 0: never picked');
});

test('Trivial (explicit and default): always the first endpoint', async (t) => {
  const lport = await freePort();
  const dport = await freePort();
  const gw = await startGw(t, {
    listeners: [
      lbListener('trivial-in', lport, {
        name: 'trivial',
        spec: { protocol: 'TCP', port: upPort },
        endpoints: endpoints([1, 5, 5]),
        loadbalancer: { policy: 'Trivial' },
      }),
      lbListener('default-in', dport, {
        name: 'default',
        spec: { protocol: 'TCP', port: upPort },
        endpoints: endpoints([1, 1, 1], 'default-'),
      }),
    ],
  });
  const xs = await many(20, 5, () => exchange(lport));
  t.deepEqual(tally((await endpointsUsed(t, gw, 'trivial-in', xs)).map((u) => u.endpoint)), { 'ep-1': 20 });
  const ds = await many(10, 5, () => exchange(dport));
  t.deepEqual(tally((await endpointsUsed(t, gw, 'default-in', ds)).map((u) => u.endpoint)), { 'default-ep-1': 10 });
});
