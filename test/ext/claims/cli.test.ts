/**
 * consumer --exec on the command line: usage errors, and each job's output
 * written whole.
 */
import fs from 'node:fs';
import path from 'node:path';
import { expect, test } from 'vitest';
import { filebus, hasStackTrace, tempDir, within } from '../../helpers.js';

test.each([
  [['consumer', '--exec', 'true'], /--exec needs a --back-pressure bus or a --group NAME/],
  [['--lossless', 'consumer', '--jobs', '2'], /--jobs and --retries go with --exec CMD/],
  [['--lossless', 'consumer', '--exec', 'true', '--jobs', '0'], /--jobs must be a positive whole number, got '0'/],
  [['--lossless', 'consumer', '--exec', 'true', '--retries', 'x'], /--retries must be a positive whole number, got 'x'/],
  [['--lossless', 'consumer', '--exec', ' '], /--exec needs a command/],
])('filebus %j: one line on stderr, exit 2', async (args, message) => {
  const bus = path.join(tempDir(), 'bus');
  const p = filebus(['--filename', bus, ...args], { stdin: 'ignore' });
  expect(await p.exited).toBe(2);
  expect(p.stderr()).toMatch(message);
  expect(p.stderr().trim().split('\n')).toHaveLength(1);
  expect(hasStackTrace(p.stderr())).toBe(false);
});

test('--jobs 4: each job\'s output comes out whole, never mixed with another\'s', async () => {
  const dir = tempDir();
  const bus = path.join(dir, 'bus');
  const count = 24;
  const input = path.join(dir, 'input');
  fs.writeFileSync(input, Array.from({ length: count }, (_, i) => `${String(i).padStart(3, '0')}\n`).join(''));
  // Each job writes five lines with pauses in between, to stdout and stderr: side by side, unbuffered, they would interleave.
  const command = 'read n; for i in 1 2 3 4 5; do echo "$n line $i"; echo "$n err $i" >&2; sleep 0.01; done';
  const consumer = filebus(['--filename', bus, '--lossless', 'consumer', '--exec', command, '--jobs', '4'], { stdin: 'ignore' });
  const fd = fs.openSync(input, 'r');
  const producer = filebus(['--filename', bus, '--lossless', 'producer', '--lines', '--block-size', '4'], { stdin: fd });
  fs.closeSync(fd);
  expect(await within(consumer.exited, 60_000, 'the consumer')).toBe(0);
  expect(await producer.exited).toBe(0);
  const blocks = (text: string, kind: string) => {
    const lines = text.trim().split('\n');
    expect(lines).toHaveLength(count * 5);
    const seen = new Set<string>();
    for (let i = 0; i < lines.length; i += 5) {
      const n = lines[i]!.slice(0, 3);
      expect(lines.slice(i, i + 5)).toEqual([1, 2, 3, 4, 5].map((k) => `${n} ${kind} ${k}`));
      seen.add(n);
    }
    expect(seen.size).toBe(count);
  };
  blocks(consumer.stdout().toString(), 'line');
  blocks(consumer.stderr(), 'err');
}, 90_000);

test('a job starts with SIGPIPE at its default action, and a job killed by a signal is dead-lettered by the signal\'s name', async () => {
  const dir = tempDir();
  const bus = path.join(dir, 'bus');
  // With SIGPIPE ignored (as Node has it), `yes` would never end.
  const consumer = filebus(['--filename', bus, '--lossless', 'consumer', '--exec', 'yes | head -n 1; kill -KILL $$', '--retries', '1'], { stdin: 'ignore' });
  const producer = filebus(['--filename', bus, '--lossless', 'producer'], { stdin: 'pipe' });
  producer.child.stdin!.end('one chunk\n');
  expect(await within(consumer.exited, 30_000, 'the consumer')).toBe(0);
  expect(await producer.exited).toBe(0);
  expect(consumer.stdout().toString()).toBe('y\n');
  expect(consumer.stderr()).toMatch(/failed: killed by SIGKILL \(attempt 1 of 1\); moved to \S+\.signal-SIGKILL\.attempts-1\n$/);
  const dead = fs.readdirSync(`${bus}.dead`);
  expect(dead).toHaveLength(1);
  expect(fs.readFileSync(path.join(`${bus}.dead`, dead[0]!), 'latin1')).toBe('one chunk\n');
}, 60_000);
