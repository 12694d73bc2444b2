/**
 * Start-up: `filebus --help` against Node's own start-up, `node -e 0`
 * (issue 16: within `node -e 0` + 50 ms, yargs loaded from node_modules).
 * One warm-up run of each, then 9 rounds of one run each, the order
 * reversed every other round so that neither always runs first. Reported:
 * both medians, and the median of the per-round differences, which the
 * load of a shared machine moves less than either.
 */
import { spawnSync } from 'node:child_process';
import { cli } from './harness/commands.js';
import type { Context } from './harness/context.js';
import { median, summarize } from './harness/measure.js';
import { childEnv } from '../test/support/processes.js';
import { type PartResult, emptyResult, target } from './harness/report.js';

/** Issue 16's budget, over `node -e 0`. */
const BUDGET_MS = 50;

export async function startup(ctx: Context): Promise<PartResult> {
  const result = emptyResult();
  const runs = ctx.rounds ?? (ctx.quick ? 3 : 9);
  const commands = { 'node -e 0': ['-e', '0'], 'filebus --help': [cli, '--help'] };
  type Name = keyof typeof commands;
  const times: Record<Name, number[]> = { 'node -e 0': [], 'filebus --help': [] };
  const failures: string[] = [];
  const names = Object.keys(commands) as Name[];
  for (let round = -1; round < runs; round++) {
    for (const name of round % 2 ? [...names].reverse() : names) {
      const t0 = performance.now();
      const r = spawnSync(process.execPath, commands[name], { stdio: ['ignore', 'ignore', 'pipe'], env: childEnv, timeout: 30_000 });
      const ms = performance.now() - t0;
      if (r.status !== 0) failures.push(`${name}: ${r.error?.message ?? `exit ${r.status ?? r.signal}`} ${String(r.stderr).trim().split('\n')[0]}`);
      else if (round >= 0) times[name].push(ms); // round -1 warms the page cache
    }
  }
  result.checks.push({ name: 'start-up: filebus --help and node -e 0 exit 0', ok: failures.length === 0, detail: failures.join('; ') || undefined });
  const over = times['filebus --help'].map((t, i) => t - (times['node -e 0'][i] ?? Number.NaN));
  result.figures.push({
    name: 'start-up, filebus --help',
    unit: 'ms',
    value: summarize(times['filebus --help']),
    yardstick: { name: 'node -e 0', value: summarize(times['node -e 0']) },
    target: target.plusAtMost(BUDGET_MS, 'ms', 'node -e 0'),
    issue: 16,
  });
  result.figures.push({
    name: 'filebus --help over node -e 0, median of per-round differences',
    unit: 'ms',
    value: summarize(over),
    target: target.atMost(BUDGET_MS, 'ms'),
    issue: 16,
  });
  ctx.log(`  start-up: ${times['filebus --help'].map((t) => t.toFixed(0)).join(' ')} ms against ${times['node -e 0'].map((t) => t.toFixed(0)).join(' ')} ms; difference, median: ${median(over).toFixed(1)} ms (target <= ${BUDGET_MS} ms)`);
  return result;
}
