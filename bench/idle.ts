/**
 * Idle: the CPU one multicast consumer spends in 10 s on a bus nobody
 * publishes to, at the default 0.1 s poll interval (issue 20: at most
 * 5 ms), against the C anchor `mcast`, which blocks in read(2) on its
 * inotify descriptor and so spends nothing. CPU is every thread's exact
 * run time (/proc/PID/task/TID/schedstat), taken once the consumer went
 * idle after its start-up.
 */
import path from 'node:path';
import { filebus } from './harness/commands.js';
import { type Context, roundsOf } from './harness/context.js';
import { alternate, summarize, waitIdle } from './harness/measure.js';
import { type Child, cpuNs, sleep, start, stopAll } from '../test/support/processes.js';
import { type PartResult, emptyResult, target } from './harness/report.js';

const WINDOW_S = 10;

export async function idle(ctx: Context): Promise<PartResult> {
  const result = emptyResult();
  const rounds = roundsOf(ctx, 2);
  const seconds = ctx.quick ? 2 : WINDOW_S;
  const { anchors } = ctx.anchors as { anchors?: { mcast: string } };
  let id = 0;
  const run = (consumer: 'filebus' | string) => async (): Promise<number> => {
    const args = ['--filename', path.join(ctx.dir, `idle-${id++}`), 'consumer'];
    const child: Child = consumer === 'filebus' ? filebus(args) : start(consumer, args);
    try {
      await waitIdle([child.pid]);
      await sleep(500);
      const before = cpuNs(child.pid);
      await sleep(seconds * 1000);
      const after = cpuNs(child.pid);
      if (child.exit || before === undefined || after === undefined) return NaN;
      return ((after - before) / 1e6) * (WINDOW_S / seconds);
    } finally {
      await stopAll([child]);
    }
  };
  const cases: Record<string, () => Promise<number>> = { filebus: run('filebus') };
  if (anchors) cases.C = run(anchors.mcast);
  const runs = await alternate(rounds, cases, (name, ms) => ctx.log(`  idle ${name}: ${ms.toFixed(1)} ms CPU per ${WINDOW_S} s`));
  result.checks.push({ name: 'idle: the filebus consumer stayed up', ok: runs.filebus!.every(Number.isFinite) });
  result.figures.push({
    name: `CPU of one idle multicast consumer per ${WINDOW_S} s (0.1 s poll interval)`,
    unit: 'ms',
    value: summarize(runs.filebus!),
    yardstick: { name: 'C mcast', value: runs.C ? summarize(runs.C) : undefined },
    target: target.atMost(5, 'ms'),
    issue: 20,
    note: anchors ? undefined : 'no C anchor',
  });
  result.notes.push(`idle: ${seconds} s windows${seconds === WINDOW_S ? '' : ` scaled to ${WINDOW_S} s`}, ${rounds} alternating rounds; CPU from schedstat of every thread. The C anchor never polls; a C program that polls every 0.1 s spends ~10 ms per 10 s on this kind of loaded machine (docs/benchmarks.md, issue 20).`);
  return result;
}
