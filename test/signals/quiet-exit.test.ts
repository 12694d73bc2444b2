/** Signals end a TypeScript process quietly: the shell's status, no stack trace, nothing half-published. */
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, test } from 'vitest';
import { filebus, tempDir, waitForFile } from '../helpers.js';

describe('signals end a process quietly', () => {
  test.each([
    ['SIGINT', 130],
    ['SIGTERM', 143],
  ] as const)('multicast producer waiting for input, %s -> %i', async (signal, status) => {
    const bus = path.join(tempDir(), 'bus');
    const producer = filebus(['--filename', bus, 'producer']);
    producer.child.stdin!.write('published\n');
    await waitForFile(bus);
    producer.child.kill(signal);
    expect(await producer.exited).toBe(status);
    expect(producer.child.signalCode).toBeNull();
    expect(producer.stderr()).toBe('');
    expect(fs.readFileSync(bus, 'utf8')).toBe('published\n');
  });


  test.each([
    ['SIGINT', 130],
    ['SIGTERM', 143],
  ] as const)('multicast consumer, %s -> %i', async (signal, status) => {
    const bus = path.join(tempDir(), 'bus');
    const consumer = filebus(['--filename', bus, 'consumer'], { stdin: 'ignore' });
    const producer = filebus(['--filename', bus, 'producer']);
    producer.child.stdin!.end('warm-up\n');
    // The consumer printed a chunk, so it is up, with its signal handlers in place.
    await consumer.waitForBytes(8);
    consumer.child.kill(signal);
    expect(await consumer.exited).toBe(status);
    // Exited on its own with that status, not killed by the signal.
    expect(consumer.child.signalCode).toBeNull();
    expect(consumer.stderr()).toBe('');
  });

  test.each([
    ['SIGINT', 130],
    ['SIGTERM', 143],
  ] as const)('back-pressure consumer waiting on an empty bus, %s -> %i', async (signal, status) => {
    const bus = path.join(tempDir(), 'bus');
    const consumer = filebus(['--filename', bus, '--back-pressure', 'consumer'], { stdin: 'ignore' });
    // The lock file is opened after the handlers are installed.
    await waitForFile(`${bus}.lock`);
    consumer.child.kill(signal);
    expect(await consumer.exited).toBe(status);
    expect(consumer.child.signalCode).toBeNull();
    expect(consumer.stderr()).toBe('');
  });
});
