/**
 * The benchmark (bench/, compiled by tsconfig.bench.json): its --quick mode
 * runs every part at tiny sizes and must pass all of its correctness checks
 * and print every figure's row; missing C anchors are a note, not a
 * failure; Ctrl-C leaves no process and no temporary file behind. No
 * figure is asserted: timing depends on the machine.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { beforeAll, expect, test } from 'vitest';
import { processesMentioning, root, start, tempDir, until } from '../helpers.js';

const benchMain = path.join(root, 'dist-bench/bench/main.js');

interface Row {
  figure: string;
  value: unknown;
  yardstick: string;
  yardstickValue: unknown;
  ratio: string;
  target: string;
  met: string;
}
interface Report {
  ok: boolean;
  machine: string;
  figures: Row[];
  checks: Array<{ name: string; ok: boolean; detail?: string }>;
  notes: string[];
}

beforeAll(() => {
  const tsc = spawnSync(process.execPath, [path.join(root, 'node_modules/typescript/bin/tsc'), '-p', path.join(root, 'tsconfig.bench.json')], { cwd: root, encoding: 'utf8' });
  if (tsc.status !== 0) throw new Error(`tsc -p tsconfig.bench.json failed:\n${tsc.stdout}${tsc.stderr}`);
}, 120_000);

interface Running {
  pid: number;
  stdout(): string;
  stderr(): string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/** The compiled bench, run through the shared helpers (FILEBUS_* filtered out, stopped after the test). */
function bench(args: string[]): Running {
  const child = start(process.execPath, [benchMain, ...args], { stdout: 'pipe', cwd: root });
  let stdout = '';
  child.stdout!.on('data', (data: Buffer) => (stdout += data.toString()));
  return { pid: child.pid, stdout: () => stdout, stderr: child.stderr, exited: child.done };
}

function parse(run: Running): Report {
  try {
    return JSON.parse(run.stdout()) as Report;
  } catch {
    throw new Error(`bench printed no JSON; stderr:\n${run.stderr()}\nstdout:\n${run.stdout().slice(0, 2000)}`);
  }
}

