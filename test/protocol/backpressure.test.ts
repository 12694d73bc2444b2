/**
 * Back-pressure mode (--back-pressure / --lossless): a lossless work queue.
 * Every chunk goes to exactly one back-pressure consumer, each producer ends
 * its stream with one empty chunk, and waiting costs no CPU. (Signals, a
 * closed output, several producers and the library's consumer have files of
 * their own: signals/, errors/, ext/ends/, library/.)
 */
import fs from 'node:fs';
import path from 'node:path';
import { expect, test } from 'vitest';
import { asleepInEventLoop, cpuSeconds, filebus, randomBytes, sha256, sleep, syscallProbeUnavailable, tempDir, until, waitForFile } from '../helpers.js';
import { RECORD, busLeftovers, inputFd, records, split } from '../support/queue.js';

/**
 * CPU seconds `pid` uses in a 1 s window once it has settled into its wait
 * (asleep in its event loop or its blocking wait, where /proc/PID/syscall
 * can tell; else after 300 ms). Measured with the scheduler's ns clock, so
 * one second is enough: an idle waiter polling every 0.1 s uses about 5 ms
 * of it, a poll ten times as fast about 20 ms, and a spinning loop most of
 * the second. The limit, 20 ms, is the rate the 5 s window allowed before
 * (0.1 s in 5 s).
 */
async function idleCpuSeconds(pid: number): Promise<number> {
  if (syscallProbeUnavailable) await sleep(300);
  else await until(() => asleepInEventLoop(pid), 10_000, `process ${pid} to wait`);
  const before = cpuSeconds(pid);
  await sleep(1000);
  return cpuSeconds(pid) - before;
}
const IDLE_CPU_LIMIT = 0.02;

// The two tests that mostly wait come first: they leave the CPU to whatever test file runs alongside.
test('a producer with no consumer waits without spinning, and a consumer started seconds later gets everything', async () => {
  const dir = tempDir();
  const bus = path.join(dir, 'bus');
  const input = Buffer.concat(records(7, 50));
  const fd = inputFd(dir, 'input', input);
  const args = ['--filename', bus, '--back-pressure', '--block-size', String(RECORD)];
  const producer = filebus([...args, 'producer'], { stdin: fd });
  fs.closeSync(fd);
  // The first chunk is out; the producer now waits for someone to take it.
  await waitForFile(bus);
  const used = await idleCpuSeconds(producer.child.pid!);
  expect(used, `CPU seconds used in 1 s of waiting`).toBeLessThan(IDLE_CPU_LIMIT);
  expect(fs.readFileSync(bus).equals(input.subarray(0, RECORD))).toBe(true);

  // Still waiting, a second later: it neither gave up nor dropped the chunk.
  expect(producer.child.exitCode).toBe(null);
  const consumer = filebus([...args, 'consumer'], { stdin: 'ignore' });
  expect(await consumer.exited).toBe(0);
  expect(await producer.exited).toBe(0);
  expect(consumer.stdout().equals(input)).toBe(true);
  expect(busLeftovers(bus)).toEqual([]);
});

test('a back-pressure consumer waiting on an empty bus does not spin, and still gets what comes later', async () => {
  const dir = tempDir();
  const bus = path.join(dir, 'bus');
  const consumer = filebus(['--filename', bus, '--back-pressure', 'consumer'], { stdin: 'ignore' });
  await waitForFile(`${bus}.lock`);
  const used = await idleCpuSeconds(consumer.child.pid!);
  expect(used, `CPU seconds used in 1 s of waiting`).toBeLessThan(IDLE_CPU_LIMIT);

  const producer = filebus(['--filename', bus, '--back-pressure', 'producer']);
  producer.child.stdin!.end('late but not lost\n');
  expect(await consumer.exited).toBe(0);
  expect(await producer.exited).toBe(0);
  expect(consumer.stdout().toString()).toBe('late but not lost\n');
});

