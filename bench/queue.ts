/**
 * The work queue: 20,000 records of 64 B, one per chunk (--block-size 64),
 * from one producer through 1 and then 4 lossless consumers. The figure is
 * the records/s of 4 consumers over that of 1 (issue 12: four workers never
 * slower than one).
 *
 * The consumers start first and are left to go idle; then the producer,
 * reading the records from a file, is timed from its spawn to its exit (it
 * exits once its end-of-stream chunk is published, so every record has been
 * taken). A run with empty input, in the same rounds, takes out start-up.
 * Each consumer writes to its own file; afterwards every record must be in
 * exactly one of them, whole.
 */
import { randomFillSync } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { filebus } from './harness/commands.js';
import { type Context, roundsOf } from './harness/context.js';
import { alternate, median, now, summarize, waitIdle } from './harness/measure.js';
import { type Child, describeExit, failureOf, sleep, stopAll, within } from '../test/support/processes.js';
import { type PartResult, emptyResult, target } from './harness/report.js';

const RECORD = 64;

interface QueueRun {
  seconds: number;
  perConsumer: number[];
  problem?: string;
}

export async function queue(ctx: Context): Promise<PartResult> {
  const result = emptyResult();
  const rounds = roundsOf(ctx, 3);
  const records = ctx.options.records;
  // Record i: its number (8 bytes, big-endian) and random filler.
  const data = Buffer.allocUnsafe(records * RECORD);
  randomFillSync(data);
  for (let i = 0; i < records; i++) data.writeBigUInt64BE(BigInt(i), i * RECORD);
  const input = path.join(ctx.dir, 'records.bin');
  fs.writeFileSync(input, data);
  const empty = path.join(ctx.dir, 'records-empty.bin');
  fs.writeFileSync(empty, '');

  let id = 0;
  const run = (consumers: number, file: string, expected: Buffer) => () => queueRun(ctx, `queue-${id++}`, consumers, file, expected);
  const runs = await alternate(rounds, { '1 consumer': run(1, input, data), '4 consumers': run(4, input, data), empty: run(1, empty, Buffer.alloc(0)) }, (name, r) =>
    ctx.log(`  queue ${name}: ${r.seconds.toFixed(3)} s, records per consumer ${r.perConsumer.join('/')}${r.problem ? ` FAILED: ${r.problem}` : ''}`),
  );
  for (const [name, list] of Object.entries(runs)) {
    const failed = list.map((r, i) => (r.problem ? `run ${i + 1}: ${r.problem}` : '')).filter(Boolean);
    result.checks.push({ name: `queue ${name}: every record exactly once, whole`, ok: failed.length === 0, detail: failed.join('; ') || undefined });
  }
  const emptySeconds = median(runs.empty.map((r) => r.seconds));
  const rate = (list: QueueRun[]) => summarize(list.map((r) => (r.seconds > emptySeconds ? records / (r.seconds - emptySeconds) : NaN)));
  result.figures.push({
    name: `work queue, ${records.toLocaleString('en-US')} records of 64 B: 4 consumers`,
    unit: 'records/s',
    value: rate(runs['4 consumers']),
    yardstick: { name: '1 consumer', value: rate(runs['1 consumer']) },
    target: target.ratioAtLeast(0.9),
    issue: 12,
  });
  const shares = runs['4 consumers'].map((r) => r.perConsumer.join('/')).join(', ');
  result.notes.push(`queue: ${rounds} alternating rounds; producer start-up taken out (${(emptySeconds * 1000).toFixed(0)} ms with empty input); records per consumer, 4 consumers: ${shares}.`);
  return result;
}

async function queueRun(ctx: Context, name: string, n: number, input: string, expected: Buffer): Promise<QueueRun> {
  const bus = path.join(ctx.dir, name);
  const args = ['--block-size', String(RECORD), '--back-pressure', '--filename', bus];
  const outputs = Array.from({ length: n }, (_, i) => `${bus}.out${i}`);
  const consumers: Child[] = [];
  let producer: Child | undefined;
  try {
    for (const file of outputs) {
      const fd = fs.openSync(file, 'w');
      consumers.push(filebus([...args, 'consumer'], { stdout: fd }));
      fs.closeSync(fd);
    }
    await waitIdle(consumers.map((c) => c.pid));
    const fd = fs.openSync(input, 'r');
    const t0 = now();
    producer = filebus([...args, 'producer'], { stdin: fd, stdout: 'ignore' });
    fs.closeSync(fd);
    const failed = Promise.race(consumers.map((c) => failureOf(c, 'consumer')));
    failed.catch(() => {}); // consumers stopped at the end fail it too, after it stopped mattering
    const exit = await within(Promise.race([producer.done, failed]), 60_000 + (expected.length / RECORD) * 10, 'queue');
    const seconds = (now() - t0) / 1000;
    if (exit.code !== 0) throw new Error(`producer ${describeExit(producer, exit)}`);
    // One consumer takes the end-of-stream chunk and exits; the others wait on until stopped.
    const ender = await within(Promise.race(consumers.map((c) => c.done.then((exit) => ({ c, exit })))), 10_000, 'queue: no consumer took the end-of-stream chunk');
    if (ender.exit.code !== 0) throw new Error(`end-of-stream consumer ${describeExit(ender.c, ender.exit)}`);
    // A consumer may still be writing the last record it took.
    const size = () => outputs.reduce((a, f) => a + fs.statSync(f).size, 0);
    for (const deadline = Date.now() + 10_000; size() < expected.length && Date.now() < deadline; ) await sleep(10);
    await stopAll(consumers);
    const seen = outputs.map((f) => fs.readFileSync(f));
    return { seconds, perConsumer: seen.map((b) => b.length / RECORD), problem: exactlyOnce(seen, expected) };
  } catch (error) {
    return { seconds: NaN, perConsumer: [], problem: (error as Error).message };
  } finally {
    await stopAll([...consumers, producer]);
    for (const f of outputs) fs.rmSync(f, { force: true });
  }
}

/** Every record of `expected`, whole, in exactly one of the outputs. */
function exactlyOnce(outputs: Buffer[], expected: Buffer): string | undefined {
  const records = expected.length / RECORD;
  const seen = new Uint8Array(records);
  let duplicates = 0;
  let corrupt = 0;
  for (const out of outputs) {
    if (out.length % RECORD) corrupt++;
    for (let off = 0; off + RECORD <= out.length; off += RECORD) {
      const seq = Number(out.readBigUInt64BE(off));
      if (seq >= records || !out.subarray(off, off + RECORD).equals(expected.subarray(seq * RECORD, (seq + 1) * RECORD))) corrupt++;
      else if (seen[seq]!++) duplicates++;
    }
  }
  const missing = seen.reduce((a, s) => a + (s === 0 ? 1 : 0), 0);
  const problems = [missing && `${missing} records missing`, duplicates && `${duplicates} records more than once`, corrupt && `${corrupt} corrupt records or outputs`].filter(Boolean);
  return problems.join('; ') || undefined;
}
