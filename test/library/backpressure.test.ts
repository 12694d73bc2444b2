/** The library's back-pressure consumer: createConsumer({ backPressure: true }) as an async iterator. */
import { once } from 'node:events';
import fs from 'node:fs';
import path from 'node:path';
import { expect, test } from 'vitest';
import { type Proc, filebus, tempDir, waitForFile, randomBytes } from '../helpers.js';
import { createConsumer, createProducer } from '../../src/index.js';
import { RECORD, busLeftovers, inputFd, records } from '../support/queue.js';

test('library: createConsumer({ backPressure: true }) yields each chunk, and ending the producer ends the loop', async () => {
  const bus = path.join(tempDir(), 'bus');
  const blockSize = 64;
  const producer = createProducer({ filename: bus, backPressure: true, blockSize });
  const chunks: Buffer[] = [];
  const loop = (async () => {
    for await (const chunk of createConsumer({ filename: bus, backPressure: true })) chunks.push(chunk as Buffer);
  })();
  const buffers = [Buffer.from('a'), randomBytes(64), randomBytes(200), Buffer.alloc(10), randomBytes(1000)];
  for (const buffer of buffers) producer.write(buffer);
  producer.end();
  await once(producer, 'finish');
  // The for-await loop ends on its own: the producer's end published the end-of-stream chunk.
  await loop;
  expect(Buffer.concat(chunks).equals(Buffer.concat(buffers))).toBe(true);
  for (const chunk of chunks) {
    expect(chunk.length).toBeGreaterThan(0);
    expect(chunk.length).toBeLessThanOrEqual(blockSize);
  }
  expect(busLeftovers(bus)).toEqual([]);
});

test('library: a back-pressure consumer that stops iterating leaves the next chunk on the bus', async () => {
  const dir = tempDir();
  const bus = path.join(dir, 'bus');
  const input = records(5, 3);
  const args = ['--filename', bus, '--back-pressure', '--block-size', String(RECORD)];
  const fd = inputFd(dir, 'input', Buffer.concat(input));
  const producer = filebus([...args, 'producer'], { stdin: fd });
  fs.closeSync(fd);
  const taken: Buffer[] = [];
  for await (const chunk of createConsumer({ filename: bus, backPressure: true })) {
    taken.push(chunk as Buffer);
    // Give the producer time to publish the next chunk, which the stream may already hold.
    await waitForFile(bus);
    break;
  }
  expect(taken.map(String)).toEqual([input[0]!.toString()]);
  const next: Proc = filebus([...args, 'consumer'], { stdin: 'ignore' });
  expect(await next.exited).toBe(0);
  expect(await producer.exited).toBe(0);
  expect(next.stdout().equals(Buffer.concat(input.slice(1)))).toBe(true);
});
