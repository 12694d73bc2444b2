/**
 * The benchmark's smoke test: `bench/bench.mjs --quick --json` runs every
 * part at tiny sizes and must pass all of its correctness checks (sha256 of
 * every lossless stream, exactly-once work queue, every line delivered at a
 * low multicast rate). No figure is asserted: timing depends on the machine.
 */
import { spawn } from 'node:child_process';
import path from 'node:path';
import { expect, test } from 'vitest';
import { root } from './helpers.js';

interface Check {
  name: string;
  ok: boolean;
  detail: string;
}

function runBench(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const env = Object.fromEntries(Object.entries(process.env).filter(([key]) => !key.startsWith('FILEBUS_')));
    const child = spawn(process.execPath, [path.join(root, 'bench/bench.mjs'), ...args], { cwd: root, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (data: Buffer) => (stdout += data.toString()));
    child.stderr.on('data', (data: Buffer) => (stderr += data.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

test('bench --quick --json passes every correctness check', { timeout: 120_000 }, async () => {
  const { code, stdout, stderr } = await runBench(['--quick', '--json']);
  let report: { ok: boolean; checks: Check[]; throughput?: unknown; latency?: unknown; queue?: unknown; cost?: unknown };
  try {
    report = JSON.parse(stdout);
  } catch {
    throw new Error(`bench printed no JSON (exit ${code}); stderr:\n${stderr}\nstdout:\n${stdout.slice(0, 2000)}`);
  }
  const failed = report.checks.filter((c) => !c.ok).map((c) => `${c.name}: ${c.detail}`);
  expect(failed).toEqual([]);
  expect(report.ok).toBe(true);
  expect(code).toBe(0);
  // Every part ran and made its checks.
  for (const part of ['throughput', 'latency', 'queue', 'cost'] as const) expect(report[part], part).toBeDefined();
  const names = report.checks.map((c) => c.name).join('\n');
  expect(names).toMatch(/throughput typescript .*sha256/);
  expect(names).toMatch(/every consumer got every line \(low rate\)/);
  expect(names).toMatch(/queue: 4 consumers got every record exactly once/);
  expect(names).toMatch(/back-pressure stream, sha256/);
});
