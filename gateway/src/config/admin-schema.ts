// The admin section checked against the spec's Admin schema (generated from
// openapi/l7mp.yaml by `npm run gen`), so that the types and ranges of every
// setting are written once, in the spec. A failure names the field and says
// what it must be in the words the gateway has always used for it (tests and
// operators' scripts match on them); the schema's own wording ("must be
// integer") is the fallback for a field without one.

import type { Static } from 'typebox';
import { Value } from 'typebox/value';
import { Admin, AdminLimits } from '../api/generated/schemas.js';
import { invalid, type GatewayError } from '../core/errors.js';
import { unknownLevel } from './log-level.js';

/** The admin section once it matched the schema. */
export type AdminInput = Static<typeof Admin>;

type Message = string | ((value: unknown) => string);

interface SchemaNode {
  readonly type?: string;
  readonly minimum?: number;
  readonly properties?: Record<string, SchemaNode>;
  readonly anyOf?: readonly SchemaNode[];
}

/** admin.limits.*: every limit is a number with a lower bound, said the way the gateway always said it. */
function limitMessage(s: SchemaNode): string {
  if (s.type === 'integer') return s.minimum === 1 ? 'must be a positive integer' : `must be an integer >= ${s.minimum ?? 0}`;
  return `must be a number >= ${s.minimum ?? 0}`;
}

const METRICS_FIELDS = Object.keys((Admin.properties.metrics as unknown as SchemaNode).anyOf?.find((s) => s.properties)?.properties ?? {});

/** Keyed by field, with `[]` for any array index. */
const MESSAGES: Record<string, Message> = {
  'admin': 'must be an object',
  'admin.log_level': unknownLevel,
  'admin.log_file': 'must be stdout, stderr or a file path',
  'admin.log_format': (v) => `must be json or text, got ${JSON.stringify(v)}`,
  'admin.access_log_path': 'must be a file path',
  'admin.metrics': 'must be an object {enabled, address, port, path} or false',
  'admin.metrics.enabled': 'must be true or false',
  'admin.metrics.address': 'must be an IP address or host name',
  'admin.metrics.port': 'must be an integer port number 0..65535 (0 disables the admin listener)',
  'admin.metrics.path': 'must be a URL path starting with "/"',
  'admin.stdio_fork': 'must be an object with a commands list',
  'admin.stdio_fork.commands': 'must be a list of commands',
  'admin.stdio_fork.commands[]': 'must be a command: a string or an array of strings',
  'admin.file_root': 'must be the absolute path of a directory',
  'admin.strict': 'must be a boolean',
  'admin.offload': 'must be init, no_init, disable or a boolean',
  'admin.offload_ifs': 'must be a list of interface names, a comma separated string, or "all"',
  'admin.api_token': 'must be a string',
  'admin.api_token_file': 'must be a file path',
  'admin.limits': 'must be an object',
  ...Object.fromEntries(Object.entries(AdminLimits.properties).map(([k, s]) => [`admin.limits.${k}`, limitMessage(s as unknown as SchemaNode)])),
  'admin.drain_timeout': 'must be an integer number of milliseconds between 0 and 3600000',
  'admin.managed': 'must be a boolean',
  'admin.generation': 'must be a string of 1 to 256 visible characters',
  'admin.version': 'must be a string',
};

function at(value: unknown, parts: readonly string[]): unknown {
  let v = value;
  for (const p of parts) v = typeof v === 'object' && v !== null ? (v as Record<string, unknown>)[p] : undefined;
  return v;
}

function fieldOf(parts: readonly string[]): string {
  return parts.reduce((f, p) => (/^\d+$/.test(p) ? `${f}[${p}]` : `${f}.${p}`), 'admin');
}

/**
 * The error for the schema violation at `instancePath` (a JSON pointer into
 * the admin section), named after the most precise field that has words of
 * its own: a bad entry of offload_ifs is a bad admin.offload_ifs.
 */
function errorAt(admin: unknown, instancePath: string, keyword: string, fallback: string): GatewayError {
  const parts = instancePath.split('/').slice(1);
  // A key the closed metrics section does not have (`schema is false` under additionalProperties: false).
  if (keyword === 'boolean' && parts[0] === 'metrics' && parts.length === 2) {
    return invalid(fieldOf(parts), `unknown field; known: ${METRICS_FIELDS.join(', ')}`);
  }
  for (let n = parts.length; n >= 1; n--) {
    const m = MESSAGES[fieldOf(parts.slice(0, n)).replace(/\[\d+\]/g, '[]')];
    if (m !== undefined) return invalid(fieldOf(parts.slice(0, n)), typeof m === 'string' ? m : m(at(admin, parts.slice(0, n))));
  }
  return invalid(fieldOf(parts), parts.length === 0 ? MESSAGES.admin as string : fallback);
}

/** Throws invalid(field) for the deepest violation, the one that names the most precise field. */
export function checkAdminSchema(admin: unknown): asserts admin is AdminInput {
  if (Value.Check(Admin, admin)) return;
  let best: { instancePath: string; keyword: string; message: string } | undefined;
  for (const e of Value.Errors(Admin, admin)) if (best === undefined || e.instancePath.length > best.instancePath.length) best = e;
  throw errorAt(admin, best?.instancePath ?? '', best?.keyword ?? '', best?.message ?? 'does not match the schema');
}
