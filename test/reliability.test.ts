/**
 * Reliability (issue "Reliability"): crashes, signals, a closed output, a
 * full disk, bad input and load, each with real processes on real files.
 * Every wait is on an event (output, a file, a process exit, /proc
 * counters); the few fixed pauses only give a process the chance to do
 * something wrong.
 */
import { execFileSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { type TestContext, describe, expect, test } from 'vitest';
import {
  type Proc,
  asleepInEventLoop,
  cli,
  filebus,
  hasStackTrace,
  ioBytes,
  isRoot,
  lockHeld,
  memoryKiB,
  openFiles,
  run,
  sleep,
  stop,
  tempDir,
  until,
  within,
} from './helpers.js';
import { RecordTally, random, runLoad, writeRecordFile } from './load.js';

const lines = (text: string) => text.split('\n').filter((line) => line !== '');
const bp = ['--back-pressure'];
const busArgs = (bus: string, ...more: string[]) => ['--filename', bus, ...more];
/** The exit status, or a failure naming the process if it has not ended within `ms`. */
const exitOf = (proc: Proc, ms = 10_000) => within(proc.exited, ms, `${proc.child.spawnargs.slice(-1)[0]} (pid ${proc.child.pid}) to exit`);
const statusOf = (proc: Proc) => proc.child.exitCode; // null when a signal ended it: we want statuses the program chose
const fileHolds = (file: string, data: Buffer | string) => () => {
  try {
    return fs.readFileSync(file).equals(Buffer.from(data));
  } catch {
    return false;
  }
};
/**
 * A pipe whose reading end we hold open and never read: a writer to `fd`
 * blocks once the pipe is full (64 KiB, at most 1 MiB if the writer grows it).
 */
function stuckPipe(dir: string): { fd: number; close(): void } {
  const fifo = path.join(dir, 'stuck.fifo');
  execFileSync('mkfifo', [fifo]);
  const reader = fs.openSync(fifo, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK);
  const fd = fs.openSync(fifo, fs.constants.O_WRONLY);
  return {
    fd,
    close() {
      fs.closeSync(fd);
      fs.closeSync(reader);
    },
  };
}
/** Bigger than any pipe a consumer makes, so writing it to a pipe nobody reads cannot complete. */
const HUGE_CHUNK = 2 << 20;
async function untilLocked(lock: string): Promise<void> {
  const deadline = performance.now() + 10_000;
  while (!(fs.existsSync(lock) && (await lockHeld(lock)))) {
    if (performance.now() > deadline) throw new Error(`nobody took ${lock}`);
    await sleep(10);
  }
}
function signalNumber(signal: 'SIGINT' | 'SIGTERM'): number {
  return signal === 'SIGINT' ? 130 : 143;
}
if (!isRoot) console.warn('reliability: not root; tests that need mount(8) or a read-only bind mount are skipped');

describe('1. crashes', () => {
  test('SIGKILL at random moments never leaves the lock stuck, and no consumer sees garbage', async () => {
    const dir = tempDir();
    const bus = path.join(dir, 'bus');
    const input = path.join(dir, 'input');
    const total = 1 << 18; // 16 MiB of records: more than the test moves, so producers never reach their end
    writeRecordFile(input, 0, total);
    const args = busArgs(bus, ...bp, '--block-size', '4096');
    const seed = Date.now() & 0x7fffffff;
    const rng = random(seed);
    const consumers: Proc[] = [];
    let producer: Proc | undefined;
    let consumer: Proc | undefined;
    const alive = (proc: Proc | undefined): proc is Proc => proc !== undefined && proc.child.exitCode === null && proc.child.signalCode === null;
    for (let round = 0; round < 12; round++) {
      if (!alive(producer)) {
        const fd = fs.openSync(input, 'r');
        producer = filebus([...args, 'producer'], { stdin: fd });
        fs.closeSync(fd);
      }
      if (!alive(consumer)) {
        consumer = filebus([...args, 'consumer'], { stdin: 'ignore' });
        consumers.push(consumer);
      }
      // Whoever survived the last kill and whoever replaced the victim move chunks again.
      const before = consumer.stdout().length;
      await consumer.waitForBytes(before + 2 * 4096, 15_000);
      await sleep(rng() * 150);
      const victim = rng() < 0.5 ? producer : consumer;
      victim.child.kill('SIGKILL');
      await victim.exited;
      // The kernel dropped the victim's lock: flock(1) gets it (the survivor holds it only for a few system calls).
      const probe = run('flock', ['--wait', '5', `${bus}.lock`, 'true'], { stdin: 'ignore' });
      expect(await probe.exited, `lock still held after SIGKILL in round ${round} (seed ${seed})`).toBe(0);
    }
    await stop(producer!.child);
    await stop(consumer!.child);
    const tally = new RecordTally(total);
    for (const proc of consumers) tally.add(proc.stdout());
    expect(tally.garbage, `not intact (seed ${seed}): ${tally.examples.join(', ')}`).toBe(0);
    // Nothing lost: each producer reads the input from its start and publishes
    // in order, and a chunk whose consumer was killed stays for the next one,
    // so every record up to the furthest one delivered arrived at least once.
    let furthest = -1;
    for (let id = 0; id < total; id++) if (tally.counts[id]! > 0) furthest = id;
    const lost: number[] = [];
    for (let id = 0; id <= furthest; id++) if (tally.counts[id] === 0) lost.push(id);
    expect(lost.slice(0, 10), `${lost.length} records lost below record ${furthest} (seed ${seed})`).toEqual([]);
    expect(furthest, 'records moved').toBeGreaterThan(12 * 2 * 64);
  });

  test.each([['multicast'], ['back-pressure']])('a leftover F.__new__ with garbage is harmless (%s)', async (mode) => {
    const dir = tempDir();
    const bus = path.join(dir, 'bus');
    const staging = `${bus}.__new__`;
    fs.writeFileSync(staging, 'GARBAGE!'.repeat(2048)); // what a producer killed mid-write leaves, and longer than the next chunk
    const args = busArgs(bus, ...(mode === 'back-pressure' ? bp : []));
    const consumer = filebus([...args, 'consumer'], { stdin: 'ignore' });
    const producer = filebus([...args, 'producer']);
    producer.child.stdin!.write('hello\n');
    await consumer.waitForBytes(6);
    producer.child.stdin!.end('world\n');
    await consumer.waitForBytes(12);
    expect(await exitOf(producer)).toBe(0);
    expect(producer.stderr()).toBe('');
    if (mode === 'back-pressure') expect(await exitOf(consumer)).toBe(0); // the end marker
    expect(consumer.stdout().toString()).toBe('hello\nworld\n');
    // The publishing rename took the staging file away.
    expect(fs.existsSync(staging)).toBe(false);
  });

  test('a replaced F.lock: processes still work, and a lock on the old file does not fool them', async () => {
    const dir = tempDir();
    const bus = path.join(dir, 'bus');
    const lock = `${bus}.lock`;
    const args = busArgs(bus, ...bp);
    // C1 and P1 open the lock file (inode A) at start.
    const c1 = filebus([...args, 'consumer'], { stdin: 'ignore' });
    const p1 = filebus([...args, 'producer']);
    await until(() => [c1, p1].every((p) => openFiles(p.child.pid!).includes(lock)), 10_000, 'C1 and P1 to open F.lock');
    // H_A: flock(1) holds the lock on inode A until its stdin closes.
    const holdA = run('flock', [lock, 'cat'], { stdout: 'pipe' });
    await untilLocked(lock);
    // Replace F.lock by a new file (inode B), as `mv` does.
    fs.writeFileSync(`${lock}.new`, '');
    fs.renameSync(`${lock}.new`, lock);
    expect(await lockHeld(lock)).toBe(false);

    // A producer started now works at once, although the old lock is held.
    const p2 = filebus([...args, 'producer']);
    p2.child.stdin!.write('one\n');
    await until(fileHolds(bus, 'one\n'), 10_000, 'P2 to publish while the old lock is held');
    expect(holdA.child.exitCode).toBe(null);

    // H_B holds the real lock (inode B).
    const holdB = run('flock', [lock, 'cat'], { stdout: 'pipe' });
    await untilLocked(lock);
    p1.child.stdin!.write('two\n'); // P1 waits for the slot, on its stale fd

    // Release A. C1, waiting on A, gets it, must notice that F.lock is now
    // B, and wait for B: it must not take the chunk while H_B holds the lock.
    holdA.child.stdin!.end();
    expect(await exitOf(holdA)).toBe(0);
    await until(() => {
      const files = openFiles(c1.child.pid!);
      return c1.stdout().length > 0 || (files.includes(lock) && !files.includes(`${lock} (deleted)`));
    }, 10_000, 'C1 to reopen the new F.lock');
    await sleep(300); // a chance to be fooled
    expect(c1.stdout().toString()).toBe('');
    expect(fs.readFileSync(bus, 'utf8')).toBe('one\n');

    // Release B: C1 gets P2's chunk, then P1's (P1 must move to the new file too).
    holdB.child.stdin!.end();
    expect(await exitOf(holdB)).toBe(0);
    await c1.waitFor((out) => out.toString() === 'one\ntwo\n', 10_000);
    p1.child.stdin!.end();
    p2.child.stdin!.end();
    expect(await exitOf(c1)).toBe(0); // the first end marker
    expect(c1.stderr()).toBe('');
  });

  test('back-pressure: a consumer SIGKILLed in the middle of writing a chunk leaves it for the next consumer', async () => {
    const dir = tempDir();
    const bus = path.join(dir, 'bus');
    const data = crypto.randomBytes(HUGE_CHUNK);
    fs.writeFileSync(path.join(dir, 'input'), data);
    const args = busArgs(bus, ...bp);
    const input = fs.openSync(path.join(dir, 'input'), 'r');
    const producer = filebus([...args, '--block-size', String(HUGE_CHUNK), 'producer'], { stdin: input });
    fs.closeSync(input);
    await until(fileHolds(bus, data), 10_000, 'the chunk');

    const pipe = stuckPipe(dir);
    try {
      const c1 = filebus([...args, 'consumer'], { stdin: 'ignore', stdout: pipe.fd });
      // It has filled the pipe and waits to write the rest, holding the lock.
      await until(() => ioBytes(c1.child.pid!).written >= 65536, 10_000, 'C1 to fill its output pipe');
      expect(await lockHeld(`${bus}.lock`)).toBe(true);
      c1.child.kill('SIGKILL');
      await c1.exited;
    } finally {
      pipe.close();
    }
    expect(fs.readFileSync(bus).equals(data)).toBe(true);
    const c2 = filebus([...args, 'consumer'], { stdin: 'ignore' });
    expect(await exitOf(c2)).toBe(0); // the chunk, then the producer's end marker
    expect(c2.stdout().equals(data)).toBe(true);
    expect(await exitOf(producer)).toBe(0);
  });
});

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
    const data = crypto.randomBytes(HUGE_CHUNK);
    const args = busArgs(bus, ...bp);
    fs.writeFileSync(path.join(dir, 'input'), data);
    const input = fs.openSync(path.join(dir, 'input'), 'r');
    const producer = filebus([...args, '--block-size', String(HUGE_CHUNK), 'producer'], { stdin: input });
    fs.closeSync(input);
    await until(fileHolds(bus, data), 10_000, 'the chunk');
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
    leftover() {
      // A reading end of its own: the producer may have made the one it shared blocking.
      const drain = fs.openSync(fifo, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK);
      const parts: Buffer[] = [];
      const buffer = Buffer.alloc(65536);
      try {
        for (;;) {
          let n: number;
          try {
            n = fs.readSync(drain, buffer);
          } catch (error) {
            if ((error as NodeJS.ErrnoException).code === 'EAGAIN') break;
            throw error;
          }
          if (n === 0) break;
          parts.push(Buffer.from(buffer.subarray(0, n)));
        }
      } finally {
        fs.closeSync(drain);
      }
      return Buffer.concat(parts);
    },
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
        // The issue's case: `flock F.lock sleep 8 &`, then a producer with input.
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

describe('3. closed output', () => {
  /** `filebus ARGS consumer | head -c 100`, with both processes tracked. */
  function consumerIntoHead(dir: string, args: string[]): { consumer: Proc; head: Proc } {
    const fifo = path.join(dir, 'head.fifo');
    execFileSync('mkfifo', [fifo]);
    const head = run('head', ['-c', '100', fifo], { stdin: 'ignore' });
    const consumer = run('sh', ['-c', 'exec "$0" "$@" > "$FIFO"', process.execPath, cli, ...args, 'consumer'], { stdin: 'ignore', env: { FIFO: fifo } });
    return { consumer, head };
  }
  async function endsPromptly(consumer: Proc, head: Proc): Promise<void> {
    await head.waitForBytes(100);
    expect(await exitOf(head)).toBe(0);
    const t0 = performance.now();
    const status = await within(consumer.exited, 5000, 'the consumer to end after its reader went away');
    expect(performance.now() - t0, 'ms from head exiting to the consumer ending').toBeLessThan(1500);
    // README: 141 when a consumer's standard output is closed, quietly.
    expect(consumer.stderr()).toBe('');
    expect(status).toBe(141);
  }

  test('multicast: `consumer | head -c 100` ends promptly and quietly while chunks keep coming', async () => {
    const dir = tempDir();
    const bus = path.join(dir, 'bus');
    const producer = filebus([...busArgs(bus), 'producer']);
    const feeder = setInterval(() => producer.child.stdin!.write(`${'x'.repeat(199)}\n`), 10);
    try {
      const { consumer, head } = consumerIntoHead(dir, busArgs(bus));
      await endsPromptly(consumer, head);
      expect(head.stdout().toString()).toBe('x'.repeat(100));
    } finally {
      clearInterval(feeder);
    }
  });

  test('multicast: `consumer | head -c 100` ends promptly and quietly on an idle bus', async () => {
    const dir = tempDir();
    const bus = path.join(dir, 'bus');
    fs.writeFileSync(path.join(dir, 'chunk'), 'y'.repeat(4096));
    const input = fs.openSync(path.join(dir, 'chunk'), 'r');
    expect(await filebus([...busArgs(bus), 'producer'], { stdin: input }).exited).toBe(0);
    fs.closeSync(input);
    const { consumer, head } = consumerIntoHead(dir, busArgs(bus));
    await endsPromptly(consumer, head); // nothing more to write: it must notice the reader left without writing
  });

  test('back-pressure: the chunk that failed to write stays for the next consumer', async () => {
    const dir = tempDir();
    const bus = path.join(dir, 'bus');
    const block = HUGE_CHUNK; // the write to head cannot complete
    const data = crypto.randomBytes(2 * block);
    fs.writeFileSync(path.join(dir, 'input'), data);
    const args = busArgs(bus, ...bp);
    const input = fs.openSync(path.join(dir, 'input'), 'r');
    const producer = filebus([...args, '--block-size', String(block), 'producer'], { stdin: input });
    fs.closeSync(input);
    const { consumer, head } = consumerIntoHead(dir, args);
    await endsPromptly(consumer, head);
    expect(head.stdout().equals(data.subarray(0, 100))).toBe(true);
    expect(fs.readFileSync(bus).equals(data.subarray(0, block))).toBe(true);
    const next = filebus([...args, 'consumer'], { stdin: 'ignore' });
    expect(await exitOf(next)).toBe(0);
    expect(next.stdout().equals(data)).toBe(true);
    expect(await exitOf(producer)).toBe(0);
  });
});

/** mount(8) with `args`, or skip the test, saying why, where this machine does not allow it (root without CAP_SYS_ADMIN). */
function mountOrSkip(context: TestContext, args: string[]): void {
  try {
    execFileSync('mount', args, { stdio: 'pipe' });
  } catch (error) {
    context.skip(`cannot mount here: ${String((error as Error).message).split('\n')[0]}`);
  }
}
function unmount(dir: string): void {
  try {
    execFileSync('umount', [dir], { stdio: 'pipe' });
  } catch {
    execFileSync('umount', ['-l', dir], { stdio: 'pipe' });
  }
}
/** A 64 KiB tmpfs, unmounted (after `procs` are stopped) whatever happens. */
async function withSmallDisk(context: TestContext, body: (mnt: string, procs: Proc[]) => Promise<void>): Promise<void> {
  const mnt = path.join(tempDir(), 'mnt');
  fs.mkdirSync(mnt);
  mountOrSkip(context, ['-t', 'tmpfs', '-o', 'size=64k', 'tmpfs', mnt]);
  const procs: Proc[] = [];
  try {
    await body(mnt, procs);
  } finally {
    await Promise.all(procs.map((proc) => stop(proc.child)));
    unmount(mnt);
  }
}

describe('4. full disk', () => {
  function fillUp(dir: string): void {
    const fd = fs.openSync(path.join(dir, 'filler'), 'w');
    try {
      for (;;) fs.writeSync(fd, Buffer.alloc(4096, 'f'));
    } catch (error) {
      expect((error as NodeJS.ErrnoException).code).toBe('ENOSPC');
    } finally {
      fs.closeSync(fd);
    }
  }
  function expectOneLineError(proc: Proc, file: string): void {
    const err = lines(proc.stderr());
    expect(err, proc.stderr()).toHaveLength(1);
    expect(err[0]).toContain(file);
    expect(err[0]).toMatch(/no space/i);
    expect(hasStackTrace(proc.stderr())).toBe(false);
  }

  test.skipIf(!isRoot)('multicast (root only: mounts a tmpfs): ENOSPC on F.__new__ keeps the previous chunk, one line, exit 1', async (context) => {
    await withSmallDisk(context, async (mnt, procs) => {
      const bus = path.join(mnt, 'bus');
      const block = 40_000; // two of them do not fit in 64 KiB
      const data = crypto.randomBytes(3 * block);
      const dir = tempDir();
      fs.writeFileSync(path.join(dir, 'input'), data);
      const consumer = filebus([...busArgs(bus), 'consumer'], { stdin: 'ignore' });
      procs.push(consumer);
      const input = fs.openSync(path.join(dir, 'input'), 'r');
      const producer = filebus([...busArgs(bus, '--block-size', String(block)), 'producer'], { stdin: input });
      procs.push(producer);
      fs.closeSync(input);
      expect(await exitOf(producer)).toBe(1);
      expectOneLineError(producer, `${bus}.__new__`);
      expect(fs.readFileSync(bus).equals(data.subarray(0, block))).toBe(true);
      // A consumer got the chunk that was published, and never part of the one that was not.
      await consumer.waitForBytes(block);
      expect(consumer.stdout().equals(data.subarray(0, block))).toBe(true);
    });
  });

  test.skipIf(!isRoot)('back-pressure (root only: mounts a tmpfs): ENOSPC loses nothing consumed or pending', async (context) => {
    await withSmallDisk(context, async (mnt, procs) => {
      const bus = path.join(mnt, 'bus');
      const args = busArgs(bus, ...bp, '--block-size', '8192');
      const producer = filebus([...args, 'producer']);
      const c1 = filebus([...args, 'consumer'], { stdin: 'ignore' });
      procs.push(producer, c1);
      const [a, b, c] = ['A', 'B', 'C'].map((letter) => Buffer.alloc(4096, letter)) as [Buffer, Buffer, Buffer];
      const d = crypto.randomBytes(3 * 8192);
      producer.child.stdin!.write(a);
      await c1.waitForBytes(4096);
      producer.child.stdin!.write(b);
      await c1.waitForBytes(8192);
      c1.child.kill('SIGTERM');
      expect(await exitOf(c1)).toBe(143);
      // C is pending on the bus when the disk fills up.
      producer.child.stdin!.write(c);
      await until(fileHolds(bus, c), 10_000, 'chunk C');
      fillUp(mnt);
      // Taking C frees one page, and only ever one page is free from now
      // on: the first chunk of D bigger than a page cannot be staged.
      producer.child.stdin!.write(d);
      const c2 = filebus([...args, 'consumer'], { stdin: 'ignore' });
      procs.push(c2);
      expect(await within(producer.exited, 10_000, 'the producer to fail')).toBe(1);
      expectOneLineError(producer, `${bus}.__new__`);
      await c2.waitForBytes(4096);
      expect(c1.stdout().equals(Buffer.concat([a, b]))).toBe(true);
      // C, then perhaps a page-sized first piece of D, if the producer read D in pieces.
      expect(c2.stdout().subarray(0, 4096).equals(c)).toBe(true);
      expect(d.subarray(0, c2.stdout().length - 4096).equals(c2.stdout().subarray(4096))).toBe(true);
      expect(fs.existsSync(bus)).toBe(false);
    });
  });
});

describe('4. full disk, on the output side', () => {
  test.skipIf(!isRoot)('a consumer whose output is on a full disk (root only: mounts a tmpfs): exit 1, one line, the chunk stays', async (context) => {
    await withSmallDisk(context, async (mnt, procs) => {
      const dir = tempDir();
      const bus = path.join(dir, 'bus');
      const data = crypto.randomBytes(100 * 1024);
      fs.writeFileSync(path.join(dir, 'input'), data);
      const args = busArgs(bus, ...bp);
      const input = fs.openSync(path.join(dir, 'input'), 'r');
      const producer = filebus([...args, 'producer'], { stdin: input });
      fs.closeSync(input);
      const out = fs.openSync(path.join(mnt, 'out'), 'w');
      const consumer = filebus([...args, 'consumer'], { stdin: 'ignore', stdout: out });
      procs.push(producer, consumer);
      fs.closeSync(out);
      const status = await within(consumer.exited, 10_000, 'the consumer to give up');
      const written = fs.readFileSync(path.join(mnt, 'out'));
      expect(written.equals(data.subarray(0, written.length))).toBe(true);
      // The chunk it could not write whole is still there for the next consumer.
      const next = filebus([...args, 'consumer'], { stdin: 'ignore' });
      expect(await exitOf(next)).toBe(0);
      expect(next.stdout().equals(data.subarray(Math.floor(written.length / 4096) * 4096))).toBe(true);
      expect(await exitOf(producer)).toBe(0);
      // A full disk is an error to report, not a reader that went away (141, quietly).
      expect(lines(consumer.stderr()), consumer.stderr()).toHaveLength(1);
      expect(consumer.stderr()).toMatch(/standard output|stdout/i);
      expect(consumer.stderr()).toMatch(/no space/i);
      expect(hasStackTrace(consumer.stderr())).toBe(false);
      expect(status).toBe(1);
    });
  });
});

describe('5. bad input', () => {
  type Role = 'producer' | 'consumer' | 'bp-producer' | 'bp-consumer';
  interface Case {
    name: string;
    roles: Role[];
    /** Makes the bad situation in `dir`; returns the bus path and the file the message must name. */
    setup(dir: string, cleanups: Array<() => void>, context: TestContext): { bus: string; names: string };
    cause: RegExp;
    /** A reason to skip, when this case cannot be made here. */
    skip?: string;
    /** Run the processes with the permission checks root normally skips. */
    withoutDacOverride?: boolean;
  }
  const all: Role[] = ['producer', 'consumer', 'bp-producer', 'bp-consumer'];
  const writers: Role[] = ['producer', 'bp-producer', 'bp-consumer'];
  const hasSetpriv = fs.existsSync('/usr/bin/setpriv') || fs.existsSync('/bin/setpriv');
  const cases: Case[] = [
    {
      name: '--filename is a directory',
      roles: all,
      setup: (dir) => {
        fs.mkdirSync(path.join(dir, 'bus'));
        return { bus: path.join(dir, 'bus'), names: path.join(dir, 'bus') };
      },
      cause: /directory/,
    },
    {
      name: 'the directory is not writable',
      roles: writers,
      setup: (dir, cleanups, context) => {
        const sub = path.join(dir, 'ro');
        fs.mkdirSync(sub);
        if (isRoot) {
          // Permission bits do not stop root: a read-only bind mount does.
          mountOrSkip(context, ['--bind', '-o', 'ro', sub, sub]);
          cleanups.push(() => unmount(sub));
        } else {
          fs.chmodSync(sub, 0o555);
          cleanups.push(() => fs.chmodSync(sub, 0o755));
        }
        return { bus: path.join(sub, 'bus'), names: sub };
      },
      cause: /read-only|permission denied/,
    },
    {
      name: 'F.lock is a directory',
      roles: writers,
      setup: (dir) => {
        fs.mkdirSync(path.join(dir, 'bus.lock'));
        return { bus: path.join(dir, 'bus'), names: path.join(dir, 'bus.lock') };
      },
      cause: /directory/,
    },
    {
      name: 'F.lock is a FIFO',
      roles: writers,
      setup: (dir) => {
        execFileSync('mkfifo', [path.join(dir, 'bus.lock')]);
        return { bus: path.join(dir, 'bus'), names: path.join(dir, 'bus.lock') };
      },
      cause: /FIFO|regular file/i,
    },
    {
      name: 'F is not readable',
      roles: ['consumer', 'bp-consumer'],
      setup: (dir) => {
        fs.writeFileSync(path.join(dir, 'bus'), 'secret\n', { mode: 0o000 });
        fs.chmodSync(path.join(dir, 'bus'), 0o000);
        return { bus: path.join(dir, 'bus'), names: path.join(dir, 'bus') };
      },
      cause: /permission denied/,
      withoutDacOverride: isRoot,
      skip: isRoot && !hasSetpriv ? 'root reads anything, and setpriv(1) is missing to drop CAP_DAC_OVERRIDE' : undefined,
    },
    {
      name: 'F is a FIFO',
      roles: all,
      setup: (dir) => {
        execFileSync('mkfifo', [path.join(dir, 'bus')]);
        return { bus: path.join(dir, 'bus'), names: path.join(dir, 'bus') };
      },
      cause: /FIFO/,
    },
    {
      name: 'the path runs through a regular file',
      roles: all,
      setup: (dir) => {
        fs.writeFileSync(path.join(dir, 'file'), '');
        return { bus: path.join(dir, 'file', 'bus'), names: path.join(dir, 'file') };
      },
      cause: /not a directory/,
    },
    {
      name: 'the path runs through a regular file, two levels up',
      roles: all,
      setup: (dir) => {
        fs.writeFileSync(path.join(dir, 'file'), '');
        return { bus: path.join(dir, 'file', 'sub', 'bus'), names: path.join(dir, 'file') };
      },
      cause: /not a directory/,
    },
  ];

  for (const c of cases) {
    test.skipIf(c.skip !== undefined)(`${c.name}: exit 1, one line naming the file and the cause${c.skip ? ` (skipped: ${c.skip})` : ''}`, async (context) => {
      const dir = tempDir();
      const cleanups: Array<() => void> = [];
      try {
        const { bus, names } = c.setup(dir, cleanups, context);
        const procs = c.roles.map((role) => {
          const args = [...busArgs(bus, ...(role.startsWith('bp-') ? bp : [])), role.replace('bp-', '')];
          const proc = c.withoutDacOverride
            ? run('setpriv', ['--bounding-set', '-dac_override,-dac_read_search', '--inh-caps', '-dac_override,-dac_read_search', process.execPath, cli, ...args])
            : filebus(args);
          proc.child.stdin!.end('data\n');
          return [role, proc] as const;
        });
        for (const [role, proc] of procs) {
          const status = await within(proc.exited, 8000, `${role} to give up (it hangs)`).catch((error: Error) => {
            proc.child.kill('SIGKILL');
            throw error;
          });
          const err = lines(proc.stderr());
          expect(status, `${role}: ${proc.stderr()}`).toBe(1);
          expect(err, `${role}: ${proc.stderr()}`).toHaveLength(1);
          expect(err[0], role).toMatch(/^filebus: /);
          expect(err[0], role).toContain(names);
          expect(err[0], role).toMatch(c.cause);
          expect(hasStackTrace(proc.stderr()), role).toBe(false);
        }
      } finally {
        for (const cleanup of cleanups.reverse()) cleanup();
      }
    });
  }

  test('a wrong option: exit 2, one line', async () => {
    const proc = filebus(['--filename', path.join(tempDir(), 'bus'), '--sleep-interval', 'never', 'producer'], { stdin: 'ignore' });
    expect(await exitOf(proc)).toBe(2);
    expect(lines(proc.stderr())).toHaveLength(1);
    expect(proc.stderr()).toMatch(/sleep-interval/);
    expect(hasStackTrace(proc.stderr())).toBe(false);
  });
});

describe('5b. F replaced under a waiting process', () => {
  type Waiter = 'bp-producer' | 'consumer' | 'bp-consumer';
  const kinds = [
    ['a directory', (file: string) => fs.mkdirSync(file), /directory/],
    ['a FIFO', (file: string) => execFileSync('mkfifo', [file]), /FIFO/],
  ] as const;
  const cases = (['bp-producer', 'consumer', 'bp-consumer'] as Waiter[]).flatMap((role) => kinds.map(([kind, make, cause]) => [role, kind, make, cause] as const));
  test.each(cases)('%s notices F turned into %s within one --sleep-interval: one line naming F, exit 1', async (role, _kind, make, cause) => {
    const dir = tempDir();
    const bus = path.join(dir, 'bus');
    // Polling only, once a second: a process that notices must do so on its poll.
    const args = busArgs(bus, '--sleep-interval', '1', '--no-file-monitoring', ...(role === 'consumer' ? [] : bp));
    let proc: Proc;
    if (role === 'bp-producer') {
      proc = filebus([...args, 'producer']);
      proc.child.stdin!.write('first\n');
      await until(fileHolds(bus, 'first\n'), 10_000, 'the first chunk');
      proc.child.stdin!.write('second\n'); // waits for the slot
    } else {
      proc = filebus([...args, role.replace('bp-', '')], { stdin: 'ignore' });
      await until(() => openFiles(proc.child.pid!).length > 0 && (role === 'consumer' || fs.existsSync(`${bus}.lock`)), 10_000, 'the consumer to start');
    }
    await sleep(1200); // waiting, past a first poll
    fs.rmSync(bus, { force: true });
    const replaced = performance.now();
    make(bus);
    expect(await exitOf(proc, 5000)).toBe(1);
    expect(performance.now() - replaced, 'ms from the replacement to the exit').toBeLessThan(1000 + 500);
    const err = lines(proc.stderr());
    expect(err, proc.stderr()).toHaveLength(1);
    expect(err[0]).toMatch(/^filebus: /);
    expect(err[0]).toContain(bus);
    expect(err[0]).toMatch(cause);
    expect(hasStackTrace(proc.stderr())).toBe(false);
  });
});

describe('5c. symbolic links planted in the bus directory', () => {
  type Role = 'producer' | 'consumer' | 'bp-producer' | 'bp-consumer';
  const all: Role[] = ['producer', 'consumer', 'bp-producer', 'bp-consumer'];
  /** Runs each role on `bus` with one line of input; each must exit 1 with one line naming `names`. */
  async function refusedBy(roles: Role[], bus: string, names: string): Promise<void> {
    for (const role of roles) {
      const proc = filebus([...busArgs(bus, ...(role.startsWith('bp-') ? bp : [])), role.replace('bp-', '')]);
      proc.child.stdin!.end('data from the bus\n');
      expect(await exitOf(proc, 8000), `${role}: ${proc.stderr()}`).toBe(1);
      const err = lines(proc.stderr());
      expect(err, `${role}: ${proc.stderr()}`).toHaveLength(1);
      expect(err[0], role).toMatch(/^filebus: /);
      expect(err[0], role).toContain(names);
      expect(err[0], role).toMatch(/symbolic link/);
      expect(hasStackTrace(proc.stderr()), role).toBe(false);
    }
  }
  function victim(): { dir: string; file: string } {
    const dir = tempDir();
    const file = path.join(dir, 'victim.txt');
    fs.writeFileSync(file, 'precious\n');
    return { dir, file };
  }

  test('F.__new__ -> a victim file: never written, never renamed into place', async () => {
    const { dir: victimDir, file } = victim();
    const dir = tempDir();
    const bus = path.join(dir, 'bus');
    fs.symlinkSync(file, `${bus}.__new__`);
    await refusedBy(all, bus, `${bus}.__new__`);
    expect(fs.readFileSync(file, 'utf8')).toBe('precious\n');
    expect(fs.lstatSync(`${bus}.__new__`).isSymbolicLink()).toBe(true);
    expect(fs.existsSync(bus)).toBe(false);
    expect(fs.readdirSync(victimDir)).toEqual(['victim.txt']);
  });

  test('F.__new__ -> a victim file planted while a producer runs: refused at the next publish', async () => {
    const { file } = victim();
    const dir = tempDir();
    const bus = path.join(dir, 'bus');
    const producer = filebus([...busArgs(bus), 'producer']);
    producer.child.stdin!.write('one\n');
    await until(fileHolds(bus, 'one\n'), 10_000, 'the first chunk');
    fs.symlinkSync(file, `${bus}.__new__`);
    producer.child.stdin!.write('two\n');
    expect(await exitOf(producer)).toBe(1);
    expect(lines(producer.stderr())).toHaveLength(1);
    expect(producer.stderr()).toContain(`${bus}.__new__`);
    expect(producer.stderr()).toMatch(/symbolic link/);
    expect(fs.readFileSync(file, 'utf8')).toBe('precious\n');
    expect(fs.readFileSync(bus, 'utf8')).toBe('one\n');
    expect(fs.lstatSync(bus).isFile()).toBe(true);
  });

  test('a dangling F.lock -> a file outside the directory: never created', async () => {
    const { dir: victimDir } = victim();
    const target = path.join(victimDir, 'created-by-filebus');
    const dir = tempDir();
    const bus = path.join(dir, 'bus');
    fs.symlinkSync(target, `${bus}.lock`);
    await refusedBy(all, bus, `${bus}.lock`);
    expect(fs.existsSync(target)).toBe(false);
    expect(fs.readdirSync(victimDir)).toEqual(['victim.txt']);
  });

  test('F.lock -> a victim file: never locked through, never truncated', async () => {
    const { file } = victim();
    const dir = tempDir();
    const bus = path.join(dir, 'bus');
    fs.symlinkSync(file, `${bus}.lock`);
    await refusedBy(all, bus, `${bus}.lock`);
    expect(fs.readFileSync(file, 'utf8')).toBe('precious\n');
  });

  test('F -> a victim file: never read out, never removed', async () => {
    const { file } = victim();
    const dir = tempDir();
    const bus = path.join(dir, 'bus');
    fs.symlinkSync(file, bus);
    await refusedBy(all, bus, bus);
    expect(fs.readFileSync(file, 'utf8')).toBe('precious\n');
    expect(fs.lstatSync(bus).isSymbolicLink()).toBe(true);
  });

  test.each([['consumer'], ['bp-consumer'], ['bp-producer']] as const)('F replaced by a link to a victim under a waiting %s: one line, exit 1', async (role) => {
    const { file } = victim();
    const dir = tempDir();
    const bus = path.join(dir, 'bus');
    const args = busArgs(bus, ...(role === 'consumer' ? [] : bp));
    let proc: Proc;
    if (role === 'bp-producer') {
      proc = filebus([...args, 'producer']);
      proc.child.stdin!.write('first\n');
      await until(fileHolds(bus, 'first\n'), 10_000, 'the first chunk');
      proc.child.stdin!.write('second\n');
      await sleep(300);
      // Replaced in one step (a link renamed over F): removing F first would
      // let a producer that wakes within microseconds of the removal publish
      // into the gap before the link exists, which is no fault of it.
      fs.symlinkSync(file, `${bus}.link`);
      fs.renameSync(`${bus}.link`, bus);
    } else {
      proc = filebus([...args, role.replace('bp-', '')], { stdin: 'ignore' });
      await sleep(500);
      fs.symlinkSync(file, bus);
    }
    expect(await exitOf(proc, 5000)).toBe(1);
    expect(lines(proc.stderr()), proc.stderr()).toHaveLength(1);
    expect(proc.stderr()).toContain(bus);
    expect(proc.stderr()).toMatch(/symbolic link/);
    expect(proc.stdout().toString()).toBe('');
    expect(fs.readFileSync(file, 'utf8')).toBe('precious\n');
  });

  // stat(2) would follow these: a dangling link looks like no chunk yet, and
  // a target with two links like a chunk with history whose entry is missing.
  test.each([
    ['a dangling link', (_dir: string) => '/nonexistent/filebus-target'],
    [
      'a link to a file with two links',
      (dir: string) => {
        const target = path.join(dir, 'target.txt');
        fs.writeFileSync(target, 'precious\n');
        fs.linkSync(target, path.join(dir, 'second-name.txt'));
        return target;
      },
    ],
  ])('F replaced by %s while a consumer sleeps: it exits 1 with one line', async (_what, target) => {
    const { dir: victimDir } = victim();
    const dir = tempDir();
    const bus = path.join(dir, 'bus');
    const producer = filebus([...busArgs(bus), 'producer']);
    producer.child.stdin!.end('first\n');
    expect(await exitOf(producer)).toBe(0);
    const consumer = filebus([...busArgs(bus), 'consumer'], { stdin: 'ignore' });
    await until(() => asleepInEventLoop(consumer.child.pid!), 10_000, 'the consumer asleep');
    fs.rmSync(bus);
    fs.symlinkSync(target(victimDir), bus);
    expect(await exitOf(consumer, 5000)).toBe(1);
    expect(lines(consumer.stderr()), consumer.stderr()).toHaveLength(1);
    expect(consumer.stderr()).toContain(bus);
    expect(consumer.stderr()).toMatch(/symbolic link/);
    expect(consumer.stdout().toString()).not.toContain('precious');
  });

  test.each([['a dangling link'], ['a link to a file']])('status on %s at F: exit 1, one line', async (what) => {
    const { file } = victim();
    const dir = tempDir();
    const bus = path.join(dir, 'bus');
    fs.symlinkSync(what === 'a dangling link' ? '/nonexistent/filebus-target' : file, bus);
    for (const args of [[], ['--json']]) {
      const proc = filebus([...busArgs(bus), 'status', ...args], { stdin: 'ignore' });
      expect(await exitOf(proc), proc.stderr()).toBe(1);
      expect(proc.stdout().toString()).toBe('');
      expect(lines(proc.stderr()), proc.stderr()).toHaveLength(1);
      expect(proc.stderr()).toMatch(new RegExp(`^filebus: .*${bus}.*symbolic link`));
    }
  });
});

describe('7. memory', () => {
  test('a multicast consumer gives back the memory of one huge chunk: RSS at most 100 MiB after a 256 MiB chunk and ten small ones', async () => {
    const dir = tempDir();
    const bus = path.join(dir, 'bus');
    const huge = 256 << 20;
    const input = path.join(dir, 'huge');
    const fd = fs.openSync(input, 'w');
    const mib = Buffer.alloc(1 << 20, 'h');
    for (let i = 0; i < 256; i++) fs.writeSync(fd, mib);
    fs.closeSync(fd);
    const devNull = fs.openSync('/dev/null', 'w');
    const consumer = filebus([...busArgs(bus), 'consumer'], { stdin: 'ignore', stdout: devNull });
    fs.closeSync(devNull);
    const pid = consumer.child.pid!;
    await until(() => openFiles(pid).some((file) => file.includes('inotify')), 10_000, 'the consumer to watch the bus');
    const written = () => ioBytes(pid).written;
    const stdin = fs.openSync(input, 'r');
    const bigProducer = filebus([...busArgs(bus, '--block-size', String(huge)), 'producer'], { stdin });
    fs.closeSync(stdin);
    expect(await exitOf(bigProducer, 30_000)).toBe(0);
    await until(() => written() >= huge, 30_000, 'the consumer to write the huge chunk');
    const peak = memoryKiB(pid)!.peak;
    // Ten small chunks, each published once the consumer has written the one before.
    const small = filebus([...busArgs(bus), 'producer']);
    for (let i = 0; i < 10; i++) {
      const before = written();
      small.child.stdin!.write(`small chunk ${i}\n`);
      await until(() => written() > before, 10_000, `small chunk ${i}`);
    }
    small.child.stdin!.end();
    expect(await exitOf(small)).toBe(0);
    const limitKiB = 100 * 1024;
    await until(() => memoryKiB(pid)!.rss <= limitKiB, 5000, `RSS at most 100 MiB (now ${memoryKiB(pid)?.rss} KiB, peak ${peak} KiB)`).catch((error: Error) => {
      throw new Error(`${error.message}; rss ${memoryKiB(pid)?.rss} KiB, peak ${peak} KiB`);
    });
    expect(peak, 'the consumer did hold the huge chunk').toBeGreaterThan(huge / 1024);
  }, 120_000);
});

describe('6. load', () => {
  test('32 MiB through 2 back-pressure producers and 3 consumers under SIGKILL: nothing lost, few duplicates, flat memory', async () => {
    const result = await runLoad({ bytes: 32 << 20 });
    console.log(`load: ${JSON.stringify(result)}`);
  }, 180_000);
});
