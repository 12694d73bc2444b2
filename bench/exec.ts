/**
 * consumer --exec (issue 19): 200 records, each a job that reads its input,
 * appends it to a file and sleeps 20 ms. filebus runs them with --jobs 4
 * against --jobs 1 (the target: at least 3.5 x the records/s), and against
 * `xargs -n1 -P4` running the same script on the same records (at least
 * 0.8 x). The consumer starts first and is left to go idle; a run is timed
 * from the producer's spawn to the consumer's exit, which comes once every
 * job of the stream is done. xargs is timed from its spawn to its exit.
 * Every record must be in the output exactly once.
 */
import fs from 'node:fs';
import path from 'node:path';
import { filebus } from './harness/commands.js';
import { type Context, roundsOf } from './harness/context.js';
import { alternate, now, summarize, waitIdle } from './harness/measure.js';
import { type Child, describeExit, start, stopAll, within } from '../test/support/processes.js';
import { type PartResult, emptyResult, target } from './harness/report.js';

const RECORDS = 200;
const JOB_SECONDS = 0.02;

interface ExecRun {
  seconds: number;
  problem?: string;
}

export async function exec(ctx: Context): Promise<PartResult> {
  const result = emptyResult();
  const rounds = roundsOf(ctx, 3);
  const records = ctx.quick ? 40 : RECORDS;
  const lines = Array.from({ length: records }, (_, i) => `job-${String(i).padStart(6, '0')}`);
  const input = path.join(ctx.dir, 'exec-input');
  fs.writeFileSync(input, lines.map((line) => `${line}\n`).join(''));
  let id = 0;
  const cases = {
    'filebus --jobs 1': () => filebusRun(ctx, `exec-${id++}`, 1, input, lines),
    'filebus --jobs 4': () => filebusRun(ctx, `exec-${id++}`, 4, input, lines),
    'xargs -n1 -P4': () => xargsRun(ctx, `exec-${id++}`, 4, input, lines),
  };
  const runs = await alternate(rounds, cases, (name, r) => ctx.log(`  exec ${name}: ${r.seconds.toFixed(3)} s${r.problem ? ` FAILED: ${r.problem}` : ''}`));
  for (const [name, list] of Object.entries(runs)) {
    const failed = list.map((r, i) => (r.problem ? `run ${i + 1}: ${r.problem}` : '')).filter(Boolean);
    result.checks.push({ name: `exec ${name}: every record exactly once`, ok: failed.length === 0, detail: failed.join('; ') || undefined });
  }
  const rate = (list: ExecRun[]) => summarize(list.map((r) => records / r.seconds));
  const four = rate(runs['filebus --jobs 4']);
  result.figures.push(
    {
      name: `consumer --exec, ${records} jobs of ${JOB_SECONDS * 1000} ms: --jobs 4`,
      unit: 'records/s',
      value: four,
      yardstick: { name: '--jobs 1', value: rate(runs['filebus --jobs 1']) },
      target: target.ratioAtLeast(3.5),
      issue: 19,
    },
    {
      name: `consumer --exec --jobs 4, ${records} jobs of ${JOB_SECONDS * 1000} ms`,
      unit: 'records/s',
      value: four,
      yardstick: { name: 'xargs -n1 -P4', value: rate(runs['xargs -n1 -P4']) },
      target: target.ratioAtLeast(0.8),
      issue: 19,
    },
  );
  result.notes.push(`exec: ${rounds} alternating rounds; each job is a shell script that appends its record to a file and sleeps ${JOB_SECONDS} s.`);
  return result;
}

/** The job: its record from stdin (filebus) or its one argument (xargs), appended to `out`. */
function jobScript(ctx: Context, name: string, out: string): string {
  const script = path.join(ctx.dir, `${name}.sh`);
  fs.writeFileSync(script, `#!/bin/sh\nif [ $# -gt 0 ]; then echo "$1"; else cat; fi >> ${out}\nsleep ${JOB_SECONDS}\n`, { mode: 0o755 });
  return script;
}

function check(out: string, lines: string[]): string | undefined {
  const seen = fs.readFileSync(out, 'latin1').split('\n').filter(Boolean).sort();
  if (seen.length === lines.length && seen.every((line, i) => line === lines[i])) return undefined;
  return `${seen.length} lines out for ${lines.length} records, or not the same ones`;
}

async function filebusRun(ctx: Context, name: string, jobs: number, input: string, lines: string[]): Promise<ExecRun> {
  const bus = path.join(ctx.dir, name);
  const out = `${bus}.out`;
  fs.writeFileSync(out, '');
  const script = jobScript(ctx, name, out);
  const args = ['--lossless', '--filename', bus];
  let consumer: Child | undefined;
  let producer: Child | undefined;
  try {
    consumer = filebus([...args, 'consumer', '--exec', script, '--jobs', String(jobs)], { stdout: 'ignore' });
    await waitIdle([consumer.pid]);
    const fd = fs.openSync(input, 'r');
    const t0 = now();
    // One record per chunk, so one job per record, as xargs -n1 runs them.
    producer = filebus([...args, 'producer', '--lines', '--block-size', String(lines[0]!.length + 1)], { stdin: fd, stdout: 'ignore' });
    fs.closeSync(fd);
    const exit = await within(consumer.done, 120_000, 'exec consumer');
    const seconds = (now() - t0) / 1000;
    if (exit.code !== 0) throw new Error(`consumer ${describeExit(consumer, exit)}`);
    return { seconds, problem: check(out, lines) };
  } catch (error) {
    return { seconds: NaN, problem: (error as Error).message };
  } finally {
    await stopAll([consumer, producer]);
    fs.rmSync(out, { force: true });
  }
}

async function xargsRun(ctx: Context, name: string, jobs: number, input: string, lines: string[]): Promise<ExecRun> {
  const out = path.join(ctx.dir, `${name}.out`);
  fs.writeFileSync(out, '');
  const script = jobScript(ctx, name, out);
  const fd = fs.openSync(input, 'r');
  const t0 = now();
  const xargs = start('xargs', ['-n1', `-P${jobs}`, script], { stdin: fd, stdout: 'ignore' });
  fs.closeSync(fd);
  try {
    const exit = await within(xargs.done, 120_000, 'xargs');
    const seconds = (now() - t0) / 1000;
    if (exit.code !== 0) return { seconds: NaN, problem: `xargs ${describeExit(xargs, exit)}` };
    return { seconds, problem: check(out, lines) };
  } finally {
    await stopAll([xargs]);
    fs.rmSync(out, { force: true });
  }
}
