/**
 * Multicast fan-out: one filebus producer, N consumers, lines at a steady
 * rate (see harness/multicast.ts for how a run goes).
 *
 * - 1 and 10 consumers at 100 lines/s: latency p50 and p99, every line;
 * - 10 consumers at 1,000 lines/s: the worst consumer's share of the lines;
 * - 50 consumers at 100 lines/s;
 * - issue 11: 10 consumers at 1,000 lines/s with --history 3000, and the
 *   producer's chunk rate with and without --history.
 *
 * The yardstick is the same run with the C anchor `mcast` as every consumer
 * (still fed by the filebus producer), alternating with filebus round by
 * round.
 */
import fs from 'node:fs';
import path from 'node:path';
import { filebus } from './harness/commands.js';
import { type Context, roundsOf } from './harness/context.js';
import { randomFile } from './harness/data.js';
import { alternate, median, now, summarize } from './harness/measure.js';
import { type MulticastCase, type MulticastRun, runMulticast } from './harness/multicast.js';
import { describeExit, stopAll, within } from '../test/support/processes.js';
import { type Figure, type PartResult, emptyResult, target } from './harness/report.js';

const HISTORY = ['--history', '3000'];

export async function fanout(ctx: Context): Promise<PartResult> {
  const result = emptyResult();
  const rounds = roundsOf(ctx, 5);
  const { anchors } = ctx.anchors as { anchors?: { mcast: string } };
  const noC = anchors ? undefined : 'no C anchor';
  let id = 0;

  /** Runs `consumers` at `rate` with filebus consumers, C consumers (when built) and any extra filebus variants, alternating. */
  const compare = async (consumers: number, rate: number, variants: Record<string, string[]> = {}, times = rounds) => {
    const base = (consumer: MulticastCase['consumer'], flags: string[] = []) => async () => {
      try {
        return await runMulticast({ dir: ctx.dir, name: `mcast-${id++}`, consumers, consumer, producerFlags: flags, rate, seconds: ctx.options.seconds });
      } catch (error) {
        return failedRun((error as Error).message);
      }
    };
    const cases: Record<string, () => Promise<MulticastRun>> = { filebus: base('filebus') };
    if (anchors) cases.C = base({ mcast: anchors.mcast });
    for (const [name, flags] of Object.entries(variants)) cases[name] = base('filebus', flags);
    const label = `${consumers} consumer${consumers > 1 ? 's' : ''} at ${rate} lines/s`;
    const runs = await alternate(times, cases, (name, r) =>
      ctx.log(`  ${label}, ${name}: p50 ${r.p50.toFixed(2)} ms, p99 ${r.p99.toFixed(2)} ms, worst got ${(r.worst * 100).toFixed(1)} %${r.problems.length ? ` PROBLEMS: ${r.problems.join('; ')}` : ''}`),
    );
    for (const [name, list] of Object.entries(runs)) {
      const problems = list.flatMap((r, i) => r.problems.map((p) => `run ${i + 1}: ${p}`));
      // The C anchor is a yardstick: what it gets wrong is worth a note, not a failure of filebus.
      if (name === 'C') {
        if (problems.length) result.notes.push(`fan-out ${label}, C mcast (yardstick, not checked): ${problems.join('; ')}`);
      } else result.checks.push({ name: `fan-out ${label}, ${name}: no line twice or garbled, no process died`, ok: problems.length === 0, detail: problems.join('; ') || undefined });
    }
    return { label, runs };
  };
  const stat = (list: MulticastRun[] | undefined, pick: (r: MulticastRun) => number) => (list ? summarize(list.map(pick)) : undefined);
  const p50 = (r: MulticastRun) => r.p50;
  const p99 = (r: MulticastRun) => r.p99;
  const worst = (r: MulticastRun) => r.worst * 100;
  const push = (f: Figure) => result.figures.push(f);

  for (const n of [1, 10]) {
    const { label, runs } = await compare(n, 100);
    push({ name: `${label}: latency p50`, unit: 'ms', value: stat(runs.filebus, p50), yardstick: { name: 'C mcast', value: stat(runs.C, p50) }, target: n === 10 ? target.ratioAtMost(1.5) : target.none(), issue: 12, note: noC });
    push({ name: `${label}: latency p99`, unit: 'ms', value: stat(runs.filebus, p99), yardstick: { name: 'C mcast', value: stat(runs.C, p99) }, target: target.atMost(5, 'ms'), issue: 12 });
    push({ name: `${label}: worst consumer got`, unit: '%', value: stat(runs.filebus, worst), yardstick: { name: 'C mcast', value: stat(runs.C, worst) }, target: target.atLeast(100, '%'), issue: 12 });
  }

  const history = ctx.features.history;
  const fast = await compare(10, 1000, history.ok ? { '--history 3000': HISTORY } : {});
  push({ name: `${fast.label}: worst consumer got`, unit: '%', value: stat(fast.runs.filebus, worst), yardstick: { name: 'C mcast', value: stat(fast.runs.C, worst) }, target: target.atLeast(99.5, '%'), issue: 12 });
  push({
    name: `${fast.label}, --history 3000: worst consumer got`,
    unit: '%',
    value: stat(fast.runs['--history 3000'], worst),
    yardstick: { name: 'without history', value: stat(fast.runs.filebus, worst) },
    target: target.atLeast(100, '%'),
    issue: 11,
    note: history.ok ? undefined : history.reason,
  });
  const cost = history.ok ? await historyCost(ctx, rounds) : undefined;
  push({
    name: 'multicast producer chunk rate, 4 KiB, --history 3000',
    unit: 'chunks/s',
    value: cost?.with,
    yardstick: { name: 'without history', value: cost?.without },
    target: target.ratioAtLeast(0.8),
    issue: 11,
    note: history.ok ? undefined : history.reason,
  });

  // Fifty Node consumers take seconds to start on two cores: one round.
  const crowd = await compare(50, 100, {}, 1);
  push({ name: `${crowd.label}: latency p50`, unit: 'ms', value: stat(crowd.runs.filebus, p50), yardstick: { name: 'C mcast', value: stat(crowd.runs.C, p50) }, target: target.ratioAtMost(2), issue: 20, note: noC });
  push({ name: `${crowd.label}: worst consumer got`, unit: '%', value: stat(crowd.runs.filebus, worst), yardstick: { name: 'C mcast', value: stat(crowd.runs.C, worst) }, target: target.atLeast(100, '%'), issue: 20, note: noC });

  result.notes.push(
    `fan-out: ${ctx.options.seconds} s of lines per run, ${rounds} alternating rounds of filebus consumers${anchors ? ' and C `mcast` consumers' : ''} (the producer is filebus in both); latency from the bench writing a line into the producer's stdin to the line coming out of a consumer's stdout; every process idle before the timed phase.`,
  );
  return result;
}

