/**
 * A TypeScript producer or consumer stopped by SIGINT or SIGTERM: what was
 * read is published, a chunk being written stays on the bus, a second
 * signal ends it at once, and the exit status is 128 + n.
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, test } from 'vitest';
import { type Proc, asleepInEventLoop, bp, busArgs, drainFifo, exitOf, filebus, fileHolds, hasStackTrace,  hugeChunkPublished, ioBytes, lines, openFiles,  run, signalNumber, sleep, stuckPipe, tempDir, until, untilLocked, waitForFile, within } from '../helpers.js';

const statusOf = (proc: Proc) => proc.child.exitCode; // null when a signal ended it: we want statuses the program chose

describe('2. signals', () => {
  test.each([['SIGINT'], ['SIGTERM']] as const)('multicast producer: %s publishes what it read, leaves no F.__new__, exits 128+n', async (signal) => {
    const dir = tempDir();
    const bus = path.join(dir, 'bus');
    const consumer = filebus([...busArgs(bus), 'consumer'], { stdin: 'ignore' });
    // Polling only: then everything the producer reads is its input, and /proc/PID/io shows when it has read it.
    const producer = filebus([...busArgs(bus, '--no-file-monitoring'), 'producer']);
    producer.child.stdin!.write('first line\n');
    await consumer.waitForBytes(11);
    const read = ioBytes(producer.child.pid!).read;
    producer.child.stdin!.write('second line\n');
    // Read but perhaps not yet published when the signal comes.
    await until(() => ioBytes(producer.child.pid!).read >= read + 12, 5000, 'the producer to read the second line');
    producer.child.kill(signal);
    await consumer.waitFor((out) => out.toString() === 'first line\nsecond line\n', 5000);
    expect(await exitOf(producer, 5000)).toBe(signalNumber(signal));
    expect(statusOf(producer)).toBe(signalNumber(signal));
    expect(producer.stderr()).toBe('');
    expect(fs.existsSync(`${bus}.__new__`)).toBe(false);
  });

  test.each([['SIGINT'], ['SIGTERM']] as const)('back-pressure producer: %s with no consumer still publishes what it read, then exits 128+n', async (signal) => {
    const dir = tempDir();
    const bus = path.join(dir, 'bus');
    const args = busArgs(bus, ...bp);
    // Polling only: then everything the producer reads is its input, and /proc/PID/io shows when it has read it.
    const producer = filebus([...args, '--no-file-monitoring', 'producer']);
    producer.child.stdin!.write('first\n');
    await until(fileHolds(bus, 'first\n'), 10_000, 'the first chunk');
    // More input, read from stdin while the slot is full (less than a block: one read takes it all).
    const rest = Buffer.alloc(3000, 'r');
    const read = ioBytes(producer.child.pid!).read;
    producer.child.stdin!.write(rest);
    await until(() => ioBytes(producer.child.pid!).read >= read + rest.length, 5000, 'the producer to read its input');
    producer.child.kill(signal);
    const consumer = filebus([...args, 'consumer'], { stdin: 'ignore' });
    await consumer.waitFor((out) => out.length >= 6 + rest.length, 10_000);
    expect(consumer.stdout().equals(Buffer.concat([Buffer.from('first\n'), rest]))).toBe(true);
    expect(await exitOf(producer, 5000)).toBe(signalNumber(signal));
    expect(statusOf(producer)).toBe(signalNumber(signal));
    expect(producer.stderr()).toBe('');
    expect(fs.existsSync(`${bus}.__new__`)).toBe(false);
  });

  test('back-pressure producer: a second signal exits at once', async () => {
    const dir = tempDir();
    const bus = path.join(dir, 'bus');
    const producer = filebus([...busArgs(bus, ...bp, '--no-file-monitoring'), 'producer']);
    producer.child.stdin!.write('first\n');
    await until(fileHolds(bus, 'first\n'), 10_000, 'the first chunk');
    const read = ioBytes(producer.child.pid!).read;
    producer.child.stdin!.write('second\n');
    await until(() => ioBytes(producer.child.pid!).read >= read + 7, 5000, 'the producer to read its input');
    producer.child.kill('SIGTERM');
    // It waits for a consumer to take the slot, to publish 'second'...
    await sleep(300);
    expect(producer.child.exitCode).toBe(null);
    // ...until the second signal.
    const t0 = performance.now();
    producer.child.kill('SIGINT');
    const status = await within(producer.exited, 5000, 'the producer to exit on the second signal');
    expect(performance.now() - t0).toBeLessThan(1000);
    expect(status).toBe(143); // the first signal's
    expect(statusOf(producer)).toBe(status);
    // 'second' was read and never published: said in one line.
    expect(lines(producer.stderr()), producer.stderr()).toHaveLength(1);
    expect(producer.stderr()).toMatch(/^filebus: .*\b7 bytes\b.*not published/);
    expect(fs.existsSync(`${bus}.__new__`)).toBe(false);
    expect(fs.readFileSync(bus, 'utf8')).toBe('first\n');
  });

  test.each([
    ['multicast', 'SIGINT'],
    ['multicast', 'SIGTERM'],
    ['back-pressure', 'SIGINT'],
    ['back-pressure', 'SIGTERM'],
  ] as const)('%s consumer: %s exits quietly with 128+n', async (mode, signal) => {
    const bus = path.join(tempDir(), 'bus');
    const args = busArgs(bus, ...(mode === 'back-pressure' ? bp : []));
    const consumer = filebus([...args, 'consumer'], { stdin: 'ignore' });
    const producer = filebus([...args, 'producer']);
    producer.child.stdin!.write('ping\n');
    await consumer.waitForBytes(5); // running, idle
    consumer.child.kill(signal);
    expect(await within(consumer.exited, 5000, 'the consumer to exit')).toBe(signalNumber(signal));
    expect(statusOf(consumer)).toBe(signalNumber(signal));
    expect(consumer.stderr()).toBe('');
  });

  // A first signal lets the chunk being written finish (test/signals/backpressure-output.test.ts); a second one cuts it.
  test.each([['SIGINT'], ['SIGTERM']] as const)('back-pressure consumer: %s twice in the middle of writing a chunk leaves it on the bus', async (signal) => {
    const dir = tempDir();
    const bus = path.join(dir, 'bus');
    const args = busArgs(bus, ...bp);
    const { data, producer } = await hugeChunkPublished(dir, bus, args);
    const pipe = stuckPipe(dir);
    try {
      const c1 = filebus([...args, 'consumer'], { stdin: 'ignore', stdout: pipe.fd });
      await until(() => ioBytes(c1.child.pid!).written >= 65536, 10_000, 'C1 to fill its output pipe');
      c1.child.kill(signal);
      await until(() => asleepInEventLoop(c1.child.pid!), 5000, 'C1 to go on waiting for room');
      c1.child.kill(signal);
      expect(await within(c1.exited, 5000, 'the consumer to exit')).toBe(signalNumber(signal));
      expect(statusOf(c1)).toBe(signalNumber(signal));
      expect(c1.stderr()).toMatch(/^filebus: stopped by a second signal while writing a chunk [^\n]*stays on the bus[^\n]*\n$/);
    } finally {
      pipe.close();
    }
    expect(fs.readFileSync(bus).equals(data)).toBe(true);
    const c2 = filebus([...args, 'consumer'], { stdin: 'ignore' });
    expect(await exitOf(c2)).toBe(0);
    expect(c2.stdout().equals(data)).toBe(true);
    expect(await exitOf(producer)).toBe(0);
  });
});

/**
 * A FIFO as a producer's standard input, with the test holding both ends:
 * what the producer never read is still in the pipe after it has gone.
 */
