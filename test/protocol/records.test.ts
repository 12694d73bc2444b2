/**
 * Whole records: `producer --lines` and `--null` cut chunks only at record
 * ends, in both modes, so that `while read job` workers never see half a
 * line. Real producers and consumers; stdin is a pipe fed in pieces that
 * fall mid-record, the case that broke lines before.
 */
import path from 'node:path';
import { describe, expect, test } from 'vitest';
import { createConsumer } from '../../src/index.js';
import { type Proc, filebus, tempDir, until } from '../helpers.js';

/** Writes `data` to a producer's stdin in pieces of `piece` bytes, which cut records anywhere. */
async function feed(producer: Proc, data: Buffer, piece: number): Promise<void> {
  const stdin = producer.child.stdin!;
  for (let offset = 0; offset < data.length; offset += piece) {
    const ok = stdin.write(data.subarray(offset, offset + piece));
    if (!ok) await new Promise((resolve) => stdin.once('drain', resolve));
  }
  stdin.end();
}

/**
 * One lossless queue: a producer with `producerArgs`, `workers` consumers,
 * and the extra end-of-stream markers that let every worker exit (one
 * marker per producer: the extra producers have empty input).
 */
async function queue(bus: string, data: Buffer, workers: number, producerArgs: string[], blockSize: number): Promise<string[]> {
  const global = ['--filename', bus, '--lossless', '--block-size', String(blockSize)];
  const consumers = Array.from({ length: workers }, () => filebus([...global, 'consumer'], { stdin: 'ignore' }));
  const producer = filebus([...global, 'producer', ...producerArgs]);
  await feed(producer, data, 997);
  expect(await producer.exited, producer.stderr()).toBe(0);
  for (let i = 1; i < workers; i++) {
    const marker = filebus([...global, 'producer']);
    marker.child.stdin!.end();
    expect(await marker.exited).toBe(0);
  }
  expect(await Promise.all(consumers.map((consumer) => consumer.exited))).toEqual(consumers.map(() => 0));
  return consumers.map((consumer) => consumer.stdout().toString('latin1'));
}

const jobs = (count: number) => Array.from({ length: count }, (_, i) => `job-${i + 1}`);

describe('--lines through a lossless queue', () => {
  test('20,000 lines to 3 consumers: every line whole, each exactly once', async () => {
    const bus = path.join(tempDir(), 'bus');
    const sent = jobs(20_000);
    const outputs = await queue(bus, Buffer.from(`${sent.join('\n')}\n`), 3, ['--lines'], 64);
    // Each worker's output is whole lines (a chunk never ends mid-line)...
    for (const out of outputs) expect(out === '' || out.endsWith('\n')).toBe(true);
    const received = outputs.flatMap((out) => out.split('\n').filter(Boolean));
    // ...and together they are every line, once.
    expect(received.length).toBe(sent.length);
    expect(new Set(received).size).toBe(received.length);
    expect(received.filter((line) => !/^job-[1-9]\d*$/.test(line))).toEqual([]);
    expect(received.sort()).toEqual(sent.sort());
    // Work was shared: more than one worker took chunks.
    expect(outputs.filter((out) => out.length > 0).length).toBeGreaterThan(1);
  }, 180_000);

  test('the same queue without --lines breaks lines (what the check above catches)', async () => {
    const bus = path.join(tempDir(), 'bus');
    const sent = jobs(2_000);
    const outputs = await queue(bus, Buffer.from(`${sent.join('\n')}\n`), 3, [], 64);
    const received = outputs.flatMap((out) => out.split('\n').filter(Boolean));
    expect(received.filter((line) => !sent.includes(line)).length).toBeGreaterThan(0);
  }, 120_000);
});

