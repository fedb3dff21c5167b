#!/usr/bin/env node
// npm run conformance [-- --only PATTERNS] [--mode process|container] [--concurrency N]
//                       [--gateway-cmd 'CMD {config}'] [--gateway-image IMAGE] [--out DIR]
//                       [--tcp-fastpath on|off]
//
// Prints the matrix and the failing/skipped cases, ends with
// "N passed, N failed, N skipped", writes report.md, report.html, junit.xml
// and report.json (into --out DIR, default conformance/). Exit code: 0 all
// passed, 1 something failed, 2 bad arguments or a driver that is not available.

import { parseArgs } from 'node:util';
import { DriverUnavailableError } from './driver.js';
import { renderText } from './report.js';
import { runConformance, writeReports, type Mode } from './runner.js';

const USAGE = `usage: node dist/conformance/run.js [options]
  --only PATTERNS       the pairs to run: LISTENER:CLUSTER patterns, comma-separated,
                        case-insensitive, with * and ? (e.g. UDP:TCP, UDP:*, *:WebSocket,
                        TCP:UDP,HTTP:*); a transform column by its label (TCP:Logger)
  --mode MODE           process (default): the gateway and the peers run as local processes;
                        container: the gateway runs as a container (l7mp/gateway:local,
                        built first, or --gateway-image) and the peers too
                        (l7mp/peers:local), unless --local-peers
  --gateway-cmd CMD     the gateway under test, any that reads l7mp configs and serves
                        l7mp's REST API: a command with {config}, the generated config
                        file's path. Process mode: run by /bin/sh -c (default
                        'node dist/gateway/src/main.js -c {config}'); container mode:
                        the container's command (default '-c {config}')
  --gateway-image IMAGE the gateway image under test (implies --mode container and
                        --local-peers; never built or pulled by the suite)
  --local-peers         container mode: run the echo peers as local processes
  --tcp-fastpath on|off start the gateway with its raw TCP/Unix stream path on, or off
                        (L7MP_TCP_FASTPATH=off), and check on every pair with a TCP or
                        UnixDomainSocket side that the sessions took that path (default:
                        this build, as L7MP_TCP_FASTPATH says; not checked with
                        --gateway-cmd or --gateway-image unless given)
  --compiled off        start this build's gateway with L7MP_COMPILED=off: no compiled
                        listeners, every TCP/Unix stream connection decided in JavaScript
  --out DIR             write report.md, report.html, junit.xml and report.json into DIR
                        (default: conformance/ of this tree)
  --concurrency N       pairs run at the same time (default 2)
  --no-report           write no report files
`;

async function main(): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({
      options: {
        only: { type: 'string' },
        mode: { type: 'string' },
        'gateway-cmd': { type: 'string' },
        'gateway-image': { type: 'string' },
        'local-peers': { type: 'boolean' },
        'tcp-fastpath': { type: 'string' },
        compiled: { type: 'string' },
        out: { type: 'string' },
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
  const image = values['gateway-image'];
  const mode = values.mode ?? (image !== undefined ? 'container' : 'process');
  if (mode !== 'process' && mode !== 'container') {
    process.stderr.write(`conformance: --mode must be process or container, got "${mode}"\n${USAGE}`);
    return 2;
  }
  const fastpath = values['tcp-fastpath'];
  if (fastpath !== undefined && fastpath !== 'on' && fastpath !== 'off') {
    process.stderr.write(`conformance: --tcp-fastpath must be on or off, got "${fastpath}"\n${USAGE}`);
    return 2;
  }
  const compiled = values.compiled;
  if (compiled !== undefined && compiled !== 'off') {
    process.stderr.write(`conformance: --compiled takes only "off", got "${compiled}"\n${USAGE}`);
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
      ...(values['gateway-cmd'] !== undefined ? { gatewayCmd: values['gateway-cmd'] } : {}),
      ...(image !== undefined ? { gatewayImage: image } : {}),
      ...(fastpath !== undefined ? { tcpFastpath: fastpath } : {}),
      ...(compiled !== undefined ? { compiled } : {}),
      // Someone else's image comes without our peers image: the peers run here.
      ...(values['local-peers'] !== undefined || image !== undefined ? { localPeers: values['local-peers'] ?? true } : {}),
      progress: (line) => process.stderr.write(`${line}\n`),
    });
  } catch (err) {
    if (err instanceof DriverUnavailableError) {
      process.stderr.write(`conformance: ${err.message}\n`);
      return 2;
    }
    if (/^--(only|gateway-cmd)/.test((err as Error).message)) {
      process.stderr.write(`conformance: ${(err as Error).message}\n`);
      return 2;
    }
    throw err;
  }
  if (!values['no-report']) {
    const files = values.out !== undefined ? writeReports(result, values.out) : writeReports(result);
    process.stderr.write(`wrote ${files.markdown}, ${files.html}, ${files.junit} and ${files.json}\n`);
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
