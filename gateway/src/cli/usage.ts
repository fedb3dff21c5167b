// The l7mp command's help text: flags, subcommands and every environment
// variable the gateway reads, one line each (kept as data so that a test can
// check the list against the sources).

import { LEVEL_NAMES } from '../observe/log.js';
import { DEFAULT_HEALTH_URL, HEALTH_URL_ENV } from './health.js';

/** Every L7MP_* variable the gateway process reads, with what it does. */
export const ENVIRONMENT: ReadonlyArray<readonly [name: string, what: string]> = [
  ['L7MP_API_TOKEN', 'bearer token for the REST API; wins over admin.api_token(_file)'],
  [HEALTH_URL_ENV, `the URL \`l7mp health\` asks (default ${DEFAULT_HEALTH_URL})`],
  ['L7MP_NATIVE', '"off": do not load the native sockets addon (UNIX/dgram, seqpacket, PIPE, ...)'],
  ['L7MP_UDP_BATCH', '"off": no recvmmsg/sendmmsg batching for UDP'],
  ['L7MP_TCP_FASTPATH', '"off": TCP and Unix stream sessions on net.Socket, not the raw socket path'],
  ['L7MP_COMPILED', '"off": no compiled listeners; every stream connection is decided in JavaScript'],
  ['L7MP_UDP_COMPILED', '"off": no compiled UDP listeners; every UDP flow is a session in JavaScript'],
  ['L7MP_BUSY_POLL_US', 'how long the native addon\'s reactor polls before it sleeps while traffic is dense (default 30, 0: never)'],
  ['L7MP_REACTOR_WAIT', '"off": the native addon\'s reactor never waits in its own epoll set; libuv makes every wait'],
  ['L7MP_SPLICE', '"off": no splice(2) handover for bulk TCP/stream sessions on net.Socket'],
  ['L7MP_SPLICE_AFTER', 'bytes a stream session carries before it is spliced (default 262144)'],
  ['L7MP_BPF_ADDON', 'path of the kernel offload addon (default: next to dist/)'],
  ['L7MP_BPF_OBJECT', 'path of the tc-bpf offload object (default: next to dist/)'],
  ['L7MP_WORKER_INDEX', 'set by the gateway in its data-plane workers (-w); never by hand'],
  ['L7MP_WORKER_COUNT', 'set by the gateway in its data-plane workers (-w); never by hand'],
  ['L7MP_OFFLOAD_MAP_FD', 'set by the gateway in its data-plane workers (-w, offload); never by hand'],
  ['L7MP_OFFLOAD_OWNER', 'set by the gateway in its data-plane workers (-w, offload); never by hand'],
  ['L7MP_REUSEPORT_BPF', '"off": no SO_REUSEPORT flow selector; UDP flows follow the kernel\'s spreading (-w)'],
  ['L7MP_REUSEPORT_OBJECT', 'path of the reuseport flow selector object (default: next to dist/)'],
  ['L7MP_SCTP_KERNEL_STANDIN', '"tcp": test stand-in for kernel SCTP; never in production'],
];

export const USAGE = `Usage: l7mp [-c CONFIG] [-l LEVEL] [-s] [-o MODE] [-i IFS] [-w N]
       l7mp health [--url URL]
       l7mp --version | --help

  -c, --config FILE     static configuration; YAML when the name ends in .yaml
                        or .yml, JSON otherwise. Without it the built-in default
                        config runs: the REST controller on 127.0.0.1:1234.
  -l, --log-level LEVEL ${LEVEL_NAMES.join(', ')} (overrides admin.log_level)
  -s, --strict          also refuse unknown admin keys and routes to clusters
                        that do not exist (the schema check runs always)
  -o, --offload MODE    kernel offload: init, no_init or disable
  -i, --offload-ifs IFS comma-separated interfaces for the offload, or "all"
  -w, --workers N       data-plane worker processes, or "auto" (one per core);
                        overrides admin.workers (default 1)
  -v, --version         print the version and exit
  -h, --help            show this help

  health [--url URL]    ask a running gateway's /ready on the admin listener;
                        exit 0 when ready, 1 otherwise (for container health
                        checks). URL: --url, else $${HEALTH_URL_ENV}, else
                        ${DEFAULT_HEALTH_URL}

Environment:
${ENVIRONMENT.map(([n, w]) => `  ${n.padEnd(25)} ${w}`).join('\n')}
`;
