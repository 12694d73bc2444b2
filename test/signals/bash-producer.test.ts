/**
 * The bash producer stopped by a signal: what it read is published, a
 * second SIGTERM ends it at once and says what was not published (issue
 * 9.1, 9.3). Real processes, FIFOs and files.
 */
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, test } from 'vitest';
import { type Proc, bash, childNamed, exitOf, feed, fifo, filebus, fileHolds, ioBytes, lockHeld, run, sleep, stderrLines, tempDir, until, waitsOnStdin } from '../helpers.js';


/**
 * The first SIGTERM leaves the producer at work (publishing what it read,
 * or waiting for the bus to take it): it is still running a moment later.
 * The second ends it with 143 within a second.
 */
async function secondSignalEnds(producer: Proc): Promise<void> {
  producer.child.kill('SIGTERM');
  await sleep(300);
  expect(producer.child.exitCode).toBe(null);
  const second = performance.now();
  producer.child.kill('SIGTERM');
  expect(await exitOf(producer, 5000)).toBe(143);
  expect(performance.now() - second).toBeLessThan(1000);
}

describe('signals: a stopped bash producer publishes what it read (issue 9.1, 9.3)', () => {
  test.each([
    ['SIGTERM', 143],
    ['SIGINT', 130],
    ['SIGHUP', 129],
  ] as const)('back pressure, %s while l1 waits on the bus: published + unread in the pipe = written', async (signal, status) => {
    const dir = tempDir();
    const bus = path.join(dir, 'bus');
    const input = fifo(dir);
    const args = ['--filename', bus, '--back-pressure', '--block-size', '3'];
    const producer = filebus([...args, 'producer'], { ...bash, stdin: input.fd });
    const written = 'l1\nl2\nl3\n';
    input.write(written);
    await until(fileHolds(bus, 'l1\n'), 10_000, 'l1 on the bus');
    producer.child.kill(signal);
    // Still owes what it read: it waits for the bus to take it.
    await sleep(300);
    expect(producer.child.exitCode).toBe(null);
    const consumer = filebus([...args, 'consumer'], { stdin: 'ignore' });
    expect(await exitOf(producer)).toBe(status);
    const unread = input.unread();
    expect(written.endsWith(unread)).toBe(true);
    const published = written.slice(0, written.length - unread.length);
    // bash reads whatever the pipe holds at once: all three lines were taken.
    expect(published).toBe(written);
    await consumer.waitFor((out) => out.toString() === published);
    await until(() => !fs.existsSync(bus), 10_000, 'the last chunk to be taken');
    expect(consumer.stdout().toString()).toBe(published);
    // No end-of-stream chunk: the consumer is still waiting.
    expect(consumer.child.exitCode).toBe(null);
    expect(producer.stderr()).toBe('');
  });

  test('back pressure, records written 0.3 s apart, SIGTERM: what was read is published, the rest stays in the pipe', async () => {
    const dir = tempDir();
    const bus = path.join(dir, 'bus');
    const input = fifo(dir);
    const args = ['--filename', bus, '--back-pressure', '--block-size', '64'];
    const producer = filebus([...args, 'producer'], { ...bash, stdin: input.fd });
    const records = Array.from({ length: 5 }, (_, i) => `record ${i} `.padEnd(63, '.') + '\n');
    for (const record of records) {
      input.write(record);
      await sleep(300);
    }
    await until(fileHolds(bus, records[0]!), 10_000, 'the first record on the bus');
    producer.child.kill('SIGTERM');
    const consumer = filebus([...args, 'consumer'], { stdin: 'ignore' });
    expect(await exitOf(producer)).toBe(143);
    const unread = input.unread();
    const written = records.join('');
    expect(written.endsWith(unread)).toBe(true);
    const published = written.slice(0, written.length - unread.length);
    // Whole records only: what the producer read it published, the rest is intact in the pipe.
    expect(published.length % 64).toBe(0);
    expect(published.length).toBeGreaterThanOrEqual(64);
    await consumer.waitFor((out) => out.toString() === published);
    await until(() => !fs.existsSync(bus), 10_000, 'the last chunk to be taken');
    expect(consumer.stdout().toString()).toBe(published);
  });

  test('back pressure, SIGTERM in the middle of a 1 MiB stream: consumer output + what is left in the pipe = the input, byte for byte', async () => {
    const dir = tempDir();
    const bus = path.join(dir, 'bus');
    const input = fifo(dir);
    const data = Array.from({ length: 1 << 16 }, (_, i) => `record ${String(i).padStart(7, '0')}\n`).join('');
    fs.writeFileSync(path.join(dir, 'data'), data);
    const args = ['--filename', bus, '--back-pressure'];
    const consumer = filebus([...args, 'consumer'], { stdin: 'ignore' });
    const producer = filebus([...args, 'producer'], { ...bash, stdin: input.fd });
    // A writer of its own, so that a full pipe blocks it and not this test.
    const writer = run('dd', [`if=${path.join(dir, 'data')}`, `of=${input.path}`, 'bs=4096', 'status=none'], { stdin: 'ignore' });
    await consumer.waitForBytes(64 * 1024, 30_000);
    producer.child.kill('SIGTERM');
    expect(await exitOf(producer, 60_000)).toBe(143);
    // Drain the pipe until the writer has written everything.
    let unread = '';
    for (;;) {
      const done = writer.child.exitCode !== null;
      unread += input.unread();
      if (done) break;
      await sleep(5);
    }
    expect(await writer.exited).toBe(0);
    await until(() => !fs.existsSync(bus), 30_000, 'the last chunk to be taken');
    const published = data.slice(0, data.length - unread.length);
    expect(data.endsWith(unread)).toBe(true);
    await consumer.waitFor((out) => out.length >= published.length, 10_000);
    expect(consumer.stdout().toString()).toBe(published);
    expect(unread.length).toBeGreaterThan(0);
    expect(producer.stderr()).toBe('');
  }, 120_000);

  test.each([
    ['SIGTERM', 143],
    ['SIGINT', 130],
  ] as const)('multicast, %s: complete lines held back and a trailing partial line are published', async (signal, status) => {
    const dir = tempDir();
    const bus = path.join(dir, 'bus');
    const input = fifo(dir);
    // A long --sleep-interval holds complete lines back; a partial line waits for its end.
    const producer = filebus(['--filename', bus, '--sleep-interval', '30', 'producer'], { ...bash, stdin: input.fd });
    const pid = producer.child.pid!;
    await until(() => waitsOnStdin(pid), 10_000, 'the producer to wait for input');
    const before = ioBytes(pid).read;
    input.write('one\ntwo\npart');
    // All of it is read, and the producer waits for more, before the signal.
    await until(() => ioBytes(pid).read >= before + 12 && waitsOnStdin(pid), 10_000, 'the input to be read');
    producer.child.kill(signal);
    expect(await exitOf(producer)).toBe(status);
    expect(fs.readFileSync(bus, 'utf8')).toBe('one\ntwo\npart');
    expect(producer.stderr()).toBe('');
  });

  test('a second SIGTERM exits at once and says how many bytes were not published', async () => {
    const dir = tempDir();
    const bus = path.join(dir, 'bus');
    const input = fifo(dir);
    const producer = filebus(['--filename', bus, '--back-pressure', '--block-size', '3', 'producer'], { ...bash, stdin: input.fd });
    input.write('l1\nl2\nl3\n');
    await until(fileHolds(bus, 'l1\n'), 10_000, 'l1 on the bus');
    await secondSignalEnds(producer);
    expect(stderrLines(producer)).toEqual([expect.stringMatching(/^filebus: .*\b6 bytes\b.*not published|^filebus: .*not publish.*\b6 bytes\b/)]);
    // The chunk on the bus is untouched, and nothing half-written is left.
    expect(fs.readFileSync(bus, 'utf8')).toBe('l1\n');
    expect(fs.existsSync(`${bus}.__new__`)).toBe(false);
  });

  test('a second SIGTERM exits at once while the handler of the first waits to publish a partial line', async () => {
    const dir = tempDir();
    const bus = path.join(dir, 'bus');
    fs.writeFileSync(bus, 'not taken\n');
    const input = fifo(dir);
    // A long --sleep-interval: the wait for the bus is one long read, which the second signal must cut short.
    const producer = filebus(['--filename', bus, '--back-pressure', '--sleep-interval', '30', 'producer'], { ...bash, stdin: input.fd });
    const pid = producer.child.pid!;
    await until(() => waitsOnStdin(pid), 10_000, 'the producer to wait for input');
    const before = ioBytes(pid).read;
    input.write('part');
    await until(() => ioBytes(pid).read >= before + 4 && waitsOnStdin(pid), 10_000, 'the input to be read');
    await secondSignalEnds(producer);
    expect(stderrLines(producer)).toEqual([expect.stringMatching(/\b4 bytes\b.*not published/)]);
    expect(fs.readFileSync(bus, 'utf8')).toBe('not taken\n');
    expect(fs.existsSync(`${bus}.__new__`)).toBe(false);
  });

  test('a second SIGTERM exits within 1 s while another process holds the lock', async () => {
    const dir = tempDir();
    const bus = path.join(dir, 'bus');
    fs.writeFileSync(`${bus}.lock`, '');
    // One process that holds the lock, so that the clean-up's SIGTERM ends it.
    const lock = run('bash', ['-c', 'exec 9>>"$1" && flock 9 && exec sleep 8', 'bash', `${bus}.lock`], { stdin: 'ignore' });
    for (let i = 0; !(await lockHeld(`${bus}.lock`)); i++) {
      if (i > 500) throw new Error('flock did not take the lock');
      await sleep(10);
    }
    const input = fifo(dir);
    const producer = filebus(['--filename', bus, 'producer'], { ...bash, stdin: input.fd });
    input.write('hello\n');
    await until(() => childNamed(producer.child.pid!, 'flock'), 10_000, 'the producer to wait for the lock');
    await secondSignalEnds(producer);
    expect(stderrLines(producer)).toEqual([expect.stringMatching(/\b6 bytes\b/)]);
    expect(fs.existsSync(bus)).toBe(false);
    // The lock holder is still there: we did not touch it.
    expect(lock.child.exitCode).toBe(null);
  });

  test('a signal during the end-of-stream wait exits 143, and no end marker goes out', async () => {
    const dir = tempDir();
    const bus = path.join(dir, 'bus');
    // A long --sleep-interval: waiting for the bus is one long read, which the signal must cut short.
    const producer = filebus(['--filename', bus, '--back-pressure', '--sleep-interval', '30', 'producer'], bash);
    feed(producer, 'x\n');
    await until(fileHolds(bus, 'x\n'), 10_000, 'x on the bus');
    await sleep(100);
    producer.child.kill('SIGTERM');
    expect(await exitOf(producer, 2000)).toBe(143);
    expect(fs.readFileSync(bus, 'utf8')).toBe('x\n');
    // A consumer takes x and keeps waiting: there is no end marker.
    const consumer = filebus(['--filename', bus, '--back-pressure', 'consumer'], { stdin: 'ignore' });
    await consumer.waitFor((out) => out.toString() === 'x\n');
    await until(() => !fs.existsSync(bus), 10_000, 'x to be taken');
    await sleep(300);
    expect(consumer.child.exitCode).toBe(null);
  });
});