function inputFifo(dir: string): { fd: number; write(data: Buffer | string): void; leftover(): Buffer; close(): void } {
  const fifo = path.join(dir, 'input.fifo');
  execFileSync('mkfifo', [fifo]);
  // The reading end the producer gets (and the test drains afterwards), and a writing end.
  const reader = fs.openSync(fifo, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK);
  const writer = fs.openSync(fifo, fs.constants.O_WRONLY);
  return {
    fd: reader,
    write: (data) => void fs.writeSync(writer, typeof data === 'string' ? Buffer.from(data) : data),
    leftover: () => drainFifo(fifo),
    close() {
      fs.closeSync(writer);
      fs.closeSync(reader);
    },
  };
}
const RECORD_BYTES = 64;
const fiveRecords = Array.from({ length: 5 }, (_, i) => `record ${i} `.padEnd(RECORD_BYTES - 1, '.') + '\n');
/** Splits output into whole 64-byte records. */
function recordsIn(data: Buffer): string[] {
  expect(data.length % RECORD_BYTES, `${data.length} bytes is not whole records`).toBe(0);
  return Array.from({ length: data.length / RECORD_BYTES }, (_, i) => data.subarray(i * RECORD_BYTES, (i + 1) * RECORD_BYTES).toString());
}
/** A process holding the bus lock until `release()` (flock(1) around cat, which waits for its stdin to close). */
async function holdLock(lock: string): Promise<{ release(): Promise<void> }> {
  const holder = run('flock', [lock, 'cat'], { stdout: 'pipe' });
  await untilLocked(lock);
  return {
    async release() {
      holder.child.stdin!.end();
      expect(await exitOf(holder)).toBe(0);
    },
  };
}

