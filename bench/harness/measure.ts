/**
 * Clocks and statistics (what the kernel says about a process, CPU time
 * and memory, is in test/support/processes.ts). Side-by-side pairs run alternately, round by round, so that
 * the drift of a shared machine hits both sides alike.
 */
import { cpuNs, sleep } from '../../test/support/processes.js';

/** Wall clock in ms with sub-ms resolution: one clock for send and arrival times across processes. */
export const now = (): number => performance.timeOrigin + performance.now();

export function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  if (s.length === 0) return NaN;
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

/** Nearest-rank percentile of an ascending array. */
export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!;
}

export interface Sampled {
  median: number;
  min: number;
  max: number;
  /** Every run's value, in run order. */
  runs: number[];
}

export function summarize(runs: readonly number[]): Sampled {
  const ok = runs.filter((x) => Number.isFinite(x));
  return { median: median(ok), min: ok.length ? Math.min(...ok) : NaN, max: ok.length ? Math.max(...ok) : NaN, runs: [...runs] };
}

/**
 * Runs each case once per round, `rounds` times, reversing the order every
 * other round (A B, B A, A B ...) so that neither side always goes first.
 * Returns each case's results in run order.
 */
export async function alternate<K extends string, T>(rounds: number, cases: Record<K, () => Promise<T>>, onRun?: (name: K, result: T, round: number) => void): Promise<Record<K, T[]>> {
  const names = Object.keys(cases) as K[];
  const results = Object.fromEntries(names.map((n) => [n, [] as T[]])) as Record<K, T[]>;
  for (let round = 0; round < rounds; round++) {
    for (const name of round % 2 ? [...names].reverse() : names) {
      const result = await cases[name]();
      results[name].push(result);
      onRun?.(name, result, round);
    }
  }
  return results;
}

/**
 * Waits until every process is idle: less than 3 ms of CPU in the last
 * 150 ms (a waiting filebus consumer only polls). Used instead of a fixed
 * sleep before a timed phase, so that start-up work does not compete with
 * it. Gives up quietly after `timeoutMs`: a busy machine is no error.
 */
export async function waitIdle(pids: readonly number[], timeoutMs = 20_000): Promise<boolean> {
  const windowMs = 150;
  const stepMs = 25;
  const history: Array<Array<number | undefined>> = [];
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    history.push(pids.map(cpuNs));
    const back = history[history.length - 1 - windowMs / stepMs];
    if (back) {
      const latest = history[history.length - 1]!;
      if (pids.every((_, i) => latest[i] === undefined || back[i] === undefined || latest[i]! - back[i]! < 3e6)) return true;
    }
    await sleep(stepMs);
  }
  return false;
}
