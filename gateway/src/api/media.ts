// The REST body media types: JSON or YAML, as l7mp accepted them.

export const JSON_TYPES: ReadonlySet<string> = new Set(['application/json', 'application/x-json', 'text/json', 'text/x-json']);
export const YAML_TYPES: ReadonlySet<string> = new Set(['text/yaml', 'text/x-yaml', 'application/yaml', 'application/x-yaml']);

/** The media type of a Content-Type header, lower-cased, without parameters. */
export function mediaType(h: string | string[] | undefined): string {
  const v = Array.isArray(h) ? h[0] : h;
  return (v ?? '').split(';')[0]!.trim().toLowerCase();
}