describe('2b. a signal never drops input already read', () => {
  test.each([['SIGINT'], ['SIGTERM']] as const)(
    'back-pressure, 5 records from a FIFO, %s with several blocks in flight: published + left in the pipe = written',
    async (signal) => {
      const dir = tempDir();
      const bus = path.join(dir, 'bus');
      const args = busArgs(bus, ...bp, '--block-size', String(RECORD_BYTES));
      const input = inputFifo(dir);
      try {
        const producer = filebus([...args, 'producer'], { stdin: input.fd });
        // 0.3 s apart: the first is published, the next ones are read while it waits for a consumer.
        for (const record of fiveRecords) {
          input.write(record);
          await sleep(300);
        }
        producer.child.kill(signal);
        const consumer = filebus([...args, 'consumer'], { stdin: 'ignore' });
        expect(await exitOf(producer)).toBe(signalNumber(signal));
        expect(producer.stderr()).toBe('');
        // Everything the producer published is taken once it has exited; nothing may be missing.
        await until(() => !fs.existsSync(bus), 10_000, 'the consumer to take the last chunk');
        const left = recordsIn(input.leftover());
        await consumer.waitFor((out) => out.length / RECORD_BYTES + left.length >= 5, 5000);
        const got = recordsIn(consumer.stdout());
        expect([...got, ...left]).toEqual(fiveRecords);
        expect(got.length, 'the producer read several blocks ahead of the bus').toBeGreaterThanOrEqual(2);
      } finally {
        input.close();
      }
    },
  );

  /**
   * Record 0 is on the bus; the test takes it itself while another process
   * holds the lock, so the producer's next publish waits on a contended
   * lock with more read behind it.
   */
  async function producerOnContendedLock(dir: string) {
    const bus = path.join(dir, 'bus');
    const args = busArgs(bus, ...bp, '--block-size', String(RECORD_BYTES));
    const input = inputFifo(dir);
    const producer = filebus([...args, 'producer'], { stdin: input.fd });
    input.write(fiveRecords[0]!);
    await until(fileHolds(bus, fiveRecords[0]!), 10_000, 'record 0');
    const lock = await holdLock(`${bus}.lock`);
    const taken = [fs.readFileSync(bus, 'utf8')];
    fs.unlinkSync(bus);
    for (const record of fiveRecords.slice(1)) {
      input.write(record);
      await sleep(200);
    }
    return { bus, args, input, producer, lock, taken };
  }

  test('back-pressure, SIGTERM while the lock is held by another process: what was read is published once the lock is free', async () => {
    const dir = tempDir();
    const { bus, args, input, producer, lock, taken } = await producerOnContendedLock(dir);
    try {
      producer.child.kill('SIGTERM');
      await sleep(300); // it may not give up what it read
      expect(producer.child.exitCode).toBe(null);
      await lock.release();
      const consumer = filebus([...args, 'consumer'], { stdin: 'ignore' });
      expect(await exitOf(producer)).toBe(143);
      expect(producer.stderr()).toBe('');
      await until(() => !fs.existsSync(bus), 10_000, 'the consumer to take the last chunk');
      const left = recordsIn(input.leftover());
      await consumer.waitFor((out) => 1 + out.length / RECORD_BYTES + left.length >= 5, 5000);
      expect([...taken, ...recordsIn(consumer.stdout()), ...left]).toEqual(fiveRecords);
      expect(left.length, 'records the producer never read stay in the pipe').toBeGreaterThan(0);
    } finally {
      input.close();
    }
  });

  test.each([['back-pressure'], ['multicast']] as const)(
    '%s: a second signal exits within 1 s while another process holds the lock, and says how many bytes it did not publish',
    async (mode) => {
      const dir = tempDir();
      let producer: Proc;
      let input: ReturnType<typeof inputFifo>;
      let bus: string;
      let taken: string[] = [];
      if (mode === 'back-pressure') ({ producer, input, bus, taken } = await producerOnContendedLock(dir));
      else {
        // The case: `flock F.lock sleep 8 &`, then a producer with input.
        bus = path.join(dir, 'bus');
        fs.writeFileSync(`${bus}.lock`, '');
        await holdLock(`${bus}.lock`);
        input = inputFifo(dir);
        producer = filebus([...busArgs(bus, '--block-size', String(RECORD_BYTES)), 'producer'], { stdin: input.fd });
        const pid = producer.child.pid!;
        await until(() => openFiles(pid).includes(`${bus}.lock`), 10_000, 'the producer to start');
        for (const record of fiveRecords) {
          input.write(record);
          await sleep(100);
        }
      }
      try {
        producer.child.kill('SIGTERM');
        await sleep(300);
        expect(producer.child.exitCode).toBe(null);
        const t0 = performance.now();
        producer.child.kill('SIGTERM');
        const status = await within(producer.exited, 5000, 'the producer to exit on the second signal');
        expect(performance.now() - t0, 'ms from the second signal to the exit').toBeLessThan(1000);
        expect(status).toBe(143);
        expect(statusOf(producer)).toBe(143);
        expect(hasStackTrace(producer.stderr())).toBe(false);
        // Read and never published: neither taken from the bus nor left in the pipe.
        const left = recordsIn(input.leftover());
        const dropped = 5 - taken.length - left.length;
        expect(dropped, 'records read ahead of the bus').toBeGreaterThan(0);
        const err = lines(producer.stderr());
        expect(err, producer.stderr()).toHaveLength(1);
        expect(err[0]).toMatch(/^filebus: /);
        expect(err[0]).toContain(`${dropped * RECORD_BYTES} bytes`);
        expect(fs.existsSync(`${bus}.__new__`)).toBe(false);
      } finally {
        input.close();
      }
    },
  );

  test('--blocking-read: a signal publishes the partial block already read', async () => {
    const dir = tempDir();
    const bus = path.join(dir, 'bus');
    const input = inputFifo(dir);
    try {
      const producer = filebus([...busArgs(bus, '--block-size', '100', '--no-file-monitoring'), 'producer', '--blocking-read'], { stdin: input.fd });
      await until(() => openFiles(producer.child.pid!).includes(`${bus}.lock`), 5000, 'the producer to start');
      const read0 = ioBytes(producer.child.pid!).read;
      input.write('hello\n');
      // Polling only, so that what it reads is its input; then it waits for the other 94 bytes.
      await until(() => ioBytes(producer.child.pid!).read >= read0 + 6, 5000, 'the producer to read');
      producer.child.kill('SIGTERM');
      expect(await exitOf(producer)).toBe(143);
      expect(producer.stderr()).toBe('');
      expect(fs.readFileSync(bus, 'utf8')).toBe('hello\n');
    } finally {
      input.close();
    }
  });

  test.each([['SIGINT'], ['SIGTERM']] as const)('back-pressure: %s while the end marker waits for the bus exits 128+n, not 0', async (signal) => {
    const dir = tempDir();
    const bus = path.join(dir, 'bus');
    const producer = filebus([...busArgs(bus, ...bp), 'producer']);
    producer.child.stdin!.end('x\n');
    await until(fileHolds(bus, 'x\n'), 10_000, 'the chunk');
    await sleep(200); // input has ended: the end marker now waits for the slot
    producer.child.kill(signal);
    expect(await exitOf(producer)).toBe(signalNumber(signal));
    expect(statusOf(producer)).toBe(signalNumber(signal));
    expect(producer.stderr()).toBe('');
    expect(fs.readFileSync(bus, 'utf8')).toBe('x\n');
  });
});