function failedRun(problem: string): MulticastRun {
  return { lines: 0, achievedRate: NaN, p50: NaN, p99: NaN, max: NaN, delivered: [], worst: NaN, cpuPerChunkUs: [], problems: [problem] };
}

/**
 * A multicast producer alone, reading a file of 4 KiB blocks as fast as it
 * can publish them, with and without --history; start-up taken out with
 * runs on empty input.
 */
async function historyCost(ctx: Context, rounds: number): Promise<{ with: ReturnType<typeof summarize>; without: ReturnType<typeof summarize> }> {
  const input = randomFile(path.join(ctx.dir, 'history-input.bin'), ctx.quick ? 2 * 1024 * 1024 : 32 * 1024 * 1024);
  const empty = randomFile(path.join(ctx.dir, 'history-empty.bin'), 0);
  const chunks = input.bytes / 4096;
  let id = 0;
  const produce = (file: string, flags: string[]) => async (): Promise<number> => {
    const bus = path.join(ctx.dir, `history-${id++}`);
    const fd = fs.openSync(file, 'r');
    const t0 = now();
    const producer = filebus(['--block-size', '4096', '--filename', bus, 'producer', ...flags], { stdin: fd, stdout: 'ignore' });
    fs.closeSync(fd);
    try {
      const exit = await within(producer.done, 120_000, 'history producer');
      if (exit.code !== 0) throw new Error(`producer ${describeExit(producer, exit)}`);
      return (now() - t0) / 1000;
    } finally {
      await stopAll([producer]);
      for (const f of fs.readdirSync(ctx.dir)) if (f.startsWith(path.basename(bus))) fs.rmSync(path.join(ctx.dir, f), { recursive: true, force: true });
    }
  };
  const runs = await alternate(rounds, {
    without: produce(input.file, []),
    with: produce(input.file, HISTORY),
    'without, empty': produce(empty.file, []),
    'with, empty': produce(empty.file, HISTORY),
  });
  const rate = (list: number[], emptyList: number[]) => summarize(list.map((s) => chunks / Math.max(0, s - median(emptyList))));
  return { with: rate(runs.with, runs['with, empty']), without: rate(runs.without, runs['without, empty']) };
}
