/**
 * The missed-chunk reporter of the command line (src/cli/missed.ts): one
 * line at once, then at most one a second with the gaps added up. The
 * first test runs on the real clock; the rest on vitest's fake one
 * (setTimeout and performance.now), with a fake write that records when.
 */
import { afterEach, beforeEach, describe, expect, test, vi } from 'vitest';
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

describe('with a fake clock (setTimeout and performance.now)', () => {
  beforeEach(() => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'performance'] });
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  /** A reporter whose lines are collected with the fake time they were written at. */
  function reporter(): { reporter: MissedReporter; lines: Array<[number, string]> } {
    const lines: Array<[number, string]> = [];
    const start = performance.now();
    return { reporter: new MissedReporter((line) => lines.push([performance.now() - start, line])), lines };
  }

  test('one chunk is "1 chunk (seq N)", a range is "N chunks (seq A-B)"', () => {
    const { reporter: r, lines } = reporter();
    r.add({ first: 7, last: 7, count: 1 });
    vi.advanceTimersByTime(1000);
    r.add({ first: 9, last: 11, count: 3 });
    expect(lines).toEqual([
      [0, 'filebus: missed 1 chunk (seq 7)\n'],
      [1000, 'filebus: missed 3 chunks (seq 9-11)\n'],
    ]);
  });

  test('gaps within the second after a line are held, then written as one line at the second, added up', () => {
    const { reporter: r, lines } = reporter();
    r.add({ first: 1, last: 2, count: 2 });
    vi.advanceTimersByTime(100);
    r.add({ first: 5, last: 5, count: 1 });
    vi.advanceTimersByTime(500);
    r.add({ first: 8, last: 10, count: 3 });
    expect(lines).toHaveLength(1);
    vi.advanceTimersByTime(399);
    expect(lines).toHaveLength(1);
    vi.advanceTimersByTime(1);
    expect(lines).toEqual([
      [0, 'filebus: missed 2 chunks (seq 1-2)\n'],
      [1000, 'filebus: missed 4 chunks in 2 gaps (seq 5-10)\n'],
    ]);
    // Nothing pending: the timer does not write an empty line later.
    vi.advanceTimersByTime(5000);
    expect(lines).toHaveLength(2);
  });

  test('a steady stream of gaps gives at most one line a second, and no gap is lost from the count', () => {
    const { reporter: r, lines } = reporter();
    let missed = 0;
    for (let i = 0; i < 50; i++) {
      r.add({ first: 100 * i, last: 100 * i + 9, count: 10 });
      missed += 10;
      vi.advanceTimersByTime(100);
    }
    r.flush();
    const times = lines.map(([at]) => at);
    for (let i = 1; i < times.length; i++) expect(times[i]! - times[i - 1]!).toBeGreaterThanOrEqual(1000);
    expect(lines.length).toBeLessThanOrEqual(6);
    const counted = lines.map(([, line]) => Number(/missed (\d+) chunk/.exec(line)![1])).reduce((a, b) => a + b, 0);
    expect(counted).toBe(missed);
  });

  test('flush writes what is pending at once and cancels the timer; with nothing pending it writes nothing', () => {
    const { reporter: r, lines } = reporter();
    r.flush();
    expect(lines).toEqual([]);
    r.add({ first: 1, last: 1, count: 1 });
    r.add({ first: 3, last: 3, count: 1 });
    vi.advanceTimersByTime(10);
    r.flush();
    expect(lines.map(([, line]) => line)).toEqual(['filebus: missed 1 chunk (seq 1)\n', 'filebus: missed 1 chunk (seq 3)\n']);
    vi.advanceTimersByTime(5000);
    expect(lines).toHaveLength(2);
  });

  test('one timer serves everything pending in the second', () => {
    const { reporter: r } = reporter();
    r.add({ first: 1, last: 1, count: 1 });
    r.add({ first: 2, last: 2, count: 1 });
    expect(vi.getTimerCount()).toBe(1);
    const spy = vi.spyOn(globalThis, 'setTimeout');
    r.add({ first: 3, last: 3, count: 1 });
    expect(spy).not.toHaveBeenCalled(); // one timer for all that is pending
    spy.mockRestore();
  });
});
