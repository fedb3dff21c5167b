// Strict mode (-s) refuses admin settings the spec does not know: a misspelt
// key (`log_levle`) would otherwise be ignored and its setting silently left
// at the default. The known keys are read from the spec's Admin schema (the
// generated typebox schema), never listed here, so a setting added to
// openapi/l7mp.yaml is known once `npm run gen` has run. Nested sections
// (limits, metrics, stdio_fork) are checked the same way, where the schema
// lists their properties.

import { Admin } from '../api/generated/schemas.js';
import { isObject } from '../core/is-object.js';

interface SchemaNode {
  readonly properties?: Record<string, SchemaNode>;
  readonly additionalProperties?: unknown;
  readonly anyOf?: readonly SchemaNode[];
}

/** The schema's object form, if it has one whose properties are listed. */
function objectForm(s: SchemaNode): SchemaNode | undefined {
  if (s.properties !== undefined) return s;
  return s.anyOf?.find((x) => x.properties !== undefined);
}

function walk(schema: SchemaNode, value: Record<string, unknown>, at: string, out: string[]): void {
  const props = schema.properties ?? {};
  for (const [k, v] of Object.entries(value)) {
    const sub = props[k];
    if (sub === undefined) {
      // Sections that declare `additionalProperties: true` take anything.
      if (schema.additionalProperties !== true) out.push(`${at}.${k}`);
      continue;
    }
    const obj = objectForm(sub);
    if (obj !== undefined && isObject(v)) walk(obj, v, `${at}.${k}`, out);
  }
}

/** Every key under `admin` (dotted, e.g. "admin.log_levle", "admin.limits.max_sesions") the spec does not name. */
export function unknownAdminKeys(admin: unknown): string[] {
  const out: string[] = [];
  if (isObject(admin)) walk(Admin as unknown as SchemaNode, admin, 'admin', out);
  return out;
}

/** The admin keys the spec knows, top level (for the error message). */
export function knownAdminKeys(): string[] {
  return Object.keys((Admin as unknown as SchemaNode).properties ?? {});
}
