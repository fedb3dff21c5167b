// Run the matrix: plan the cells from the registry, run the runnable ones
// with limited concurrency, and collect one RunResult. The CLI (run.ts) and
// the ava test (gateway/test/integration/conformance.test.ts) both call runConformance().

import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { runCell } from './cases.js';
import { DriverUnavailableError, type Driver } from './driver.js';
import { buildMatrix, cellKey, type Cell, type Matrix } from './matrix.js';
import { ContainerDriver } from './container-driver.js';
import { ProcessDriver } from './process-driver.js';
import { checkGatewayCmd } from './gateway-under-test.js';
import type { TcpFastpath } from './path-check.js';
import { renderJson, renderJunit } from './junit.js';
import { pairStatus, renderHtml, renderMarkdown, type PairResult, type RunResult } from './report.js';
import { selectCells } from './select.js';
import { pool } from './util.js';

export type Mode = 'process' | 'container';

export interface RunOptions {
  readonly mode?: Mode;
  /** LISTENER:CLUSTER patterns, comma-separated, with * and ? (select.ts); case-insensitive, a transform column by its label. */
  readonly only?: string;
  /** The gateway under test: a command with {config} (gateway-under-test.ts); default this build. */
  readonly gatewayCmd?: string;
  /** Container mode: the gateway image under test (default l7mp/gateway:local). */
  readonly gatewayImage?: string;
  /** Container mode: run the echo peers as local processes, not as containers of the peers image. */
  readonly localPeers?: boolean;
  /**
   * The raw stream path of the gateway under test: 'off' starts it with
   * L7MP_TCP_FASTPATH=off, 'on' with the path on; the cases of pairs with a
   * TCP or Unix stream side check which path their sessions took
   * (path-check.ts). Default: this build follows L7MP_TCP_FASTPATH of the
   * suite's own environment; a gateway named by gatewayCmd or gatewayImage is
   * not checked unless this is given.
   */
  readonly tcpFastpath?: TcpFastpath;
  /** 'off': start this build's gateway with L7MP_COMPILED=off (no compiled listeners). */
  readonly compiled?: 'off';
  /** Pairs run at the same time (default 2). */
  readonly concurrency?: number;
  /** Use this driver instead of the mode's. */
  readonly driver?: Driver;
  /** Progress lines (one per finished pair). */
  readonly progress?: (line: string) => void;
  readonly matrix?: Matrix;
}

const HERE = path.dirname(fileURLToPath(import.meta.url));
/** dist/conformance/ -> conformance/ in the source tree, where the reports go. */
export const REPORT_DIR = path.resolve(HERE, '../../conformance');

/** The raw stream path the run expects (RunOptions.tcpFastpath), or undefined: a gateway not ours, not checked. */
export function resolveFastpath(opts: Pick<RunOptions, 'tcpFastpath' | 'gatewayCmd' | 'gatewayImage'>): TcpFastpath | undefined {
  if (opts.tcpFastpath !== undefined) return opts.tcpFastpath;
  if (opts.gatewayCmd !== undefined || opts.gatewayImage !== undefined) return undefined;
  return process.env.L7MP_TCP_FASTPATH === 'off' ? 'off' : 'on';
}

export function createDriver(mode: Mode, opts: Pick<RunOptions, 'gatewayCmd' | 'gatewayImage' | 'localPeers' | 'tcpFastpath' | 'compiled'> = {}): Driver {
  if (opts.gatewayCmd !== undefined) checkGatewayCmd(opts.gatewayCmd);
  // Set explicitly, so that what the cases expect is what the gateway was told, in either mode.
  const fastpath = resolveFastpath(opts);
  const gatewayEnv = fastpath !== undefined || opts.compiled !== undefined
    ? { ...(fastpath !== undefined ? { L7MP_TCP_FASTPATH: fastpath } : {}), ...(opts.compiled !== undefined ? { L7MP_COMPILED: opts.compiled } : {}) }
    : undefined;
  if (mode === 'process') {
    if (opts.gatewayImage !== undefined) throw new DriverUnavailableError('--gateway-image needs container mode (--mode container)');
    return new ProcessDriver(opts.gatewayCmd, false, gatewayEnv);
  }
  if (mode === 'container') {
    return new ContainerDriver({
      ...(opts.gatewayImage !== undefined ? { gatewayImage: opts.gatewayImage } : {}),
      ...(opts.gatewayCmd !== undefined ? { gatewayCmd: opts.gatewayCmd } : {}),
      ...(opts.localPeers !== undefined ? { localPeers: opts.localPeers } : {}),
      ...(gatewayEnv !== undefined ? { gatewayEnv } : {}),
    });
  }
  throw new DriverUnavailableError(`no driver for mode "${String(mode)}"`);
}

