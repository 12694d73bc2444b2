/**
 * filebus benchmark: every figure of issue 12's table (and those issues 10
 * and 11 ask for) as a ratio to a yardstick measured side by side in the
 * same run: `cat | cat`, the C anchors of ../shared/anchors, Node's own
 * start-up, or filebus itself without the option under test.
 *
 *   npm run bench                           full run (~5 minutes on 2 cores)
 *   npm run bench -- --markdown             the table as markdown, for docs/benchmarks.md
 *   npm run bench -- --quick                smoke test: tiny sizes, one round
 *   npm run bench -- --only fanout,cost     some parts only
 *   npm run bench -- --help                 every flag
 *
 * Exits 1 when a correctness check fails (sha256 of a lossless stream, a
 * record lost or doubled, a line garbled, a process crashed); a missed
 * target is reported, never a failure. Exits 2 on a bad flag.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { cost } from './cost.js';
import { exec } from './exec.js';
import { fanout } from './fanout.js';
import { groups } from './groups.js';
import { type AnchorsOrReason, buildAnchors, cli, supports } from './harness/commands.js';
import type { Context, FeatureSupport } from './harness/context.js';
import { cleanUp, defaultBase, tempDir } from '../test/support/processes.js';
import { type Check, type Figure, type PartResult, figureTable, rowOf } from './harness/report.js';
import { idle } from './idle.js';
import { memory } from './memory.js';
import { neighbour } from './neighbour.js';
import { queue } from './queue.js';
import { startup } from './startup.js';
import { throughput } from './throughput.js';
import { trend } from './trend.js';

const parts = { startup, throughput, queue, fanout, cost, memory, idle, neighbour, trend, groups, exec } satisfies Record<string, (ctx: Context) => Promise<PartResult>>;
type Part = keyof typeof parts;
const partNames = Object.keys(parts) as Part[];

const usage = `usage: npm run bench -- [flags]      (or: node dist-bench/bench/main.js [flags])

  --quick              smoke test: tiny sizes, one round (figures not meaningful)
  --only LIST          comma-separated parts: ${partNames.join(',')}
  --markdown           print the table as markdown (for docs/benchmarks.md)
  --json               print everything as JSON
  --verbose            every run's figures on stderr as they come
  --dir PATH           where buses and files go (default /dev/shm, else the OS temp dir)
  --rounds N           rounds of each side-by-side pair (default: 9 start-up, 5 throughput and fan-out, 3 queue and cost)
  --seconds S          seconds of lines per multicast run (default 2)
  --records N          records through the work queue (default 20000)
  --memory-size SIZE   bytes through the memory stream (default 1G; K, M, G suffixes)
  --anchors DIR        the C anchors' source (default: shared/anchors beside the repository or above)
  --no-anchors         leave out the C anchors and their ratios`;

interface Config {
  quick: boolean;
  only: Part[];
  markdown: boolean;
  json: boolean;
  verbose: boolean;
  dir: string | undefined;
  rounds: number | undefined;
  seconds: number;
  records: number;
  memoryBytes: number;
  anchors: string | undefined;
  noAnchors: boolean;
}

function configure(argv: string[]): Config | 'help' {
  const { values: v } = parseArgs({
    args: argv,
    strict: true,
    allowPositionals: false,
    options: {
      quick: { type: 'boolean' },
      only: { type: 'string' },
      markdown: { type: 'boolean' },
      json: { type: 'boolean' },
      verbose: { type: 'boolean' },
      dir: { type: 'string' },
      rounds: { type: 'string' },
      seconds: { type: 'string' },
      records: { type: 'string' },
      'memory-size': { type: 'string' },
      anchors: { type: 'string' },
      'no-anchors': { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (v.help) return 'help';
  const quick = v.quick ?? false;
  const only = (v.only ?? partNames.join(',')).split(',').map((p) => p.trim()).filter(Boolean);
  for (const p of only) if (!(p in parts)) throw new Error(`--only: unknown part '${p}' (parts: ${partNames.join(', ')})`);
  return {
    quick,
    only: only as Part[],
    markdown: v.markdown ?? false,
    json: v.json ?? false,
    verbose: v.verbose ?? false,
    dir: v.dir,
    rounds: v.rounds === undefined ? undefined : positive(v.rounds, '--rounds', true),
    seconds: positive(v.seconds ?? (quick ? '0.5' : '2'), '--seconds'),
    records: positive(v.records ?? (quick ? '1000' : '20000'), '--records', true),
    memoryBytes: parseSize(v['memory-size'] ?? (quick ? '32M' : '1G')),
    anchors: v.anchors,
    noAnchors: v['no-anchors'] ?? false,
  };
}

function positive(text: string, name: string, integer = false): number {
  const n = Number(text);
  if (!Number.isFinite(n) || n <= 0 || (integer && !Number.isInteger(n))) throw new Error(`${name}: not a positive ${integer ? 'integer' : 'number'}: '${text}'`);
  return n;
}

function parseSize(text: string): number {
  const match = /^(\d+(?:\.\d+)?)([KMG]?)(?:i?B)?$/i.exec(text.trim());
  if (!match) throw new Error(`--memory-size: not a size: '${text}'`);
  const factor = { '': 1, K: 1024, M: 1024 ** 2, G: 1024 ** 3 }[match[2]!.toUpperCase() as '' | 'K' | 'M' | 'G'];
  return Math.round(Number(match[1]) * factor);
}

/** The file system under `dir`, from /proc/self/mounts (longest matching mount point). */
function fileSystemOf(dir: string): string {
  let best = { mount: '', type: 'unknown' };
  try {
    for (const line of fs.readFileSync('/proc/self/mounts', 'utf8').split('\n')) {
      const [, mount, type] = line.split(' ');
      if (!mount || !type) continue;
      const inside = dir === mount || dir.startsWith(mount.endsWith('/') ? mount : `${mount}/`);
      if (inside && mount.length >= best.mount.length) best = { mount, type };
    }
  } catch {
    // No /proc: the type stays unknown.
  }
  return best.type;
}

