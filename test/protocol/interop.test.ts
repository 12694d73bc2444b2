/**
 * The interoperability matrix: the TypeScript and bash implementations on
 * one bus, through the on-disk protocol only. (--impl is in cli/impl.test.ts.)
 */
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, test } from 'vitest';
import { type Impl, bash, exitOf, feed, filebus, randomBytes, sha256, tempDir } from '../helpers.js';

const impls: Impl[] = ['ts', 'bash'];
const LINE = 40;
const pairs = impls.flatMap((producer) => impls.map((consumer) => [producer, consumer] as const));

/** About `bytes` of text lines of varied length, as the bash implementation carries (no NUL). */
function textLines(bytes: number): Buffer {
  const lines: string[] = [];
  let size = 0;
  for (let i = 0; size < bytes; i++) {
    const line = `${i} ${randomBytes(8 + (i % 60)).toString('base64')}\n`;
    lines.push(line);
    size += line.length;
  }
  return Buffer.from(lines.join(''));
}

function inputFile(dir: string, data: Buffer): number {
  const file = path.join(dir, 'input');
  fs.writeFileSync(file, data);
  return fs.openSync(file, 'r');
}

describe('back pressure: 5 MiB of text lines arrive identical', () => {
  test.each(pairs)('%s producer -> %s consumer', async (producerImpl, consumerImpl) => {
    const dir = tempDir();
    const bus = path.join(dir, 'bus');
    const data = textLines(5 * 1024 * 1024);
    const args = ['--filename', bus, '--back-pressure', '--block-size', '65536'];
    const consumer = filebus([...args, 'consumer'], { impl: consumerImpl, stdin: 'ignore' });
    const stdin = inputFile(dir, data);
    const producer = filebus([...args, 'producer'], { impl: producerImpl, stdin });
    fs.closeSync(stdin);
    const [producerStatus, consumerStatus] = await Promise.all([producer.exited, consumer.exited]);
    expect(producer.stderr() + consumer.stderr()).toBe('');
    expect(producerStatus).toBe(0);
    // The consumer ended on the end-of-stream chunk, not by a signal or error.
    expect(consumerStatus).toBe(0);
    expect(sha256(consumer.stdout())).toBe(sha256(data));
    expect(fs.readdirSync(dir).sort()).toEqual(['bus.lock', 'input']);
  }, 120_000);
});

// Multicast is lossy by design: a starved consumer skips a line that is
// replaced before it looks. So each line is published only once both
// consumers have printed the one before: then every line is owed to both.
describe('multicast: 100 lines, each published once both consumers have the last, reach 2 consumers completely', () => {
  test.each(pairs)('%s producer -> 2 %s consumers', async (producerImpl, consumerImpl) => {
    const bus = path.join(tempDir(), 'bus');
    const consumers = [0, 1].map(() => filebus(['--filename', bus, 'consumer'], { impl: consumerImpl, stdin: 'ignore' }));
    const producer = filebus(['--filename', bus, 'producer'], { impl: producerImpl });
    const stdin = producer.child.stdin!;
    // Both consumers have printed the warm-up line, so both are watching.
    stdin.write('warm-up\n');
    await Promise.all(consumers.map((consumer) => consumer.waitFor((out) => out.includes('warm-up\n'))));
    let expected = 'warm-up\n';
    for (let i = 0; i < 100; i++) {
      expected += `line ${i}\n`;
      stdin.write(`line ${i}\n`);
      await Promise.all(consumers.map((consumer) => consumer.waitFor((out) => out.length >= expected.length, 10_000)));
    }
    for (const consumer of consumers) expect(consumer.stdout().toString()).toBe(expected);
    stdin.end();
    expect(await producer.exited).toBe(0);
  }, 60_000);
});

test('one back-pressure bus: TypeScript and bash producers together, TypeScript and bash consumers together, each line exactly once', async () => {
  const dir = tempDir();
  const bus = path.join(dir, 'bus');
  const args = ['--filename', bus, '--back-pressure', '--block-size', String(LINE * 64)];
  const consumers = (['ts', 'bash', 'ts', 'bash'] as const).map((impl) => filebus([...args, 'consumer'], { impl, stdin: 'ignore' }));
  // The TypeScript producer chunks bytes, not lines: lines of one length,
  // a whole number of them per block, keep every chunk whole lines.
  const inputs = (['ts', 'bash', 'ts', 'bash'] as const).map((impl, p) => {
    const lines = Array.from({ length: 5000 }, (_, i) => `producer ${p} (${impl}) line ${i}`.padEnd(LINE - 1, '.') + '\n');
    return { impl, lines };
  });
  // Each producer publishes one end-of-stream chunk; each consumer exits on the first it takes.
  const producers = inputs.map(({ impl, lines }, p) => {
    const stdin = inputFile(fs.mkdtempSync(path.join(dir, `p${p}-`)), Buffer.from(lines.join('')));
    const producer = filebus([...args, 'producer'], { impl, stdin });
    fs.closeSync(stdin);
    return producer;
  });
  expect(await Promise.all(producers.map((producer) => producer.exited))).toEqual([0, 0, 0, 0]);
  expect(await Promise.all(consumers.map((consumer) => consumer.exited))).toEqual([0, 0, 0, 0]);
  const received = consumers.flatMap((consumer) => consumer.stdout().toString().split('\n').filter(Boolean));
  const sent = inputs.flatMap(({ lines }) => lines.map((line) => line.slice(0, -1)));
  expect(received.length).toBe(sent.length);
  expect(new Set(received).size).toBe(received.length);
  expect(received.sort()).toEqual(sent.sort());
}, 120_000);


test('20,000 lines through a lossless queue, bash producer, 3 TypeScript consumers: every line whole, exactly once', async () => {
  const dir = tempDir();
  const bus = path.join(dir, 'bus');
  const args = ['--filename', bus, '--lossless'];
  const consumers = [0, 1, 2].map(() => filebus([...args, 'consumer'], { stdin: 'ignore' }));
  const lines = Array.from({ length: 20_000 }, (_, i) => `job-${i + 1}`);
  // Through a pipe, as a user's `producer < jobs.txt` or `generate | producer` does.
  const producer = filebus([...args, '--lines', 'producer'], bash);
  feed(producer, lines.join('\n') + '\n');
  expect(await exitOf(producer, 120_000)).toBe(0);
  // One end-of-stream chunk per consumer: two more producers with empty input.
  for (let i = 0; i < 2; i++) {
    const extra = filebus([...args, 'producer'], { ...bash, stdin: 'ignore' });
    expect(await exitOf(extra, 30_000)).toBe(0);
  }
  expect(await Promise.all(consumers.map((consumer) => exitOf(consumer, 30_000)))).toEqual([0, 0, 0]);
  const received = consumers.flatMap((consumer) => {
    const out = consumer.stdout().toString();
    // Every chunk a consumer took ended at a line end, so its output does too.
    expect(out === '' || out.endsWith('\n')).toBe(true);
    return out.split('\n').filter(Boolean);
  });
  expect(received.length).toBe(lines.length);
  expect(new Set(received).size).toBe(lines.length);
  expect(received.sort()).toEqual([...lines].sort());
}, 180_000);
