/**
 * Cost: CPU time per chunk of one multicast consumer, filebus against the
 * C anchor `mcast` (issue 12: at most 3 x C). One consumer on the bus, lines
 * at 250/s: 4 ms apart, longer than the producer's 2 ms hold, so each line
 * is its own chunk. CPU is the consumer's every thread from
 * /proc/PID/task/TID/schedstat (the scheduler's exact run time), read after
 * the consumer went idle and again after the last line; its idle polling
 * in between counts too.
 */
import type { Context } from './harness/context.js';
import { roundsOf } from './harness/context.js';
import { alternate, summarize } from './harness/measure.js';
import { type MulticastRun, runMulticast } from './harness/multicast.js';
import { type PartResult, emptyResult, target } from './harness/report.js';

const RATE = 250;

export async function cost(ctx: Context): Promise<PartResult> {
  const result = emptyResult();
  const rounds = roundsOf(ctx, 3);
  const { anchors } = ctx.anchors as { anchors?: { mcast: string } };
  let id = 0;
  const run = (consumer: 'filebus' | { mcast: string }) => async (): Promise<MulticastRun | string> => {
    try {
      return await runMulticast({ dir: ctx.dir, name: `cost-${id++}`, consumers: 1, consumer, rate: RATE, seconds: ctx.options.seconds, cpu: true });
    } catch (error) {
      return (error as Error).message;
    }
  };
  const cases: Record<string, () => Promise<MulticastRun | string>> = { filebus: run('filebus') };
  if (anchors) cases.C = run({ mcast: anchors.mcast });
  const runs = await alternate(rounds, cases, (name, r) => ctx.log(`  cost ${name}: ${typeof r === 'string' ? `FAILED: ${r}` : `${r.cpuPerChunkUs[0]!.toFixed(1)} us per chunk`}`));
  for (const [name, list] of Object.entries(runs)) {
    const problems = list.flatMap((r, i) => (typeof r === 'string' ? [r] : r.problems).map((p) => `run ${i + 1}: ${p}`));
    // The C anchor is a yardstick: what it gets wrong is worth a note, not a failure of filebus.
    if (name === 'C') {
      if (problems.length) result.notes.push(`cost, C mcast (yardstick, not checked): ${problems.join('; ')}`);
    } else result.checks.push({ name: `cost, ${name} consumer: no line twice or garbled, no process died`, ok: problems.length === 0, detail: problems.join('; ') || undefined });
  }
  const perChunk = (list: Array<MulticastRun | string> | undefined) => (list ? summarize(list.map((r) => (typeof r === 'string' ? NaN : r.cpuPerChunkUs[0]!))) : undefined);
  result.figures.push({
    name: `CPU per chunk, one multicast consumer (${RATE} chunks/s)`,
    unit: 'us',
    value: perChunk(runs.filebus),
    yardstick: { name: 'C mcast', value: perChunk(runs.C) },
    target: target.ratioAtMost(2.5),
    issue: 20,
    note: anchors ? undefined : 'no C anchor',
  });
  return result;
}
