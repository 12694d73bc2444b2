/**
 * Issue 16: one producer loop serves the command (an fd source) and the
 * library's Writable (a queue source). Given the same input all at once,
 * both cut it into the same chunks: whole lines, each chunk as full as a
 * block allows, the last partial line at the end of input.
 */
import fs from 'node:fs';
import { once } from 'node:events';
import path from 'node:path';
import { expect, test } from 'vitest';
import { createConsumer, createProducer } from '../../src/index.js';
import { filebus, tempDir, within } from '../helpers.js';

const BLOCK = 100;

function input(): Buffer {
  const lines: string[] = [];
  for (let i = 0; i < 300; i++) lines.push(`${'x'.repeat((i * 7) % 40)}${i}\n`);
  // One line longer than a block (split, noticed once), and a last one without its newline.
  lines.push(`${'y'.repeat(250)}\n`, 'no newline at the end');
  return Buffer.from(lines.join(''));
}

async function chunksOf(bus: string, produce: () => Promise<void>): Promise<string[]> {
  const consumer = createConsumer({ filename: bus, backPressure: true });
  const collected = (async () => {
    const chunks: string[] = [];
    for await (const chunk of consumer) chunks.push(String(chunk));
    return chunks;
  })();
  await produce();
  return within(collected, 20_000, 'the stream to end');
}

test('the command and the library cut the same --lines input into the same chunks', async () => {
  const dir = tempDir();
  const data = input();
  const file = path.join(dir, 'input');
  fs.writeFileSync(file, data);

  const fromCommand = await chunksOf(path.join(dir, 'a'), async () => {
    const fd = fs.openSync(file, 'r');
    const producer = filebus(['--filename', path.join(dir, 'a'), '--lossless', '--block-size', String(BLOCK), 'producer', '--lines'], { stdin: fd });
    fs.closeSync(fd);
    expect(await producer.exited).toBe(0);
    expect(producer.stderr()).toBe('');
  });
  const notices: string[] = [];
  const fromLibrary = await chunksOf(path.join(dir, 'b'), async () => {
    const producer = createProducer({ filename: path.join(dir, 'b'), backPressure: true, blockSize: BLOCK, records: 'lines', log: (line) => notices.push(line) });
    producer.end(data);
    await once(producer, 'finish');
  });

  expect(fromCommand.join('')).toBe(data.toString());
  expect(fromLibrary).toEqual(fromCommand);
  for (const chunk of fromCommand) expect(chunk.length).toBeLessThanOrEqual(BLOCK);
  // Whole lines, except the split overlong one and the unterminated last one.
  expect(fromCommand.filter((chunk) => !chunk.endsWith('\n')).length).toBe(3);
  expect(notices).toHaveLength(1);
});

test('a library producer holds a fast trickle for at most the hold, then publishes it without end()', async () => {
  const bus = path.join(tempDir(), 'bus');
  const consumer = createConsumer({ filename: bus, backPressure: true });
  const producer = createProducer({ filename: bus, backPressure: true, records: 'lines' });
  // A whole line followed by part of the next: the whole line goes out on the hold's deadline, the part waits.
  producer.write('first\nsec');
  const iterator = consumer[Symbol.asyncIterator]();
  const first = await within(iterator.next(), 5_000, 'the first line');
  expect(String(first.value)).toBe('first\n');
  producer.end('ond\n');
  const second = await within(iterator.next(), 5_000, 'the second line');
  expect(String(second.value)).toBe('second\n');
  expect((await within(iterator.next(), 5_000, 'the end')).done).toBe(true);
});
