// Reads a V8 .cpuprofile (node --cpu-prof) and ranks functions by self time
// and by inclusive time, so a profile can be read in a terminal. For a flame
// graph, open the same file in Chrome DevTools (Performance → Load profile)
// or https://www.speedscope.app.

import fs from 'node:fs';

interface Node {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}
interface Profile { nodes: Node[]; samples: number[]; timeDeltas: number[] }

export interface Ranked { name: string; share: number }

function label(n: Node): string {
  const cf = n.callFrame;
  const file = cf.url ? cf.url.split('/').slice(-2).join('/') : '';
  return `${cf.functionName || '(anonymous)'}${file ? ` ${file}:${cf.lineNumber + 1}` : ''}`;
}

export function rank(file: string, top: number): { self: Ranked[]; inclusive: Ranked[]; seconds: number } {
  const p = JSON.parse(fs.readFileSync(file, 'utf8')) as Profile;
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const self = new Map<string, number>();
  const incl = new Map<string, number>();
  let total = 0;
  for (let i = 0; i < p.samples.length; i++) {
    const dt = p.timeDeltas[i] ?? 0;
    total += dt;
    const leaf = byId.get(p.samples[i]!)!;
    const k = label(leaf);
    self.set(k, (self.get(k) ?? 0) + dt);
    // Inclusive: each function once per sample, however deep it recurses.
    const seen = new Set<string>();
    for (let id: number | undefined = leaf.id; id !== undefined; id = parent.get(id)) {
      const l = label(byId.get(id)!);
      if (seen.has(l)) continue;
      seen.add(l);
      incl.set(l, (incl.get(l) ?? 0) + dt);
    }
  }
  const out = (m: Map<string, number>) => [...m].sort((a, b) => b[1] - a[1]).slice(0, top).map(([name, t]) => ({ name, share: t / total }));
  return { self: out(self), inclusive: out(incl), seconds: total / 1e6 };
}
