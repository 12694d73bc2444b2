/**
 * Claims through the library (`consume` with `jobs`/`retries`) and in
 * `filebus status`.
 */
import fs from 'node:fs';
import path from 'node:path';
import { expect, test } from 'vitest';
import { consume, status } from '../../../src/index.js';
import { filebus, tempDir, until, within } from '../../helpers.js';

const WIDTH = 8;
const record = (i: number) => `r-${String(i).padStart(5, '0')}\n`;

function producer(bus: string, count: number, dir: string) {
  const input = path.join(dir, 'input');
  fs.writeFileSync(input, Array.from({ length: count }, (_, i) => record(i)).join(''));
  const fd = fs.openSync(input, 'r');
  const p = filebus(['--filename', bus, '--lossless', 'producer', '--lines', '--block-size', String(WIDTH)], { stdin: fd });
  fs.closeSync(fd);
  return p;
}

test('consume with jobs and retries: up to `jobs` deliveries at once, a rejected deliver is retried, then dead-lettered', async () => {
  const dir = tempDir();
  const bus = path.join(dir, 'bus');
  const count = 60;
  const p = producer(bus, count, dir);
  const done = new Map<string, number>();
  const tries = new Map<string, number>();
  let inFlight = 0;
  let most = 0;
  const failures: string[] = [];
  await within(
    consume({ filename: bus, backPressure: true, jobs: 3, retries: 2, onFailure: (line) => failures.push(line) }, async (chunk) => {
      const text = chunk.toString('latin1');
      tries.set(text, (tries.get(text) ?? 0) + 1);
      inFlight++;
      most = Math.max(most, inFlight);
      await new Promise((resolve) => setTimeout(resolve, 5));
      inFlight--;
      if (text.endsWith('3\n')) throw new Error(`no ${text.trim()}`);
      done.set(text, (done.get(text) ?? 0) + 1);
    }),
    60_000,
    'consume to end',
  );
  expect(await p.exited).toBe(0);
  expect(most).toBe(3);
  const failing = Array.from({ length: count }, (_, i) => record(i)).filter((r) => r.endsWith('3\n'));
  for (let i = 0; i < count; i++) {
    const r = record(i);
    if (failing.includes(r)) expect(tries.get(r), r).toBe(2);
    else expect(done.get(r), r).toBe(1);
  }
  const dead = fs.readdirSync(`${bus}.dead`);
  expect(dead).toHaveLength(failing.length);
  for (const name of dead) expect(name).toMatch(/\.error\.attempts-2$/);
  expect(failures.filter((line) => /failed: no r-\d+ \(attempt 2 of 2\); moved to /.test(line))).toHaveLength(failing.length);
  // Shown by status.
  const s = status(bus);
  expect(s.claims?.claims).toEqual([]);
  expect(s.claims?.dead.map((d) => [d.status, d.attempts])).toEqual(failing.map(() => ['error', 2]));
}, 90_000);

test('status shows each claim with the PID holding it, its attempts, and an orphan once its consumer is killed', async () => {
  const dir = tempDir();
  const bus = path.join(dir, 'bus');
  const p = producer(bus, 4, dir);
  const consumer = filebus(['--filename', bus, '--lossless', 'consumer', '--exec', 'exec sleep 1000', '--jobs', '2'], { stdin: 'ignore' });
  await until(() => (status(bus).claims?.claims ?? []).filter((c) => c.holders.length > 0).length === 2, 20_000, 'two held claims');
  const held = status(bus).claims!.claims;
  expect(held.map((c) => c.holders)).toEqual([[consumer.child.pid], [consumer.child.pid]]);
  expect(held.map((c) => c.attempts)).toEqual([0, 0]);
  const text = filebus(['--filename', bus, 'status']);
  expect(await text.exited).toBe(0);
  expect(text.stdout().toString()).toMatch(new RegExp(`claim: +\\S+, held by PID ${consumer.child.pid} for [\\d.]+ s, 0 failed attempts, ${WIDTH} bytes`));
  // Its jobs are in groups of their own; killing the consumer leaves them (and their chunks) orphaned.
  const sleepers = fs.readdirSync('/proc').filter((pid) => /^\d+$/.test(pid) && readOr(`/proc/${pid}/cmdline`).startsWith('sleep\u00001000'));
  consumer.child.kill('SIGKILL');
  await consumer.exited;
  for (const pid of sleepers) process.kill(Number(pid), 'SIGKILL');
  expect(status(bus).claims!.claims.map((c) => c.holders)).toEqual([[], []]);
  const orphaned = filebus(['--filename', bus, 'status']);
  await orphaned.exited;
  expect(orphaned.stdout().toString()).toMatch(/orphaned \(the next consumer takes it over\)/);
  // The producer still waits for its third chunk to be taken: it is stopped with the test's clean-up.
  expect(p.child.exitCode).toBe(null);
}, 60_000);

function readOr(file: string): string {
  try {
    return fs.readFileSync(file, 'latin1');
  } catch {
    return '';
  }
}
