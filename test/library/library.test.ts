/**
 * The library in multicast mode: a createProducer Writable feeding a
 * createConsumer stream in the same process, and AbortSignal handling.
 */
import { once } from 'node:events';
import fs from 'node:fs';
import path from 'node:path';
import { expect, test } from 'vitest';
import { consume, createConsumer, createProducer } from '../../src/index.js';
import { consumeWith } from '../../src/consumer.js';
import { filebus, root, run, tempDir, until, waitForFile, within } from '../helpers.js';

function written(stream: NodeJS.WritableStream, data: Buffer): Promise<void> {
  return new Promise((resolve, reject) => stream.write(data, (error) => (error ? reject(error) : resolve())));
}

test('createProducer feeds a createConsumer async iterator, one Buffer per chunk', async () => {
  const bus = path.join(tempDir(), 'bus');
  const producer = createProducer({ filename: bus });
  const consumer = createConsumer({ filename: bus });
  const chunks = consumer[Symbol.asyncIterator]();
  try {
    const buffers = [Buffer.from('first chunk\n'), Buffer.from([0, 1, 2, 0, 255, 0]), Buffer.alloc(4096, 'x'), Buffer.from('last')];
    // Lock step: multicast keeps only the latest chunk, so each is read before the next is written.
    for (const buffer of buffers) {
      await written(producer, buffer);
      const { value, done } = await chunks.next();
      expect(done).toBe(false);
      expect(Buffer.isBuffer(value)).toBe(true);
      expect((value as Buffer).equals(buffer)).toBe(true);
    }
    producer.end();
    await once(producer, 'finish');
    // Multicast: ending the producer publishes nothing more, the last chunk stays on the bus.
    expect(fs.readFileSync(bus, 'utf8')).toBe('last');
    expect(fs.existsSync(`${bus}.__new__`)).toBe(false);
  } finally {
    consumer.destroy();
    producer.destroy();
  }
});

test('a library consumer reads what a CLI producer publishes, and vice versa', async () => {
  const bus = path.join(tempDir(), 'bus');
  const consumer = createConsumer({ filename: bus });
  const chunks = consumer[Symbol.asyncIterator]();
  const cliConsumer = filebus(['--filename', bus, 'consumer'], { stdin: 'ignore' });
  const cliProducer = filebus(['--filename', bus, 'producer']);
  const producer = createProducer({ filename: bus });
  try {
    cliProducer.child.stdin!.end('from the CLI\n');
    expect(((await chunks.next()).value as Buffer).toString()).toBe('from the CLI\n');
    await cliConsumer.waitForBytes(13);
    await written(producer, Buffer.from('from the library\n'));
    expect(((await chunks.next()).value as Buffer).toString()).toBe('from the library\n');
    expect((await cliConsumer.waitForBytes(13 + 17)).toString()).toBe('from the CLI\nfrom the library\n');
  } finally {
    consumer.destroy();
    producer.destroy();
  }
});

test('an AbortSignal stops a multicast consumer that is waiting for a chunk', async () => {
  const bus = path.join(tempDir(), 'bus');
  const controller = new AbortController();
  // A poll interval far longer than the time allowed: only the abort itself can end the wait in time.
  const consumer = createConsumer({ filename: bus, signal: controller.signal, sleepInterval: 5 });
  const seen: Buffer[] = [];
  const loop = (async () => {
    for await (const chunk of consumer) seen.push(chunk as Buffer);
  })();
  const producer = createProducer({ filename: bus });
  try {
    await written(producer, Buffer.from('before the abort'));
    await expect.poll(() => seen.length).toBe(1);
    const aborted = performance.now();
    controller.abort();
    await expect(loop).rejects.toMatchObject({ name: 'AbortError' });
    expect(performance.now() - aborted).toBeLessThan(500);
    expect(consumer.destroyed).toBe(true);
    // Nothing is read after the abort.
    await written(producer, Buffer.from('after the abort'));
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(seen.map(String)).toEqual(['before the abort']);
  } finally {
    producer.destroy();
  }
});

test('an AbortSignal stops a back-pressure consumer waiting on an empty bus, leaving later chunks alone', async () => {
  const bus = path.join(tempDir(), 'bus');
  const controller = new AbortController();
  const consumer = createConsumer({ filename: bus, backPressure: true, signal: controller.signal });
  const loop = (async () => {
    for await (const _chunk of consumer) throw new Error('got a chunk from an empty bus');
  })();
  await waitForFile(`${bus}.lock`);
  controller.abort();
  await expect(loop).rejects.toMatchObject({ name: 'AbortError' });
  // The stopped consumer takes nothing: a chunk published now stays for someone else.
  const producer = filebus(['--filename', bus, '--back-pressure', 'producer']);
  producer.child.stdin!.write('still here');
  await waitForFile(bus);
  await new Promise((resolve) => setTimeout(resolve, 300));
  expect(fs.readFileSync(bus, 'utf8')).toBe('still here');
});

test('consume() with an already aborted signal rejects with its reason, and an abort later stops it', async () => {
  const bus = path.join(tempDir(), 'bus');
  const reason = new Error('stop now');
  await expect(consume({ filename: bus, signal: AbortSignal.abort(reason) }, async () => {})).rejects.toBe(reason);

  const controller = new AbortController();
  const running = consume({ filename: bus, signal: controller.signal }, async () => {});
  await new Promise((resolve) => setTimeout(resolve, 100));
  const later = new Error('stop later');
  controller.abort(later);
  await expect(running).rejects.toBe(later);
});

