// config/admin.ts: the admin section parsed once, against the spec's schema,
// into typed settings per consumer. No sockets: parsing only.

import test from 'ava';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseAdmin, parseAdminUpdate, parseProbeListener } from '../../src/config/admin.js';
import { parseLogLevel } from '../../src/config/log-level.js';
import { GatewayError } from '../../src/core/errors.js';
import { DEFAULT_LIMITS } from '../../src/core/admission.js';
import { DEFAULT_EDGE_LIMITS } from '../../src/core/limits.js';

const NO_ENV = {};

test('defaults: an absent admin section gives exactly the settings the gateway has always run with', (t) => {
  const a = parseAdmin(undefined, { env: NO_ENV });
  t.false(a.strict);
  t.is(a.log.level, 'info');
  t.is(a.log.file, undefined);
  t.deepEqual(a.api, { token: undefined, tokenSource: undefined });
  t.deepEqual(a.probes, { enabled: true, address: '127.0.0.1', port: 8080, path: '/metrics', explicit: false });
  t.is(a.stdioForkCommands, undefined);
  t.is(a.fileRoot, undefined);
  t.is(a.accessLogPath, undefined);
  t.deepEqual(a.admission, {
    maxSessions: 100_000, listenerMaxSessions: 50_000, flowRate: 1000, flowBurst: 2000, flowSources: 65_536, fdReserve: undefined,
  });
  t.deepEqual(a.admission, DEFAULT_LIMITS);
  t.deepEqual(a.edge, {
    jsonsocket_header_bytes: 16 * 1024, jsonsocket_header_depth: 16, message_buffer_bytes: 1024 ** 3, yaml_body_bytes: 16 * 1024, yaml_aliases: 100,
  });
  t.deepEqual(a.edge, DEFAULT_EDGE_LIMITS);
  t.is(a.maxBodyBytes, undefined);
  t.is(a.drainTimeout, 10_000);
  t.deepEqual(a.offload, { mode: 'disable', ifs: 'all' });
  t.false(a.managed);
  t.deepEqual(parseAdmin(null, { env: NO_ENV }), a, 'admin: null is an absent section');
  t.deepEqual(parseAdmin({}, { env: NO_ENV }), a);
});

test('defaults derived from other settings: flow_burst and api_burst follow their rates', (t) => {
  t.is(parseAdmin({ limits: { flow_rate: 5000 } }, { env: NO_ENV }).admission.flowBurst, 5000);
  t.is(parseAdmin({ limits: { flow_rate: 10 } }, { env: NO_ENV }).admission.flowBurst, 2000);
  t.deepEqual(parseAdmin({ limits: { api_rate: 0.5, api_burst: 2 } }, { env: NO_ENV }).api, { token: undefined, tokenSource: undefined, rate: 0.5, burst: 2 });
});

test('every setting given is carried into its consumer\'s settings', (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'l7mp-admin-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const a = parseAdmin({
    log_level: 'warn', log_file: path.join(dir, 'gw.log'), log_format: 'text', access_log_path: path.join(dir, 'access.log'),
    metrics: { address: '::1', port: 0, path: '/prom' }, stdio_fork: { commands: [['/bin/cat'], '/usr/bin/tr a-z A-Z'] },
    file_root: dir, api_token: 'secret', drain_timeout: 0, managed: true, strict: true, offload: 'no_init', offload_ifs: 'lo, eth0',
    limits: { max_sessions: 10, listener_max_sessions: 5, flow_rate: 0, fd_reserve: 0, max_body_bytes: 1000, yaml_aliases: 7 },
  }, { env: NO_ENV });
  t.true(a.strict);
  t.deepEqual(a.log, { level: 'warn', file: path.join(dir, 'gw.log'), format: 'text' });
  t.is(a.accessLogPath, path.join(dir, 'access.log'));
  t.deepEqual(a.probes, { enabled: false, address: '::1', port: 0, path: '/prom', explicit: true }, 'port 0 turns it off');
  t.deepEqual(a.stdioForkCommands, [['/bin/cat'], ['/usr/bin/tr', 'a-z', 'A-Z']]);
  t.is(a.fileRoot, fs.realpathSync(dir));
  t.deepEqual(a.api, { token: 'secret', tokenSource: 'admin.api_token' });
  t.is(a.drainTimeout, 0);
  t.true(a.managed);
  t.deepEqual(a.offload, { mode: 'no_init', ifs: ['lo', 'eth0'] });
  t.deepEqual(a.admission, { ...DEFAULT_LIMITS, maxSessions: 10, listenerMaxSessions: 5, flowRate: 0, fdReserve: 0 });
  t.is(a.maxBodyBytes, 1000);
  t.deepEqual(a.edge, { ...DEFAULT_EDGE_LIMITS, yaml_aliases: 7 });
});

