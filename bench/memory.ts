/**
 * Memory: peak RSS (VmHWM) of a lossless producer and consumer over a long
 * stream at 1 MiB blocks (1 GiB by default; --memory-size). The bench feeds
 * the producer's stdin from a repeated 16 MiB random pattern and compares
 * the consumer's output with it byte for byte as it arrives, so nothing is
 * stored and no hash slows the stream. The yardstick is the same stream
 * through `node -e "process.stdin.pipe(process.stdout)"`: Node's own floor
 * for a streaming process.
 */
import { randomFillSync } from 'node:crypto';
import path from 'node:path';
import { filebus, start } from './harness/commands.js';
import type { Context } from './harness/context.js';
import { summarize } from './harness/measure.js';
import { type Child, describeExit, memoryKiB, stopAll, within } from '../test/support/processes.js';
import { type PartResult, emptyResult, target } from './harness/report.js';

const MiB = 1024 * 1024;

interface Stream {
  /** Peak RSS of each process, KiB. */
  peakKiB: number[];
  seconds: number;
  problem?: string;
}

export async function memory(ctx: Context): Promise<PartResult> {
  const result = emptyResult();
  const bytes = ctx.options.memoryBytes;
  const pattern = randomFillSync(Buffer.allocUnsafe(Math.min(16 * MiB, bytes)));
  const args = ['--block-size', String(MiB), '--back-pressure', '--filename', path.join(ctx.dir, 'memory')];

  const fb = await stream(bytes, pattern, () => {
    const consumer = filebus([...args, 'consumer']);
    const producer = filebus([...args, 'producer'], { stdin: 'pipe', stdout: 'ignore' });
    return { first: producer, last: consumer, all: [producer, consumer] };
  });
  const node = await stream(bytes, pattern, () => {
    const pipe = start(process.execPath, ['-e', 'process.stdin.pipe(process.stdout)'], { stdin: 'pipe' });
    return { first: pipe, last: pipe, all: [pipe] };
  });
  for (const [name, s] of [
    ['filebus', fb],
    ['node pipe', node],
  ] as const) {
    result.checks.push({ name: `memory: ${size(bytes)} through ${name}, output = input`, ok: !s.problem, detail: s.problem });
    ctx.log(`  memory ${name}: peak ${s.peakKiB.map((k) => (k / 1024).toFixed(1)).join(' / ')} MiB, ${s.seconds.toFixed(1)} s`);
  }
  const nodePeak = { name: 'node stdin.pipe(stdout)', value: summarize([node.peakKiB[0]! / 1024]) };
  for (const [i, who] of ['producer', 'consumer'].entries()) {
    result.figures.push({ name: `peak RSS over ${size(bytes)}, ${who}`, unit: 'MiB', value: summarize([fb.peakKiB[i]! / 1024]), yardstick: nodePeak, target: target.atMost(80, 'MiB'), issue: 12 });
  }
  result.notes.push(`memory: ${size(bytes)} at 1 MiB blocks in ${fb.seconds.toFixed(1)} s (${(bytes / 1e6 / fb.seconds).toFixed(0)} MB/s); VmHWM sampled every 100 ms.`);
  return result;
}

/** Feeds `bytes` of the repeated pattern to `first`'s stdin and checks `last`'s stdout against it, sampling every process's peak RSS. */
async function stream(bytes: number, pattern: Buffer, spawnAll: () => { first: Child; last: Child; all: Child[] }): Promise<Stream> {
  const { first, last, all } = spawnAll();
  const peak = all.map(() => NaN);
  const sample = (): void =>
    all.forEach((c, i) => {
      const m = memoryKiB(c.pid);
      if (m) peak[i] = Math.max(Number.isNaN(peak[i]!) ? 0 : peak[i]!, m.peak);
    });
  const sampler = setInterval(sample, 100);
  const t0 = performance.now();
  let received = 0;
  let mismatch: number | undefined;
  last.stdout!.on('data', (data: Buffer) => {
    for (let off = 0; off < data.length && mismatch === undefined; ) {
      const at = (received + off) % pattern.length;
      const n = Math.min(data.length - off, pattern.length - at);
      if (!data.subarray(off, off + n).equals(pattern.subarray(at, at + n))) mismatch = received + off;
      off += n;
    }
    received += data.length;
  });
  try {
    const stdin = first.stdin!;
    const piece = 256 * 1024;
    for (let sent = 0; sent < bytes; ) {
      const at = sent % pattern.length;
      const n = Math.min(piece, bytes - sent, pattern.length - at);
      sent += n;
      if (!stdin.write(pattern.subarray(at, at + n))) {
        await new Promise<void>((resolve, reject) => {
          const onClose = (): void => reject(new Error(`input closed early: ${describeExit(first)}`));
          stdin.once('drain', () => {
            stdin.off('close', onClose);
            resolve();
          });
          stdin.once('close', onClose);
        });
      }
    }
    stdin.end();
    const exits = await within(Promise.all(all.map((c) => c.done)), Math.max(120_000, bytes / 10_000), 'memory stream');
    const seconds = (performance.now() - t0) / 1000;
    const problems = exits.flatMap((e, i) => (e.code === 0 ? [] : [describeExit(all[i]!, e)]));
    if (received !== bytes) problems.push(`got ${received} bytes, sent ${bytes}`);
    if (mismatch !== undefined) problems.push(`output differs from input at byte ${mismatch}`);
    return { peakKiB: peak, seconds, problem: problems.join('; ') || undefined };
  } catch (error) {
    return { peakKiB: peak, seconds: NaN, problem: `${(error as Error).message}; ${received} of ${bytes} bytes arrived` };
  } finally {
    clearInterval(sampler);
    await stopAll(all);
  }
}

const size = (bytes: number): string => (bytes >= 1024 * MiB ? `${bytes / (1024 * MiB)} GiB` : `${bytes / MiB} MiB`);