test('--null: 3,000 NUL-terminated records with spaces to 2 consumers, every record whole, each exactly once', async () => {
  const bus = path.join(tempDir(), 'bus');
  const sent = Array.from({ length: 3_000 }, (_, i) => `record ${i + 1} has  spaces, and a\nnewline ${'x'.repeat(i % 37)}`);
  const outputs = await queue(bus, Buffer.from(`${sent.join('\0')}\0`), 2, ['--null'], 256);
  for (const out of outputs) expect(out === '' || out.endsWith('\0')).toBe(true);
  const received = outputs.flatMap((out) => out.split('\0').filter(Boolean));
  expect(received.length).toBe(sent.length);
  expect(new Set(received).size).toBe(received.length);
  expect(received.sort()).toEqual(sent.sort());
}, 180_000);

describe('chunk by chunk (a library consumer sees each chunk)', () => {
  /** Collects the chunks published on a multicast bus until `until` holds. */
  function collect(bus: string) {
    const chunks: string[] = [];
    const consumer = createConsumer({ filename: bus });
    consumer.on('data', (chunk: Buffer) => chunks.push(chunk.toString()));
    return { chunks, stop: () => consumer.destroy() };
  }

  test('multicast --lines: a line arriving in pieces is published whole, when its newline comes', async () => {
    const bus = path.join(tempDir(), 'bus');
    const seen = collect(bus);
    const producer = filebus(['--filename', bus, 'producer', '--lines']);
    try {
      const stdin = producer.child.stdin!;
      stdin.write('first li');
      await new Promise((resolve) => setTimeout(resolve, 300));
      // Nothing yet: the line has no newline.
      expect(seen.chunks).toEqual([]);
      stdin.write('ne\nsecond ');
      await until(() => seen.chunks.length === 1, 10_000, 'the first line');
      expect(seen.chunks).toEqual(['first line\n']);
      stdin.write('line\nthird');
      await until(() => seen.chunks.length === 2, 10_000, 'the second line');
      // End of input: the last line, without its newline, is published too.
      stdin.end();
      expect(await producer.exited).toBe(0);
      await until(() => seen.chunks.length === 3, 10_000, 'the last line');
      expect(seen.chunks).toEqual(['first line\n', 'second line\n', 'third']);
    } finally {
      seen.stop();
    }
  });

  test('a line longer than --block-size is split at --block-size, and -v says so once', async () => {
    const bus = path.join(tempDir(), 'bus');
    const consumer = filebus(['--filename', bus, '--lossless', 'consumer'], { stdin: 'ignore' });
    const producer = filebus(['--filename', bus, '--lossless', '--block-size', '8', '-v', 'producer', '--lines']);
    producer.child.stdin!.end('short\nthis line is too long\nand this one too\nok\n');
    expect(await producer.exited).toBe(0);
    expect(await consumer.exited).toBe(0);
    expect(consumer.stdout().toString()).toBe('short\nthis line is too long\nand this one too\nok\n');
    const notices = producer.stderr().split('\n').filter((line) => /longer than --block-size/.test(line));
    expect(notices).toHaveLength(1);
    expect(notices[0]).toMatch(/^filebus: a line longer than --block-size \(8 bytes\)/);
  });

  test('FILEBUS_LINES=1 turns --lines on; chunks of whole lines stay within --block-size', async () => {
    const bus = path.join(tempDir(), 'bus');
    const chunks: Buffer[] = [];
    const consumer = createConsumer({ filename: bus, backPressure: true });
    const done = (async () => {
      for await (const chunk of consumer) chunks.push(chunk as Buffer);
    })();
    const producer = filebus(['--filename', bus, '--lossless', '--block-size', '20', 'producer'], { env: { FILEBUS_LINES: '1' } });
    const text = `${jobs(200).join('\n')}\n`;
    await feed(producer, Buffer.from(text), 7);
    expect(await producer.exited).toBe(0);
    await done;
    expect(Buffer.concat(chunks).toString()).toBe(text);
    for (const chunk of chunks) {
      expect(chunk.length).toBeLessThanOrEqual(20);
      expect(chunk.at(-1)).toBe(0x0a);
    }
  });
});