test('4 producers and 4 consumers on one bus: every record reaches exactly one consumer, and all exit 0', async () => {
  const dir = tempDir();
  const bus = path.join(dir, 'bus');
  const perProducer = 1000;
  const inputs = [0, 1, 2, 3].map((p) => records(p, perProducer));
  const args = ['--filename', bus, '--back-pressure', '--block-size', String(RECORD)];
  const consumers = [0, 1, 2, 3].map(() => filebus([...args, 'consumer'], { stdin: 'ignore' }));
  const producers = inputs.map((input, p) => {
    const fd = inputFd(dir, `input-${p}`, Buffer.concat(input));
    const producer = filebus([...args, 'producer'], { stdin: fd });
    fs.closeSync(fd);
    return producer;
  });
  // Each producer publishes one end-of-stream chunk and each consumer exits on the first it takes:
  // four markers end all four consumers.
  const statuses = await Promise.all([...producers, ...consumers].map((proc) => proc.exited));
  for (const proc of [...producers, ...consumers]) expect(proc.stderr()).toBe('');
  expect(statuses).toEqual(Array(8).fill(0));

  const got = consumers.flatMap((consumer, c) => split(consumer.stdout(), `consumer ${c}`));
  const expected = inputs.flat().map((record) => record.toString('latin1'));
  expect(got.length).toBe(expected.length);
  expect(new Set(got).size).toBe(got.length); // no record twice
  expect([...got].sort()).toEqual([...expected].sort());
  // The work was shared: the queue is not a broadcast.
  expect(consumers.filter((consumer) => consumer.stdout().length > 0).length).toBeGreaterThan(1);
  // Each producer's records stay in order within any one consumer's output.
  for (const [c, consumer] of consumers.entries()) {
    for (let p = 0; p < 4; p++) {
      const mine = split(consumer.stdout(), `consumer ${c}`).filter((r) => r.startsWith(`producer ${p} `));
      expect(mine, `consumer ${c}, producer ${p}`).toEqual([...mine].sort());
    }
  }
  expect(busLeftovers(bus)).toEqual([]);
});

test('a multicast consumer eavesdrops on a back-pressure bus without disturbing it', async () => {
  const dir = tempDir();
  const bus = path.join(dir, 'sub', 'bus');
  const input = records(0, 2000);
  const args = ['--filename', bus, '--block-size', String(RECORD)];
  const eavesdropper = filebus([...args, 'consumer'], { stdin: 'ignore' });
  await until(() => fs.existsSync(path.dirname(bus)), 10_000, 'the eavesdropper to start');
  const consumer = filebus([...args, '--back-pressure', 'consumer'], { stdin: 'ignore' });
  const fd = inputFd(dir, 'input', Buffer.concat(input));
  const producer = filebus([...args, '--back-pressure', 'producer'], { stdin: fd });
  fs.closeSync(fd);

  expect(await consumer.exited).toBe(0);
  expect(await producer.exited).toBe(0);
  // The back-pressure consumer got everything, once, in order.
  expect(consumer.stdout().equals(Buffer.concat(input))).toBe(true);
  expect(busLeftovers(bus)).toEqual([]);

  // The eavesdropper only ever saw whole chunks, in order: a subsequence of the records.
  expect(eavesdropper.child.exitCode).toBeNull();
  const heard = split(eavesdropper.stdout(), 'eavesdropper');
  expect(heard.length).toBeGreaterThan(0);
  const order = new Map(input.map((record, i) => [record.toString('latin1'), i]));
  let previous = -1;
  for (const record of heard) {
    const index = order.get(record);
    expect(index, `not a record: ${JSON.stringify(record)}`).toBeDefined();
    expect(index!).toBeGreaterThan(previous);
    previous = index!;
  }
  expect(eavesdropper.stderr()).toBe('');
});

// Last, so that it overlaps the latency-sensitive tests of other files as little as possible.
test('64 MiB of random bytes through one producer and one consumer arrive intact', { timeout: 120_000 }, async () => {
  const dir = tempDir();
  const bus = path.join(dir, 'bus');
  const data = randomBytes(64 * 1024 * 1024);
  const stdin = inputFd(dir, 'input', data);
  const outFile = path.join(dir, 'output');
  const stdout = fs.openSync(outFile, 'w');
  const consumer = filebus(['--filename', bus, '--back-pressure', 'consumer'], { stdin: 'ignore', stdout });
  const producer = filebus(['--filename', bus, '--back-pressure', 'producer'], { stdin });
  fs.closeSync(stdin);
  fs.closeSync(stdout);
  const [producerStatus, consumerStatus] = await Promise.all([producer.exited, consumer.exited]);
  expect(producer.stderr() + consumer.stderr()).toBe('');
  expect(producerStatus).toBe(0);
  expect(consumerStatus).toBe(0);
  const out = fs.readFileSync(outFile);
  expect(out.length).toBe(data.length);
  expect(sha256(out)).toBe(sha256(data));
  expect(busLeftovers(bus)).toEqual([]);
});
