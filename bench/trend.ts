/**
 * RSS trend: a multicast producer reading /dev/zero as fast as it can
 * publish 4 KiB chunks and one consumer writing them to /dev/null, for a
 * minute (issue 20: at most 80 MiB, flat). Resident memory (VmRSS) is
 * sampled every 5 s; the figure is the last sample, against the sample at
 * half time as yardstick (a ratio near 1 is flat).
 */
import fs from 'node:fs';
import path from 'node:path';
import { filebus } from './harness/commands.js';
import type { Context } from './harness/context.js';
import { summarize } from './harness/measure.js';
import { memoryKiB, sleep, stopAll } from '../test/support/processes.js';
import { type PartResult, emptyResult, target } from './harness/report.js';

export async function trend(ctx: Context): Promise<PartResult> {
  const result = emptyResult();
  const seconds = ctx.quick ? 4 : 60;
  const step = ctx.quick ? 1 : 5;
  const bus = path.join(ctx.dir, 'trend');
  const zero = fs.openSync('/dev/zero', 'r');
  const devNull = fs.openSync('/dev/null', 'w');
  const consumer = filebus(['--filename', bus, 'consumer'], { stdout: devNull });
  const producer = filebus(['--filename', bus, 'producer'], { stdin: zero, stdout: 'ignore' });
  fs.closeSync(zero);
  fs.closeSync(devNull);
  const samples: Array<{ t: number; producer: number; consumer: number }> = [];
  try {
    for (let t = step; t <= seconds; t += step) {
      await sleep(step * 1000);
      const p = memoryKiB(producer.pid);
      const c = memoryKiB(consumer.pid);
      if (!p || !c) break;
      samples.push({ t, producer: p.rss / 1024, consumer: c.rss / 1024 });
    }
  } finally {
    await stopAll([producer, consumer]);
  }
  const complete = samples.length === Math.floor(seconds / step);
  result.checks.push({ name: `RSS trend: producer and consumer ran ${seconds} s at full speed`, ok: complete, detail: complete ? undefined : `${producer.stderrText()} ${consumer.stderrText()}`.trim() });
  const half = samples.find((s) => s.t >= seconds / 2);
  const last = samples.at(-1);
  for (const who of ['producer', 'consumer'] as const) {
    result.figures.push({
      name: `RSS after ${seconds} s at full speed (4 KiB chunks), multicast ${who}`,
      unit: 'MiB',
      value: last ? summarize([last[who]]) : undefined,
      yardstick: { name: `itself at ${seconds / 2} s`, value: half ? summarize([half[who]]) : undefined },
      target: target.atMost(80, 'MiB'),
      issue: 20,
    });
  }
  result.notes.push(`RSS trend (MiB, producer/consumer, every ${step} s): ${samples.map((s) => `${s.producer.toFixed(0)}/${s.consumer.toFixed(0)}`).join(' ')}`);
  return result;
}
