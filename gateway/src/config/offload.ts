// admin.offload / admin.offload_ifs (static config) and the CLI's -o / -i,
// read the l7mp way: offload is a mode (init, no_init, disable; a boolean is
// taken as init/disable), offload_ifs a list of interface names, a comma
// separated string (l7mp's README wrote it so; l7mp itself then iterated over
// the characters), or "all"/empty for every interface with an IPv4 address.

import { invalid } from '../core/errors.js';

export type OffloadMode = 'init' | 'no_init' | 'disable';

export interface OffloadConfig {
  mode: OffloadMode;
  /** Interface names, or 'all'. */
  ifs: string[] | 'all';
}

export interface OffloadCli {
  offload?: string;
  offloadIfs?: string;
}

function mode(v: unknown, field: string): OffloadMode {
  if (v === undefined || v === false || v === 'disable') return 'disable';
  if (v === true || v === 'init') return 'init';
  if (v === 'no_init') return 'no_init';
  throw invalid(field, 'must be init, no_init, disable or a boolean');
}

function ifs(v: unknown, field: string): string[] | 'all' {
  if (v === undefined || v === null || v === 'all') return 'all';
  const list = typeof v === 'string' ? v.split(',') : v;
  if (!Array.isArray(list) || list.some((x) => typeof x !== 'string')) {
    throw invalid(field, 'must be a list of interface names, a comma separated string, or "all"');
  }
  const names = (list as string[]).map((x) => x.trim()).filter((x) => x.length > 0);
  if (names.length === 0 || names.includes('all')) return 'all';
  for (const n of names) if (!/^[^\s/]{1,15}$/.test(n)) throw invalid(field, `"${n}" is not an interface name`);
  return names;
}

/** The CLI wins over the static config, as in l7mp. */
export function parseOffloadConfig(admin: { readonly offload?: unknown; readonly offload_ifs?: unknown }, cli: OffloadCli = {}): OffloadConfig {
  return {
    mode: cli.offload !== undefined ? mode(cli.offload, '-o') : mode(admin.offload, 'admin.offload'),
    ifs: cli.offloadIfs !== undefined ? ifs(cli.offloadIfs, '-i') : ifs(admin.offload_ifs, 'admin.offload_ifs'),
  };
}
