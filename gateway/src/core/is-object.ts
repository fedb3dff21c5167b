// The one test for "a plain JSON object" that config parsing, validation and
// protocols share, so they agree on what an object is (arrays and null are not).

/** A plain JSON object (not an array, not null): what a spec, a header or a recipe entry must be. */
export function isObject(x: unknown): x is Record<string, unknown> {
  return typeof x === 'object' && x !== null && !Array.isArray(x);
}
