// Plain TCP and UnixDomainSocket stream sessions through a gateway process,
// with real node:net peers on both sides, for the pairs TCP -> TCP,
// UnixDomainSocket -> UnixDomainSocket and TCP -> UnixDomainSocket (issue 17):
// EOF and half-close in each direction, resets, connect-failure retry, DELETE
// mid-transfer, and thousands of short connections without a leaked
// descriptor. The raw-socket path must behave as the net.Socket path does.
// This file runs four times: as is (compiled listeners: the addon sets up each
// connection, fastpath/compiled.ts), with L7MP_COMPILED=off (the raw path,
// each connection decided in JavaScript; stream-path-uncompiled.test.ts),
// with L7MP_TCP_FASTPATH=off (net.Socket; stream-path-js.test.ts), and
// compiled without an access log (ends read from the metrics;
// stream-path-nolog.test.ts). The live session's `path` and
// `splice.compiled` say which path carried it.

import test, { type ExecutionContext } from 'ava';
import crypto from 'node:crypto';
import { once } from 'node:events';
import net from 'node:net';
import { api, freePort, waitFor } from './helpers.js';
import {
  NO_ACCESS_LOG, connect, deadAddr, echoUpstream, isReset, streamGateway, upstream, type Addr, type Kind, type StreamGateway, type Watched,
} from './stream-path-helpers.js';

/** Where GET /api/v1/sessions says a session runs: the raw-socket path, or (fastpath off) no `path` field. */
const expectedPath = process.env.L7MP_TCP_FASTPATH === 'off' ? undefined : 'raw';
/** Whether a session set up at once (no failed connect first) must be a compiled one. */
const expectCompiled = expectedPath !== undefined && process.env.L7MP_COMPILED !== 'off';

const KiB = 1024;
const MiB = 1024 * KiB;

interface Pair { front: Kind; back: Kind }
const PAIRS: Pair[] = [
  { front: 'TCP', back: 'TCP' },
  { front: 'UnixDomainSocket', back: 'UnixDomainSocket' },
  { front: 'TCP', back: 'UnixDomainSocket' },
];
const short = (k: Kind): string => (k === 'TCP' ? 'TCP' : 'UDS');
const label = (p: Pair): string => `${short(p.front)} -> ${short(p.back)}`;

// One gateway process at a time: the bounds below (reset seen within 2 s)
// hold on a loaded 2-core machine when the tests do not compete.
const it = test.serial;

/** The session's end as the access log (or, compiled, the listener's metrics) and the metrics record it. */
async function checkEnded(t: ExecutionContext, gw: StreamGateway, status: 'ok' | 'error', ingress?: number, egress?: number): Promise<any> {
  await gw.noSessions();
  const log = NO_ACCESS_LOG ? await endedFromMetrics(gw) : await gw.ended();
  t.is(log.status, status, JSON.stringify(log));
  if (ingress !== undefined) t.is(log.ingress_bytes, ingress, 'client -> upstream bytes counted exactly');
  if (egress !== undefined) t.is(log.egress_bytes, egress, 'upstream -> client bytes counted exactly');
  // The REST calls are sessions too (all completed): count the errors.
  t.is(await gw.metric('l7mp_sessions_ended_total{reason="error"}'), status === 'ok' ? 0 : 1);
  return log;
}

/**
 * The one ended session of listener "in" as an access log line would give
 * it, from the metrics (the run without an access log): its status
 * from the ended counts, its bytes from the listener's counters.
 */
async function endedFromMetrics(gw: StreamGateway): Promise<{ status: string; ingress_bytes: number | undefined; egress_bytes: number | undefined }> {
  const bytes = async (dir: string): Promise<number | undefined> => {
    for (const proto of ['TCP', 'UnixDomainSocket']) {
      const v = await gw.metric(`l7mp_listener_bytes_total{listener="in",protocol="${proto}",direction="${dir}"}`);
      if (v !== undefined) return v;
    }
    return undefined;
  };
  await waitFor(async () => (await gw.metric('l7mp_listener_sessions_active{listener="in",protocol="TCP"}') ?? await gw.metric('l7mp_listener_sessions_active{listener="in",protocol="UnixDomainSocket"}')) === 0, 5000, 'no active session of "in"');
  const errors = await gw.metric('l7mp_sessions_ended_total{reason="error"}') ?? 0;
  return { status: errors > 0 ? 'error' : 'ok', ingress_bytes: await bytes('rx'), egress_bytes: await bytes('tx') };
}

