/**
 * An option given twice takes the last value, as in the original Python and
 * bash filebus, our bash implementation and most Unix tools (issue 17,
 * item 8): for every command, status included.
 */
import fs from 'node:fs';
import path from 'node:path';
import { expect, test } from 'vitest';
import { filebus, tempDir, waitForFile } from '../helpers.js';

test('--filename A --filename B producer publishes on B', async () => {
  const dir = tempDir();
  const producer = filebus(['--filename', path.join(dir, 'a'), '--filename', path.join(dir, 'b'), 'producer']);
  producer.child.stdin!.end('to b\n');
  expect(await producer.exited).toBe(0);
  expect(producer.stderr()).toBe('');
  expect(fs.readFileSync(path.join(dir, 'b'), 'utf8')).toBe('to b\n');
  expect(fs.existsSync(path.join(dir, 'a'))).toBe(false);
});

test('--filename A --filename B status looks at B', async () => {
  const dir = tempDir();
  fs.writeFileSync(path.join(dir, 'b'), 'chunk');
  const status = filebus(['--filename', path.join(dir, 'a'), '--filename', path.join(dir, 'b'), 'status', '--json'], { stdin: 'ignore' });
  expect(await status.exited).toBe(0);
  expect(status.stderr()).toBe('');
  expect(JSON.parse(status.stdout().toString())).toMatchObject({ path: path.join(dir, 'b'), exists: true });
});

test('--block-size 10 --block-size 20: chunks of 20 bytes', async () => {
  const bus = path.join(tempDir(), 'bus');
  const args = ['--filename', bus, '--lossless', '--block-size', '10', '--block-size', '20'];
  const producer = filebus([...args, 'producer']);
  producer.child.stdin!.end('0123456789abcdefghijklmnopqrstuvwxyz');
  // Back pressure: the first chunk waits on the bus for a consumer.
  await waitForFile(bus);
  expect(fs.readFileSync(bus, 'utf8')).toBe('0123456789abcdefghij');
  const consumer = filebus([...args, 'consumer', '--producers', '5', '--producers', '1'], { stdin: 'ignore' });
  expect(await consumer.exited).toBe(0);
  expect(await producer.exited).toBe(0);
  expect(consumer.stdout().toString()).toBe('0123456789abcdefghijklmnopqrstuvwxyz');
  expect(producer.stderr() + consumer.stderr()).toBe('');
});

test('--impl bash --impl typescript runs TypeScript (--null is refused by bash)', async () => {
  const bus = path.join(tempDir(), 'bus');
  const producer = filebus(['--impl', 'bash', '--impl', 'typescript', '--filename', bus, 'producer', '--null']);
  producer.child.stdin!.end('a\0');
  expect(await producer.exited).toBe(0);
  expect(producer.stderr()).toBe('');
  expect(fs.readFileSync(bus, 'utf8')).toBe('a\0');
});