test('the command line and the environment override the admin section', (t) => {
  const a = parseAdmin({ log_level: 'warn', offload: 'init', api_token: 'from-config', log_format: 'text' },
    { logLevel: 'error', strict: true, offload: { offload: 'disable' }, env: { L7MP_API_TOKEN: 'from-env', L7MP_LOG_FORMAT: 'json' } });
  t.is(a.log.level, 'error');
  t.true(a.strict);
  t.is(a.offload.mode, 'disable');
  t.deepEqual(a.api, { token: 'from-env', tokenSource: 'L7MP_API_TOKEN' });
  t.is(a.log.format, 'json');
});

test('an empty YAML value (null) leaves these settings unset, as it always did', (t) => {
  const a = parseAdmin({ log_level: null, metrics: null, stdio_fork: null, file_root: null, offload_ifs: null }, { env: NO_ENV });
  t.deepEqual(a, parseAdmin({}, { env: NO_ENV }));
});

/** One bad value per settings group: the error is INVALID_INPUT, names the field, and says what it must be. */
const BAD: Array<[string, unknown, string, RegExp]> = [
  ['admin', 'verbose', 'admin', /must be an object/],
  ['log', { log_level: 'chatty' }, 'admin.log_level', /unknown log level "chatty"; one of silly, verbose, info/],
  ['log', { log_level: 3 }, 'admin.log_level', /unknown log level "3"/],
  ['log', { log_file: 3 }, 'admin.log_file', /must be stdout, stderr or a file path/],
  ['log', { log_format: 'yaml' }, 'admin.log_format', /must be json or text, got "yaml"/],
  ['access log', { access_log_path: ['a'] }, 'admin.access_log_path', /must be a file path/],
  ['api', { api_token: 'has space' }, 'admin.api_token', /visible ASCII/],
  ['api', { api_token: 42 }, 'admin.api_token', /must be a string/],
  ['api', { api_token: 'a', api_token_file: '/x' }, 'admin.api_token', /either api_token or api_token_file/],
  ['api', { api_token_file: '/nonexistent/l7mp-token' }, 'admin.api_token_file', /cannot read/],
  ['api', { limits: { api_rate: -1 } }, 'admin.limits.api_rate', /must be a number >= 0/],
  ['api', { limits: { api_burst: 'many' } }, 'admin.limits.api_burst', /must be a number >= 1/],
  ['probes', { metrics: { port: 70000 } }, 'admin.metrics.port', /integer port number 0\.\.65535/],
  ['probes', { metrics: { prot: 1 } }, 'admin.metrics.prot', /unknown field; known: enabled, address, port, path/],
  ['probes', { metrics: true }, 'admin.metrics', /must be an object \{enabled, address, port, path\} or false/],
  ['probes', { metrics: 'on' }, 'admin.metrics', /must be an object \{enabled, address, port, path\} or false/],
  ['probes', { metrics: { path: '/ready' } }, 'admin.metrics.path', /taken by the health checks/],
  ['probes', { metrics: { enabled: 'yes' } }, 'admin.metrics.enabled', /must be true or false/],
  ['stdio_fork', { stdio_fork: {} }, 'admin.stdio_fork.commands', /must be a list of commands/],
  ['stdio_fork', { stdio_fork: { commands: [3] } }, 'admin.stdio_fork.commands[0]', /must be a command/],
  ['stdio_fork', { stdio_fork: { commands: [['/bin/cat'], ['/bin/echo', 1]] } }, 'admin.stdio_fork.commands[1]', /must be a command: a string or an array of strings/],
  ['stdio_fork', { stdio_fork: { commands: [[]] } }, 'admin.stdio_fork.commands[0]', /non-empty command of strings/],
  ['file_root', { file_root: 'relative/dir' }, 'admin.file_root', /absolute path of a directory/],
  ['file_root', { file_root: '/nonexistent/l7mp-root' }, 'admin.file_root', /cannot resolve/],
  ['admission', { limits: { max_sessions: 0 } }, 'admin.limits.max_sessions', /must be a positive integer/],
  ['admission', { limits: { flow_rate: 'fast' } }, 'admin.limits.flow_rate', /must be a number >= 0/],
  ['admission', { limits: { fd_reserve: -1 } }, 'admin.limits.fd_reserve', /must be an integer >= 0/],
  ['edge', { limits: { yaml_aliases: 1.5 } }, 'admin.limits.yaml_aliases', /must be a positive integer/],
  ['body', { limits: { max_body_bytes: 0 } }, 'admin.limits.max_body_bytes', /must be a positive integer/],
  ['limits', { limits: [] }, 'admin.limits', /must be an object/],
  ['drain', { drain_timeout: -1 }, 'admin.drain_timeout', /integer number of milliseconds between 0 and 3600000/],
  ['offload', { offload: 'sometimes' }, 'admin.offload', /init, no_init, disable or a boolean/],
  ['offload', { offload_ifs: [3] }, 'admin.offload_ifs', /list of interface names/],
  ['offload', { offload_ifs: 'eth0,bad/name' }, 'admin.offload_ifs', /"bad\/name" is not an interface name/],
  ['managed', { managed: 'yes' }, 'admin.managed', /must be a boolean/],
  ['strict', { strict: 'yes' }, 'admin.strict', /must be a boolean/],
];

