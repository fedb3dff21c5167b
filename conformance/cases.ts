// Long file: the light and heavy cases share the pair's setup, contexts and session helpers (the path check is in path-check.ts).
// The cases run on one cell of the matrix, all against one gateway per pair.
//
// Light cases run on every runnable pair:
//   roundtrip-<size>   1 B, 64 B, 1400 B, 16 KiB, 64 KiB−1 and the exact
//                      datagram limit where a side has one, through a real echo peer
//   boundaries         datagram→datagram: several messages, each arrives as one
//   byte-order         otherwise: the bytes arrive in order (datagram→byte: and
//                      the gateway logs its "boundaries are not preserved" warning)
//   eof                half-close propagates both ways (where both sides have EOF)
//   counters           GET /api/v1/sessions (listener options.track) counts the bytes sent
//   concurrent         sessions that start together each get their own data back
//   dropped, <label>-lines   transform-specific evidence (Discard, Logger)
//
// Heavy cases run on the listener's representative pair only, each through a
// listener (and clusters) of its own in the pair's gateway: retry (upstream
// killed and restored within the retry window), lb-weighted (WeightedRandom
// 3:1:1 plus a weight-0 endpoint), lb-hash (ConsistentHash keeps a source on
// one endpoint), convergence (REST changes take effect within a bound) and
// health (a dead endpoint next to a live one is found out by the active check
// and outlier detection; then every new session reaches the live one).

import type { ChannelKind } from '../gateway/src/dataplane/channel.js';
import type { ClientSession, Target } from './clients.js';
import type { Driver, GatewayHandle, L2Link } from './driver.js';
import { healthDef } from './health-case.js';
import { framedListener } from './l2.js';
import type { RunCell } from './matrix.js';
import { expectPath, PathCheck, type PathExpectation, type TcpFastpath } from './path-check.js';
import type { ListenerPeer, RequestListenerPeer, SessionListenerPeer, Upstreams } from './peers.js';
import { api, apiOk, delay, diff, fmtBytes, payload, pool, uid, waitFor, withTimeout } from './util.js';

export interface CaseResult {
  readonly name: string;
  readonly status: 'pass' | 'fail' | 'skip';
  /** Why it failed or was skipped. */
  readonly reason?: string;
  /** What a passing case measured (distribution, convergence time...). */
  readonly note?: string;
  /** The data path its sessions were checked to show (path-check.ts), where the pair has a TCP or Unix stream side. */
  readonly path?: PathExpectation;
  /** A `raw` check found every session it read set up by the addon (a compiled listener, `splice.compiled`). */
  readonly compiled?: boolean;
  readonly ms: number;
}

const LIGHT_CASE_MS = 20_000;
const HEAVY_CASE_MS = 45_000;
/** How long a reply may take on loopback before a case gives up. */
const REPLY_MS = 5_000;
/** HTTP→UDP and the like: the response ends after the UDP cluster's EOF linger (2 s). */
const REQUEST_MS = 12_000;
const LISTENER = 'conformance-listener';
const CLUSTER = 'conformance-cluster';
const TRACK_SECONDS = 300;

const ROUND_TRIP_SIZES = [1, 64, 1400, 16 * 1024, 64 * 1024 - 1];
const SEQUENCE_SIZES = [1, 2, 3, 100, 1400, 5, 4000, 64];
const COUNTER_SIZES = [10, 200, 1400];
const BOUNDARY_WARNING = 'message boundaries are not preserved';

/** Everything a light case needs about its pair and the pair's gateway. */
interface PairContext {
  readonly cell: RunCell;
  readonly driver: Driver;
  readonly gw: GatewayHandle;
  readonly target: Target;
  readonly srcKind: ChannelKind;
  readonly dstKind: ChannelKind;
  /** Both sides are datagram protocols: message boundaries must survive. */
  readonly keepsBoundaries: boolean;
  /** Largest message the pair carries, and which side (or transform) sets it. */
  readonly limit: { readonly bytes: number; readonly owner: string; readonly exact: boolean };
  readonly effect: 'identity' | 'drop';
  /** The transform chain's id (log prefixes). */
  readonly chainId: string;
  /** What the light listener's sessions must show (path-check.ts); undefined: nothing to check. */
  readonly pathExpect: PathExpectation | undefined;
  /** The running case's path check (one per case). */
  readonly path?: PathCheck;
}

interface CaseDef {
  readonly name: string;
  /** Set: the case is skipped with this reason. */
  readonly skip?: string;
  readonly run?: (c: PairContext) => Promise<string | void>;
}

// ------------------------------------------------------------- plumbing

function isSession(l: ListenerPeer): l is SessionListenerPeer {
  return l.mode === 'session';
}

function pairLabel(cell: RunCell): string {
  return `${cell.row.id}→${cell.col.id}`;
}

function pairLimit(cell: RunCell): PairContext['limit'] {
  const l = cell.listener.maxMessage;
  const c = cell.cluster.maxMessage;
  let limit = l <= c
    ? { bytes: l, owner: `${cell.row.id} listener`, exact: true }
    : { bytes: c, owner: `${cell.clusterProtocol.name} cluster`, exact: true };
  const t = cell.transform?.limit?.(cell.row.protocol.kind);
  if (t !== undefined && t.bytes < limit.bytes) limit = { bytes: t.bytes, owner: t.reason, exact: false };
  return limit;
}

async function open(c: PairContext | HeavyContext, source?: string): Promise<ClientSession> {
  const l = c.cell.listener;
  if (!isSession(l)) throw new Error('not a session listener');
  return l.open(c.target, { id: uid('s'), ...(source !== undefined ? { source } : {}) });
}

async function withSession<T>(c: PairContext | HeavyContext, fn: (s: ClientSession) => Promise<T>, source?: string): Promise<T> {
  const s = await open(c, source);
  try {
    const r = await fn(s);
    await c.path?.whileLive(); // the case's first session that got this far: still open
    return r;
  } finally {
    await s.close().catch(() => undefined);
  }
}

function req(l: ListenerPeer): RequestListenerPeer {
  if (l.mode !== 'request') throw new Error('not a request listener');
  return l;
}

