/**
 * Throughput, one producer and one lossless (--back-pressure) consumer:
 *
 * - 1 MiB blocks against `cat FILE | cat`, in MB/s;
 * - 4 KiB chunks against the C handoff anchor, in chunks/s;
 * - `--lines` at 4 KiB against byte mode, in chunks/s (issue 10).
 *
 * The bench is off the measured path: the producer reads the input file as
 * its stdin, the consumer writes to an output file, and the output's sha256
 * is checked after each run. A run is timed from spawning the processes to
 * their exit; the same processes with an empty input, timed in the same
 * rounds, take out start-up and exit: rate = size / (time - empty time).
 */
import fs from 'node:fs';
import path from 'node:path';
import { filebus, start } from './harness/commands.js';
import { type Context, roundsOf } from './harness/context.js';
import { type Input, randomFile, sha256OfFile, textFile } from './harness/data.js';
import { alternate, median, now, summarize } from './harness/measure.js';
import { type Child, describeExit, failureOf, stopAll, within } from '../test/support/processes.js';
import { type Check, type PartResult, emptyResult, target } from './harness/report.js';

const KiB = 1024;
const MiB = 1024 * 1024;

/** One timed transfer: seconds from spawn to exit, and whether the output matched. */
interface Transfer {
  seconds: number;
  problem?: string;
}

export async function throughput(ctx: Context): Promise<PartResult> {
  const result = emptyResult();
  const rounds = roundsOf(ctx, 5);
  const big = randomFile(path.join(ctx.dir, 'big.bin'), ctx.quick ? 4 * MiB : 256 * MiB);
  // Lines of 64 bytes: 64 whole lines fill a 4 KiB chunk exactly, in both modes.
  const text = textFile(path.join(ctx.dir, 'lines.txt'), ctx.quick ? 1 * MiB : 16 * MiB, 64);
  const empty = randomFile(path.join(ctx.dir, 'empty.bin'), 0);
  const chunks4k = text.bytes / (4 * KiB);
  let runId = 0;
  const out = (): string => path.join(ctx.dir, `out-${runId++}`);

  const cases: Record<string, () => Promise<Transfer>> = {
    'cat | cat': () => catPipe(big, out()),
    'cat | cat, empty': () => catPipe(empty, out()),
    'filebus 1 MiB': () => filebusPair(big, out(), MiB),
    'filebus 4 KiB': () => filebusPair(text, out(), 4 * KiB),
    'filebus, empty': () => filebusPair(empty, out(), 4 * KiB),
  };
  if (ctx.features.lines.ok) cases['filebus 4 KiB --lines'] = () => filebusPair(text, out(), 4 * KiB, ['--lines']);
  const { anchors } = ctx.anchors as { anchors?: { handoff: string } };
  if (anchors) cases['C handoff 4 KiB'] = () => handoff(ctx, anchors.handoff, chunks4k, 4 * KiB);

  const runs = await alternate(rounds, cases, (name, r) => ctx.log(`  ${name}: ${r.seconds.toFixed(3)} s${r.problem ? ` FAILED: ${r.problem}` : ''}`));
  for (const [name, list] of Object.entries(runs)) result.checks.push(checkOf(`throughput ${name}: output = input (sha256), both processes exit 0`, list));

  const catEmpty = median(runs['cat | cat, empty']!.map((r) => r.seconds));
  const filebusEmpty = median(runs['filebus, empty']!.map((r) => r.seconds));
  // A run no longer than the empty ones (only in --quick, at tiny sizes) has no rate.
  const rate = (list: Transfer[] | undefined, amount: number, emptySeconds: number) => (list ? summarize(list.map((r) => (r.seconds > emptySeconds ? amount / (r.seconds - emptySeconds) : NaN))) : undefined);

  const byteMode = rate(runs['filebus 4 KiB'], chunks4k, filebusEmpty);
  result.figures.push({
    name: 'lossless chunk rate, 4 KiB, one consumer',
    unit: 'chunks/s',
    value: byteMode,
    yardstick: { name: 'C handoff', value: runs['C handoff 4 KiB'] ? summarize(runs['C handoff 4 KiB'].map((r) => chunks4k / r.seconds)) : undefined },
    target: target.ratioAtLeast(0.8),
    issue: 12,
    note: anchors ? undefined : 'no C anchor',
  });
  result.figures.push({
    name: '1 MiB blocks, one consumer',
    unit: 'MB/s',
    value: rate(runs['filebus 1 MiB'], big.bytes / 1e6, filebusEmpty),
    yardstick: { name: 'cat | cat', value: rate(runs['cat | cat'], big.bytes / 1e6, catEmpty) },
    target: target.ratioAtLeast(1.0),
    issue: 12,
  });
  result.figures.push({
    name: '--lines chunk rate, 4 KiB',
    unit: 'chunks/s',
    value: rate(runs['filebus 4 KiB --lines'], chunks4k, filebusEmpty),
    yardstick: { name: 'byte mode 4 KiB', value: byteMode },
    target: target.ratioAtLeast(0.8),
    issue: 10,
    note: ctx.features.lines.ok ? undefined : ctx.features.lines.reason,
  });
  result.notes.push(
    `throughput: ${fmtSize(big.bytes)} random bytes (1 MiB, cat | cat), ${fmtSize(text.bytes)} of 64-byte lines (4 KiB: ${chunks4k} chunks); ${rounds} alternating rounds;` +
      ` start-up taken out with empty-input runs (filebus ${(filebusEmpty * 1000).toFixed(0)} ms, cat | cat ${(catEmpty * 1000).toFixed(1)} ms); output to a file on the same file system, sha256-checked.`,
  );
  if (anchors) result.notes.push('throughput: C handoff = `handoff DIR CHUNKS 4096` (forks its consumer, which writes to /dev/null), timed from spawn to exit like filebus, start-up not taken out.');
  return result;
}