/** A live session's path fields: raw, and compiled when the run compiles and the session was set up at once. */
function checkPath(t: ExecutionContext, s: any, setUpAtOnce = true): void {
  t.is(s.path, expectedPath);
  if (expectedPath !== undefined) t.is(s.splice?.compiled === true, expectCompiled && setUpAtOnce, `compiled: ${JSON.stringify(s.splice)}`);
}

// --------------------------------------------------------- EOF and half-close

for (const p of PAIRS) {
  it(`${label(p)}: half-close client -> upstream: the upstream reads the request then EOF, answers after it, the client reads the whole answer then EOF; the session ends clean with exact counters`, async (t) => {
    const request = crypto.randomBytes(300 * KiB);
    const response = crypto.randomBytes(200 * KiB);
    const up = await upstream(t, p.back, (w) => w.sock.on('end', () => w.sock.end(response)));
    const gw = await streamGateway(t, p.front, [up.addr]);
    const c = await connect(t, gw.front);
    c.sock.write(request);
    const u = await up.conn();
    await u.next(request.length);
    checkPath(t, await gw.session());
    t.is(u.first, undefined, 'no EOF before the client sent one');
    c.sock.end();
    t.is(await u.ended(), 'end', 'the upstream sees a clean EOF');
    t.true(u.data().equals(request), 'request byte-exact');
    t.is(await c.ended(), 'end', 'the client sees a clean EOF after the answer');
    t.true(c.data().equals(response), 'the answer sent after the half-close arrives whole');
    await Promise.all([c.gone(), u.gone()]);
    t.is(c.error, undefined);
    t.is(u.error, undefined);
    await checkEnded(t, gw, 'ok', request.length, response.length);
  });

  it(`${label(p)}: half-close upstream -> client: the client reads the download then EOF, uploads after it, the upstream reads the upload then EOF; the session ends clean with exact counters`, async (t) => {
    const download = crypto.randomBytes(200 * KiB);
    const upload = crypto.randomBytes(300 * KiB);
    const up = await upstream(t, p.back, (w) => w.sock.end(download));
    const gw = await streamGateway(t, p.front, [up.addr]);
    const c = await connect(t, gw.front);
    t.is(await c.ended(), 'end', 'the client sees a clean EOF');
    t.true(c.data().equals(download), 'download byte-exact');
    const u = await up.conn();
    checkPath(t, await gw.session()); // the half-open session is live
    c.sock.end(upload); // the client -> upstream direction is still open
    t.is(await u.ended(), 'end', 'the upstream sees a clean EOF after the upload');
    t.true(u.data().equals(upload), 'the upload sent after the half-close arrives whole');
    await Promise.all([c.gone(), u.gone()]);
    t.is(c.error, undefined);
    t.is(u.error, undefined);
    await checkEnded(t, gw, 'ok', upload.length, download.length);
  });
}

// --------------------------------------------------------------------- resets

/**
 * What the peer of a reset sees across the gateway: a TCP peer an RST
 * (ECONNRESET); a Unix stream peer cannot be sent one (AF_UNIX has no RST,
 * and the gateway's socket has no unread bytes to make the kernel report
 * ECONNRESET), so it sees its connection end.
 */
async function checkResetSeen(t: ExecutionContext, w: Watched, kind: Kind, who: string): Promise<void> {
  const how = await w.ended(2000);
  if (kind === 'TCP') t.is(how, 'ECONNRESET', `${who} sees the reset as a reset, not as a clean end`);
  else t.log(`${who} (Unix stream) saw: ${how}`);
}

