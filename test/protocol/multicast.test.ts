/**
 * Multicast mode (the default) through the CLI: every consumer sees every
 * chunk that stays in place long enough, bytes arrive unchanged, and the
 * bus works whichever side starts first.
 */
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, test } from 'vitest';
import { createConsumer } from '../../src/index.js';
import { type Proc, filebus, inotifyFds, randomBytes, sleep, tempDir, until, within, writeLinesAtRate } from '../helpers.js';

/** True when `out` holds `lines` as whole lines, in order, each at most once, and nothing else (a subsequence: multicast may skip). */
function subsequenceOf(out: string, lines: string[]): boolean {
  const got = out.split('\n');
  if (got.pop() !== '') return false; // a torn last line
  let next = 0;
  for (const line of got) {
    const at = lines.indexOf(line, next);
    if (at < 0) return false; // unknown, torn, repeated or out of order
    next = at + 1;
  }
  return true;
}

test('3 consumers each get every one of 50 lines when each stays on the bus until all have it, each within 1 s', async () => {
  const bus = path.join(tempDir(), 'bus');
  const consumers = [0, 1, 2].map(() => filebus(['--filename', bus, '--sleep-interval', '0.1', 'consumer'], { stdin: 'ignore' }));
  const producer = filebus(['--filename', bus, '--sleep-interval', '0.1', 'producer']);
  const stdin = producer.child.stdin!;
  stdin.write('warm-up\n');
  await Promise.all(consumers.map((c) => c.waitFor((out) => out.includes('warm-up\n'))));
  // Lock step: a line replaces the one before only once every consumer has
  // printed it, so multicast owes each consumer every line (PROTOCOL.md: a
  // chunk that stays in place long enough). Any line lost is a bug.
  const lines = Array.from({ length: 50 }, (_, i) => `line ${String(i).padStart(3, '0')}`);
  let expected = 'warm-up\n';
  for (const line of lines) {
    expected += `${line}\n`;
    stdin.write(`${line}\n`);
    await Promise.all(consumers.map((c, i) => c.waitFor((out) => out.length >= expected.length, 1000).catch((error: Error) => {
      throw new Error(`consumer ${i} did not print ${line} within 1 s: ${error.message}`);
    })));
  }
  for (const consumer of consumers) expect(consumer.stdout().toString()).toBe(expected);
  stdin.end();
  expect(await producer.exited).toBe(0);
  for (const consumer of consumers) expect(consumer.stderr()).toBe('');
});

test('3 consumers of 50 lines at 20 lines/s: only whole lines, in order, none twice, and the last one always arrives', async () => {
  const bus = path.join(tempDir(), 'bus');
  const consumers = [0, 1, 2].map(() => filebus(['--filename', bus, 'consumer'], { stdin: 'ignore' }));
  const producer = filebus(['--filename', bus, 'producer']);
  const stdin = producer.child.stdin!;
  stdin.write('warm-up\n');
  await Promise.all(consumers.map((c) => c.waitFor((out) => out.includes('warm-up\n'))));
  const lines = Array.from({ length: 50 }, (_, i) => `line ${String(i).padStart(3, '0')}`);
  await writeLinesAtRate(stdin, lines.map((line) => `${line}\n`), 20);
  // At full speed a starved consumer may skip a line (multicast is lossy by
  // design), but the last line stays on the bus, so every consumer gets it.
  for (const [i, consumer] of consumers.entries()) {
    const out = (await consumer.waitFor((data) => data.toString().endsWith(`${lines.at(-1)}\n`), 10_000)).toString();
    expect(subsequenceOf(out, ['warm-up', ...lines]), `consumer ${i}: ${out}`).toBe(true);
  }
  stdin.end();
  expect(await producer.exited).toBe(0);
});