/** A back-pressure producer that published one chunk and holds a second, read but not publishable until a consumer comes. */
async function producerBlockedOnFullBus(): Promise<{ bus: string; producer: Proc }> {
  const bus = path.join(tempDir(), 'bus');
  const producer = filebus(['--filename', bus, '--back-pressure', 'producer']);
  producer.child.stdin!.write('first chunk\n');
  await waitForFile(bus);
  producer.child.stdin!.write('second chunk\n');
  await sleep(300);
  return { bus, producer };
}

test.each([
  ['SIGTERM', 143],
  ['SIGINT', 130],
] as const)('a back-pressure producer blocked on a full bus, after %s, still publishes what it read, then exits without an end marker', async (signal, status) => {
  const { bus, producer } = await producerBlockedOnFullBus();
  producer.child.kill(signal);
  // One signal: it keeps waiting for the bus, so what it read is not lost.
  const early = await Promise.race([producer.exited, sleep(500).then(() => 'still running')]);
  expect(early).toBe('still running');
  const consumer = filebus(['--filename', bus, '--back-pressure', 'consumer'], { stdin: 'ignore' });
  await consumer.waitFor((out) => out.toString() === 'first chunk\nsecond chunk\n');
  expect(await producer.exited).toBe(status);
  expect(producer.child.signalCode).toBeNull();
  expect(hasStackTrace(producer.stderr()), producer.stderr()).toBe(false);
  // No end-of-stream marker: the input did not end, so the consumer keeps waiting.
  await until(() => !fs.existsSync(bus), 5000, 'the second chunk to be taken');
  expect(consumer.child.exitCode).toBeNull();
  expect(fs.existsSync(`${bus}.__new__`)).toBe(false);
});

test('a second signal ends a back-pressure producer at once, leaving the bus as it was', async () => {
  const { bus, producer } = await producerBlockedOnFullBus();
  producer.child.kill('SIGTERM');
  await sleep(200);
  producer.child.kill('SIGTERM');
  const exited = await Promise.race([producer.exited, sleep(2000).then(() => 'still running')]);
  expect(exited).toBe(143);
  expect(fs.readFileSync(bus, 'utf8')).toBe('first chunk\n');
  expect(fs.existsSync(`${bus}.__new__`)).toBe(false);
});