for (const [group, admin, field, message] of BAD) {
  test(`a bad ${group} setting names ${field}: ${JSON.stringify(admin)}`, (t) => {
    const err = t.throws(() => parseAdmin(admin, { env: NO_ENV }), { instanceOf: GatewayError });
    t.is(err!.code, 'INVALID_INPUT');
    t.is(err!.field, field);
    t.true(err!.message.startsWith(`${field}: `), err!.message);
    t.regex(err!.message, message);
  });
}

test('strict mode refuses unknown admin keys, nested ones too; without it they pass', (t) => {
  const admin = { log_levle: 'info', limits: { max_sesions: 5 } };
  const err = t.throws(() => parseAdmin(admin, { strict: true, env: NO_ENV }), { instanceOf: GatewayError });
  t.is(err!.field, 'admin.log_levle');
  t.regex(err!.message, /unknown admin settings admin\.log_levle, admin\.limits\.max_sesions \(strict mode\); the admin settings are log_level, /);
  t.throws(() => parseAdmin({ ...admin, strict: true }, { env: NO_ENV }), { message: /strict mode/ }, 'admin.strict: true is strict mode too');
  t.notThrows(() => parseAdmin(admin, { env: NO_ENV }));
});

test('log_level is checked by one function: -l, admin.log_level and applyAdmin say the same', (t) => {
  const cli = t.throws(() => parseLogLevel('chatty', '-l'));
  const file = t.throws(() => parseAdmin({ log_level: 'chatty' }, { env: NO_ENV }));
  const rest = t.throws(() => parseAdminUpdate({ log_level: 'chatty' }, { offload: false }));
  const reason = (e: Error | undefined) => e!.message.replace(/^[^:]+: /, '');
  t.is(reason(file), reason(cli));
  t.is(reason(rest), reason(cli));
  t.is(parseLogLevel('silent', '-l'), 'silent');
  // -l wins: the file's level is not looked at again.
  t.is(parseAdmin({ log_level: 'warn' }, { logLevel: 'error', env: NO_ENV }).log.level, 'error');
});