/** The live and tracked sessions of the pair's listener. */
async function listenerSessions(apiBase: string, listener = LISTENER): Promise<any[]> {
  const list = await apiOk(apiBase, 'GET', '/api/v1/sessions');
  if (!Array.isArray(list)) throw new Error('GET /api/v1/sessions did not return an array');
  return list.filter((s: any) => s?.source?.origin === listener);
}

/**
 * Before a burst: over an upstream whose echo is fragile at flow start (see
 * ClusterPeer.fragileFlowStart), send the first message alone and wait for
 * its echo, so that the burst meets an established flow. Returns the
 * messages still to send.
 */
async function establish(ctx: PairContext, s: ClientSession, msgs: readonly Buffer[]): Promise<readonly Buffer[]> {
  if (!ctx.cell.cluster.fragileFlowStart || ctx.effect === 'drop') return msgs;
  s.send(msgs[0]!);
  await s.inbox.until(() => s.inbox.bytes >= msgs[0]!.length, REPLY_MS, `the echo of the first ${msgs[0]!.length}-byte message`);
  return msgs.slice(1);
}

/** Wait until a session's echo holds `n` messages, then a little longer to see any extra split. */
async function messages(s: ClientSession, n: number, what: string): Promise<Buffer[]> {
  await s.inbox.until(() => s.inbox.chunks.length >= n, REPLY_MS, what);
  await delay(100);
  return s.inbox.chunks.slice();
}

// ------------------------------------------------------------ light cases

function roundTripCase(n: number, c: { cell: RunCell; limit: PairContext['limit']; effect: string }): CaseDef {
  const name = `roundtrip-${fmtBytes(n)}`;
  if (c.effect === 'drop') return { name, skip: `${c.cell.col.id} drops all traffic (see the dropped case)` };
  if (n > c.limit.bytes) {
    return { name, skip: c.limit.exact ? `exceeds the ${c.limit.owner}'s message limit of ${c.limit.bytes} B` : c.limit.owner };
  }
  return {
    name,
    async run(ctx) {
      const p = payload(n, n % 251);
      if (ctx.cell.listener.mode === 'request') {
        const r = await req(ctx.cell.listener).request(ctx.target, p, { id: uid('r'), timeoutMs: REQUEST_MS });
        if (r.status !== 200) throw new Error(`HTTP ${r.status}: ${r.body.toString('utf8', 0, 300)}`);
        if (!r.body.equals(p)) throw new Error(`the response body is not the request body: ${diff(p, r.body)}`);
        return;
      }
      await withSession(ctx, async (s) => {
        s.send(p);
        if (ctx.keepsBoundaries) {
          const got = await messages(s, 1, `the echo of one ${n}-byte message`);
          if (got.length !== 1 || !got[0]!.equals(p)) {
            throw new Error(`expected the message back as one ${n}-byte message, got ${got.length} message(s) of ${got.map((m) => m.length).join(', ')} B${got.length === 1 ? ` (${diff(p, got[0]!)})` : ''}`);
          }
          return;
        }
        await s.inbox.until(() => s.inbox.bytes >= n, REPLY_MS, `the echo of ${n} B`);
        const got = s.inbox.concat();
        if (!got.equals(p)) throw new Error(`the echo differs: ${diff(p, got)}`);
      });
    },
  };
}

function sequenceCase(c: { cell: RunCell; keepsBoundaries: boolean; effect: string; srcKind: ChannelKind; dstKind: ChannelKind }): CaseDef {
  const name = c.keepsBoundaries ? 'boundaries' : 'byte-order';
  if (c.effect === 'drop') return { name, skip: `${c.cell.col.id} drops all traffic (see the dropped case)` };
  const warn = c.srcKind === 'datagram' && c.dstKind === 'byte';
  return {
    name,
    async run(ctx) {
      const msgs = SEQUENCE_SIZES.map((n, i) => payload(n, i + 1));
      const all = Buffer.concat(msgs);
      if (ctx.cell.listener.mode === 'request') {
        const r = await req(ctx.cell.listener).request(ctx.target, all, { id: uid('r'), timeoutMs: REQUEST_MS });
        if (r.status !== 200) throw new Error(`HTTP ${r.status}`);
        if (!r.body.equals(all)) throw new Error(`the response is not the request bytes in order: ${diff(all, r.body)}`);
        return;
      }
      let note: string | undefined;
      await withSession(ctx, async (s) => {
        for (const m of await establish(ctx, s, msgs)) s.send(m);
        if (ctx.keepsBoundaries) {
          const got = await messages(s, msgs.length, `${msgs.length} echoed messages`);
          const sizes = got.map((m) => m.length).join(',');
          if (got.length !== msgs.length) throw new Error(`sent ${msgs.length} messages (${SEQUENCE_SIZES.join(',')} B), got ${got.length} back (${sizes} B)`);
          const left = [...msgs];
          for (const g of got) {
            const i = left.findIndex((m) => m.equals(g));
            if (i < 0) throw new Error(`a ${g.length}-byte message came back that was not sent as one message (got sizes ${sizes})`);
            left.splice(i, 1);
          }
          if (!got.every((g, i) => g.equals(msgs[i]!))) note = `boundaries kept; order changed on the way (${sizes})`;
          return;
        }
        await s.inbox.until(() => s.inbox.bytes >= all.length, REPLY_MS, `the echo of ${all.length} B`);
        const got = s.inbox.concat();
        if (!got.equals(all)) throw new Error(`the bytes came back out of order or changed: ${diff(all, got)}`);
      });
      if (warn) {
        await waitFor(() => ctx.gw.logs().includes(BOUNDARY_WARNING), 3000, `the gateway's warning "${BOUNDARY_WARNING}" in its log`);
        note = 'bytes in order; the gateway logged the boundary warning';
      }
      return note;
    },
  };
}

