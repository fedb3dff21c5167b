// STDIO-fork: a cluster that runs a program per session and talks to it over
// its stdin and stdout (a byte stream).
//
// It runs programs, so it is off unless the static config file enables it:
//
//   admin:
//     stdio_fork:
//       commands:                  # the allow-list; argv must match one entry exactly
//         - ["/usr/bin/cat"]
//         - "/usr/local/bin/filter --strict"   # a string is split at whitespace
//
// and a REST call can never add a STDIO-fork cluster (the protocol is
// staticOnly, checked by the gateway before anything else). The program runs
// without a shell, in a process group of its own: ending the session kills the
// whole group (SIGTERM, then SIGKILL after a grace period), so neither the
// program nor what it started outlives the session; Node reaps the child.

import { spawn, type ChildProcess } from 'node:child_process';
import { StreamPairChannel } from '../../dataplane/streampair.js';
import { GatewayError, invalid } from '../../core/errors.js';
import type { ClusterContext, ClusterImpl, ConnectRequest, ProtocolDef, Spec } from '../types.js';

/** How long a program may take to exit after SIGTERM before the group gets SIGKILL. */
export const FORK_KILL_GRACE_MS = 2000;

/** A command as argv: an array of strings, or a string split at whitespace (a cluster's cmd, an admin.stdio_fork.commands entry). */
export function argvOf(v: unknown, field: string): string[] {
  let argv: unknown[];
  if (typeof v === 'string') argv = v.trim().split(/\s+/);
  else if (Array.isArray(v)) argv = v;
  else throw invalid(field, 'must be a command: a string or an array of strings');
  if (argv.length === 0 || argv.some((a) => typeof a !== 'string' || a.includes('\0')) || argv[0] === '') {
    throw invalid(field, 'must be a non-empty command of strings');
  }
  return argv as string[];
}

function sameArgv(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

/**
 * Signal a child's process group. The group id is the child's pid (setsid);
 * Linux does not hand that pid out again while the group has members, so this
 * stays safe after the leader itself has exited and been reaped.
 */
function signalGroup(pid: number, s: NodeJS.Signals): void {
  try { process.kill(-pid, s); } catch { /* the group is gone */ }
}

/** Kill a child's whole process group: politely (SIGTERM, SIGKILL after a grace period) or at once. */
function killGroup(child: ChildProcess, hard: boolean): void {
  const pid = child.pid;
  if (pid === undefined) return;
  if (hard || child.exitCode !== null || child.signalCode !== null) {
    signalGroup(pid, 'SIGKILL');
    return;
  }
  signalGroup(pid, 'SIGTERM');
  const t = setTimeout(() => signalGroup(pid, 'SIGKILL'), FORK_KILL_GRACE_MS);
  t.unref();
  child.once('exit', () => {
    clearTimeout(t);
    signalGroup(pid, 'SIGKILL'); // whatever the program left running in its group
  });
}

/** The channel of one forked program; closing it kills the program's process group. */
export class ForkChannel extends StreamPairChannel {
  constructor(readonly child: ChildProcess, peer: string) {
    super(child.stdout!, child.stdin!, peer);
    child.once('exit', () => {
      // The program is gone; its stdout may still hold data, which flows on to EOF.
      killGroup(child, true);
    });
  }

  protected override doClose(err: Error | undefined): void {
    killGroup(this.child, err !== undefined && (err as { graceful?: boolean }).graceful !== true);
    super.doClose(err);
  }
}

class StdioForkCluster implements ClusterImpl {
  private readonly children = new Set<ChildProcess>();

  constructor(private readonly argv: readonly string[], private readonly ctx: ClusterContext) {}

  connect(req: ConnectRequest): Promise<ForkChannel> {
    return new Promise((resolve, reject) => {
      const [cmd, ...args] = this.argv;
      // detached: setsid(), so the program leads a process group of its own that
      // can be killed as one, and it has no controlling terminal of ours.
      const child = spawn(cmd!, args, { stdio: ['pipe', 'pipe', 'ignore'], detached: true });
      const onError = (err: Error): void => {
        reject(new GatewayError('CONNECT_FAILED', `STDIO-fork ${this.argv.join(' ')}: ${err.message}`, undefined, { cause: err }));
      };
      child.once('error', onError);
      child.once('spawn', () => {
        child.off('error', onError);
        child.on('error', (err) => this.ctx.log.warn({ cluster: this.ctx.clusterName, err: err.message }, 'STDIO-fork child error'));
        this.children.add(child);
        child.once('exit', () => this.children.delete(child));
        this.ctx.log.verbose({ cluster: this.ctx.clusterName, pid: child.pid, session: req.session.name }, 'STDIO-fork started');
        resolve(new ForkChannel(child, `pid ${child.pid}: ${this.argv.join(' ')}`));
      });
    });
  }

  /** The cluster is deleted: no program of it may survive. */
  close(): void {
    for (const c of this.children) killGroup(c, true);
  }
}

export const stdioForkProtocol: ProtocolDef = {
  name: 'STDIO-fork',
  kind: 'byte',
  summary: 'a program run per session, over its stdin/stdout; static config only, with an allow-list (admin.stdio_fork.commands)',
  staticOnly: 'runs programs',
  cluster: {
    virtual: true,
    retriable: false,
    create(spec: Spec, ctx, field) {
      const argv = argvOf(spec.cmd, `${field}.cmd`);
      const allowed = ctx.services.stdioForkCommands?.();
      if (allowed === undefined || allowed.length === 0) {
        throw new GatewayError('FORBIDDEN', `${field}.protocol: STDIO-fork is disabled; the static config's admin.stdio_fork.commands must list the programs it may run`, `${field}.protocol`);
      }
      if (!allowed.some((a) => sameArgv(a, argv))) {
        throw new GatewayError('FORBIDDEN', `${field}.cmd: ${JSON.stringify(argv)} is not in admin.stdio_fork.commands`, `${field}.cmd`);
      }
      return new StdioForkCluster(argv, ctx);
    },
  },
};