test('applyAdmin: what may change at run time, what is static, what is fixed at start', (t) => {
  const current = { offload: false, offload_ifs: undefined };
  t.deepEqual(parseAdminUpdate({ log_level: 'warn', strict: true, generation: 'g-1', version: 'x' }, current), { log_level: 'warn', strict: true, generation: 'g-1' });
  t.deepEqual(parseAdminUpdate({ offload: false }, current), {}, 'repeating the current offload is fine');
  for (const k of ['api_token', 'api_token_file', 'limits', 'managed', 'file_root', 'drain_timeout']) {
    const err = t.throws(() => parseAdminUpdate({ [k]: 1 }, current), { instanceOf: GatewayError });
    t.is(err!.code, 'FORBIDDEN', k);
    t.is(err!.field, `admin.${k}`);
  }
  t.is(t.throws(() => parseAdminUpdate({ offload: true }, current), { instanceOf: GatewayError })!.code, 'NOT_SUPPORTED');
  t.is(t.throws(() => parseAdminUpdate({ log_file: '/x' }, current), { instanceOf: GatewayError })!.code, 'NOT_SUPPORTED');
  t.is(t.throws(() => parseAdminUpdate({ colour: 'red' }, current), { instanceOf: GatewayError })!.field, 'admin.colour');
  t.is(t.throws(() => parseAdminUpdate({ generation: 'has space' }, current), { instanceOf: GatewayError })!.field, 'admin.generation');
});

test('the probe listener settings alone (for a gateway assembled by hand)', (t) => {
  t.deepEqual(parseProbeListener({ port: 9000 }), { enabled: true, address: '127.0.0.1', port: 9000, path: '/metrics', explicit: true });
  t.deepEqual(parseProbeListener(false), { enabled: false, address: '127.0.0.1', port: 8080, path: '/metrics', explicit: true });
});

test('admin.workers: 1 by default, "auto" is one per core; a worker enforces its share of the gateway-wide limits', (t) => {
  t.is(parseAdmin({}).workers, 1);
  t.is(parseAdmin({ workers: 3 }).workers, 3);
  t.is(parseAdmin({ workers: 'auto' }).workers, os.availableParallelism());
  t.is(parseAdmin({}, { workers: 2 }).workers, 2);
  t.throws(() => parseAdmin({ workers: 0 }), { instanceOf: GatewayError });
  const whole = parseAdmin({ limits: { max_sessions: 1001, flow_rate: 300, flow_burst: 601, listener_max_sessions: 40 } }).admission;
  const share = parseAdmin({ limits: { max_sessions: 1001, flow_rate: 300, flow_burst: 601, listener_max_sessions: 40 } }, { limitShares: 2 }).admission;
  t.deepEqual(
    { maxSessions: share.maxSessions, flowRate: share.flowRate, flowBurst: share.flowBurst, listenerMaxSessions: share.listenerMaxSessions },
    { maxSessions: 501, flowRate: 150, flowBurst: 301, listenerMaxSessions: whole.listenerMaxSessions },
    'max_sessions and a source\'s flow rate are split (rounded up); a listener cap holds in each worker that runs it',
  );
  const defaults = parseAdmin({}, { limitShares: 4 }).admission;
  t.is(defaults.maxSessions, Math.ceil(DEFAULT_LIMITS.maxSessions / 4));
  t.is(defaults.flowRate, DEFAULT_LIMITS.flowRate / 4);
});
