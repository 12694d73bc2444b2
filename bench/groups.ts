/**
 * Durable groups (issue 18), ratios measured side by side in one run:
 *
 * - one group, one member, 4 KiB chunks: the member's own rate, against
 *   the C handoff anchor moving the same number of chunks;
 * - a group of 4 members against a group of 1, each chunk taking 20 ms of
 *   work (a library `deliver` that waits 20 ms): records/s;
 * - a producer's chunk rate with `--wait-for-groups` (one group keeping
 *   up) against the same producer with the history alone.
 *
 * For the members' rates the producer must not be the bottleneck: the
 * members join, are stopped (SIGSTOP), the whole stream is published into
 * a history window that holds all of it, and the time runs from their
 * SIGCONT to their last byte. Their start-up is not timed.
 */
import fs from 'node:fs';
import path from 'node:path';
import { cli, filebus } from './harness/commands.js';
import { type Context, roundsOf } from './harness/context.js';
import { textFile } from './harness/data.js';
import { alternate, now, summarize } from './harness/measure.js';
import { type Child, start, stopAll, within } from '../test/support/processes.js';
import { type PartResult, emptyResult, target } from './harness/report.js';

const KiB = 1024;

/** A member that takes 20 ms per chunk, through the library, printing each chunk when done. */
const slowMember = `
const { consume } = await import(process.argv[1]);
await consume({ filename: process.argv[2], group: process.argv[3], blockingWait: true }, async (chunk) => {
  await new Promise((resolve) => setTimeout(resolve, 20));
  process.stdout.write(chunk);
});`;

interface Run {
  rate: number;
  problem?: string;
}