function eofCase(c: { cell: RunCell; effect: string }): CaseDef {
  const name = 'eof';
  const l = c.cell.listener;
  const cl = c.cell.cluster;
  if (!l.halfClose) return { name, skip: `${c.cell.row.id} has no end-of-stream (no half-close)` };
  if (!cl.halfClose) return { name, skip: `${c.cell.clusterProtocol.name} has no end-of-stream (no half-close)` };
  return {
    name,
    async run(ctx) {
      const p = payload(1400, 3);
      const expected = ctx.effect === 'drop' ? Buffer.alloc(0) : p;
      if (ctx.cell.listener.mode === 'request') {
        // The request body's end must reach the upstream, and the upstream's end must end the response.
        const r = await req(ctx.cell.listener).request(ctx.target, p, { id: uid('r'), timeoutMs: REQUEST_MS });
        if (r.status !== 200 || !r.body.equals(expected)) throw new Error(`HTTP ${r.status}, ${diff(expected, r.body)}`);
        return 'request end reached the upstream; the upstream end completed the response';
      }
      await withSession(ctx, async (s) => {
        s.send(p);
        s.end!();
        // The echo (cat) ends only after it saw our EOF; we see its EOF only if the gateway passes it back.
        await s.inbox.until(() => s.inbox.ended, REPLY_MS, 'EOF from the gateway after our half-close (the echo ends only on EOF)');
        const got = s.inbox.concat();
        if (!got.equals(expected)) throw new Error(`data before EOF: ${diff(expected, got)}`);
        if (s.inbox.closed && s.inbox.error) throw new Error(`the connection failed: ${s.inbox.error.message}`);
      });
      return undefined;
    },
  };
}

function countersCase(c: { cell: RunCell; keepsBoundaries: boolean }): CaseDef {
  return {
    name: 'counters',
    async run(ctx) {
      const msgs = COUNTER_SIZES.map((n, i) => payload(n, 40 + i));
      // A frame header on top of each message (or of the one request) where the gateway's messages are frames.
      const sends = ctx.cell.listener.mode === 'request' ? 1 : msgs.length;
      const total = msgs.reduce((a, m) => a + m.length, 0) + sends * (ctx.cell.listener.frameOverhead ?? 0);
      const echoed = ctx.effect === 'drop' ? 0 : total;
      let find: (sessions: any[]) => any[];
      // A singleton listener's one session carries every case's traffic: count what this case adds to it.
      const zero = { ingress: { bytes: 0, packets: 0 }, egress: { bytes: 0, packets: 0 } };
      let base = zero;
      const count = (k: any) => ({
        ingress: { bytes: (k?.ingress?.bytes ?? NaN) - base.ingress.bytes, packets: (k?.ingress?.packets ?? NaN) - base.ingress.packets },
        egress: { bytes: (k?.egress?.bytes ?? NaN) - base.egress.bytes, packets: (k?.egress?.packets ?? NaN) - base.egress.packets },
      });
      if (ctx.cell.listener.singleton !== undefined) {
        const one = await listenerSessions(ctx.gw.apiBase);
        if (one.length !== 1) throw new Error(`${ctx.cell.row.id}: expected its one session on the listener, found ${one.length}`);
        base = count(one[0].counters);
        await withSession(ctx, async (s) => {
          for (const m of msgs) s.send(m);
          if (echoed > 0) await s.inbox.until(() => s.inbox.bytes >= echoed - sends * (ctx.cell.listener.frameOverhead ?? 0), REPLY_MS, `the echo of ${echoed} B`);
          else await delay(300);
        });
        find = (all) => all;
      } else if (ctx.cell.listener.mode === 'request') {
        const id = uid('r');
        const r = await req(ctx.cell.listener).request(ctx.target, Buffer.concat(msgs), { id, timeoutMs: REQUEST_MS });
        if (r.status !== 200) throw new Error(`HTTP ${r.status}`);
        find = (all) => all.filter((s) => s?.metadata?.HTTP?.headers?.['x-conformance-id'] === id);
      } else {
        const before = new Set((await listenerSessions(ctx.gw.apiBase)).map((s) => s.name));
        await withSession(ctx, async (s) => {
          for (const m of await establish(ctx, s, msgs)) s.send(m);
          const payloadBytes = echoed - sends * (ctx.cell.listener.frameOverhead ?? 0);
          if (echoed > 0) await s.inbox.until(() => s.inbox.bytes >= payloadBytes, REPLY_MS, `the echo of ${payloadBytes} B`);
          else await delay(300);
        });
        find = (all) => all.filter((s) => !before.has(s.name));
      }
      const packets = ctx.keepsBoundaries && ctx.effect === 'identity';
      let last = 'no session found';
      try {
        await waitFor(async () => {
          const mine = find(await listenerSessions(ctx.gw.apiBase));
          if (mine.length !== 1) {
            last = `${mine.length} new sessions on the listener`;
            return false;
          }
          const k = count(mine[0].counters);
          last = `session ${mine[0].name}: ingress ${k?.ingress?.bytes} B/${k?.ingress?.packets} pkt, egress ${k?.egress?.bytes} B/${k?.egress?.packets} pkt`;
          return k?.ingress?.bytes === total && k?.egress?.bytes === echoed &&
            (!packets || (k.ingress.packets === msgs.length && k.egress.packets === msgs.length));
        }, 3000, 'the session counters');
      } catch {
        throw new Error(`expected ingress ${total} B, egress ${echoed} B${packets ? `, ${msgs.length} packets each way` : ''}; ${last}`);
      }
      return last.replace(/^session \S+: /, '');
    },
  };
}

const CONCURRENT_SESSIONS = 24;

