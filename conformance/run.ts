#!/usr/bin/env node
// npm run conformance [-- --only LISTENER:CLUSTER] [--mode process|container] [--concurrency N]
//
// Prints the matrix and the failing/skipped cases, ends with
// "N passed, N failed, N skipped", writes conformance/report.md and
// conformance/report.html. Exit code: 0 all passed, 1 something failed,
// 2 bad arguments or a driver that is not available.

import { parseArgs } from 'node:util';
import { DriverUnavailableError } from './driver.js';
import { renderText } from './report.js';
import { runConformance, writeReports, type Mode } from './runner.js';

const USAGE = `usage: node dist/conformance/run.js [--only LISTENER:CLUSTER] [--mode process|container] [--concurrency N] [--no-report]
  --only         run one pair, e.g. --only UDP:TCP or --only TCP:Logger
  --mode         process (default): the gateway and the peers run as local processes;
                 container: the gateway and the peers run as containers of the
                 l7mp/gateway:local and l7mp/peers:local images (built first)
  --concurrency  pairs run at the same time (default 2)
  --no-report    do not write conformance/report.md and report.html
`;

async function main(): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({
      options: {
        only: { type: 'string' },
        mode: { type: 'string', default: 'process' },
        concurrency: { type: 'string', default: '2' },
        'no-report': { type: 'boolean', default: false },
        help: { type: 'boolean', short: 'h' },
      },
      strict: true,
      allowPositionals: false,
    }));
  } catch (err) {
    process.stderr.write(`conformance: ${(err as Error).message}\n${USAGE}`);
    return 2;
  }
  if (values.help) {
    process.stdout.write(USAGE);
    return 0;
  }
  const mode = values.mode;
  if (mode !== 'process' && mode !== 'container') {
    process.stderr.write(`conformance: --mode must be process or container, got "${mode}"\n${USAGE}`);
    return 2;
  }
  const concurrency = Number(values.concurrency);
  if (!Number.isInteger(concurrency) || concurrency < 1 || concurrency > 16) {
    process.stderr.write(`conformance: --concurrency must be an integer between 1 and 16\n${USAGE}`);
    return 2;
  }
  let result;
  try {
    result = await runConformance({
      mode: mode as Mode,
      concurrency,
      ...(values.only !== undefined ? { only: values.only } : {}),
      progress: (line) => process.stderr.write(`${line}\n`),
    });
  } catch (err) {
    if (err instanceof DriverUnavailableError) {
      process.stderr.write(`conformance: ${err.message}\n`);
      return 2;
    }
    if ((err as Error).message.startsWith('--only')) {
      process.stderr.write(`conformance: ${(err as Error).message}\n`);
      return 2;
    }
    throw err;
  }
  if (!values['no-report']) {
    const files = writeReports(result);
    process.stderr.write(`wrote ${files.markdown} and ${files.html}\n`);
  }
  process.stdout.write(`${renderText(result)}\n`);
  return result.failed > 0 ? 1 : 0;
}

// Interrupted: exit through process.exit so that the drivers' exit hooks kill every child.
for (const sig of ['SIGINT', 'SIGTERM'] as const) process.on(sig, () => process.exit(130));

main().then(
  (code) => process.exit(code),
  (err) => {
    process.stderr.write(`conformance: ${(err as Error).stack ?? String(err)}\n`);
    process.exit(1);
  },
);
