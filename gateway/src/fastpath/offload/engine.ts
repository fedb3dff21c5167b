// Puts the tc-bpf program on the configured interfaces and takes it off
// again. Everything that can fail (no addon, no object, no privileges, a
// kernel without the helpers, an interface that does not exist) fails here,
// once, at startup, with a reason; the gateway then runs without offload.

import fs from 'node:fs';
import os from 'node:os';
import type { Logger } from '../../observe/log.js';
import type { OffloadConfig } from '../../config/offload.js';
import { loadBpf, type BpfProgram } from './native.js';

interface Attached {
  name: string;
  ifindex: number;
  /** We created the clsact qdisc, so we remove it again (init mode). */
  created: boolean;
}

/** Every non-internal interface with an IPv4 address ("all"). */
function allInterfaces(): string[] {
  const out: string[] = [];
  for (const [name, addrs] of Object.entries(os.networkInterfaces())) {
    if (addrs?.some((a) => a.family === 'IPv4' && !a.internal)) out.push(name);
  }
  return out.sort();
}

function forwardingFile(ifname: string): string {
  return `/proc/sys/net/ipv4/conf/${ifname}/forwarding`;
}

/** Turn EPERM and friends into something an operator can act on. */
function explain(err: unknown): string {
  const e = err as Error & { errno?: number };
  if (e.errno === 1 || e.errno === 13) {
    return `${e.message.split('\n')[0]} (needs CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON, or CAP_SYS_ADMIN on older kernels: run as root or add the capabilities)`;
  }
  return e.message;
}

export class KernelOffload {
  private constructor(
    readonly program: BpfProgram,
    private readonly attached: Attached[],
    private readonly mode: OffloadConfig['mode'],
    private readonly log: Logger,
  ) {}

  get interfaces(): string[] {
    return this.attached.map((a) => a.name);
  }

  /** Load and attach; a string is the reason it cannot run. */
  static start(cfg: OffloadConfig, log: Logger): KernelOffload | string {
    const loaded = loadBpf();
    if (!loaded.ok) return loaded.reason;
    const names = cfg.ifs === 'all' ? allInterfaces() : cfg.ifs;
    if (names.length === 0) return 'no interface to offload on (offload_ifs is "all" and no interface has an IPv4 address)';
    const targets: Array<{ name: string; ifindex: number }> = [];
    for (const name of names) {
      const ifindex = loaded.addon.ifindex(name);
      if (ifindex === 0) return `offload_ifs: no interface "${name}"`;
      targets.push({ name, ifindex });
    }
    let program: BpfProgram;
    try {
      program = new loaded.addon.Program(loaded.objectPath);
    } catch (err) {
      return explain(err);
    }
    const attached: Attached[] = [];
    const undo = (): void => {
      for (const a of attached) {
        try { program.detach(a.ifindex, a.created); } catch { /* best effort */ }
      }
      program.close();
    };
    for (const t of targets) {
      // bpf_fib_lookup() answers "forwarding disabled" unless the interface
      // the packet came in on forwards. init prepares the host (as l7mp's
      // init did with conf/all); no_init expects it prepared and only warns.
      const fwd = forwardingFile(t.name);
      try {
        if (fs.readFileSync(fwd, 'utf8').trim() !== '1') {
          if (cfg.mode === 'init') fs.writeFileSync(fwd, '1');
          else log.warn({ interface: t.name }, `kernel offload: ${fwd} is 0, so offloaded packets arriving on ${t.name} go to user space`);
        }
      } catch (err) {
        undo();
        return `cannot enable IPv4 forwarding on ${t.name} (${fwd}): ${(err as Error).message}`;
      }
      try {
        const r = program.attach(t.ifindex);
        attached.push({ ...t, created: r.created });
      } catch (err) {
        undo();
        return `cannot attach to ${t.name}: ${explain(err)}`;
      }
    }
    return new KernelOffload(program, attached, cfg.mode, log);
  }

  /** Detach from every interface; the qdisc goes too where init created it. */
  stop(): void {
    for (const a of this.attached.splice(0)) {
      try {
        this.program.detach(a.ifindex, this.mode === 'init' && a.created);
      } catch (err) {
        this.log.warn({ interface: a.name, err: (err as Error).message }, 'kernel offload: detach failed');
      }
    }
    this.program.close();
  }
}