test('random bytes with NULs arrive byte-identical', async () => {
  const bus = path.join(tempDir(), 'bus');
  const data = randomBytes(3000);
  for (let i = 0; i < data.length; i += 97) data[i] = 0;
  data[0] = 0;
  data[data.length - 1] = 0;
  const consumer = filebus(['--filename', bus, 'consumer'], { stdin: 'ignore' });
  const producer = filebus(['--filename', bus, 'producer']);
  producer.child.stdin!.end(data);
  expect(await producer.exited).toBe(0);
  expect(fs.readFileSync(bus).equals(data)).toBe(true);
  const out = await consumer.waitForBytes(data.length);
  expect(out.equals(data)).toBe(true);
});

describe('--block-size splits input into chunks no larger than it', () => {
  test.each([
    ['stdin is a pipe', 'pipe'],
    ['stdin is a regular file', 'file'],
  ] as const)('%s', async (_name, input) => {
    const dir = tempDir();
    const bus = path.join(dir, 'bus');
    const blockSize = 1000;
    const data = randomBytes(25_500);
    // Back pressure, so that the library consumer sees every chunk the producer published.
    const chunks: Buffer[] = [];
    const consumed = (async () => {
      for await (const chunk of createConsumer({ filename: bus, backPressure: true })) chunks.push(chunk as Buffer);
    })();
    let producer: Proc;
    if (input === 'file') {
      fs.writeFileSync(path.join(dir, 'input'), data);
      const fd = fs.openSync(path.join(dir, 'input'), 'r');
      producer = filebus(['--filename', bus, '--back-pressure', '--block-size', String(blockSize), 'producer'], { stdin: fd });
      fs.closeSync(fd);
    } else {
      producer = filebus(['--filename', bus, '--back-pressure', '--block-size', String(blockSize), 'producer']);
      producer.child.stdin!.end(data);
    }
    expect(await producer.exited).toBe(0);
    await consumed;
    expect(Buffer.concat(chunks).equals(data)).toBe(true);
    for (const chunk of chunks) expect(chunk.length).toBeLessThanOrEqual(blockSize);
    expect(chunks.length).toBeGreaterThanOrEqual(Math.ceil(data.length / blockSize));
    if (input === 'file') {
      // Blocking reads of a regular file fill every block but the last.
      expect(chunks.map((c) => c.length)).toEqual([...Array<number>(25).fill(blockSize), 500]);
    }
  });
});

describe('either side may start first', () => {
  test('a consumer started before the bus file (and its directory) exists', async () => {
    const dir = tempDir();
    const bus = path.join(dir, 'not', 'yet', 'there', 'bus');
    const consumer = filebus(['--filename', bus, 'consumer'], { stdin: 'ignore' });
    // The consumer creates the directory, then waits.
    await until(() => fs.existsSync(path.dirname(bus)), 10_000, 'the consumer to create the directory');
    expect(fs.existsSync(bus)).toBe(false);
    const producer = filebus(['--filename', bus, 'producer']);
    producer.child.stdin!.end('hello late producer\n');
    expect(await producer.exited).toBe(0);
    expect((await consumer.waitForBytes(20)).toString()).toBe('hello late producer\n');
  });

  test('a producer into a directory that does not exist yet, read by a consumer started afterwards', async () => {
    const dir = tempDir();
    const bus = path.join(dir, 'a', 'b', 'c', 'bus');
    const producer = filebus(['--filename', bus, 'producer']);
    producer.child.stdin!.end('published before any consumer\n');
    expect(await producer.exited).toBe(0);
    // Multicast: the last chunk stays on the bus; nothing is left staged.
    expect(fs.readFileSync(bus, 'utf8')).toBe('published before any consumer\n');
    expect(fs.existsSync(`${bus}.__new__`)).toBe(false);
    expect(fs.existsSync(`${bus}.lock`)).toBe(true);
    const consumer = filebus(['--filename', bus, 'consumer'], { stdin: 'ignore' });
    expect((await consumer.waitForBytes(30)).toString()).toBe('published before any consumer\n');
    // No end of stream in multicast mode: the consumer goes on waiting, like tail -f.
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(consumer.child.exitCode).toBeNull();
  });
});

