/**
 * Issue 17, item 4: a back-pressure consumer stopped by a signal while its
 * output is full. Before, it gave up its write half-way: its output ended
 * in a torn record, and the whole chunk went again to the next consumer.
 * Now a chunk whose write has begun is finished (and removed) before the
 * first signal ends the consumer; a second signal may cut it, says so in
 * one line, and leaves the chunk on the bus (at least once).
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { expect, test } from 'vitest';
import { asleepInEventLoop, filebus, ioBytes, sleep, tempDir, until, within } from '../helpers.js';

const LINES = 200_000;
const PIPE_BYTES = 65_536;

/** A FIFO whose read end the test holds without reading: the consumer's output fills up. */
function stuckOutput(dir: string): { readFd: number; writeFd: number } {
  const fifo = path.join(dir, 'out');
  expect(spawnSync('mkfifo', [fifo]).status).toBe(0);
  const readFd = fs.openSync(fifo, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK);
  const writeFd = fs.openSync(fifo, fs.constants.O_WRONLY);
  return { readFd, writeFd };
}

/** Reads everything the FIFO holds now (non-blocking), and on until its writers have gone. */
async function drain(fd: number, done: () => boolean): Promise<Buffer> {
  const parts: Buffer[] = [];
  const buffer = Buffer.alloc(1 << 16);
  for (;;) {
    let n: number;
    try {
      n = fs.readSync(fd, buffer, 0, buffer.length, null);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EAGAIN') throw error;
      if (done()) n = 0;
      else {
        await new Promise((resolve) => setTimeout(resolve, 5));
        continue;
      }
    }
    if (n === 0) return Buffer.concat(parts);
    parts.push(Buffer.from(buffer.subarray(0, n)));
  }
}

async function stuckConsumer(dir: string, bus: string) {
  const args = ['--filename', bus, '--lossless', '--block-size', '10000'];
  const producer = filebus([...args, 'producer', '--lines']);
  // Killed at clean-up with input unread: no EPIPE for the test to report.
  producer.child.stdin!.on('error', () => {});
  producer.child.stdin!.end(Array.from({ length: LINES }, (_, i) => `${i + 1}\n`).join(''));
  const { readFd, writeFd } = stuckOutput(dir);
  const consumer = filebus([...args, 'consumer'], { stdin: 'ignore', stdout: writeFd });
  fs.closeSync(writeFd);
  const pid = consumer.child.pid!;
  // Stuck: the pipe is full (about 64 KiB; writes share its pages, so a
  // little less), part of a chunk written, the rest waiting for room. Its
  // output has not grown for 200 ms while the next chunk is on the bus.
  let written = -1;
  let since = performance.now();
  await until(() => {
    const now = ioBytes(pid).written;
    if (now !== written) [written, since] = [now, performance.now()];
    return written > PIPE_BYTES / 2 && performance.now() - since > 200 && asleepInEventLoop(pid) && fs.existsSync(bus);
  }, 10_000, 'the consumer to fill its output');
  return { args, producer, consumer, readFd, written };
}

/** Lines 1..n, as seq prints them. */
function isSeq(text: string, from: number): number {
  const lines = text.split('\n');
  expect(lines.pop(), 'output ends with a whole line').toBe('');
  lines.forEach((line, i) => {
    if (line !== String(from + i)) throw new Error(`line ${i} is '${line}', expected ${from + i}`);
  });
  return from + lines.length;
}

test('first signal: the chunk being written is finished and removed, then the consumer exits 143; the next consumer goes on from the next line', async () => {
  const dir = tempDir();
  const bus = path.join(dir, 'bus');
  const { args, consumer, producer, readFd, written } = await stuckConsumer(dir, bus);
  consumer.child.kill('SIGTERM');
  // Give it time to handle the signal before its output gets room again
  // (the old code gave up its write then); it may not end meanwhile.
  await Promise.race([consumer.exited, sleep(500)]);
  // Its chunk must still go out: read its output, and it ends.
  const out = await drain(readFd, () => consumer.child.exitCode !== null);
  fs.closeSync(readFd);
  expect(await within(consumer.exited, 10_000, 'the consumer to exit')).toBe(143);
  expect(consumer.stderr()).toBe('');
  const next = isSeq(out.toString('latin1'), 1);
  console.log(`first consumer: lines 1-${next - 1} (${out.length} bytes), all whole`);
  expect(out.length).toBeGreaterThan(written);

  const second = filebus([...args, 'consumer'], { stdin: 'ignore' });
  expect(await within(second.exited, 30_000, 'the second consumer')).toBe(0);
  expect(await producer.exited).toBe(0);
  expect(isSeq(second.stdout().toString('latin1'), next)).toBe(LINES + 1);
});

test('second signal: the write is cut, one line on stderr says so, and the chunk stays on the bus for the next consumer', async () => {
  const dir = tempDir();
  const bus = path.join(dir, 'bus');
  const { args, consumer, producer, readFd } = await stuckConsumer(dir, bus);
  const chunk = fs.readFileSync(bus);
  consumer.child.kill('SIGTERM');
  // Still there after the first signal, its write still waiting for room.
  await until(() => asleepInEventLoop(consumer.child.pid!), 5_000, 'the consumer to wait again');
  consumer.child.kill('SIGTERM');
  expect(await within(consumer.exited, 2_000, 'the consumer to exit at once')).toBe(143);
  const stderr = consumer.stderr();
  console.log(`second signal: ${JSON.stringify(stderr)}`);
  expect(stderr).toMatch(/^filebus: [^\n]*chunk[^\n]*\n$/);
  expect(fs.readFileSync(bus).equals(chunk), 'the chunk is still on the bus').toBe(true);
  const out = await drain(readFd, () => true);
  fs.closeSync(readFd);
  // The torn chunk's beginning is in the output; the whole chunk goes to the next consumer.
  const firstLine = chunk.subarray(0, chunk.indexOf('\n') + 1);
  const start = out.lastIndexOf(Buffer.concat([Buffer.from('\n'), firstLine])) + 1;
  expect(start, 'the chunk was begun').toBeGreaterThan(0);
  const torn = out.subarray(start);
  expect(torn.length).toBeLessThan(chunk.length);
  expect(chunk.subarray(0, torn.length).equals(torn), 'the output ends with the beginning of the chunk').toBe(true);
  isSeq(out.subarray(0, start).toString('latin1'), 1);
  const second = filebus([...args, 'consumer'], { stdin: 'ignore' });
  expect(await within(second.exited, 30_000, 'the second consumer')).toBe(0);
  expect(await producer.exited).toBe(0);
  expect(second.stdout().subarray(0, chunk.length).equals(chunk)).toBe(true);
});