/** Sessions that start at the same moment: each gets its own data back, nothing of the others'. */
function concurrentCase(c: { cell: RunCell; effect: string }): CaseDef {
  const name = 'concurrent';
  if (c.effect === 'drop') return { name, skip: `${c.cell.col.id} drops all traffic (see the dropped case)` };
  const single = c.cell.listener.oneSessionAtATime ?? c.cell.cluster.oneSessionAtATime;
  if (single !== undefined) return { name, skip: single };
  if (c.cell.cluster.fragileFlowStart) {
    return { name, skip: `the ${c.cell.clusterProtocol.name} echo peer (socat UDP-LISTEN,fork) drops or reorders datagrams of flows that start while it forks; concurrent sessions run on the pairs with other upstreams` };
  }
  return {
    name,
    async run(ctx) {
      const msgs = Array.from({ length: CONCURRENT_SESSIONS }, (_, i) => Buffer.from(`concurrent-${i}-${uid('m')};`));
      if (ctx.cell.listener.mode === 'request') {
        const l = req(ctx.cell.listener);
        const rs = await Promise.all(msgs.map((m) => l.request(ctx.target, m, { id: uid('r'), timeoutMs: REQUEST_MS })));
        const bad = rs.map((r, i) => (r.status === 200 && r.body.equals(msgs[i]!) ? undefined : `request ${i}: HTTP ${r.status} ${JSON.stringify(r.body.toString('latin1', 0, 60))}`)).filter((x) => x !== undefined);
        if (bad.length > 0) throw new Error(`${bad.length} of ${msgs.length} concurrent requests got something else than their own body back: ${bad.slice(0, 3).join('; ')}`);
        return `${msgs.length} requests at once, each answered with its own body`;
      }
      const opened = await Promise.allSettled(msgs.map(() => open(ctx)));
      const sessions = opened.flatMap((o) => (o.status === 'fulfilled' ? [o.value] : []));
      const refused = opened.find((o): o is PromiseRejectedResult => o.status === 'rejected');
      if (refused !== undefined) {
        await Promise.all(sessions.map((s) => s.close().catch(() => undefined)));
        throw new Error(`${msgs.length - sessions.length} of ${msgs.length} concurrent sessions could not open: ${(refused.reason as Error).message}`);
      }
      try {
        // Staggered by a millisecond: new flows keep arriving while the gateway sets up the earlier ones.
        await Promise.all(sessions.map((s, i) => delay(i).then(() => s.send(msgs[i]!))));
        const replyMs = REPLY_MS + (ctx.cell.cluster.sessionStartMs ?? 0);
        const waits = await Promise.allSettled(sessions.map((s, i) => s.inbox.until(() => s.inbox.bytes >= msgs[i]!.length, replyMs, `session ${i}'s echo`)));
        await delay(100);
        const problems: string[] = [];
        sessions.forEach((s, i) => {
          const got = s.inbox.concat();
          if (waits[i]!.status === 'rejected') problems.push(`session ${i}: ${(waits[i] as PromiseRejectedResult).reason.message}`);
          else if (!got.equals(msgs[i]!)) problems.push(`session ${i} got ${JSON.stringify(got.toString('latin1', 0, 80))}, sent ${JSON.stringify(msgs[i]!.toString())}`);
        });
        if (problems.length > 0) throw new Error(`${problems.length} of ${msgs.length} concurrent sessions: ${problems.slice(0, 3).join('; ')}`);
        await ctx.path?.whileLive();
      } finally {
        await Promise.all(sessions.map((s) => s.close().catch(() => undefined)));
      }
      return `${msgs.length} sessions at once, each echoed its own data only`;
    },
  };
}

function droppedCase(): CaseDef {
  return {
    name: 'dropped',
    async run(ctx) {
      await withSession(ctx, async (s) => {
        for (const m of SEQUENCE_SIZES.map((n, i) => payload(n, i))) s.send(m);
        await delay(500);
        if (s.inbox.bytes > 0) throw new Error(`${s.inbox.bytes} B came back through ${ctx.cell.col.id}`);
      });
      return 'nothing came back within 500 ms';
    },
  };
}

function transformEvidenceCase(cell: RunCell): CaseDef | undefined {
  const t = cell.transform;
  if (t?.verify === undefined) return undefined;
  return {
    name: `${t.label.toLowerCase()}-lines`,
    async run(ctx) {
      const token = uid('tok');
      await withSession(ctx, async (s) => {
        s.send(Buffer.from(token));
        await s.inbox.until(() => s.inbox.bytes >= token.length, REPLY_MS, 'the echo');
      });
      let problem: string | undefined = 'not checked';
      await waitFor(() => {
        problem = t.verify!(ctx.gw.logs(), ctx.chainId, token);
        return problem === undefined;
      }, 3000, 'transform evidence').catch(() => { throw new Error(problem); });
      return undefined;
    },
  };
}

export function lightCases(cell: RunCell): CaseDef[] {
  const limit = pairLimit(cell);
  const effect = cell.transform?.effect ?? 'identity';
  const srcKind = cell.row.protocol.kind;
  const dstKind = cell.clusterProtocol.kind;
  const keepsBoundaries = srcKind === 'datagram' && dstKind === 'datagram';
  const sizes = [...ROUND_TRIP_SIZES];
  // The exact datagram limit, where a side has one below 64 KiB−1.
  const protoLimit = Math.min(cell.listener.maxMessage, cell.cluster.maxMessage);
  if (protoLimit < 64 * 1024 - 1) sizes.push(protoLimit);
  const c = { cell, limit, effect, srcKind, dstKind, keepsBoundaries };
  const out: CaseDef[] = sizes.map((n) => roundTripCase(n, c));
  out.push(sequenceCase(c), eofCase(c), countersCase(c), concurrentCase(c));
  if (effect === 'drop') out.push(droppedCase());
  const ev = transformEvidenceCase(cell);
  if (ev) out.push(ev);
  return out;
}

// ------------------------------------------------------------ pair setup

function clusterObject(name: string, ups: Upstreams, extra: Record<string, unknown> = {}, weights?: readonly number[]): Record<string, unknown> {
  return {
    name,
    spec: ups.spec,
    endpoints: ups.endpoints.map((e, i) => ({
      name: `${name}-ep${i}`,
      spec: { address: e.address },
      ...(weights !== undefined ? { weight: weights[i] } : {}),
    })),
    ...extra,
  };
}

/** Where a listener binds; a listener with `link` (AF_PACKET) also gets a veth pair, added to `links` for removal. */
async function listenerAt(driver: Driver, l: ListenerPeer, links: L2Link[]): Promise<ListenerAtPort> {
  const at = { address: driver.listenAddress, port: await driver.freePort(), path: driver.tmpPath('listener.sock') };
  if (!l.link) return at;
  const link = await driver.l2Link();
  links.push(link);
  return { ...at, link };
}

function targetOf(gw: GatewayHandle, at: ListenerAtPort): Target {
  return { ...gw.reach(at.port), path: at.path, ...(at.link !== undefined ? { link: at.link } : {}) };
}

/**
 * Where the destination takes whole Ethernet frames only (an AF_PACKET
 * cluster), a client that sends bare payloads gets a frame header put in
 * front of each and taken off what comes back (l2.ts).
 */