function machineLine(dir: string): string {
  const cpus = os.cpus();
  const load = os.loadavg().map((x) => x.toFixed(2)).join(' ');
  return `${cpus.length} cores (${cpus[0]?.model.trim() ?? 'unknown CPU'}), ${(os.totalmem() / 1024 ** 3).toFixed(1)} GiB; Linux ${os.release()}; node ${process.version}; ${fileSystemOf(dir)} (${path.dirname(dir)}); load average ${load} at the start`;
}

/** Kills every child and removes every temporary directory on exit, and on Ctrl-C (SIGINT), SIGTERM and SIGHUP. */
function cleanUpOnExit(): void {
  const signals: Array<[NodeJS.Signals, number]> = [
    ['SIGINT', 2],
    ['SIGTERM', 15],
    ['SIGHUP', 1],
  ];
  for (const [signal, number] of signals) {
    process.on(signal, () => {
      cleanUp();
      process.stderr.write(`\nbench: interrupted by ${signal}; every child killed, temporary files removed\n`);
      process.exit(128 + number);
    });
  }
  process.on('exit', cleanUp);
}

async function main(): Promise<number> {
  const startedAt = performance.now();
  let config: Config | 'help';
  try {
    config = configure(process.argv.slice(2));
  } catch (error) {
    process.stderr.write(`bench: ${(error as Error).message}\n${usage}\n`);
    return 2;
  }
  if (config === 'help') {
    process.stdout.write(`${usage}\n`);
    return 0;
  }
  if (!fs.existsSync(cli)) {
    process.stderr.write(`bench: ${cli} is missing: build first (npm run build, or npm run bench)\n`);
    return 2;
  }
  const cfg = config;
  cleanUpOnExit();
  const dir = fs.realpathSync(tempDir(cfg.dir ?? defaultBase(), 'filebus-bench-'));
  const log = (message: string): void => {
    if (cfg.verbose) process.stderr.write(`${message}\n`);
  };
  const progress = (message: string): void => {
    if (!cfg.json) process.stderr.write(`bench: ${message}\n`);
  };
  const machine = machineLine(dir);

  const wants = (...ps: Part[]): boolean => ps.some((p) => cfg.only.includes(p));
  let anchors: AnchorsOrReason = { reason: 'C anchors left out (--no-anchors)' };
  if (!cfg.noAnchors && wants('throughput', 'fanout', 'cost', 'idle', 'neighbour', 'groups')) anchors = buildAnchors(path.join(dir, 'anchors'), cfg.anchors);
  const unsupported: FeatureSupport = { ok: false, reason: 'not probed' };
  const features = {
    lines: wants('throughput') ? supports(['--lines'], dir) : unsupported,
    history: wants('fanout') ? supports(['--history', '3'], dir) : unsupported,
  };
  const ctx: Context = { dir, quick: cfg.quick, rounds: cfg.rounds, anchors, features, log, options: { seconds: cfg.seconds, records: cfg.records, memoryBytes: cfg.memoryBytes } };

  const figures: Figure[] = [];
  const checks: Check[] = [];
  const notes: string[] = [];
  if ('reason' in anchors) notes.push(`${anchors.reason}; their ratios are left out.`);
  for (const f of Object.values(features)) if (!f.ok && f.reason !== 'not probed') notes.push(`${f.reason}: its rows stay empty.`);
  try {
    for (const part of partNames.filter((p) => cfg.only.includes(p))) {
      progress(`${part}...`);
      const t0 = performance.now();
      try {
        const r = await parts[part](ctx);
        figures.push(...r.figures);
        checks.push(...r.checks);
        notes.push(...r.notes);
      } catch (error) {
        checks.push({ name: `${part}: ran to the end`, ok: false, detail: (error as Error).stack ?? String(error) });
      }
      progress(`${part} took ${((performance.now() - t0) / 1000).toFixed(1)} s`);
    }
  } finally {
    cleanUp();
  }
  const seconds = (performance.now() - startedAt) / 1000;
  const failed = checks.filter((c) => !c.ok);
  if (cfg.json) {
    const rows = figures.map((f) => ({ ...rowOf(f), value: f.value, yardstickValue: f.yardstick?.value, unit: f.unit }));
    process.stdout.write(`${JSON.stringify({ machine, quick: cfg.quick, figures: rows, checks, notes, seconds, ok: failed.length === 0 }, null, 2)}\n`);
  } else {
    const out: string[] = [];
    const title = `filebus benchmark, ${new Date().toISOString().slice(0, 16).replace('T', ' ')} UTC${cfg.quick ? ' (--quick: smoke test, figures not meaningful)' : ''}`;
    out.push(cfg.markdown ? `**${title}**` : title, '', `machine: ${machine}`, '', figureTable(figures, cfg.markdown), '');
    for (const note of notes) out.push(cfg.markdown ? `- ${note}` : `* ${note}`);
    out.push('', `correctness: ${checks.length - failed.length} of ${checks.length} checks passed; total ${seconds.toFixed(0)} s`);
    for (const f of failed) out.push(`  FAILED ${f.name}: ${f.detail ?? ''}`);
    process.stdout.write(`${out.join('\n')}\n`);
  }
  return failed.length ? 1 : 0;
}

process.exitCode = await main();
