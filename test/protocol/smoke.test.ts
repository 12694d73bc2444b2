import { expect, test } from 'vitest';
import { filebus, tempDir } from '../helpers.js';
import path from 'node:path';

test('a line published by the producer reaches a consumer', async () => {
  const bus = path.join(tempDir(), 'bus');
  const consumer = filebus(['--filename', bus, 'consumer']);
  const producer = filebus(['--filename', bus, 'producer']);
  producer.child.stdin!.end('hello\n');
  expect(await producer.exited).toBe(0);
  expect((await consumer.waitForBytes(6)).toString()).toBe('hello\n');
});
