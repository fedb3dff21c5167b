// The bench reports' target lines (bench/lib/report.ts, report-workers.ts):
// issue 16 and 17 are judged from them, so the per-round ratios must pair
// the figures of one round, leave out a round that lacks a target, and count
// the rounds on the line's right side. Synthetic runs, no proxies.

import test from 'ava';
import { matrixWorkloads, wkey } from '../../../bench/lib/matrix.js';
import { goals17, goalLine, type RunRecord } from '../../../bench/lib/report.js';
import { matrixGoals, matrixMarkdown } from '../../../bench/lib/report-workers.js';
import { T, tcpConnrate, type Workload } from '../../../bench/lib/workloads.js';

const run = (round: number, workload: string, target: string, value: number): RunRecord => ({
  round, order: 0, workload, target, sample: { value, proxyCpu: 1, loadCpu: 0.5, machineCpu: 1.5, echoCpu: 0 },
});

test('issue 17 lines: the ratio of medians, and per round the gateway over nginx of that round; a round without nginx is left out', (t) => {
  const w: Workload = { ...tcpConnrate, targets: [T('gateway', 'tcp'), T('nginx', 'tcp')] };
  // Medians 10 and 10 (1.00×); per round 0.80, 1.25, 1.00; round 4 has no nginx.
  const runs = [
    run(1, w.id, 'gateway', 8), run(1, w.id, 'nginx', 10),
    run(2, w.id, 'gateway', 10), run(2, w.id, 'nginx', 8),
    run(3, w.id, 'gateway', 12), run(3, w.id, 'nginx', 12),
    run(4, w.id, 'gateway', 99),
  ];
  const g = goals17([w], runs).find((x) => x.text.startsWith('TCP connection rate'))!;
  t.deepEqual(g.rounds, [0.8, 1.25, 1]);
  t.is(goalLine(g), `- ${g.text}: ${g.value.toFixed(2)}× — met; per round 0.80–1.25× (2 of 3 ≥ 1.00)`);
});

test('worker matrix lines: scaling per round divides the gateway\'s N ÷ 1 by nginx\'s N ÷ 1 of the same round', (t) => {
  const ws = matrixWorkloads([1, 2], 16);
  const id = 'tcp-connrate';
  const fig: Record<string, number[]> = {
    // round 1: gateway 2 ÷ 1 = 1.0, nginx 2 ÷ 1 = 1.0 -> 1.00; round 2: 1.2 ÷ 1.5 = 0.80
    [wkey('gateway', 1)]: [10, 10], [wkey('gateway', 2)]: [10, 12],
    [wkey('nginx', 1)]: [10, 10], [wkey('nginx', 2)]: [10, 15],
  };
  const runs = Object.entries(fig).flatMap(([k, vs]) => vs.map((v, i) => run(i + 1, id, k, v)));
  const line = matrixGoals(ws, runs, [1, 2]).find((l) => l.startsWith(`- ${id}`))!;
  t.true(line.endsWith('; per round 0.80–1.00× (1 of 2 ≥ 0.90)'), line);
  // The floor table appears only where bare ran.
  t.false(matrixMarkdown(ws, runs, [1, 2], { machine: {}, setup: [], command: 'x' }).includes('## The floor under JavaScript'));
  const withBare = [...runs, run(1, id, wkey('bare', 1), 20), run(1, id, wkey('bare', 2), 20)];
  const md = matrixMarkdown(ws, withBare, [1, 2], { machine: {}, setup: [], command: 'x' });
  // 2 workers: gateway 11 (median of 10, 12), bare 20, nginx 12.5: bare ÷ nginx 1.60, gateway ÷ bare 0.55, bare 2 ÷ 1 1.00.
  t.regex(md, /\| tcp-connrate \| connections\/s \| 2 \| 11 \| 20 \| [\d.,]+ \| 1\.60× \| 0\.55× \| 1\.00× \|/);
});
