/**
 * Start-up: `filebus --help` against Node's own start-up, `node -e 0`;
 * median of 9 alternating runs after one warm-up run of each (issue 10:
 * within `node -e 0` + 40 ms).
 */
import { spawnSync } from 'node:child_process';
import { cli } from './harness/commands.js';
import type { Context } from './harness/context.js';
import { summarize } from './harness/measure.js';
import { childEnv } from '../test/support/processes.js';
import { type PartResult, emptyResult, target } from './harness/report.js';

export async function startup(ctx: Context): Promise<PartResult> {
  const result = emptyResult();
  const runs = ctx.rounds ?? (ctx.quick ? 3 : 9);
  const commands = { 'node -e 0': ['-e', '0'], 'filebus --help': [cli, '--help'] };
  const times: Record<keyof typeof commands, number[]> = { 'node -e 0': [], 'filebus --help': [] };
  const failures: string[] = [];
  for (let i = -1; i < runs; i++) {
    for (const [name, args] of Object.entries(commands) as Array<[keyof typeof commands, string[]]>) {
      const t0 = performance.now();
      const r = spawnSync(process.execPath, args, { stdio: ['ignore', 'ignore', 'pipe'], env: childEnv, timeout: 30_000 });
      const ms = performance.now() - t0;
      if (r.status !== 0) failures.push(`${name}: ${r.error?.message ?? `exit ${r.status ?? r.signal}`} ${String(r.stderr).trim().split('\n')[0]}`);
      else if (i >= 0) times[name].push(ms); // run -1 warms the page cache
    }
  }
  result.checks.push({ name: 'start-up: filebus --help and node -e 0 exit 0', ok: failures.length === 0, detail: failures.join('; ') || undefined });
  result.figures.push({
    name: 'start-up, filebus --help',
    unit: 'ms',
    value: summarize(times['filebus --help']),
    yardstick: { name: 'node -e 0', value: summarize(times['node -e 0']) },
    target: target.plusAtMost(40, 'ms', 'node -e 0'),
    issue: 10,
  });
  ctx.log(`  start-up: ${times['filebus --help'].map((t) => t.toFixed(0)).join(' ')} ms against ${times['node -e 0'].map((t) => t.toFixed(0)).join(' ')} ms`);
  return result;
}