test('an AbortSignal stops a back-pressure producer blocked on a full bus', async () => {
  const bus = path.join(tempDir(), 'bus');
  const controller = new AbortController();
  const producer = createProducer({ filename: bus, backPressure: true, signal: controller.signal });
  const errored = once(producer, 'error');
  producer.write(Buffer.from('one'));
  await waitForFile(bus);
  // 'one' is on the bus; 'two' waits for a consumer that never comes.
  // (Written together, the two would share a chunk: input already there is coalesced.)
  producer.write(Buffer.from('two'));
  controller.abort();
  const [error] = await errored;
  expect((error as Error).name).toBe('AbortError');
  expect(producer.destroyed).toBe(true);
  expect(fs.readFileSync(bus, 'utf8')).toBe('one');
  expect(fs.existsSync(`${bus}.__new__`)).toBe(false);
});

test.each([0, 1.5, -5, Number.NaN])('createProducer({ blockSize: %s }) throws a UsageError naming the block size', (blockSize) => {
  const bus = path.join(tempDir(), 'bus');
  let thrown: unknown;
  try {
    createProducer({ filename: bus, blockSize }).destroy();
  } catch (error) {
    thrown = error;
  }
  expect(thrown).toBeInstanceOf(Error);
  expect((thrown as Error).message).toMatch(/blockSize/);
  expect((thrown as Error).name).toBe('UsageError');
  expect((thrown as { exitCode: number }).exitCode).toBe(2);
});

test('createProducer without a filename, or with a bad option, throws a UsageError before touching the disk', async () => {
  // A bus in a directory that does not exist yet: opening the bus would create it.
  const dir = path.join(tempDir(), 'sub');
  const bus = path.join(dir, 'bus');
  expect(() => createProducer({ filename: '' })).toThrow(/filename is required/);
  expect(() => createProducer({ filename: bus, sleepInterval: -1 })).toThrow(/sleepInterval/);
  expect(() => createProducer({ filename: bus, sleepInterval: 1e9 })).toThrow(/sleepInterval/);
  expect(() => createProducer({ filename: bus, blockSize: 2 ** 40 })).toThrow(/blockSize/);
  await expect(consume({ filename: bus, backPressure: true, producers: 0 }, async () => {})).rejects.toThrow(/producers/);
  expect(fs.existsSync(dir)).toBe(false);
});

/**
 * A separate Node process makes a producer that waits for a lock another
 * process holds, then destroys it (or aborts its signal): with nothing left
 * pending, the process must end by itself, long before the holder lets go.
 */
test.each([
  ['producer.destroy()', 'multicast', 'destroy'],
  ['producer.destroy()', 'back-pressure', 'destroy'],
  ['an aborted signal', 'multicast', 'abort'],
  ['an aborted signal', 'back-pressure', 'abort'],
] as const)('%s on a %s producer waiting for a held lock leaves nothing that keeps the process alive', async (_name, mode, how) => {
  const dir = tempDir();
  const bus = path.join(dir, 'bus');
  fs.writeFileSync(`${bus}.lock`, '');
  const holder = run('flock', [`${bus}.lock`, 'cat'], { stdout: 'pipe' });
  await until(() => fs.readFileSync('/proc/locks', 'utf8').includes(`:${fs.statSync(`${bus}.lock`).ino} `), 5000, 'flock(1) to take the lock');
  const library = process.env.FILEBUS_LIBRARY ?? path.join(root, 'dist/src/index.js');
  const script = `
    import { createProducer } from ${JSON.stringify(library)};
    const controller = new AbortController();
    const producer = createProducer({ filename: ${JSON.stringify(bus)}, backPressure: ${mode === 'back-pressure'}, signal: controller.signal });
    producer.on('error', () => {});
    producer.write('waits for the lock');
    setTimeout(() => {
      ${how === 'destroy' ? 'producer.destroy();' : 'controller.abort();'}
      console.log('stopped');
    }, 300);
  `;
  const child = run(process.execPath, ['--input-type=module', '-e', script], { stdin: 'ignore' });
  await child.waitFor((out) => out.includes('stopped'), 10_000);
  const stopped = performance.now();
  expect(await within(child.exited, 3000, 'the process to end by itself')).toBe(0);
  expect(performance.now() - stopped, 'ms from the stop to the process end').toBeLessThan(1000);
  expect(child.stderr()).toBe('');
  expect(holder.child.exitCode, 'the lock was held all along').toBe(null);
});

test('the command\'s blocking wait (RunSettings, not a library option): a back-pressure consume with a synchronous deliver takes every chunk once, and an abort stops its wait', async () => {
  const dir = tempDir();
  const bus = path.join(dir, 'bus');
  const records = Array.from({ length: 200 }, (_, i) => `record ${String(i).padStart(5, '0')}\n`);
  const input = path.join(dir, 'input');
  fs.writeFileSync(input, records.join(''));
  const stdin = fs.openSync(input, 'r');
  const producer = filebus(['--filename', bus, '--back-pressure', '--block-size', String(records[0]!.length), 'producer'], { stdin });
  fs.closeSync(stdin);
  const got: string[] = [];
  // The producer's end marker ends this consumer: every record, in order, each once.
  await consumeWith({ filename: bus, backPressure: true }, (chunk) => {
    got.push(chunk.toString());
  }, { blockingWait: true });
  expect(got).toEqual(records);
  expect(await producer.exited).toBe(0);
  expect(fs.existsSync(bus)).toBe(false);

  // Nothing more comes: the consumer blocks in its wait until the abort.
  const stop = new AbortController();
  const waiting = consumeWith({ filename: bus, backPressure: true, signal: stop.signal }, () => {}, { blockingWait: true });
  setTimeout(() => stop.abort(new Error('stopped')), 50);
  await expect(waiting).rejects.toThrow('stopped');
});
