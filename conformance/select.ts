// --only: which pairs of the matrix to run. A comma-separated list of
// LISTENER:CLUSTER patterns, matched case-insensitively against each cell's
// key (a transform column by its label, e.g. UDP:JSONEncap+JSONDecap); `*`
// stands for any run of characters and `?` for one: `UDP:*`, `*:WebSocket`,
// `TCP:UDP,HTTP:*`. Every pattern must match some pair, so that a typo fails
// loudly instead of running nothing.

import { cellKey, type Cell } from './matrix.js';

export interface PairPattern {
  readonly text: string;
  readonly re: RegExp;
}

function globToRegExp(glob: string): RegExp {
  const body = glob.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.');
  return new RegExp(`^${body}$`, 'i');
}

/** Parse an --only value; throws (message starting with "--only") on a malformed pattern. */
export function parseOnly(spec: string): PairPattern[] {
  const parts = spec.split(',').map((p) => p.trim()).filter((p) => p !== '');
  if (parts.length === 0) throw new Error('--only needs at least one LISTENER:CLUSTER pattern');
  return parts.map((text) => {
    const sides = text.split(':');
    if (sides.length !== 2 || sides[0] === '' || sides[1] === '') {
      throw new Error(`--only ${text}: a pattern is LISTENER:CLUSTER (each side a name or a glob with * and ?), e.g. UDP:TCP, UDP:*, *:WebSocket`);
    }
    return { text, re: globToRegExp(text) };
  });
}

/** Whether a LISTENER:CLUSTER key matches any of the patterns. */
export function matchesAny(patterns: readonly PairPattern[], key: string): boolean {
  return patterns.some((p) => p.re.test(key));
}

/**
 * The cells an --only value selects, in matrix order. Cells that are not
 * pairs (a transform column on a row other than its base pairs) are never
 * selected, so that `*:Echo` does not list every row. Throws naming a pattern
 * that selects nothing.
 */
export function selectCells(cells: readonly Cell[], spec: string): Cell[] {
  const patterns = parseOnly(spec);
  const pairs = cells.filter((c) => c.type !== 'na');
  for (const p of patterns) {
    if (pairs.some((c) => p.re.test(cellKey(c)))) continue;
    const na = cells.find((c) => c.type === 'na' && p.re.test(cellKey(c)));
    if (na !== undefined && na.type === 'na') throw new Error(`--only ${p.text}: not a pair: ${na.reason}`);
    const examples = cells.filter((c) => c.type === 'run').slice(0, 3).map(cellKey).join(', ');
    throw new Error(`--only ${p.text}: no such pair; pairs are LISTENER:CLUSTER, e.g. ${examples}`);
  }
  return pairs.filter((c) => matchesAny(patterns, cellKey(c)));
}
