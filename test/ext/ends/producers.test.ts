/**
 * Several producers on one work queue (src/ext/ends): consumers given
 * --producers N end after N end-of-stream chunks, counted together in
 * F.ends, whatever the order and whatever happened to earlier runs.
 */
import { once } from 'node:events';
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, test } from 'vitest';
import { type Proc, filebus, tempDir, until, within } from '../../helpers.js';
import { createConsumer, createProducer } from '../../../src/index.js';
import { RECORD, busLeftovers, inputFd, records, split } from '../../support/queue.js';

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