for (const p of PAIRS) {
  it(`${label(p)}: the client resets mid-session: the upstream sees ECONNRESET (a Unix upstream: its connection ends), the session ends as an error`, async (t) => {
    const unread = crypto.randomBytes(64 * KiB);
    const up = await upstream(t, p.back, (w) => w.sock.write(unread));
    const gw = await streamGateway(t, p.front, [up.addr]);
    // Paused: the bytes the upstream sends stay unread, so that closing a
    // Unix client is a reset too (see Watched.reset).
    const c = await connect(t, gw.front, true);
    c.sock.write('ping');
    const u = await up.conn();
    await u.next(4);
    await waitFor(async () => (await gw.session()).counters.egress.bytes >= unread.length, 5000, 'the upstream\'s bytes handed to the client');
    c.reset();
    await checkResetSeen(t, u, p.back, 'the upstream');
    await checkEnded(t, gw, 'error');
  });

  it(`${label(p)}: the upstream resets mid-session: the client sees ECONNRESET (a Unix client: its connection ends), the session ends as an error`, async (t) => {
    const unread = crypto.randomBytes(64 * KiB);
    const up = await upstream(t, p.back, undefined, { paused: true });
    const gw = await streamGateway(t, p.front, [up.addr]);
    const c = await connect(t, gw.front);
    c.sock.write(unread);
    const u = await up.conn();
    await waitFor(async () => (await gw.session()).counters.ingress.bytes >= unread.length, 5000, 'the client\'s bytes handed to the upstream');
    u.reset();
    await checkResetSeen(t, c, p.front, 'the client');
    await checkEnded(t, gw, 'error');
  });
}

// -------------------------------------------------------- connect-failure retry

const RETRY = { retry_on: 'connect-failure', num_retries: 2, timeout: 200 };

/** A dead endpoint and a live echo listed after it: a TCP cluster's endpoints share its port, so they differ in address. */
async function deadThenLive(t: ExecutionContext, kind: Kind): Promise<Addr[]> {
  if (kind === 'TCP') {
    const port = await freePort();
    const live = await echoUpstream(t, kind, { host: '127.0.0.2', port });
    return [{ host: '127.0.0.1', port }, live.addr];
  }
  return [await deadAddr(kind), (await echoUpstream(t, kind)).addr];
}

async function allDead(kind: Kind): Promise<Addr[]> {
  if (kind === 'TCP') {
    const port = await freePort();
    return [{ host: '127.0.0.1', port }, { host: '127.0.0.2', port }];
  }
  return [await deadAddr(kind), await deadAddr(kind)];
}

for (const p of PAIRS) {
  it(`${label(p)}: retry_on connect-failure: the first endpoint refuses, the session reaches the second and data flows both ways`, async (t) => {
    const gw = await streamGateway(t, p.front, await deadThenLive(t, p.back), { retry: RETRY });
    const c = await connect(t, gw.front);
    const msg = Buffer.from('through the retry');
    c.sock.write(msg);
    t.true((await c.next(msg.length)).equals(msg), 'echoed by the live endpoint');
    const live = await gw.session();
    t.is(live.destination?.endpoint?.name, 'ep1');
    checkPath(t, live, false); // a failed first connect: the session went on in JavaScript
    c.sock.end();
    t.is(await c.ended(), 'end');
    const log = await checkEnded(t, gw, 'ok', msg.length, msg.length);
    if (!NO_ACCESS_LOG) t.is(log.endpoint, 'ep1');
    t.is(await gw.metric(`l7mp_cluster_connect_failures_total{cluster="up",protocol="${p.back}"}`), 1, 'the refused attempt is counted');
  });

  it(`${label(p)}: retry_on connect-failure, every endpoint refuses: the client's connection is closed within 3 s and the session is counted as failed`, async (t) => {
    const gw = await streamGateway(t, p.front, await allDead(p.back), { retry: RETRY });
    const c = await connect(t, gw.front);
    const t0 = Date.now();
    const how = await c.ended(3000);
    t.log(`the client saw: ${how} after ${Date.now() - t0} ms`);
    // The net.Socket path closes the client's connection with a FIN: nothing
    // was sent either way, so the client cannot take it for a complete answer.
    t.is(how, 'end');
    t.is(c.bytes, 0);
    await checkEnded(t, gw, 'error', 0, 0);
    t.is(await gw.metric(`l7mp_cluster_connect_failures_total{cluster="up",protocol="${p.back}"}`), 3, 'one attempt and two retries');
  });
}

