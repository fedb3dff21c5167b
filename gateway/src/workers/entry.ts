// A data-plane worker process (forked by workers/supervisor.ts). It runs a
// Gateway holding the data-plane listeners only, each bound with SO_REUSEPORT
// (protocols/common/reuseport.ts), and answers the supervisor's messages
// (workers/protocol.ts). It never serves the REST API: the main process does.

import { startGateway } from '../app.js';
import { parseAdmin } from '../config/admin.js';
import { createLogger } from '../observe/log.js';
import { checkSchema } from '../api/dispatch.js';
import { dumpConfig, dumpSession, dumpSessions } from '../api/dump.js';
import { handlers } from '../api/handlers.js';
import { GatewayError, asGatewayError } from '../core/errors.js';
import { drainAndStop } from '../core/drain.js';
import type { Gateway } from '../core/gateway.js';
import { portSharing } from '../protocols/common/reuseport.js';
import { GatewayMetrics } from '../observe/metrics.js';
import { ledgerKeeps } from './metrics-ledger.js';
import { placementOf } from './split.js';
import { standInListener } from './stand-in.js';
import { WORKER_COUNT_ENV, WORKER_INDEX_ENV, type FromWorker, type ToWorker, type WorkerConfig, type WorkerOp } from './protocol.js';

const index = Number(process.env[WORKER_INDEX_ENV] ?? '0');
const count = Number(process.env[WORKER_COUNT_ENV] ?? '1');
portSharing.on = true;
portSharing.reportUdp = (fd, address, port) => send({ type: 'udpShared', fd, address, port });

let gw: Gateway | undefined;
/**
 * The prepared change: a started gateway (first config), objects validated
 * for applyConfig, a REST change to run at commit, or one built and bound
 * already and held at the store's gate (`decide` releases it).
 */
let pending: { gen: number; started?: Gateway; objects?: Record<string, unknown>; op?: WorkerOp; held?: { decide: (commit: boolean) => void; done: Promise<void> } } | undefined;

/** REST changes that build objects: they are built and bound at prepare, so a bind failure here aborts the change everywhere. */
const BUILDS = /^(add|setConf$)/;

function send(m: FromWorker): void {
  process.send?.(m);
}

function fail(gen: number, err: unknown): void {
  const e = asGatewayError(err);
  send({ type: 'failed', gen, error: { code: e.code, message: e.message, ...(e.field !== undefined ? { field: e.field } : {}) } });
}

async function prepare(gen: number, config: WorkerConfig): Promise<void> {
  if (gw === undefined) {
    // The first config binds here, so a port another program holds fails the
    // prepare and the supervisor aborts every worker. Listening before commit
    // is harmless: no worker serves anything else yet.
    // Every line this worker logs says which worker it is.
    const { log } = parseAdmin(config.admin);
    const logger = createLogger(log.level, log.file, log.format).child({ worker: index });
    // A snapshot of the control plane's graph says where its listeners were placed; later adds are placed as usual.
    let placed = config.snapshot?.placement;
    const started = await startGateway({ config: { admin: config.admin, ...config.objects }, logger, limitShares: count, servesNoApi: true, beforeApply: (g) => {
      // Active health checks run in the main process; their results come here ('checked').
      g.healthStats.probes = false;
      // The control-plane listeners run in the main process: stand-ins here.
      // Listeners that cannot share their resource run on worker 1 only.
      g.remoteListener = (raw, graph) => {
        const where = (placed !== undefined && typeof raw.name === 'string' && Object.hasOwn(placed, raw.name) ? placed[raw.name] : undefined) ?? placementOf(raw, graph);
        return where === 'main' || (where === 'one' && index !== 1) ? standInListener() : undefined;
      };
    } });
    placed = undefined;
    if (config.snapshot !== undefined) started.applyProvenance(config.snapshot.provenance);
    pending = { gen, started };
  } else {
    // Later changes are validated here and built at commit. Building them
    // without activating (the store's transaction kept open across IPC) is
    // docs/workers.md's next step.
    checkSchema('setConf', config.objects);
    pending = { gen, objects: config.objects };
  }
  send({ type: 'prepared', gen });
}

/** A REST change the main process accepted: the same handler, on this worker's gateway. */
async function runOp(op: WorkerOp): Promise<void> {
  const h = handlers[op.operationId as keyof typeof handlers];
  if (h === undefined || gw === undefined) throw new Error(`cannot apply ${op.operationId} here`);
  await h(gw, { params: op.params, recursive: op.recursive, body: op.body, session: undefined });
}