function framed(cell: RunCell): RunCell {
  if (!cell.cluster.frames || cell.listener.frames) return cell;
  return { ...cell, listener: framedListener(cell.listener, cell.row.protocol.kind) };
}

async function timed(name: string, ms: number, fn: () => Promise<string | void>, path?: PathCheck): Promise<CaseResult> {
  const t0 = Date.now();
  try {
    const note = await withTimeout((async () => {
      const n = await fn();
      // A case that opened no session of its own through withSession (HTTP
      // requests) checks after it ran: the light listener keeps its ended
      // sessions (options.track). A heavy listener does not: a positive
      // check there fails, so that every such case checks while live.
      if (path !== undefined && !path.done) await path.whileLive();
      return n;
    })(), ms, name);
    return { name, status: 'pass', ms: Date.now() - t0, ...(note ? { note } : {}), ...(path !== undefined ? { path: path.expect } : {}), ...(path?.compiled === true ? { compiled: true } : {}) };
  } catch (err) {
    return { name, status: 'fail', reason: oneLine((err as Error).message), ms: Date.now() - t0 };
  }
}

function oneLine(s: string): string {
  const flat = s.replace(/\s+/g, ' ').trim();
  return flat.length > 600 ? `${flat.slice(0, 600)}…` : flat;
}

/** A failed case's reason, plus the warnings and errors the gateway logged while it ran. */
function withGatewayLog(gw: GatewayHandle, r: CaseResult, from: number): CaseResult {
  if (r.status !== 'fail') return r;
  const lines = gw.logs().slice(from).split('\n').filter((l) => /"level":"(warn|error)"/.test(l) && !l.includes(BOUNDARY_WARNING));
  if (lines.length === 0) return r;
  const msgs = lines.slice(0, 3).map((l) => {
    try {
      const j = JSON.parse(l) as { msg?: string; err?: unknown; reason?: unknown };
      return `${j.msg ?? ''}${j.err !== undefined ? ` (${typeof j.err === 'string' ? j.err : JSON.stringify(j.err)})` : ''}`;
    } catch {
      return l;
    }
  });
  return { ...r, reason: oneLine(`${r.reason ?? ''} [gateway log: ${msgs.join('; ')}${lines.length > 3 ? `; +${lines.length - 3} more` : ''}]`) };
}

/** Run every case of a runnable cell; never throws. `fastpath`: how the gateway under test runs (path-check.ts), undefined for a gateway not ours. */
export async function runCell(plainCell: RunCell, driver: Driver, fastpath?: TcpFastpath): Promise<CaseResult[]> {
  const cell = framed(plainCell);
  const results: CaseResult[] = [];
  const defs = lightCases(cell);
  const heavy = cell.representative ? heavyCases(cell, driver) : [];
  const processOnly = cell.listener.processOnly ?? cell.cluster.processOnly;
  if (driver.mode !== 'process' && processOnly !== undefined) {
    return [...defs, ...heavy].map((d) => ({ name: d.name, status: 'skip' as const, reason: d.skip ?? `${driver.mode} mode: ${processOnly}`, ms: 0 }));
  }
  for (const d of [...defs, ...heavy]) if (d.skip !== undefined) results.push({ name: d.name, status: 'skip', reason: d.skip, ms: 0 });
  const runnable = defs.filter((d) => d.skip === undefined);
  const heavyRunnable = heavy.filter((d) => d.skip === undefined);

  // One gateway per pair: the light cases' listener, and on a representative
  // pair one more listener (with its clusters) per heavy case. One untagged
  // upstream serves the light cases and then the retry case; the tagged ones
  // serve the load-balancing and convergence cases.
  const t0 = Date.now();
  let env: PairEnv | undefined;
  try {
    env = await setupPair(cell, driver, heavyRunnable, fastpath);
    const { gw } = env;
    const pathCheck = (listener: string, expect: PathExpectation | undefined) => (expect === undefined ? undefined : new PathCheck(gw.apiBase, listener, expect));
    /** The pair's context with a path check of the case's own. */
    const caseCtx = (): PairContext => ({ ...env!.ctx, path: pathCheck(LISTENER, env!.ctx.pathExpect) });
    const runCase = (d: CaseDef, before?: () => Promise<unknown>): Promise<CaseResult> => {
      const c = caseCtx();
      return timed(d.name, LIGHT_CASE_MS, async () => {
        await before?.();
        return d.run!(c);
      }, c.path);
    };
    // A cluster whose sessions see each other's traffic (an AF_PACKET session
    // reads every frame on its interface) behind a listener whose sessions
    // share one reply path (HTTP cases run at once; PIPE sessions share the
    // reply FIFO): one case at a time, each after the sessions before it
    // ended (an ended session's cluster side lingers for late replies).
    const isolate = cell.cluster.sharedReads === true && cell.listener.singleton === undefined &&
      (cell.listener.mode === 'request' || cell.listener.oneSessionAtATime !== undefined);
    const settle = (): Promise<unknown> => waitFor(async () => (await listenerSessions(gw.apiBase)).every((x) => x.status === 'DESTROYED'),
      10_000, 'the sessions of the case before to end');
    if (isolate) {
      for (const [i, d] of runnable.entries()) {
        const from = gw.logs().length;
        results.push(withGatewayLog(gw, await runCase(d, i > 0 ? settle : undefined), from));
      }
    } else if (cell.listener.mode === 'request') {
      // One session per request, each found by its own id: the cases can run
      // at once (an HTTP→UDP response waits for the UDP cluster's EOF linger).
      // Staggered when the upstream cannot take flows that start together (socat's UDP echo).
      const from = gw.logs().length;
      const stagger = cell.cluster.fragileFlowStart ? 200 : 0;
      results.push(...(await Promise.all(runnable.map(async (d, i) => {
        await delay(i * stagger);
        return withGatewayLog(gw, await runCase(d), from);
      }))));
    } else {
      for (const d of runnable) {
        const from = gw.logs().length;
        results.push(withGatewayLog(gw, await runCase(d), from));
      }
    }
    for (const [i, h] of heavyRunnable.entries()) {
      const at = env.heavyAt[i]!;
      const hc: HeavyContext = {
        cell, gw, target: targetOf(gw, at.at), listener: at.name, ups: h.tagged ? env.tagged! : env.plain, path: pathCheck(at.name, at.pathExpect),
      };
      const from = gw.logs().length;
      results.push(withGatewayLog(gw, await timed(h.name, HEAVY_CASE_MS, () => h.run!(hc), hc.path), from));
    }
  } catch (err) {
    const reason = `pair setup failed: ${oneLine((err as Error).message)}`;
    for (const d of [...runnable, ...heavyRunnable]) {
      if (!results.some((r) => r.name === d.name)) results.push({ name: d.name, status: 'fail', reason, ms: Date.now() - t0 });
    }
  } finally {
    await env?.stop();
  }
  // Report in definition order.
  const order = [...defs, ...heavy].map((d) => d.name);
  return results.sort((a, b) => order.indexOf(a.name) - order.indexOf(b.name));
}

