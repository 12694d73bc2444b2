/**
 * Issue "Reliability and security, round 3", item 1: a consumer finds a
 * history whenever it appears, and one that was there before the first
 * chunk gets every chunk from the first (or is told what it missed).
 */
import fs from 'node:fs';
import path from 'node:path';
import { expect, test } from 'vitest';
import { filebus, tempDir } from '../../helpers.js';
import { lineFile, numbered, produceQuietly, watching } from './util.js';

test('a consumer started on an empty directory and stopped while 2,000 chunks pass a window of 50 reports the 1,950 it missed, from seq 1', async () => {
  const dir = tempDir();
  const bus = path.join(dir, 'bus');
  const consumer = filebus(['--filename', bus, 'consumer'], { stdin: 'ignore' });
  await watching(consumer.child.pid!);
  consumer.child.kill('SIGSTOP');
  try {
    await produceQuietly(['--filename', bus, '--history', '50', '--block-size', '8'], lineFile(dir, 'in', 1, 2000));
  } finally {
    consumer.child.kill('SIGCONT');
  }
  await consumer.waitFor((out) => out.toString().endsWith('0002000\n'));
  await consumer.waitFor(() => consumer.stderr().length > 0, 3000).catch(() => undefined);
  expect(consumer.stdout().toString()).toBe(numbered(1951, 50));
  expect(consumer.stderr()).toBe('filebus: missed 1950 chunks (seq 1-1950)\n');
});

test('a consumer started before the bus exists, stopped while 2,000 chunks go into a window of 3,000: every chunk from the first, nothing missed', async () => {
  const dir = tempDir();
  const bus = path.join(dir, 'sub', 'bus');
  const consumer = filebus(['--filename', bus, 'consumer'], { stdin: 'ignore' });
  await watching(consumer.child.pid!);
  const input = path.join(dir, 'in');
  fs.writeFileSync(input, Array.from({ length: 2000 }, (_, i) => `${i + 1}\n`).join(''));
  fs.mkdirSync(path.dirname(bus), { recursive: true });
  // Stopped while the producer runs: how far it got decides nothing.
  consumer.child.kill('SIGSTOP');
  try {
    await produceQuietly(['--filename', bus, '--history', '3000', '--block-size', '8', 'producer', '--lines'], input);
  } finally {
    consumer.child.kill('SIGCONT');
  }
  await consumer.waitFor((out) => out.toString().endsWith('2000\n'));
  expect(consumer.stdout().toString()).toBe(fs.readFileSync(input, 'latin1'));
  expect(consumer.stderr()).toBe('');
});

test('a history removed and made again while a consumer is stopped: it reads the new one from its first chunk', async () => {
  const dir = tempDir();
  const bus = path.join(dir, 'bus');
  const args = ['--filename', bus, '--history', '100', '--block-size', '8'];
  await produceQuietly(args, lineFile(dir, 'first', 1, 10));
  const consumer = filebus(['--filename', bus, 'consumer', '--replay'], { stdin: 'ignore' });
  await consumer.waitFor((out) => out.toString().endsWith('0000010\n'));
  consumer.child.kill('SIGSTOP');
  try {
    fs.rmSync(`${bus}.history`, { recursive: true });
    await produceQuietly(args, lineFile(dir, 'again', 101, 20)); // the new history's seqs 1..20
  } finally {
    consumer.child.kill('SIGCONT');
  }
  await consumer.waitFor((out) => out.toString().endsWith('0000120\n'));
  expect(consumer.stdout().toString()).toBe(numbered(1, 10) + numbered(101, 20));
});