// --------------------------------------------------------- DELETE mid-transfer

const BULK_BOUND = 64 * MiB;

/**
 * Write up to BULK_BOUND bytes, 64 KiB a millisecond at most, waiting for
 * 'drain' when the socket is full; stops at an error, the bound or 20 s.
 * Paced so that the transfer is still running when the test acts on it.
 */
function pump(w: Watched): { sent: () => number; done: Promise<void> } {
  const chunk = crypto.randomBytes(64 * KiB);
  const deadline = Date.now() + 20_000;
  let sent = 0;
  const done = (async () => {
    while (sent < BULK_BOUND && Date.now() < deadline && !w.sock.destroyed && w.error === undefined) {
      sent += chunk.length;
      if (!w.sock.write(chunk)) await new Promise((r) => { w.sock.once('drain', r); w.sock.once('close', r); });
      else await new Promise((r) => setTimeout(r, 1));
    }
  })();
  return { sent: () => sent, done };
}

for (const p of PAIRS) {
  it(`${label(p)}: DELETE of the session mid-transfer both ways: 200, the session is gone, both peers see their connection cut within 2 s, no descriptor left`, async (t) => {
    let down: ReturnType<typeof pump> | undefined;
    const up = await upstream(t, p.back, (w) => { w.keep = false; down = pump(w); });
    const gw = await streamGateway(t, p.front, [up.addr], { accessLog: false });
    const fdsBefore = gw.fds();
    const c = await connect(t, gw.front);
    c.keep = false;
    const upload = pump(c);
    const u = await up.conn();
    const live = await waitFor(async () => {
      const s = await gw.session();
      return s.counters.ingress.bytes >= MiB && s.counters.egress.bytes >= MiB ? s : undefined;
    }, 10_000, 'a megabyte each way');
    checkPath(t, live);
    const d = await api(gw.child.base, 'DELETE', `/api/v1/sessions/${encodeURIComponent(live.name)}`);
    t.is(d.status, 200, d.text);
    const [ch, uh] = await Promise.all([c.gone(2000), u.gone(2000)]);
    t.log(`spliced: ${live.splice?.state ?? 'no'}; the client saw: ${ch} (error ${c.error}), the upstream: ${uh} (error ${u.error})`);
    t.true(upload.sent() < BULK_BOUND && down!.sent() < BULK_BOUND, 'cut by the DELETE, not by the bound');
    // A cut is never a clean end: a TCP peer is reset; a Unix peer, which
    // cannot be, is writing, so its next write fails. A TCP peer that is
    // writing when the reset arrives may see it as EOF first: its write takes
    // the socket's ECONNRESET (Linux hands the error to whichever call comes
    // first), and the read after it finds the receive side shut. The reset
    // still reaches it as an error.
    for (const [w, kind, who] of [[c, p.front, 'client'], [u, p.back, 'upstream']] as const) {
      if (kind === 'TCP') t.is(w.error, 'ECONNRESET', `the ${who} is reset (first: ${w.first})`);
      else t.true(isReset(w.error), `the ${who}'s stream fails (${w.error}), first: ${w.first}`);
    }
    t.deepEqual(await gw.sessions(), [], 'the session is gone from GET /api/v1/sessions');
    t.is(await gw.metric('l7mp_sessions_ended_total{reason="deleted"}'), 1);
    // 10 s: the test's own REST calls keep their connections to the gateway
    // open for 4 s after the last one (fetch's idle keep-alive).
    await waitFor(() => gw.fds() <= fdsBefore, 10_000, `the gateway's descriptors back to ${fdsBefore}`);
  });
}

