// How deep a JSON-like value nests, measured without recursion: the values
// measured here come from clients and may be nested far deeper than the
// stack allows (a recursive walk, JSON.stringify, structuredClone overflow).

/** Whether `value` nests deeper than `max` levels (a scalar is depth 0, `{}` and `[]` are 1). */
export function exceedsDepth(value: unknown, max: number): boolean {
  const stack: Array<[unknown, number]> = [[value, 1]];
  while (stack.length > 0) {
    const [v, depth] = stack.pop()!;
    if (typeof v !== 'object' || v === null) continue;
    if (depth > max) return true;
    for (const child of Array.isArray(v) ? v : Object.values(v)) {
      if (typeof child === 'object' && child !== null) stack.push([child, depth + 1]);
    }
  }
  return false;
}
