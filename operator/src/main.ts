#!/usr/bin/env node
// The operator's entry point: `node dist/operator/src/main.js [--namespace NS]`.
// Settings come from flags or the environment (the chart sets the latter):
//   --namespace / L7MP_OPERATOR_NAMESPACE      watch one namespace (default: all)
//   --token-file / L7MP_API_TOKEN_FILE         bearer token for the gateways' REST API
//   --controller-port / L7MP_CONTROLLER_PORT   default REST port (pod annotation l7mp.io/controller-port wins)
//   --container / L7MP_GATEWAY_CONTAINER       gateway container name (default l7mp)
//   --resync-seconds / L7MP_RESYNC_SECONDS     full resync period (default 30)
//   --log-level / L7MP_LOG_LEVEL               info by default
//   --health-port / L7MP_HEALTH_PORT           /healthz and /readyz for the kubelet (default 8081; 0: off)

import fs from 'node:fs';
import { parseArgs } from 'node:util';
import { createLogger, isLevelName } from '../../gateway/src/observe/log.js';
import { startHealthServer } from './health.js';
import { ClientNodeKubeApi } from './kube/client-node.js';
import { Operator } from './operator.js';

const { values } = parseArgs({
  options: {
    namespace: { type: 'string' },
    'token-file': { type: 'string' },
    'controller-port': { type: 'string' },
    container: { type: 'string' },
    'resync-seconds': { type: 'string' },
    'log-level': { type: 'string' },
    'health-port': { type: 'string' },
    help: { type: 'boolean', short: 'h' },
  },
});
if (values.help) {
  process.stdout.write('usage: l7mp-operator [--namespace NS] [--token-file FILE] [--controller-port N] [--container NAME] [--resync-seconds N] [--log-level LEVEL] [--health-port N]\n');
  process.exit(0);
}
const env = process.env;
const level = values['log-level'] ?? env.L7MP_LOG_LEVEL ?? 'info';
if (!isLevelName(level)) {
  process.stderr.write(`unknown log level ${level}\n`);
  process.exit(2);
}
const log = createLogger(level);
const tokenFile = values['token-file'] ?? env.L7MP_API_TOKEN_FILE;
const token = env.L7MP_API_TOKEN ?? (tokenFile ? fs.readFileSync(tokenFile, 'utf8').trim() : undefined);
const namespace = values.namespace ?? env.L7MP_OPERATOR_NAMESPACE;

const op = new Operator({
  kube: ClientNodeKubeApi.fromDefault(),
  ...(namespace ? { namespace } : {}),
  ...(token ? { token } : {}),
  controllerPort: Number(values['controller-port'] ?? env.L7MP_CONTROLLER_PORT ?? 1234),
  containerName: values.container ?? env.L7MP_GATEWAY_CONTAINER ?? 'l7mp',
  resyncMs: 1000 * Number(values['resync-seconds'] ?? env.L7MP_RESYNC_SECONDS ?? 30),
  log,
});
for (const sig of ['SIGTERM', 'SIGINT'] as const) {
  process.once(sig, () => {
    log.info({ signal: sig }, 'stopping');
    op.stop();
    process.exit(0);
  });
}
const healthPort = Number(values['health-port'] ?? env.L7MP_HEALTH_PORT ?? 8081);
if (healthPort > 0) await startHealthServer(op, healthPort);
await op.start();
log.info({ namespace: namespace ?? '(all)' }, 'l7mp operator started');