// ------------------------------------------------- many connections, no leak

/**
 * `total` connections, at most 64 at a time: connect, write 64 B, read the
 * echo, end, wait for the close. Every connection has 10 s and the whole run
 * `budgetMs`.
 */
async function churn(front: Addr, total: number, budgetMs: number): Promise<void> {
  const deadline = Date.now() + budgetMs;
  const payload = crypto.randomBytes(64);
  let started = 0;
  let failed = false;
  const one = async (): Promise<void> => {
    const c = await connect({ teardown: () => undefined }, front);
    try {
      c.sock.write(payload);
      await c.next(payload.length, 10_000);
      if (!c.data().equals(payload)) throw new Error('echo differs');
      c.sock.end();
      await c.gone(10_000);
      if (c.error !== undefined) throw new Error(`connection failed: ${c.error}`);
    } finally {
      c.sock.destroy();
    }
  };
  const lane = async (): Promise<void> => {
    while (started < total && !failed) {
      if (Date.now() > deadline) throw new Error(`${started} of ${total} connections started in ${budgetMs} ms`);
      started++;
      await one().catch((err: unknown) => { failed = true; throw err; }); // the other lanes stop too
    }
  };
  await Promise.all(Array.from({ length: 64 }, lane));
}

for (const [p, total] of [[PAIRS[0]!, 10_000], [PAIRS[1]!, 2_000]] as const) {
  it(`${label(p)}: ${total} connections opened and closed (64 B echoed each, 64 at a time): every session ends and the gateway holds no more descriptors than before`, async (t) => {
    t.timeout(180_000);
    const up = await echoUpstream(t, p.back);
    // One source opening connections faster than the per-source flow_rate
    // (1000/s) would be refused, by design: the limit is off here.
    const gw = await streamGateway(t, p.front, [up.addr], { admin: { log_level: 'warn', limits: { api_rate: 0, flow_rate: 0 } } });
    await churn(gw.front, 1, 10_000); // what the first session opens for good is in the baseline
    await gw.noSessions();
    const before = gw.fds();
    const t0 = Date.now();
    await churn(gw.front, total, 120_000);
    t.log(`${total} connections in ${Date.now() - t0} ms`);
    await gw.noSessions(30_000);
    if (NO_ACCESS_LOG) {
      const proto = p.front;
      t.is(await gw.metric(`l7mp_listener_sessions_total{listener="in",protocol="${proto}"}`), total + 1, 'every session counted');
      t.is(await gw.metric('l7mp_sessions_ended_total{reason="error"}'), 0, 'each one clean');
      t.is(await gw.metric(`l7mp_listener_bytes_total{listener="in",protocol="${proto}",direction="rx"}`), 64 * (total + 1), '64 B each way');
      t.is(await gw.metric(`l7mp_listener_bytes_total{listener="in",protocol="${proto}",direction="tx"}`), 64 * (total + 1));
    } else {
      // The lines are written as the sessions end, through a file stream: wait for them.
      const log = await waitFor(() => { const l = gw.accessLog(); return l.length >= total + 1 ? l : undefined; }, 10_000, 'every session\'s access log line').catch(() => gw.accessLog());
      t.is(log.length, total + 1, 'every session ended');
      t.deepEqual(log.filter((l) => l.status !== 'ok' || l.ingress_bytes !== 64 || l.egress_bytes !== 64), [], 'each one clean, 64 B each way');
    }
    // Slack of 4 for descriptors that are not per connection: the test's
    // REST and metrics connections (fetch keeps them open 4 s after use) and
    // what the gateway opens once under load and keeps for reuse (a libuv
    // worker's eventfd, a pooled pipe pair). A leak of one descriptor per
    // hundred connections exceeds it.
    await waitFor(() => gw.fds() <= before + 4, 10_000, `the gateway's descriptors back to ${before} + 4`);
    t.log(`descriptors: ${before} before, ${gw.fds()} after`);
  });
}

