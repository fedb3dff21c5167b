#!/usr/bin/env node
// The l7mp command: l7mp's flags (-c, -l, -s, -o, -i) plus --help, --version
// and the `health` subcommand. The gateway itself (app.js: uWebSockets.js,
// the addons) loads only when it is to run, so that --version and health
// stay quick.

import { parseArgs } from 'node:util';
import { asGatewayError } from './core/errors.js';
import { drainAndStop } from './core/drain.js';
import { parseLogLevel } from './config/log-level.js';
import type { LevelName } from './observe/log.js';
import { checkHealth, healthUrl } from './cli/health.js';
import { USAGE } from './cli/usage.js';
import { packageVersion } from './version.js';

function health(argv: string[]): void {
  let url: string | undefined;
  try {
    url = parseArgs({ args: argv, options: { url: { type: 'string' } }, strict: true, allowPositionals: false }).values.url;
  } catch (err) {
    process.stderr.write(`l7mp health: ${(err as Error).message}\n\n${USAGE}`);
    process.exit(2);
  }
  void checkHealth(healthUrl(url)).then((code) => process.exit(code));
}

async function main(): Promise<void> {
  if (process.argv[2] === 'health') return health(process.argv.slice(3));
  let args;
  try {
    args = parseArgs({
      options: {
        config: { type: 'string', short: 'c' },
        'log-level': { type: 'string', short: 'l' },
        strict: { type: 'boolean', short: 's' },
        offload: { type: 'string', short: 'o' },
        'offload-ifs': { type: 'string', short: 'i' },
        workers: { type: 'string', short: 'w' },
        help: { type: 'boolean', short: 'h' },
        version: { type: 'boolean', short: 'v' },
      },
      strict: true,
      allowPositionals: false,
    });
  } catch (err) {
    process.stderr.write(`l7mp: ${(err as Error).message}\n\n${USAGE}`);
    process.exit(2);
  }
  const v = args.values;
  if (v.help) {
    process.stdout.write(USAGE);
    process.exit(0);
  }
  if (v.version) {
    process.stdout.write(`${packageVersion()}\n`);
    process.exit(0);
  }
  let level: LevelName | undefined;
  try {
    level = v['log-level'] === undefined ? undefined : parseLogLevel(v['log-level'], '-l');
  } catch (err) {
    process.stderr.write(`l7mp: ${(err as Error).message}\n\n${USAGE}`);
    process.exit(2);
  }
  if (v.offload !== undefined && !['init', 'no_init', 'disable'].includes(v.offload)) {
    process.stderr.write(`l7mp: -o takes init, no_init or disable\n\n${USAGE}`);
    process.exit(2);
  }
  let workers: number | 'auto' | undefined;
  if (v.workers !== undefined) {
    workers = v.workers === 'auto' ? 'auto' : Number(v.workers);
    if (workers !== 'auto' && !(Number.isInteger(workers) && workers >= 1 && workers <= 1024)) {
      process.stderr.write(`l7mp: -w takes a number from 1 to 1024 or auto\n\n${USAGE}`);
      process.exit(2);
    }
  }
  process.title = 'l7mp';
  const { DEFAULT_CONFIG, readConfigFile, startGateway } = await import('./app.js');
  let config: unknown;
  try {
    config = v.config !== undefined ? readConfigFile(v.config) : DEFAULT_CONFIG;
  } catch (err) {
    process.stderr.write(`l7mp: ${(err as Error).message}\n`);
    process.exit(1);
  }
  const offload = { ...(v.offload !== undefined ? { offload: v.offload } : {}), ...(v['offload-ifs'] !== undefined ? { offloadIfs: v['offload-ifs'] } : {}) };
  startGateway({ config, offload, ...(workers !== undefined ? { workers } : {}), ...(level !== undefined ? { logLevel: level } : {}), ...(v.strict ? { strict: true } : {}) }).then((gw) => {
    gw.log.info({ version: gw.admin.version, log_level: gw.admin.log_level, strict: gw.admin.strict, config: v.config ?? '(built-in default)' }, 'l7mp gateway started');
    let stopping = false;
    const shutdown = (sig: string) => {
      if (stopping) return;
      stopping = true;
      gw.log.info({ signal: sig, drain_timeout_ms: gw.admin.drain_timeout }, 'shutting down');
      // Drain (core/drain.ts), then exit; the timer only bounds a stop() that hangs.
      drainAndStop(gw, gw.admin.drain_timeout).finally(() => process.exit(0));
      setTimeout(() => process.exit(0), gw.admin.drain_timeout + 3000).unref();
    };
    process.on('SIGINT', () => shutdown('SIGINT'));
    process.on('SIGTERM', () => shutdown('SIGTERM'));
    process.on('uncaughtException', (err) => {
      // A bug in one session must not take the gateway down; log it loudly.
      gw.log.error({ err }, 'uncaught exception');
    });
    process.on('unhandledRejection', (err) => gw.log.error({ err }, 'unhandled rejection'));
  }, (err: unknown) => {
    const e = asGatewayError(err);
    process.stderr.write(`l7mp: cannot apply the configuration: ${e.message}\n`);
    process.exit(1);
  });
}

void main();