/** How the report names the gateway under test. */
export function gatewayLabel(mode: Mode, opts: Pick<RunOptions, 'gatewayCmd' | 'gatewayImage'>): string {
  if (mode === 'process') return opts.gatewayCmd ?? 'node dist/gateway/src/main.js -c {config}';
  return `${opts.gatewayImage ?? 'l7mp/gateway:local'}${opts.gatewayCmd !== undefined ? ` ${opts.gatewayCmd}` : ''}`;
}

export async function runConformance(opts: RunOptions = {}): Promise<RunResult> {
  const mode = opts.mode ?? 'process';
  const matrix = opts.matrix ?? buildMatrix();
  const cells = opts.only !== undefined ? selectCells(matrix.cells, opts.only) : matrix.cells;
  const driver = opts.driver ?? createDriver(mode, opts);
  const fastpath = resolveFastpath(opts);
  const t0 = Date.now();
  const results = new Map<Cell, PairResult>();
  try {
    for (const c of cells) {
      if (c.type === 'na') {
        results.set(c, { key: cellKey(c), row: c.row.id, col: c.col.id, type: 'na', status: 'na', reason: c.reason, representative: false, cases: [], ms: 0 });
      } else if (c.type === 'skip') {
        results.set(c, {
          key: cellKey(c), row: c.row.id, col: c.col.id, type: 'skip', status: 'skip', reason: c.reason, representative: false,
          cases: [{ name: 'pair', status: 'skip', reason: c.reason, ms: 0 }], ms: 0,
        });
      }
    }
    // Longest first, so that they do not form the tail: representative pairs
    // (heavy cases), then per-request pairs whose upstream has no EOF (each
    // response waits for the UDP cluster's EOF linger).
    const cost = (c: Extract<Cell, { type: 'run' }>) => (c.representative ? 2 : 0) + (c.listener.mode === 'request' && !c.cluster.halfClose ? 1 : 0);
    const runnable = cells.filter((c): c is Extract<Cell, { type: 'run' }> => c.type === 'run')
      .sort((a, b) => cost(b) - cost(a));
    await pool(runnable, opts.concurrency ?? 2, async (c) => {
      const started = Date.now();
      const cases = await runCell(c, driver, fastpath);
      const r: PairResult = {
        key: cellKey(c), row: c.row.id, col: c.col.id, type: 'run', status: pairStatus(cases), representative: c.representative, cases, ms: Date.now() - started,
      };
      results.set(c, r);
      const fails = cases.filter((x) => x.status === 'fail');
      opts.progress?.(`${r.status === 'fail' ? 'FAIL' : r.status} ${c.row.id}→${c.col.id} (${cases.filter((x) => x.status === 'pass').length} passed, ${fails.length} failed, ${cases.filter((x) => x.status === 'skip').length} skipped, ${(r.ms / 1000).toFixed(1)} s)${fails.length > 0 ? `: ${fails.map((f) => f.name).join(', ')}` : ''}`);
    });
  } finally {
    await driver.close().catch(() => undefined);
  }
  const pairs = cells.map((c) => results.get(c)!).filter((x) => x !== undefined);
  const all = pairs.flatMap((p) => p.cases);
  return {
    mode,
    gateway: gatewayLabel(mode, opts),
    ...(fastpath !== undefined ? { tcpFastpath: fastpath } : {}),
    ...(opts.compiled !== undefined ? { compiled: opts.compiled } : {}),
    only: opts.only,
    rows: matrix.rows.map((r) => r.id),
    cols: matrix.cols.map((c) => ({ id: c.id, kind: c.kind, protocols: c.protocols.map((p) => p.name) })),
    pairs,
    outside: matrix.outside,
    passed: all.filter((c) => c.status === 'pass').length,
    failed: all.filter((c) => c.status === 'fail').length,
    skipped: all.filter((c) => c.status === 'skip').length,
    durationMs: Date.now() - t0,
  };
}

/** Write report.md, report.html, junit.xml and report.json into `dir`. */
export function writeReports(r: RunResult, dir = REPORT_DIR): { markdown: string; html: string; junit: string; json: string } {
  fs.mkdirSync(dir, { recursive: true });
  const files = {
    markdown: path.join(dir, 'report.md'),
    html: path.join(dir, 'report.html'),
    junit: path.join(dir, 'junit.xml'),
    json: path.join(dir, 'report.json'),
  };
  fs.writeFileSync(files.markdown, renderMarkdown(r));
  fs.writeFileSync(files.html, renderHtml(r));
  fs.writeFileSync(files.junit, renderJunit(r));
  fs.writeFileSync(files.json, renderJson(r));
  return files;
}
