/**
 * A consumer whose standard output closes (`| head`, a reader that goes
 * away): it ends promptly and quietly with 141, and in back-pressure mode
 * the chunk it could not write stays for the next consumer.
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, test } from 'vitest';
import { type Proc, bp, busArgs, cli, exitOf, filebus, hasStackTrace, HUGE_CHUNK, randomBytes, run, tempDir, until, within } from '../helpers.js';
import { RECORD, busLeftovers, records, split } from '../support/queue.js';

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
    const data = randomBytes(2 * block);
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

describe('a consumer whose stdout closes exits within a second, without a stack trace', () => {
  /** Feeds the bus: one line now and then, or a steady stream of lines. */
  function feed(bus: string, streaming: boolean) {
    const producer = filebus(['--filename', bus, 'producer']);
    const stdin = producer.child.stdin!;
    stdin.write('0123456789 first line, longer than what the reader wants\n');
    let n = 0;
    const timer = streaming ? setInterval(() => stdin.write(`line ${n++}\n`), 10) : undefined;
    return { producer, stop: () => clearInterval(timer) };
  }

  test.each([['idle', false], ['while chunks keep coming', true]] as const)(
    'stdout is a pipe to `head -c 10`, %s',
    async (_name, streaming) => {
      const bus = path.join(tempDir(), 'bus');
      // pipefail: the pipeline's status is the consumer's.
      const pipeline = run('bash', ['-c', 'set -o pipefail; "$0" "$1" --filename "$2" consumer | head -c 10', process.execPath, cli, bus], {
        stdin: 'ignore',
      });
      const { stop } = feed(bus, streaming);
      try {
        // head has printed its 10 bytes and exits: from now on the consumer's stdout is a broken pipe.
        await pipeline.waitForBytes(10);
        const closed = performance.now();
        const status = await pipeline.exited;
        const elapsed = performance.now() - closed;
        // Multicast: a consumer that starts late may get a later chunk than the first.
        expect(pipeline.stdout().length).toBe(10);
        expect(elapsed).toBeLessThan(1000);
        // README: 141, quietly.
        expect(status).toBe(141);
        expect(pipeline.stderr()).toBe('');
      } finally {
        stop();
      }
    },
  );

  test.each([['idle', false], ['while chunks keep coming', true]] as const)(
    'the reader of its stdout goes away, %s',
    async (_name, streaming) => {
      const bus = path.join(tempDir(), 'bus');
      const consumer = filebus(['--filename', bus, 'consumer'], { stdin: 'ignore' });
      const { stop } = feed(bus, streaming);
      try {
        await consumer.waitForBytes(10);
        const closed = performance.now();
        consumer.child.stdout!.destroy();
        const status = await consumer.exited;
        const elapsed = performance.now() - closed;
        expect(elapsed).toBeLessThan(1000);
        expect(status).toBe(141);
        expect(consumer.child.signalCode).toBeNull();
        expect(consumer.stderr()).toBe('');
      } finally {
        stop();
      }
    },
  );
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
