/**
 * Neighbour bus: the CPU a consumer of bus F spends for each chunk
 * published to another bus G in the same directory (issue 20: at most
 * 5 us, or README advises a directory per bus). inotify watches the whole
 * directory and cannot filter by name in the kernel, so every rename onto
 * G wakes F's consumer, which reads the event and goes back to sleep.
 * Lines go to G's producer at 250/s (4 ms apart, longer than its 2 ms
 * hold: one chunk each); F's consumer's CPU over that stretch, less its
 * CPU over an equal idle stretch just before (its own polling), divided by
 * the lines. The yardstick is the C anchor `mcast` in F's consumer's
 * place: it too wakes for G's renames.
 */
import path from 'node:path';
import { filebus } from './harness/commands.js';
import { type Context, roundsOf } from './harness/context.js';
import { alternate, now, summarize, waitIdle } from './harness/measure.js';
import { type Child, cpuNs, sleep, start, stopAll } from '../test/support/processes.js';
import { type PartResult, emptyResult, target } from './harness/report.js';

const RATE = 250;

export async function neighbour(ctx: Context): Promise<PartResult> {
  const result = emptyResult();
  const rounds = roundsOf(ctx, 3);
  const seconds = ctx.quick ? 1 : 2 * ctx.options.seconds;
  const lines = Math.round(RATE * seconds);
  const { anchors } = ctx.anchors as { anchors?: { mcast: string } };
  let id = 0;
  const run = (consumer: 'filebus' | string) => async (): Promise<number> => {
    const n = id++;
    const args = ['--filename', path.join(ctx.dir, `neighbour-f-${n}`), 'consumer'];
    const child: Child = consumer === 'filebus' ? filebus(args) : start(consumer, args);
    const producer = filebus(['--filename', path.join(ctx.dir, `neighbour-g-${n}`), 'producer'], { stdin: 'pipe', stdout: 'ignore' });
    try {
      await waitIdle([child.pid, producer.pid]);
      const t0 = cpuNs(child.pid);
      await sleep(seconds * 1000);
      const t1 = cpuNs(child.pid);
      const begin = now();
      for (let i = 0; i < lines; ) {
        if (now() >= begin + (i * 1000) / RATE) producer.stdin!.write(`${i++}\n`);
        else await sleep(1);
      }
      await sleep(Math.max(0, begin + seconds * 1000 - now()));
      const t2 = cpuNs(child.pid);
      if (child.exit || producer.exit || t0 === undefined || t1 === undefined || t2 === undefined) return NaN;
      return (t2 - t1 - (t1 - t0)) / 1000 / lines;
    } finally {
      producer.stdin?.end();
      await stopAll([child, producer]);
    }
  };
  const cases: Record<string, () => Promise<number>> = { filebus: run('filebus') };
  if (anchors) cases.C = run(anchors.mcast);
  const runs = await alternate(rounds, cases, (name, us) => ctx.log(`  neighbour ${name}: ${us.toFixed(1)} us per chunk of G`));
  result.checks.push({ name: 'neighbour bus: the consumer of F and the producer of G stayed up', ok: runs.filebus!.every(Number.isFinite) });
  result.figures.push({
    name: `a consumer's CPU per chunk of another bus in its directory (${RATE} chunks/s)`,
    unit: 'us',
    value: summarize(runs.filebus!),
    yardstick: { name: 'C mcast', value: runs.C ? summarize(runs.C) : undefined },
    target: target.atMost(5, 'us'),
    issue: 20,
    note: anchors ? undefined : 'no C anchor',
  });
  return result;
}