/** `cat FILE | cat > OUT`, as one shell pipeline. */
async function catPipe(input: Input, output: string): Promise<Transfer> {
  const t0 = now();
  const sh = start('sh', ['-c', 'cat "$1" | cat > "$2"', 'sh', input.file, output], { stdout: 'ignore' });
  const exit = await within(sh.done, 120_000, 'cat | cat');
  const seconds = (now() - t0) / 1000;
  return { seconds, problem: verify(input, output, [[sh, exit.code === 0, 'cat | cat']]) };
}

/** A filebus producer (stdin: the input file) and consumer (stdout: `output`), started together. */
async function filebusPair(input: Input, output: string, block: number, producerFlags: string[] = []): Promise<Transfer> {
  const bus = `${output}.bus`;
  const args = ['--block-size', String(block), '--back-pressure', '--filename', bus];
  const inFd = fs.openSync(input.file, 'r');
  const outFd = fs.openSync(output, 'w');
  let consumer: Child | undefined;
  let producer: Child | undefined;
  try {
    const t0 = now();
    consumer = filebus([...args, 'consumer'], { stdout: outFd });
    producer = filebus([...args, 'producer', ...producerFlags], { stdin: inFd, stdout: 'ignore' });
    fs.closeSync(inFd);
    fs.closeSync(outFd);
    // Either failing ends the run at once: the other would wait for it forever. Generous: a rate far below any seen on a loaded 2-core machine.
    const failed = Promise.race([failureOf(consumer, 'consumer'), failureOf(producer, 'producer')]);
    failed.catch(() => {}); // also settles when they are stopped after a failure
    const [c, p] = await within(Promise.race([Promise.all([consumer.done, producer.done]), failed]), 60_000 + input.bytes / 200, `filebus ${block} B ${producerFlags.join(' ')}`);
    const seconds = (now() - t0) / 1000;
    return {
      seconds,
      problem: verify(input, output, [
        [consumer, c.code === 0, 'consumer'],
        [producer, p.code === 0, 'producer'],
      ]),
    };
  } catch (error) {
    return { seconds: NaN, problem: (error as Error).message };
  } finally {
    for (const fd of [inFd, outFd])
      try {
        fs.closeSync(fd);
      } catch {
        // Closed above once both processes had their copy.
      }
    await stopAll([consumer, producer]);
  }
}

/** The C anchor: producer and forked consumer in one program. */
async function handoff(ctx: Context, program: string, chunks: number, block: number): Promise<Transfer> {
  const dir = fs.mkdtempSync(path.join(ctx.dir, 'handoff-'));
  const t0 = now();
  const child = start(program, [dir, String(chunks), String(block)]);
  let stdout = '';
  child.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
  try {
    const exit = await within(child.done, 120_000, 'C handoff');
    const seconds = (now() - t0) / 1000;
    if (exit.code !== 0 || !/chunks_per_s=/.test(stdout)) return { seconds: NaN, problem: `C handoff ${describeExit(child, exit)}: ${stdout.trim()}` };
    return { seconds };
  } finally {
    await stopAll([child]);
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

function verify(input: Input, output: string, processes: Array<[Child, boolean, string]>): string | undefined {
  try {
    const problems = processes.filter(([, ok]) => !ok).map(([child, , who]) => `${who} ${describeExit(child)}`);
    const size = fs.statSync(output).size;
    if (size !== input.bytes) problems.push(`got ${size} bytes, sent ${input.bytes}`);
    else if (sha256OfFile(output) !== input.sha256) problems.push('sha256 of output differs from input');
    return problems.join('; ') || undefined;
  } finally {
    fs.rmSync(output, { force: true });
  }
}

function checkOf(name: string, runs: Transfer[]): Check {
  const failed = runs.map((r, i) => (r.problem ? `run ${i + 1}: ${r.problem}` : '')).filter(Boolean);
  return { name, ok: failed.length === 0, detail: failed.join('; ') || undefined };
}

const fmtSize = (bytes: number): string => (bytes >= MiB ? `${bytes / MiB} MiB` : `${bytes / KiB} KiB`);