for (const p of [PAIRS[0]!, PAIRS[1]!]) {
  it(`${label(p)}: admin.limits.max_sessions bounds the sessions: the ones beyond are closed before they reach the upstream, counted and logged once, while the admitted ones keep working, the REST API answers and no descriptor is left`, async (t) => {
    let upstreamConnections = 0;
    const up = await upstream(t, p.back, (w) => { upstreamConnections++; w.sock.pipe(w.sock); });
    const gw = await streamGateway(t, p.front, [up.addr], { admin: { log_level: 'warn', limits: { max_sessions: 4, flow_rate: 0 } } });
    const before = gw.fds();
    const admitted = [];
    for (let i = 0; i < 4; i++) {
      const c = await connect(t, gw.front);
      c.sock.write(`hello ${i}`);
      await c.next(`hello ${i}`.length);
      admitted.push(c);
    }
    t.is((await gw.sessions()).length, 4);
    if (expectedPath !== undefined) t.true((await gw.sessions()).every((s) => s.path === expectedPath && (s.splice?.compiled === true) === expectCompiled), 'the admitted sessions are on the raw path');
    // 40 more: each is closed by the gateway with nothing read and no upstream connection.
    const refused = await Promise.all(Array.from({ length: 40 }, () => connect(t, gw.front)));
    for (const c of refused) {
      c.sock.write('x');
      await c.ended(5000); // EOF or reset: the gateway closed it
      t.is(c.bytes, 0, 'a refused connection gets no bytes');
    }
    t.is(upstreamConnections, 4, 'only the admitted sessions reached the upstream');
    t.is(await gw.metric('l7mp_refusals_total{reason="max_sessions",listener="in"}'), 40);
    const logged = gw.child.output().split('\n').filter((l) => l.includes('max_sessions')).length;
    t.true(logged >= 1 && logged <= 2, `logged once per interval, not per connection (${logged} lines)`);
    t.is((await api(gw.child.base, 'GET', '/api/v1/listeners')).status, 200, 'the REST API answers at the cap');
    for (const [i, c] of admitted.entries()) {
      c.sock.write(`again ${i}`);
      await c.next(`hello ${i}again ${i}`.length);
    }
    for (const c of admitted) c.sock.end();
    await gw.noSessions();
    await waitFor(() => gw.fds() <= before + 4, 10_000, `the gateway's descriptors back to ${before} + 4`);
  });
}

// ------------------------------------------------- the accepted connection's addresses

// [listener address, address dialled, client's source, source seen, destination seen]:
// a wildcard listener reads its side of each connection from the socket; an
// IPv4 client of a dual-stack listener shows as an IPv4-mapped IPv6 address.
const ADDRESSES = [
  ['127.0.0.1', '127.0.0.1', '127.0.0.5', '127.0.0.5', '127.0.0.1'],
  ['0.0.0.0', '127.0.0.1', '127.0.0.3', '127.0.0.3', '127.0.0.1'],
  ['::', '::1', '::1', '::1', '::1'],
  ['::', '127.0.0.1', '127.0.0.4', '::ffff:127.0.0.4', '::ffff:127.0.0.1'],
] as const;

for (const [front, dial, from, src, dst] of ADDRESSES) {
  it(`TCP listener on ${front}, a client from ${from} to ${dial}: the session's metadata and source peer name both ends as net.Socket does`, async (t) => {
    const up = await echoUpstream(t, 'TCP');
    const gw = await streamGateway(t, 'TCP', [up.addr], { frontHost: front });
    const port = (gw.front as { port: number }).port;
    const sock = net.connect({ host: dial, port, localAddress: from, allowHalfOpen: true });
    t.teardown(() => sock.destroy());
    await once(sock, 'connect');
    sock.write('x');
    await once(sock, 'data');
    const s = await gw.session();
    checkPath(t, s);
    t.deepEqual(s.metadata.IP, { src_addr: src, dst_addr: dst });
    t.deepEqual(s.metadata.TCP, { src_port: sock.localPort, dst_port: port });
    t.is(s.source.peer, `${src}:${sock.localPort}`);
  });
}