function prepareOp(gen: number, op: WorkerOp): void {
  const g = gw;
  if (g === undefined || !BUILDS.test(op.operationId)) {
    // Deletes and updates: validated in the main process, which holds the
    // whole graph; they run at commit.
    pending = { gen, op };
    send({ type: 'prepared', gen });
    return;
  }
  // Adds run now and wait at the store's gate, built and bound (a port
  // another program holds, a path that exists: the prepare fails here).
  let decide!: (commit: boolean) => void;
  const decision = new Promise<boolean>((r) => { decide = r; });
  let reached = false;
  g.holdNextChange(async () => {
    reached = true;
    send({ type: 'prepared', gen });
    if (!(await decision)) throw new GatewayError('INTERNAL', 'the change was refused by the control plane');
  });
  const done = runOp(op);
  pending = { gen, op, held: { decide, done } };
  done.then(() => {
    if (reached) return;
    // The handler changed the graph without building anything (nothing to hold).
    g.holdNextChange(undefined);
    send({ type: 'prepared', gen });
  }, (err: unknown) => {
    if (reached) return; // refused at commit or by abort: commit() reports it
    g.holdNextChange(undefined);
    if (pending?.gen === gen) pending = undefined;
    fail(gen, err);
  });
}

async function commit(gen: number): Promise<void> {
  const p = pending;
  if (p === undefined || p.gen !== gen) throw new Error(`commit of generation ${gen} without its prepare`);
  pending = undefined;
  if (p.started !== undefined) gw = p.started;
  else if (p.held !== undefined) {
    p.held.decide(true);
    await p.held.done;
  } else if (p.op !== undefined) await runOp(p.op);
  else await gw!.applyConfig(p.objects, false);
  send({ type: 'committed', gen });
}

async function abort(gen: number): Promise<void> {
  const p = pending;
  if (p?.gen !== gen) return;
  pending = undefined;
  if (p.held !== undefined) {
    p.held.decide(false);
    const held = await p.held.done.then(() => true, () => false);
    // Applied without a gate to hold it: this worker now differs from the
    // control plane; the supervisor restarts it with the current config.
    if (held) {
      gw?.log.error({ worker: index, operation: p.op?.operationId }, 'worker applied a change the control plane refused; restarting');
      process.exit(70);
    }
  }
  await p.started?.stop();
}

function onMessage(m: ToWorker): void {
  switch (m.type) {
    case 'prepare':
      if ('op' in m) prepareOp(m.gen, m.op);
      else prepare(m.gen, m.config).catch((err: unknown) => fail(m.gen, err));
      break;
    case 'commit': commit(m.gen).catch((err: unknown) => fail(m.gen, err)); break;
    case 'abort': void abort(m.gen); break;
    case 'deleteSession':
      try {
        if (gw === undefined) throw new GatewayError('NOT_FOUND', 'No such session');
        gw.deleteSession(m.name);
        send({ type: 'deleted', id: m.id });
      } catch (err) {
        const e = asGatewayError(err);
        send({ type: 'deleted', id: m.id, error: { code: e.code, message: e.message } });
      }
      break;
    case 'metrics': {
      const observer = gw?.observer;
      // The periodic poll collects only what the ledger keeps; a scrape, everything.
      const json = observer instanceof GatewayMetrics ? observer.metricsJson(m.ledger === true ? ledgerKeeps : undefined) : Promise.resolve([]);
      json.then((metrics) => send({ type: 'metrics', id: m.id, metrics }), () => send({ type: 'metrics', id: m.id, metrics: [] }));
      break;
    }
    case 'release': release(); break;
    case 'checked':
      gw?.clusters.get(m.cluster)?.health?.state.checked(m.endpoint, m.ok, m.reason, m.timedOut, false);
      break;
    case 'graph': {
      const { admin: _a, sessions: _s, ...graph } = gw === undefined ? {} : dumpConfig(gw);
      send({ type: 'graph', id: m.id, graph });
      break;
    }
    case 'sessions': {
      // Names carry the worker so that they stay unique across workers.
      const sessions = gw === undefined ? [] : dumpSessions(gw).map(named);
      send({ type: 'sessions', id: m.id, sessions });
      break;
    }
    case 'session': {
      const s = gw?.sessions.get(m.name);
      const d = s !== undefined ? dumpSession(s) : gw?.compiled.get(m.name);
      send({ type: 'sessions', id: m.id, sessions: d === undefined ? [] : [named(d)] });
      break;
    }
  }
}

/** A session dump as the API shows it: its name carries the worker, so names stay unique across workers. */
function named(s: unknown): Record<string, unknown> {
  return { ...(s as Record<string, unknown>), name: `w${index}-${String((s as { name?: unknown }).name)}`, worker: index };
}

process.on('message', (m: ToWorker) => onMessage(m));
// The main process is gone: a worker never runs without its control plane.
process.on('disconnect', () => process.exit(0));
/** Resolves the drain's hold once the main process says every worker has drained. */
let release: () => void = () => undefined;
process.on('SIGTERM', () => {
  const g = gw;
  if (g === undefined) process.exit(0);
  const released = new Promise<void>((resolve) => { release = resolve; });
  drainAndStop(g, g.admin.drain_timeout, { hold: () => { send({ type: 'drained' }); return released; } }).finally(() => process.exit(0));
  setTimeout(() => process.exit(0), g.admin.drain_timeout + 3000).unref();
});
// A bug in one session must not take the worker down, as in main.ts.
process.on('uncaughtException', (err) => gw?.log.error({ err, worker: index }, 'uncaught exception in worker'));
process.on('unhandledRejection', (err) => gw?.log.error({ err, worker: index }, 'unhandled rejection in worker'));
