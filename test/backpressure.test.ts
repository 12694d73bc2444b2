/**
 * Back-pressure mode (--back-pressure / --lossless): a lossless work queue.
 * Every chunk goes to exactly one back-pressure consumer, each producer ends
 * its stream with one empty chunk, and waiting costs no CPU.
 */
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, test } from 'vitest';
import { createConsumer, createProducer } from '../src/index.js';
import { type Proc, cli, cpuSeconds, filebus, hasStackTrace, run, sha256, tempDir, until, waitForFile, within } from './helpers.js';

const RECORD = 100;

/** `count` unique fixed-size records: producer id and sequence number, padded, newline-terminated. */
function records(producer: number, count: number, first = 0): Buffer[] {
  return Array.from({ length: count }, (_, i) => {
    const text = `producer ${producer} record ${String(first + i).padStart(6, '0')} `;
    return Buffer.from(`${text.padEnd(RECORD - 1, '.')}\n`);
  });
}

/** Splits output into records, failing on a partial one. */
function split(out: Buffer, what: string): string[] {
  expect(out.length % RECORD, `${what}: ${out.length} bytes is not a whole number of records`).toBe(0);
  const result: string[] = [];
  for (let i = 0; i < out.length; i += RECORD) result.push(out.subarray(i, i + RECORD).toString('latin1'));
  return result;
}

/** Opens a file holding `data` for reading, to be a producer's stdin. */
function inputFd(dir: string, name: string, data: Buffer): number {
  const file = path.join(dir, name);
  fs.writeFileSync(file, data);
  return fs.openSync(file, 'r');
}