test('--no-file-monitoring delivers, with polling only, on both sides', async () => {
  const bus = path.join(tempDir(), 'bus');
  const args = ['--filename', bus, '--no-file-monitoring'];
  const consumer = filebus([...args, 'consumer'], { stdin: 'ignore' });
  const producer = filebus([...args, 'producer']);
  const monitored = filebus(['--filename', bus, 'consumer'], { stdin: 'ignore' });
  let expected = '';
  // Lock step: each line is read before the next replaces it.
  for (let i = 0; i < 5; i++) {
    const line = `polled line ${i}\n`;
    expected += line;
    producer.child.stdin!.write(line);
    await consumer.waitFor((out) => out.toString() === expected, 5000);
    await monitored.waitFor((out) => out.toString() === expected, 5000);
  }
  // Neither side of the --no-file-monitoring pair watches anything; the control consumer does.
  expect(inotifyFds(consumer.child.pid!)).toBe(0);
  expect(inotifyFds(producer.child.pid!)).toBe(0);
  expect(inotifyFds(monitored.child.pid!)).toBeGreaterThan(0);
  producer.child.stdin!.end();
  expect(await producer.exited).toBe(0);
});

test('FILEBUS_NO_FILE_MONITORING=1 turns notifications off too', async () => {
  const bus = path.join(tempDir(), 'bus');
  const consumer = filebus(['--filename', bus, 'consumer'], { stdin: 'ignore', env: { FILEBUS_NO_FILE_MONITORING: '1' } });
  const producer = filebus(['--filename', bus, 'producer']);
  producer.child.stdin!.write('x\n');
  await consumer.waitForBytes(2, 5000);
  expect(consumer.stderr()).toBe('');
  expect(inotifyFds(consumer.child.pid!)).toBe(0);
});

/**
 * The command's blocking wait keeps the event loop waiting for seconds
 * between chunks; a signal must still end it at once, whichever of Node's
 * threads the kernel hands it to: libuv's signal pipe is in its poll set
 * (src/sys/wakeups.ts). tgkill(2) aims the signal at one thread.
 */
test('an idle multicast consumer exits 128+n within 1 s of SIGTERM or SIGINT sent to any one of its threads', async () => {
  const { createRequire } = await import('node:module');
  const koffi = createRequire(import.meta.url)('koffi') as typeof import('koffi');
  const tgkill = koffi.load('libc.so.6').func('int tgkill(int tgid, int tid, int sig)');
  const bus = path.join(tempDir(), 'bus');
  const signals = [['SIGTERM', 15], ['SIGINT', 2]] as const;
  let tested = 0;
  for (const threadIndex of [0, 1, 2, 3]) {
    for (const [name, number] of signals) {
      const consumer = filebus(['--filename', bus, 'consumer'], { stdin: 'ignore' });
      const pid = consumer.child.pid!;
      await until(() => inotifyFds(pid) > 0, 10_000, 'the consumer to watch the bus');
      const threads = fs.readdirSync(`/proc/${pid}/task`).map(Number).sort((a, b) => a - b);
      const tid = threads[threadIndex];
      if (tid === undefined) {
        consumer.child.kill('SIGKILL');
        await consumer.exited;
        continue;
      }
      await sleep(300); // past the start-up's turns, into the long wait
      const sent = performance.now();
      expect(tgkill(pid, tid, number), `tgkill ${name} to thread ${tid}`).toBe(0);
      expect(await within(consumer.exited, 5000, `exit after ${name} to thread #${threadIndex}`)).toBe(128 + number);
      expect(performance.now() - sent, `ms from ${name} to thread #${threadIndex} to the exit`).toBeLessThan(1000);
      tested++;
    }
  }
  expect(tested).toBeGreaterThanOrEqual(4);
});