test('--quick --json runs every part, passes every correctness check and prints every figure', { timeout: 180_000 }, async () => {
  const dir = tempDir();
  const run = bench(['--quick', '--json', '--dir', dir]);
  const { code } = await run.exited;
  const report = parse(run);
  expect(report.checks.filter((c) => !c.ok).map((c) => `${c.name}: ${c.detail}`)).toEqual([]);
  expect(report.ok).toBe(true);
  expect(code).toBe(0);
  expect(report.machine).toMatch(/^\d+ cores .*node v\d+/);

  const names = report.checks.map((c) => c.name).join('\n');
  expect(names).toMatch(/throughput filebus 4 KiB: output = input \(sha256\)/);
  expect(names).toMatch(/queue 4 consumers: every record exactly once/);
  expect(names).toMatch(/exec filebus --jobs 4: every record exactly once/);
  expect(names).toMatch(/fan-out 10 consumers at 100 lines\/s, filebus: no line twice/);
  expect(names).toMatch(/memory: .* through filebus, output = input/);

  const figure = (pattern: RegExp): Row => {
    const row = report.figures.find((f) => pattern.test(f.figure));
    if (!row) throw new Error(`no figure matching ${pattern} in:\n${report.figures.map((f) => f.figure).join('\n')}`);
    return row;
  };
  // Issue 12's table, row by row, each against its yardstick.
  expect(figure(/lossless chunk rate, 4 KiB/).yardstick).toBe('C handoff');
  expect(figure(/1 MiB blocks/).yardstick).toBe('cat | cat');
  expect(figure(/^work queue.*4 consumers/).yardstick).toBe('1 consumer');
  expect(figure(/^work queue.*4 consumers/).ratio).toMatch(/^\d+\.\d\d x$/);
  expect(figure(/^CPU per chunk/).yardstick).toBe('C mcast');
  expect(figure(/^10 consumers at 100 lines\/s: latency p50/).target).toBe('<= 1.5 x');
  expect(figure(/^10 consumers at 100 lines\/s: latency p99/).target).toBe('<= 5.00 ms');
  expect(figure(/^10 consumers at 1000 lines\/s: worst consumer got/).target).toBe('>= 99.5 %');
  expect(figure(/^peak RSS.*producer/).target).toBe('<= 80.0 MiB');
  expect(figure(/^start-up/).yardstick).toBe('node -e 0');
  for (const pattern of [/^1 consumer at 100 lines\/s: latency p50/, /^50 consumers at 100 lines\/s: worst/, /^peak RSS.*consumer/]) figure(pattern);
  // Issue 20's rows: idle CPU and a neighbour bus's chunks against C, the RSS trend against itself at half time.
  expect(figure(/^CPU of one idle multicast consumer/).target).toBe('<= 5.00 ms');
  expect(figure(/^a consumer's CPU per chunk of another bus/).target).toBe('<= 5 us');
  expect(figure(/^RSS after .* multicast consumer/).yardstick).toMatch(/^itself at/);
  expect(figure(/^50 consumers at 100 lines\/s: latency p50/).target).toBe('<= 2 x');
  // Figures of flags that other work adds: a value once the flag exists, until then a row that says so.
  for (const pattern of [/--lines chunk rate/, /--history 3000: worst consumer got/, /producer chunk rate.*--history/]) {
    const row = figure(pattern);
    if (row.value === undefined) expect(row.met).toMatch(/not supported by this build/);
  }
  // With the C anchors at hand (gcc and ../shared/anchors, as on the development machine) their ratios are there; without, a note says why.
  const noAnchors = report.notes.find((n) => /C anchors not (found|built)/.test(n));
  expect(figure(/^CPU per chunk/).ratio).toMatch(noAnchors ? /^-$/ : /^\d+\.\d\d x$/);
  expect(fs.readdirSync(dir)).toEqual([]);
});

test('without the C anchors the bench says why, leaves their ratios out and still passes', { timeout: 60_000 }, async () => {
  const run = bench(['--quick', '--json', '--only', 'cost', '--anchors', '/nonexistent/anchors']);
  const { code } = await run.exited;
  const report = parse(run);
  expect(code).toBe(0);
  expect(report.notes.join('\n')).toMatch(/C anchors not found .*\/nonexistent\/anchors/);
  const row = report.figures.find((f) => /^CPU per chunk/.test(f.figure))!;
  expect(row.value).toBeDefined();
  expect(row.ratio).toBe('-');
  expect(row.met).toMatch(/no C anchor/);
});

test('--markdown prints the figure table as markdown', { timeout: 60_000 }, async () => {
  const run = bench(['--quick', '--markdown', '--only', 'startup']);
  const { code } = await run.exited;
  expect(code, run.stderr()).toBe(0);
  const lines = run.stdout().split('\n');
  const header = lines.findIndex((l) => l.startsWith('| figure |'));
  expect(header).toBeGreaterThan(0);
  expect(lines[header + 1]).toMatch(/^\| --- \|( --- \|)+$/);
  expect(lines[header + 2]).toMatch(/^\| start-up, filebus --help \| [\d.]+ ms \|/);
  expect(run.stdout()).toMatch(/machine: 2? ?\d* ?cores/);
});

test('a bad flag is one line and exit 2', async () => {
  const run = bench(['--only', 'nothing']);
  const { code } = await run.exited;
  expect(code).toBe(2);
  expect(run.stderr().split('\n')[0]).toBe("bench: --only: unknown part 'nothing' (parts: startup, throughput, queue, fanout, cost, memory, idle, neighbour, trend, groups, exec)");
  expect(run.stderr()).not.toMatch(/\n\s+at /);
});

test('Ctrl-C in the middle of a part kills every child and removes every temporary file', { timeout: 60_000 }, async () => {
  const dir = tempDir();
  const run = bench(['--quick', '--only', 'fanout', '--dir', dir, '--no-anchors']);
  // In the middle of the fan-out: consumers running on a bus in the bench's directory.
  await until(() => processesMentioning(`${dir}/filebus-bench-`).length >= 3, 30_000, 'consumers running');
  process.kill(run.pid, 'SIGINT');
  const { code } = await run.exited;
  expect(code).toBe(130);
  expect(run.stderr()).toMatch(/interrupted by SIGINT/);
  expect(fs.readdirSync(dir)).toEqual([]);
  // SIGKILLed children are reaped by init at once; give it a moment rather than a fixed sleep.
  await until(() => processesMentioning(dir).length === 0, 5000, 'no process left').catch(() => undefined);
  expect(processesMentioning(dir)).toEqual([]);
});