function busLeftovers(bus: string): string[] {
  return [bus, `${bus}.__new__`].filter((file) => fs.existsSync(file));
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

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
  await sleep(300);
  const before = cpuSeconds(producer.child.pid!);
  await sleep(5000);
  const used = cpuSeconds(producer.child.pid!) - before;
  expect(used, `CPU seconds used while waiting`).toBeLessThan(0.1);
  expect(fs.readFileSync(bus).equals(input.subarray(0, RECORD))).toBe(true);

  // Still waiting, seconds later: it neither gave up nor dropped the chunk.
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
  await sleep(300);
  const before = cpuSeconds(consumer.child.pid!);
  await sleep(5000);
  const used = cpuSeconds(consumer.child.pid!) - before;
  expect(used, `CPU seconds used while waiting`).toBeLessThan(0.1);

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

/**
 * Consumer A takes records 0-9, then its reader goes away; the rest is
 * published only then, so whatever A had written before is known to have
 * been read. A either notices the closed stdout while idle or fails to
 * write the chunk it took: either way that chunk stays for consumer B.
 */
test.each(['a pipe to head, which exits', 'a pipe whose reader closes it'] as const)(
  'a consumer whose stdout closes mid-stream leaves its chunk for the next consumer: %s',
  async (how) => {
    const dir = tempDir();
    const bus = path.join(dir, 'bus');
    const input = records(3, 200);
    const all = Buffer.concat(input);
    const args = ['--filename', bus, '--back-pressure', '--block-size', String(RECORD)];
    const producer = filebus([...args, 'producer']);
    const first = Buffer.concat(input.slice(0, 10));
    let a: Proc;
    if (how === 'a pipe to head, which exits') {
      // The group closes its own copy of the pipe, so once "closed" is printed nobody reads it.
      const script = 'set -o pipefail; "$0" "$@" consumer | { head -c 1000; exec 0<&-; echo closed >&2; }';
      a = run('bash', ['-c', script, process.execPath, cli, ...args], { stdin: 'ignore' });
      producer.child.stdin!.write(first);
      await a.waitForBytes(1000);
      await until(() => a.stderr().includes('closed'), 10_000, 'head to exit');
    } else {
      a = filebus([...args, 'consumer'], { stdin: 'ignore' });
      producer.child.stdin!.write(first);
      await a.waitForBytes(1000);
      a.child.stdout!.destroy();
    }
    const aOut = a.stdout();
    producer.child.stdin!.end(all.subarray(first.length));
    expect(await a.exited).toBe(141);
    expect(hasStackTrace(a.stderr()), a.stderr()).toBe(false);

    const b = filebus([...args, 'consumer'], { stdin: 'ignore' });
    expect(await b.exited).toBe(0);
    expect(await producer.exited).toBe(0);
    const bOut = b.stdout();
    // A's output is the start of the stream, B's the end, with no gap between them.
    expect(aOut.equals(first)).toBe(true);
    expect(all.subarray(all.length - bOut.length).equals(bOut)).toBe(true);
    expect(aOut.length + bOut.length).toBeGreaterThanOrEqual(all.length);
    const seen = new Set([...split(aOut, 'A'), ...split(bOut, 'B')]);
    for (const record of input) expect(seen.has(record.toString('latin1'))).toBe(true);
    expect(busLeftovers(bus)).toEqual([]);
  },
);

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

describe('several producers: consumers given --producers N end after N end-of-stream chunks, counted together', () => {
  /** Runs `producers` producers of `perProducer` records and `consumers` consumers with --producers; all must exit 0 with every record once. */
  async function queue(dir: string, bus: string, producerCount: number, consumerCount: number, perProducer = 300, first = 0): Promise<void> {
    const args = ['--filename', bus, '--back-pressure', '--block-size', String(RECORD)];
    const consumers = Array.from({ length: consumerCount }, () => filebus([...args, 'consumer', '--producers', String(producerCount)], { stdin: 'ignore' }));
    const inputs = Array.from({ length: producerCount }, (_, p) => records(p, perProducer, first));
    // Producers that start at different moments: the first may be done before the second begins.
    const producers: Proc[] = [];
    for (const [p, input] of inputs.entries()) {
      const fd = inputFd(dir, `input-${p}-${first}`, Buffer.concat(input));
      producers.push(filebus([...args, 'producer'], { stdin: fd }));
      fs.closeSync(fd);
      if (p === 0) await producers[0]!.exited;
    }
    const statuses = await Promise.all([...producers, ...consumers].map((proc) => within(proc.exited, 30_000, 'every producer and consumer to exit')));
    for (const proc of [...producers, ...consumers]) expect(proc.stderr()).toBe('');
    expect(statuses).toEqual(Array(producerCount + consumerCount).fill(0));
    const got = consumers.flatMap((consumer, c) => split(consumer.stdout(), `consumer ${c}`));
    const expected = inputs.flat().map((record) => record.toString('latin1'));
    expect(got.length).toBe(expected.length);
    expect(new Set(got).size).toBe(got.length);
    expect([...got].sort()).toEqual([...expected].sort());
    expect(busLeftovers(bus)).toEqual([]);
  }

  test('2 producers, 1 consumer: the consumer waits for both end markers, no producer is left blocked', async () => {
    const dir = tempDir();
    await queue(dir, path.join(dir, 'bus'), 2, 1);
  });

  test('2 producers, 3 consumers: all exit 0, every record exactly once', async () => {
    const dir = tempDir();
    await queue(dir, path.join(dir, 'bus'), 2, 3);
  });

  test('the count of a finished run, or of a run whose consumers all died, does not carry over to the next run on the bus', async () => {
    const dir = tempDir();
    const bus = path.join(dir, 'bus');
    await queue(dir, bus, 2, 2, 50, 0);
    // A run that dies half-way: one end marker counted, then its only consumer is killed.
    const args = ['--filename', bus, '--back-pressure', '--block-size', String(RECORD)];
    const doomed = filebus([...args, 'consumer', '--producers', '2'], { stdin: 'ignore' });
    const lone = filebus([...args, 'producer']);
    lone.child.stdin!.end(Buffer.concat(records(9, 3)));
    expect(await within(lone.exited, 10_000, 'the lone producer')).toBe(0);
    await until(() => !fs.existsSync(bus), 10_000, 'the end marker to be taken');
    doomed.child.kill('SIGKILL');
    await doomed.exited;
    // Two more full runs: each consumer must wait for both markers of its own run.
    await queue(dir, bus, 2, 1, 50, 1000);
    await queue(dir, bus, 2, 3, 50, 2000);
  });

  test('F.ends left empty or short (a crash mid-write, an older version) does not end a live counting consumer early', async () => {
    const dir = tempDir();
    const bus = path.join(dir, 'bus');
    // One full run first, so the next run's stream is 1 and a count read as "0 0" differs from it.
    await queue(dir, bus, 2, 1, 5, 0);
    for (const torn of ['', '1']) {
      const args = ['--filename', bus, '--back-pressure'];
      const consumer = filebus([...args, 'consumer', '--producers', '2'], { stdin: 'ignore' });
      const pid = consumer.child.pid!;
      // Joined once it holds its shared flock on F.ends, the last step of joining (/proc/locks: "FLOCK ADVISORY READ <pid> <dev>:<ino> ...").
      const ino = fs.statSync(`${bus}.ends`).ino;
      const joined = new RegExp(`FLOCK\\s+ADVISORY\\s+READ\\s+${pid}\\s+\\S+:${ino}\\s`);
      await until(() => joined.test(fs.readFileSync('/proc/locks', 'latin1')), 10_000, 'the consumer to join the count');
      fs.writeFileSync(`${bus}.ends`, torn);
      for (const name of ['one', 'two']) {
        const producer = filebus([...args, 'producer']);
        producer.child.stdin!.end(`${name}\n`);
        expect(await within(producer.exited, 10_000, `producer ${name}`)).toBe(0);
      }
      expect(await within(consumer.exited, 10_000, 'the consumer')).toBe(0);
      expect(consumer.stdout().toString(), JSON.stringify(torn)).toBe('one\ntwo\n');
      expect(consumer.stderr()).toBe('');
    }
  });

  test('F.ends is always one whole fixed-width record, readable as "<streams> <markers> <last marker>"', async () => {
    const dir = tempDir();
    const bus = path.join(dir, 'bus');
    await queue(dir, bus, 2, 2, 5, 0);
    const text = fs.readFileSync(`${bus}.ends`, 'latin1');
    // The third field (issue 17: which marker was counted last) is an inode and a change time, 20 digits each.
    expect(text).toMatch(/^(\d+) (\d+) \d{20}:\d{20}\n$/);
    expect(text.slice(0, 34)).toBe(`${'1'.padStart(16, '0')} ${'0'.padStart(16, '0')} `);
  });

  test('consumers without --producers still end on the first end marker (as before)', async () => {
    const dir = tempDir();
    const bus = path.join(dir, 'bus');
    const args = ['--filename', bus, '--back-pressure'];
    const consumer = filebus([...args, 'consumer'], { stdin: 'ignore' });
    const p1 = filebus([...args, 'producer']);
    p1.child.stdin!.end('one\n');
    expect(await within(consumer.exited, 10_000, 'the consumer')).toBe(0);
    expect(await p1.exited).toBe(0);
    expect(consumer.stdout().toString()).toBe('one\n');
    expect(fs.existsSync(`${bus}.ends`)).toBe(false);
  });

  test('a library consumer with producers: 2 ends after the second end-of-stream chunk', async () => {
    const bus = path.join(tempDir(), 'bus');
    const consumer = createConsumer({ filename: bus, backPressure: true, producers: 2 });
    const collected = (async () => {
      const chunks: string[] = [];
      for await (const chunk of consumer) chunks.push(String(chunk));
      return chunks;
    })();
    for (const name of ['first', 'second']) {
      const producer = createProducer({ filename: bus, backPressure: true });
      producer.end(`${name}\n`);
      await once(producer, 'finish');
    }
    expect(await within(collected, 10_000, 'the stream to end')).toEqual(['first\n', 'second\n']);
  });
});