interface PairEnv {
  readonly plain: Upstreams;
  readonly tagged: Upstreams | undefined;
  readonly gw: GatewayHandle;
  readonly ctx: PairContext;
  readonly heavyAt: readonly { readonly at: ListenerAtPort; readonly name: string; readonly pathExpect: PathExpectation | undefined }[];
  stop(): Promise<void>;
}

/** A port taken between the driver's check and the bind: worth a second try on fresh ports. */
function addressInUse(err: unknown): boolean {
  return /address already in use|EADDRINUSE/i.test((err as Error)?.message ?? '');
}

/** Upstreams and the pair's gateway; retried on fresh ports when a port was taken meanwhile. */
async function setupPair(cell: RunCell, driver: Driver, heavy: readonly HeavyDef[], fastpath: TcpFastpath | undefined): Promise<PairEnv> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await setupPairOnce(cell, driver, heavy, fastpath);
    } catch (err) {
      if (attempt >= 3 || !addressInUse(err)) throw err;
    }
  }
}

async function setupPairOnce(cell: RunCell, driver: Driver, heavy: readonly HeavyDef[], fastpath: TcpFastpath | undefined): Promise<PairEnv> {
  let plain: Upstreams | undefined;
  let tagged: Upstreams | undefined;
  let gw: GatewayHandle | undefined;
  const links: L2Link[] = [];
  const stop = async () => {
    await gw?.stop().catch(() => undefined);
    await plain?.stop().catch(() => undefined);
    await tagged?.stop().catch(() => undefined);
    await Promise.all(links.map((l) => l.remove().catch(() => undefined)));
  };
  try {
    plain = await cell.cluster.start({ driver }, 1);
    if (heavy.some((h) => h.tagged)) tagged = await cell.cluster.start({ driver }, TAGS.length, TAGS);
    const at = await listenerAt(driver, cell.listener, links);
    const chainId = uid('t');
    const chains = cell.transform?.chains(cell.row.protocol.kind, chainId) ?? { ingress: [], egress: [] };
    const light = {
      name: LISTENER,
      spec: cell.listener.spec(at),
      options: { track: TRACK_SECONDS },
      rules: [{ action: { route: { destination: CLUSTER, ingress: chains.ingress, egress: chains.egress } } }],
    };
    const listeners: unknown[] = [light];
    const sides = { listener: cell.listener.rawPath === true, cluster: cell.cluster.rawPath === true };
    const clusters: unknown[] = [clusterObject(CLUSTER, plain)];
    const rulelists: unknown[] = [];
    const heavyAt: { at: ListenerAtPort; name: string; pathExpect: PathExpectation | undefined }[] = [];
    for (const h of heavy) {
      const hat = await listenerAt(driver, cell.listener, links);
      const name = `${h.name}-listener`;
      const part = h.config!({ name, spec: cell.listener.spec(hat) }, h.tagged ? tagged! : plain);
      listeners.push(part.listener);
      clusters.push(...part.clusters);
      rulelists.push(...(part.rulelists ?? []));
      heavyAt.push({ at: hat, name, pathExpect: expectPath(fastpath, sides, part.listener, part.rulelists) });
    }
    gw = await driver.startGateway({ listeners, clusters, ...(rulelists.length > 0 ? { rulelists } : {}), ...(plain.admin ? { admin: plain.admin } : {}) }, { name: pairLabel(cell) });
    const ctx: PairContext = {
      cell,
      driver,
      gw,
      target: targetOf(gw, at),
      srcKind: cell.row.protocol.kind,
      dstKind: cell.clusterProtocol.kind,
      keepsBoundaries: cell.row.protocol.kind === 'datagram' && cell.clusterProtocol.kind === 'datagram',
      limit: pairLimit(cell),
      effect: cell.transform?.effect ?? 'identity',
      chainId,
      pathExpect: expectPath(fastpath, sides, light),
    };
    return { plain, tagged, gw, ctx, heavyAt, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}

// ------------------------------------------------------------ heavy cases

type ListenerAtPort = { address: string; port: number; path: string; link?: L2Link };

export interface HeavyContext {
  readonly cell: RunCell;
  readonly gw: GatewayHandle;
  /** The case's own listener. */
  readonly target: Target;
  readonly listener: string;
  readonly ups: Upstreams;
  /** The case's path check (path-check.ts), run while one of its sessions is live. */
  readonly path?: PathCheck;
}

export interface HeavyPart {
  readonly listener: Record<string, unknown>;
  readonly clusters: readonly unknown[];
  readonly rulelists?: readonly unknown[];
}

export interface HeavyDef {
  readonly name: string;
  readonly skip?: string;
  /** Uses the tagged upstreams (A, B, C, D) instead of the plain one. */
  readonly tagged: boolean;
  /** The case's listener (name and spec given; add rules) and the clusters and rulelists behind it. */
  readonly config?: (listener: Record<string, unknown>, ups: Upstreams) => HeavyPart;
  readonly run?: (h: HeavyContext) => Promise<string | void>;
}

const TAGS = ['A', 'B', 'C', 'D'] as const;
const PROBE_CONCURRENCY = 4;

/** One new session (or request) per probe; the first byte of the reply is the upstream's tag. */
async function probe(h: HeavyContext, count: number, source?: string): Promise<string[]> {
  const l = h.cell.listener;
  if (l.mode === 'request') {
    const rs = await l.requestMany(h.target, count, 'x', { id: uid('p'), timeoutMs: REQUEST_MS, ...(source !== undefined ? { source } : {}) });
    if (rs.length !== count) throw new Error(`${count} requests, ${rs.length} answers`);
    return rs.map((r) => (r.status === 200 ? r.body.toString('latin1', 0, 1) : `HTTP ${r.status}`));
  }
  const tags: string[] = new Array(count);
  const idx = Array.from({ length: count }, (_, i) => i);
  await pool(idx, h.cell.cluster.fragileFlowStart ? 1 : PROBE_CONCURRENCY, async (i) => {
    tags[i] = await withSession(h, async (s) => {
      const what = `a tagged reply (probe ${i + 1} of ${count}${source ? ` from ${source}` : ''})`;
      s.send(Buffer.from('x'));
      if (h.cell.cluster.fragileFlowStart) {
        // A UDP client retransmits: socat's fork peer can lose the datagram
        // that starts its flow. The tag is written first, so a second probe on
        // the same flow still answers with the same first byte.
        for (let attempt = 1; attempt < 3 && s.inbox.bytes === 0; attempt++) {
          await s.inbox.until(() => s.inbox.bytes >= 1, REPLY_MS / 3, what).catch(() => s.send(Buffer.from('x')));
        }
      }
      await s.inbox.until(() => s.inbox.bytes >= 1, REPLY_MS, what);
      return s.inbox.concat().toString('latin1', 0, 1);
    }, source);
  });
  return tags;
}

function tally(tags: readonly string[]): Record<string, number> {
  const t: Record<string, number> = {};
  for (const x of tags) t[x] = (t[x] ?? 0) + 1;
  return t;
}

function fmtTally(t: Record<string, number>, keys: readonly string[]): string {
  const extra = Object.keys(t).filter((k) => !keys.includes(k));
  return [...keys, ...extra].map((k) => `${k}:${t[k] ?? 0}`).join(' ');
}

/** Probe until the reply carries `tag`, then `confirm` more probes must all carry it. */
async function converge(h: HeavyContext, tag: string, what: string, confirm = 3, boundMs = 3000): Promise<number> {
  const t0 = Date.now();
  const seen: string[] = [];
  for (;;) {
    const [t] = await probe(h, 1);
    if (t === tag) break;
    seen.push(t!);
    if (Date.now() - t0 > boundMs) throw new Error(`${what}: traffic did not converge to upstream ${tag} within ${boundMs} ms (still ${seen.slice(-5).join(',')})`);
    await delay(50);
  }
  const ms = Date.now() - t0;
  const after = await probe(h, confirm);
  if (!after.every((t) => t === tag)) throw new Error(`${what}: reached ${tag} after ${ms} ms, then fell back: ${after.join(',')}`);
  return ms;
}

const LB_PROBES = 100;

function heavyCases(cell: RunCell, driver: Driver): HeavyDef[] {
  const noTags = cell.cluster.canTag ? undefined : `${cell.clusterProtocol.name} upstreams cannot tag their replies, so endpoints cannot be told apart`;
  // Load balancing and rule changes act on new sessions: a singleton listener has none.
  const single = cell.listener.singleton === undefined ? undefined : `${cell.listener.singleton}: load balancing and rule changes act on new sessions`;
  const tagged = (d: HeavyDef): HeavyDef => (single ?? noTags ? { name: d.name, skip: (single ?? noTags)!, tagged: true } : d);
  return [
    { name: 'retry', tagged: false, config: retryConfig, run: retryCase },
    tagged({ name: 'lb-weighted', tagged: true, config: lbWeightedConfig, run: lbWeightedCase }),
    tagged({ name: 'lb-hash', tagged: true, config: (l, ups) => lbHashConfig(cell, l, ups), run: lbHashCase }),
    tagged({ name: 'convergence', tagged: true, config: convergenceConfig, run: convergenceCase }),
    healthDef(cell, driver, single),
  ];
}

const RETRY = { retry_on: 'always', num_retries: 8, timeout: 250 };

function retryConfig(listener: Record<string, unknown>): HeavyPart {
  // Same cluster (and upstream) as the light cases, through a route that retries.
  return { listener: { ...listener, rules: [{ action: { route: { destination: CLUSTER, retry: RETRY } } }] }, clusters: [] };
}

function countMatches(text: string, re: RegExp): number {
  return (text.match(new RegExp(re.source, 'g')) ?? []).length;
}

async function retryCase(h: HeavyContext): Promise<string | void> {
  const window = RETRY.num_retries * RETRY.timeout;
  if (h.cell.listener.mode === 'request') {
    // Per request: the upstream is down when the request arrives and back within the retry window.
    const failedBefore = countMatches(h.gw.logs(), /connect attempt failed/);
    await h.ups.kill(0);
    const p = payload(1400, 9);
    const pending = req(h.cell.listener).request(h.target, p, { id: uid('r'), timeoutMs: REQUEST_MS });
    pending.catch(() => undefined); // awaited below; not an unhandled rejection meanwhile
    await delay(300);
    const t0 = Date.now();
    await h.ups.restore(0);
    const r = await pending;
    if (r.status !== 200 || !r.body.equals(p)) throw new Error(`the request did not survive the upstream restart: HTTP ${r.status}, ${diff(p, r.body)}`);
    const failed = countMatches(h.gw.logs(), /connect attempt failed/) - failedBefore;
    if (failed < 1) throw new Error('the request succeeded without a failed connect attempt: the upstream was not down when it arrived');
    return `answered after ${failed} failed connect attempt(s); upstream restored in ${Date.now() - t0} ms, retry window ${window} ms`;
  }
  return withSession(h, async (s) => {
    s.send(Buffer.from('before;'));
    await s.inbox.until(() => s.inbox.concat().includes('before;'), REPLY_MS, 'the echo before the restart');
    const [first] = await listenerSessions(h.gw.apiBase, h.listener);
    if (first === undefined) throw new Error('no session on the listener');
    const t0 = Date.now();
    await h.ups.kill(0);
    await h.ups.restore(0);
    const restoredMs = Date.now() - t0;
    // Keep sending: over UDP only traffic reveals the loss (ICMP), and a
    // message sent into the outage is lost on a datagram path.
    let k = 0;
    const deadline = Date.now() + window + 4000;
    while (!s.inbox.concat().includes('after-')) {
      if (Date.now() > deadline) throw new Error(`no echo within ${window + 4000} ms after the upstream was restored (${restoredMs} ms after the kill)`);
      if (s.inbox.closed) throw new Error(`the client session closed during the restart${s.inbox.error ? `: ${s.inbox.error.message}` : ''}`);
      s.send(Buffer.from(`after-${k++};`));
      await delay(150);
    }
    const resumedMs = Date.now() - t0;
    const now = (await listenerSessions(h.gw.apiBase, h.listener)).filter((x) => x.status !== 'DESTROYED');
    if (now.length !== 1 || now[0].name !== first.name) {
      throw new Error(`the session did not survive: before ${first.name}, now ${now.map((x) => `${x.name}(${x.status})`).join(', ') || 'none'}`);
    }
    const reconnected = (now[0].events as { message?: string }[] | undefined)?.some((e) => /reconnected/.test(e.message ?? '')) === true;
    if (h.cell.cluster.connectionOriented && !reconnected) throw new Error('traffic resumed but the session shows no "reconnected" event');
    return `${reconnected ? 'reconnected' : 'same session, no reconnect needed (datagram upstream)'}; traffic resumed ${resumedMs} ms after the kill (${k} probe message(s))`;
  });
}

const WEIGHTS = [3, 1, 1, 0];

function lbWeightedConfig(listener: Record<string, unknown>, ups: Upstreams): HeavyPart {
  return {
    listener: { ...listener, rules: [{ action: { route: { destination: 'lbw-cluster' } } }] },
    clusters: [clusterObject('lbw-cluster', ups, { loadbalancer: { policy: 'WeightedRandom' } }, WEIGHTS)],
  };
}

async function lbWeightedCase(h: HeavyContext): Promise<string> {
  const got = await probe(h, LB_PROBES);
  const t = tally(got);
  const n = LB_PROBES;
  const text = fmtTally(t, TAGS);
  // Expected 60/20/20/0 of 100; the bounds are about 4 standard deviations wide.
  const bad: string[] = [];
  if ((t.A ?? 0) < 0.4 * n || (t.A ?? 0) > 0.8 * n) bad.push(`A (weight 3) outside [${0.4 * n}, ${0.8 * n}]`);
  for (const k of ['B', 'C']) if ((t[k] ?? 0) < 0.04 * n || (t[k] ?? 0) > 0.4 * n) bad.push(`${k} (weight 1) outside [${0.04 * n}, ${0.4 * n}]`);
  if ((t.D ?? 0) !== 0) bad.push('D (weight 0) was picked');
  const unknown = Object.keys(t).filter((k) => !(TAGS as readonly string[]).includes(k));
  if (unknown.length > 0) bad.push(`unexpected replies ${unknown.join(',')}`);
  if (bad.length > 0) throw new Error(`${n} sessions, weights 3:1:1:0 → ${text}: ${bad.join('; ')}`);
  return `${n} sessions, weights 3:1:1:0 → ${text}`;
}

function lbHashConfig(cell: RunCell, listener: Record<string, unknown>, ups: Upstreams): HeavyPart {
  const three = { ...ups, endpoints: ups.endpoints.slice(0, 3) };
  return {
    listener: { ...listener, rules: [{ action: { route: { destination: 'hash-cluster' } } }] },
    clusters: [clusterObject('hash-cluster', three, { loadbalancer: { policy: 'ConsistentHash', key: cell.listener.hashKey } })],
  };
}

async function lbHashCase(h: HeavyContext): Promise<string> {
  const l = h.cell.listener;
  const sources: (string | undefined)[] = l.sources.length > 0 ? [...l.sources] : [undefined];
  const seen: string[] = [];
  for (const src of sources) {
    const got = await probe(h, 6, src);
    const first = got[0]!;
    if (!['A', 'B', 'C'].includes(first) || !got.every((x) => x === first)) {
      throw new Error(`key ${l.hashKey}, source ${src ?? '(the one Unix client)'}: sessions spread over ${got.join(',')}`);
    }
    seen.push(`${src ?? 'client'}→${first}`);
  }
  return `key ${l.hashKey}: ${seen.join(', ')} (6 sessions each)`;
}

function convergenceConfig(listener: Record<string, unknown>, ups: Upstreams): HeavyPart {
  return {
    listener: { ...listener, rules: 'conv-rl' },
    rulelists: [{ name: 'conv-rl', rules: [{ name: 'conv-r-a', action: { route: { destination: 'cA' } } }] }],
    clusters: [
      { name: 'cA', spec: ups.spec, endpoints: [{ name: 'eA', spec: { address: ups.endpoints[0]!.address } }] },
      { name: 'cB', spec: ups.spec, endpoints: [{ name: 'eB', spec: { address: ups.endpoints[1]!.address } }] },
    ],
  };
}

async function convergenceCase(h: HeavyContext): Promise<string> {
  const base = h.gw.apiBase;
  const start = await probe(h, 3);
  if (!start.every((t) => t === 'A')) throw new Error(`before any change: expected upstream A, got ${start.join(',')}`);
  // Swap the route's destination: the new rule first, then the old one out, so that no session finds no rule.
  await apiOk(base, 'POST', '/api/v1/rulelists/conv-rl/rules/0', { rule: { name: 'conv-r-b', action: { route: { destination: 'cB' } } } });
  await apiOk(base, 'DELETE', '/api/v1/rulelists/conv-rl/rules/conv-r-a?recursive=true');
  const swapMs = await converge(h, 'B', 'after swapping the rule (DELETE+POST on the rulelist)');
  // Add an endpoint and remove the old one.
  await apiOk(base, 'POST', '/api/v1/clusters/cB/endpoints', { endpoint: { name: 'eC', spec: { address: h.ups.endpoints[2]!.address } } });
  await apiOk(base, 'DELETE', '/api/v1/endpoints/eB');
  const epMs = await converge(h, 'C', 'after adding endpoint eC and deleting eB');
  const gone = await api(base, 'GET', '/api/v1/rules/conv-r-a');
  if (gone.status !== 404) throw new Error(`the deleted rule conv-r-a still answers ${gone.status}`);
  return `rule swap converged in ${swapMs} ms, endpoint swap in ${epMs} ms`;
}