async function joined(bus: string, group: string, count: number): Promise<void> {
  const dir = `${bus}.groups/${group}/members`;
  const deadline = Date.now() + 20_000;
  while (!(fs.existsSync(dir) && fs.readdirSync(dir).length >= count)) {
    if (Date.now() > deadline) throw new Error(`members of ${group} did not join`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

/** Bytes written so far to the files. */
const sizeOf = (files: string[]): number => files.reduce((sum, file) => sum + (fs.existsSync(file) ? fs.statSync(file).size : 0), 0);

async function untilSize(files: string[], bytes: number, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (sizeOf(files) < bytes) {
    if (Date.now() > deadline) throw new Error(`members wrote ${sizeOf(files)} of ${bytes} bytes`);
    await new Promise((resolve) => setTimeout(resolve, 2));
  }
}

/** `members` members of one group (command or slow library ones), then a producer of `input`; chunks/s until all of it is out. */
async function groupRun(ctx: Context, name: string, input: { file: string; bytes: number }, chunks: number, block: number, members: number, slow: boolean, producerFlags: string[] = []): Promise<Run> {
  const dir = fs.mkdtempSync(path.join(ctx.dir, `${name}-`));
  const bus = path.join(dir, 'bus');
  const children: Child[] = [];
  try {
    const outs = Array.from({ length: members }, (_, i) => path.join(dir, `out-${i}`));
    for (const out of outs) {
      const fd = fs.openSync(out, 'w');
      const args = slow
        ? ['--input-type=module', '-e', slowMember, path.join(path.dirname(cli), '../src/index.js'), bus, 'g']
        : [cli, '--filename', bus, '--block-size', String(block), 'consumer', '--group', 'g'];
      children.push(start(process.execPath, args, { stdout: fd }));
      fs.closeSync(fd);
    }
    await joined(bus, 'g', members);
    const stopped = children.slice();
    for (const child of stopped) child.process.kill('SIGSTOP');
    const inFd = fs.openSync(input.file, 'r');
    const producer = filebus(['--filename', bus, '--block-size', String(block), '--history', String(chunks + 16), 'producer', '--lines', ...producerFlags], { stdin: inFd, stdout: 'ignore' });
    fs.closeSync(inFd);
    children.push(producer);
    const exit = await within(producer.done, 120_000, 'producer');
    const t0 = now();
    for (const child of stopped) child.process.kill('SIGCONT');
    if (exit.code !== 0) return { rate: NaN, problem: `producer exit ${exit.code}: ${producer.stderrText()}` };
    await untilSize(outs, input.bytes, 120_000);
    const seconds = (now() - t0) / 1000;
    const bytes = sizeOf(outs);
    return { rate: chunks / seconds, problem: bytes === input.bytes ? undefined : `members wrote ${bytes} bytes of ${input.bytes}` };
  } catch (error) {
    return { rate: NaN, problem: (error as Error).message };
  } finally {
    // A member still stopped (a failed run) would not end on SIGTERM.
    for (const child of children) child.process.kill('SIGCONT');
    await stopAll(children);
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

/** A producer's chunks/s (spawn to exit) with one fast member of a group reading along. */
async function producerRun(ctx: Context, input: { file: string; bytes: number }, chunks: number, flags: string[]): Promise<Run> {
  const dir = fs.mkdtempSync(path.join(ctx.dir, 'gate-'));
  const bus = path.join(dir, 'bus');
  const children: Child[] = [];
  try {
    children.push(filebus(['--filename', bus, '--block-size', String(4 * KiB), 'consumer', '--group', 'g'], { stdout: 'ignore' }));
    await joined(bus, 'g', 1);
    const inFd = fs.openSync(input.file, 'r');
    const t0 = now();
    const producer = filebus(['--filename', bus, '--block-size', String(4 * KiB), '--history', '1000', 'producer', '--lines', ...flags], { stdin: inFd, stdout: 'ignore' });
    fs.closeSync(inFd);
    children.push(producer);
    const exit = await within(producer.done, 120_000, 'producer');
    const seconds = (now() - t0) / 1000;
    return exit.code === 0 ? { rate: chunks / seconds } : { rate: NaN, problem: `producer exit ${exit.code}: ${producer.stderrText()}` };
  } finally {
    await stopAll(children);
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

async function handoff(ctx: Context, program: string, chunks: number): Promise<Run> {
  const dir = fs.mkdtempSync(path.join(ctx.dir, 'handoff-'));
  const t0 = now();
  const child = start(program, [dir, String(chunks), String(4 * KiB)]);
  try {
    const exit = await within(child.done, 120_000, 'C handoff');
    return exit.code === 0 ? { rate: chunks / ((now() - t0) / 1000) } : { rate: NaN, problem: `C handoff exit ${exit.code}` };
  } finally {
    await stopAll([child]);
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

export async function groups(ctx: Context): Promise<PartResult> {
  const result = emptyResult();
  const rounds = roundsOf(ctx, 3);
  const chunks = ctx.quick ? 2000 : 20_000;
  const text = textFile(path.join(ctx.dir, 'groups-lines.txt'), chunks * 4 * KiB, 64);
  const slowChunks = ctx.quick ? 40 : 200;
  // 20 ms of work per chunk: one line per chunk (--lines, a block of one 64-byte line).
  const slowText = textFile(path.join(ctx.dir, 'groups-slow.txt'), slowChunks * 64, 64);
  const { anchors } = ctx.anchors as { anchors?: { handoff: string } };

  const cases: Record<string, () => Promise<Run>> = {
    'one member 4 KiB': () => groupRun(ctx, 'one', text, chunks, 4 * KiB, 1, false),
    'slow x1': () => groupRun(ctx, 'slow1', slowText, slowChunks, 64, 1, true),
    'slow x4': () => groupRun(ctx, 'slow4', slowText, slowChunks, 64, 4, true),
    'producer, history': () => producerRun(ctx, text, chunks, []),
    'producer, --wait-for-groups': () => producerRun(ctx, text, chunks, ['--wait-for-groups']),
  };
  if (anchors) cases['C handoff'] = () => handoff(ctx, anchors.handoff, chunks);
  const runs = await alternate(rounds, cases, (name, r) => ctx.log(`  groups ${name}: ${r.rate.toFixed(0)}/s${r.problem ? ` FAILED: ${r.problem}` : ''}`));
  for (const [name, list] of Object.entries(runs)) {
    const failed = list.flatMap((r, i) => (r.problem ? [`run ${i + 1}: ${r.problem}`] : []));
    result.checks.push({ name: `groups ${name}: every byte delivered, processes exit 0`, ok: failed.length === 0, detail: failed.join('; ') || undefined });
  }
  const rate = (name: string) => (runs[name] ? summarize(runs[name]!.map((r) => r.rate)) : undefined);
  result.figures.push({ name: 'one group, one member, 4 KiB chunks', unit: 'chunks/s', value: rate('one member 4 KiB'), yardstick: { name: 'C handoff', value: rate('C handoff') }, target: target.ratioAtLeast(1.0), issue: 18, note: anchors ? undefined : 'no C anchor' });
  result.figures.push({ name: 'group of 4 members, 20 ms a chunk', unit: 'records/s', value: rate('slow x4'), yardstick: { name: '1 member', value: rate('slow x1') }, target: target.ratioAtLeast(3.5), issue: 18 });
  result.figures.push({ name: 'producer with --wait-for-groups, one group keeping up', unit: 'chunks/s', value: rate('producer, --wait-for-groups'), yardstick: { name: 'history alone', value: rate('producer, history') }, target: target.ratioAtLeast(0.8), issue: 18 });
  result.notes.push(`groups: ${chunks} chunks of 4 KiB (64-byte lines, --lines), ${slowChunks} one-line chunks for the 20 ms members; ${rounds} alternating rounds; members join and are stopped, the stream is published into a window that holds all of it, and the members are timed from their SIGCONT to their last byte (the producer: spawn to exit, one member reading along).`);
  return result;
}
