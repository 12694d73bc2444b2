/** The missed-chunk reporter of the command line (src/cli/missed.ts). */
import { expect, test } from 'vitest';
import { until } from '../helpers.js';
import { MissedReporter } from '../../src/cli/missed.js';

test('missed-chunk lines: the first at once, then at most one a second adding up the gaps, and what is pending on exit', async () => {
  const lines: Array<{ line: string; at: number }> = [];
  const reporter = new MissedReporter((line) => lines.push({ line, at: performance.now() }));
  const start = performance.now();
  reporter.add({ first: 10, last: 19, count: 10 });
  expect(lines.map((l) => l.line)).toEqual(['filebus: missed 10 chunks (seq 10-19)\n']);
  reporter.add({ first: 30, last: 34, count: 5 });
  reporter.add({ first: 50, last: 50, count: 1 });
  expect(lines.length).toBe(1);
  await until(() => lines.length === 2, 3000, 'the second line');
  expect(lines[1]!.line).toBe('filebus: missed 6 chunks in 2 gaps (seq 30-50)\n');
  expect(lines[1]!.at - start).toBeGreaterThanOrEqual(990);
  reporter.add({ first: 60, last: 60, count: 1 });
  reporter.flush(); // the process is about to exit: nothing is held back
  expect(lines.map((l) => l.line).slice(2)).toEqual(['filebus: missed 1 chunk (seq 60)\n']);
});
