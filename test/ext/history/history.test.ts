/**
 * The history extension (docs/protocol.md, "Extension: history"), with real
 * producers and consumers: one shared sequence, every chunk in order while
 * a consumer stays within the window, --replay, missed-chunk reports, a
 * bounded window whatever happens, and peers that know nothing of it.
 */
import fs from 'node:fs';
import path from 'node:path';
import { expect, test } from 'vitest';
import { type MissedChunks, createConsumer } from '../../../src/index.js';
import { entryName, historyWindow } from '../../../src/ext/history/history.js';
import { type Proc, filebus, random, sleep, tempDir, testSeed, until, waitForFile } from '../../helpers.js';
import { RECORD, RecordTally, writeRecordFile } from '../../load/load.js';

/** Entries of a bus's history, as sequence numbers, ascending. */
function entries(bus: string): number[] {
  return fs
    .readdirSync(`${bus}.history`)
    .filter((name) => /^\d{16}$/.test(name))
    .map(Number)
    .sort((a, b) => a - b);
}

function head(bus: string): number {
  return Number(fs.readFileSync(`${bus}.history/head`, 'latin1'));
}

/** Lines of `count` numbered lines, "0000001\n" .. , 8 bytes each: with --block-size 8 and a file as input, one per chunk. */
function lineFile(dir: string, name: string, first: number, count: number): string {
  const file = path.join(dir, name);
  fs.writeFileSync(file, numbered(first, count));
  return file;
}

function numbered(first: number, count: number): string {
  return Array.from({ length: count }, (_, i) => `${String(first + i).padStart(7, '0')}\n`).join('');
}

/** Runs a producer with `input` (a file) as stdin to its end; expects exit 0 and a quiet stderr. */
async function produceFile(args: string[], input: string): Promise<void> {
  const fd = fs.openSync(input, 'r');
  const producer = filebus([...args, 'producer'], { stdin: fd });
  fs.closeSync(fd);
  expect(await producer.exited, producer.stderr()).toBe(0);
  expect(producer.stderr()).toBe('');
}

/** Record ids in an output made of whole 64-byte records, in order. */
function recordIds(data: Buffer): number[] {
  const ids: number[] = [];
  for (let offset = 0; offset + RECORD <= data.length; offset += RECORD) ids.push(Number(data.toString('latin1', offset, offset + 16)));
  return ids;
}

test('two producers at full speed with --history, two consumers: every record once, each producer in order, one order for all', async () => {
  const dir = tempDir();
  const bus = path.join(dir, 'bus');
  const perProducer = 8000;
  const blockSize = 256; // 4 records a chunk: 2,000 chunks from each producer
  const args = ['--filename', bus, '--history', '5000', '--block-size', String(blockSize)];
  // A first chunk (record 0) tells us the consumers are up and reading the history.
  writeRecordFile(path.join(dir, 'first'), 0, 1);
  await produceFile(args, path.join(dir, 'first'));
  const outputs = [0, 1].map((i) => path.join(dir, `out-${i}`));
  const consumers = outputs.map((file) => {
    const fd = fs.openSync(file, 'w');
    const consumer = filebus(['--filename', bus, 'consumer'], { stdin: 'ignore', stdout: fd });
    fs.closeSync(fd);
    return consumer;
  });
  await until(() => outputs.every((file) => fs.statSync(file).size === RECORD), 10_000, 'both consumers to print the first record');

  const inputs = [0, 1].map((p) => {
    const file = path.join(dir, `in-${p}`);
    writeRecordFile(file, 1 + p * perProducer, perProducer);
    return file;
  });
  await Promise.all(inputs.map((input) => produceFile(args, input)));
  const total = 1 + 2 * perProducer;
  await until(() => outputs.every((file) => fs.statSync(file).size >= total * RECORD), 30_000, 'both consumers to print every record');
  await sleep(100); // room for a duplicate to show up

  const first = fs.readFileSync(outputs[0]!);
  for (const [i, file] of outputs.entries()) {
    const data = fs.readFileSync(file);
    expect(data.length, `consumer ${i} output bytes`).toBe(total * RECORD);
    const tally = new RecordTally(total);
    tally.add(data);
    expect(tally.garbage, tally.examples.join(', ')).toBe(0);
    expect(tally.summary()).toMatchObject({ missing: 0, duplicates: 0 });
    const ids = recordIds(data);
    for (const p of [0, 1]) {
      const mine = ids.filter((id) => id >= 1 + p * perProducer && id <= (p + 1) * perProducer);
      expect(mine.every((id, j) => j === 0 || id === mine[j - 1]! + 1), `producer ${p}'s records in their order at consumer ${i}`).toBe(true);
    }
    // Both producers interleaved, and both consumers saw the one order of the sequence.
    expect(data.equals(first), `consumer ${i} saw the same order as consumer 0`).toBe(true);
    expect(consumers[i]!.stderr(), 'no missed chunks within the window').toBe('');
  }
  // One sequence, no gaps, no duplicates: 1 + 2 x 2,000 chunks numbered 1..4001.
  const seqs = entries(bus);
  expect(seqs.length).toBe(4001);
  expect(seqs[0]).toBe(1);
  expect(seqs.at(-1)).toBe(4001);
  expect(head(bus)).toBe(4001);
  expect(historyWindow({ history: `${bus}.history` })).toEqual({ first: 1, last: 4001 });
});

test('--replay prints the 100 chunks the history keeps, in order; without it a consumer starts at the newest', async () => {
  const dir = tempDir();
  const bus = path.join(dir, 'bus');
  const args = ['--filename', bus, '--history', '100', '--block-size', '8'];
  await produceFile(args, lineFile(dir, 'in', 1, 150));
  expect(entries(bus)).toEqual(Array.from({ length: 100 }, (_, i) => 51 + i));

  const replay = filebus(['--filename', bus, 'consumer', '--replay'], { stdin: 'ignore' });
  const newest = filebus(['--filename', bus, 'consumer'], { stdin: 'ignore' });
  const replayEnv = filebus(['--filename', bus, 'consumer'], { stdin: 'ignore', env: { FILEBUS_REPLAY: '1' } });
  await replay.waitFor((out) => out.toString().endsWith('0000150\n'));
  await replayEnv.waitFor((out) => out.toString().endsWith('0000150\n'));
  await newest.waitFor((out) => out.toString().endsWith('0000150\n'));
  // The consumers go on: a later chunk reaches all three.
  await produceFile(args, lineFile(dir, 'more', 151, 1));
  for (const consumer of [replay, replayEnv, newest]) await consumer.waitFor((out) => out.toString().endsWith('0000151\n'));
  expect(replay.stdout().toString()).toBe(numbered(51, 101));
  expect(replayEnv.stdout().toString()).toBe(numbered(51, 101));
  expect(newest.stdout().toString()).toBe(numbered(150, 2));
  for (const consumer of [replay, replayEnv, newest]) expect(consumer.stderr()).toBe('');
});

test('a consumer stopped while 2,000 chunks go by a window of 50 reports the 1,950 it missed, once, and goes on', async () => {
  const dir = tempDir();
  const bus = path.join(dir, 'bus');
  const args = ['--filename', bus, '--history', '50', '--block-size', '8'];
  await produceFile(args, lineFile(dir, 'first', 0, 1)); // seq 1
  const consumer = filebus(['--filename', bus, 'consumer'], { stdin: 'ignore' });
  await consumer.waitFor((out) => out.toString() === numbered(0, 1));

  consumer.child.kill('SIGSTOP');
  try {
    await produceFile(args, lineFile(dir, 'burst', 1, 2000)); // seqs 2..2001
  } finally {
    consumer.child.kill('SIGCONT');
  }
  // Kept: seqs 1952..2001, lines 1951..2000.
  await consumer.waitFor((out) => out.toString().endsWith('0002000\n'));
  await produceFile(args, lineFile(dir, 'after', 2001, 1));
  await consumer.waitFor((out) => out.toString().endsWith('0002001\n'));
  expect(consumer.stdout().toString()).toBe(numbered(0, 1) + numbered(1951, 51));
  expect(consumer.stderr()).toBe('filebus: missed 1950 chunks (seq 2-1951)\n');
  // The exit status is the usual one.
  consumer.child.kill('SIGTERM');
  expect(await consumer.exited).toBe(143);
});

test('the library consumer emits a missed event for chunks that left the window while it was not read', async () => {
  const dir = tempDir();
  const bus = path.join(dir, 'bus');
  const args = ['--filename', bus, '--history', '10', '--block-size', '8'];
  await produceFile(args, lineFile(dir, 'first', 0, 1)); // seq 1
  const consumer = createConsumer({ filename: bus });
  const missed: MissedChunks[] = [];
  consumer.on('missed', (gap: MissedChunks) => missed.push(gap));
  const chunks = consumer[Symbol.asyncIterator]();
  try {
    expect(((await chunks.next()).value as Buffer).toString()).toBe(numbered(0, 1));
    // Not read from while 200 chunks go by: at most one more is taken from the bus meanwhile.
    await produceFile(args, lineFile(dir, 'burst', 1, 200)); // seqs 2..201, lines 1..200
    const got: number[] = [];
    while (got.at(-1) !== 200) got.push(Number(((await chunks.next()).value as Buffer).toString()));
    // What it got and what it was told it missed account for every chunk, once.
    const told = missed.flatMap((gap) => {
      expect(gap.count).toBe(gap.last - gap.first + 1);
      return Array.from({ length: gap.count }, (_, i) => gap.first + i - 1); // seq n holds line n - 1
    });
    expect([...got, ...told].sort((a, b) => a - b)).toEqual(Array.from({ length: 200 }, (_, i) => i + 1));
    // How many separate gaps that makes depends on when the consumer got the
    // CPU during the burst; every chunk is accounted for above, once.
    expect(missed.length).toBeGreaterThanOrEqual(1);
    expect(got.slice(-10)).toEqual(Array.from({ length: 10 }, (_, i) => 191 + i));
    expect(got.length, JSON.stringify({ missed, got })).toBeLessThanOrEqual(11);
  } finally {
    consumer.destroy();
  }
});

test('5,000 chunks through --history 100 leave 100 entries and the head file', async () => {
  const dir = tempDir();
  const bus = path.join(dir, 'bus');
  await produceFile(['--filename', bus, '--history', '100', '--block-size', '8'], lineFile(dir, 'in', 1, 5000));
  expect(fs.readdirSync(`${bus}.history`).sort()).toEqual([...Array.from({ length: 100 }, (_, i) => entryName(4901 + i)), 'head']);
  expect(head(bus)).toBe(5000);
  expect(fs.readdirSync(dir).sort()).toEqual(['bus', 'bus.history', 'bus.lock', 'in']);
  // No copy: F is the newest entry.
  expect(fs.statSync(bus).ino).toBe(fs.statSync(path.join(`${bus}.history`, entryName(5000))).ino);
});

test('a consumer that only reads F (the bash one) gets every chunk of a history producer it catches', async () => {
  const bus = path.join(tempDir(), 'bus');
  const bash = filebus(['--filename', bus, 'consumer'], { impl: 'bash', stdin: 'ignore' });
  const producer = filebus(['--filename', bus, '--history', '5', 'producer']);
  const stdin = producer.child.stdin!;
  // Warm-up until the bash consumer is up (it may start after the first line).
  for (let i = 0; !bash.stdout().includes('warm-up\n'); i++) {
    if (i > 100) throw new Error(`bash consumer never printed the warm-up line; stderr: ${bash.stderr()}`);
    stdin.write('warm-up\n');
    await sleep(100);
  }
  // Lock step: each line stays on the bus until the consumer has it, so it catches every one.
  const lines = Array.from({ length: 15 }, (_, i) => `line ${i}\n`);
  for (const line of lines) {
    stdin.write(line);
    await bash.waitFor((out) => out.toString().endsWith(line), 10_000);
  }
  expect(bash.stdout().toString().replace(/^(warm-up\n)+/, '')).toBe(lines.join(''));
  stdin.end();
  expect(await producer.exited).toBe(0);
  expect(entries(bus).length).toBe(5);
  expect(bash.stderr()).toBe('');
});

test('chunks of producers without history (TypeScript and bash) reach a history consumer exactly once, in order', async () => {
  const dir = tempDir();
  const bus = path.join(dir, 'bus');
  const history = ['--filename', bus, '--history', '20', '--block-size', '8'];
  await produceFile(history, lineFile(dir, 'h1', 1, 3));
  const consumer = filebus(['--filename', bus, 'consumer'], { stdin: 'ignore' });
  await consumer.waitFor((out) => out.toString() === numbered(3, 1));

  // Lock step, each line on the bus until the consumer printed it: what is
  // checked is that none is lost or doubled by the history, not the timing.
  const plain = filebus(['--filename', bus, 'producer']);
  const bash = filebus(['--filename', bus, 'producer'], { impl: 'bash' });
  const withHistory = filebus([...history, 'producer']);
  let expected = numbered(3, 1);
  const send = async (producer: Proc, n: number) => {
    const line = numbered(n, 1);
    producer.child.stdin!.write(line);
    expected += line;
    await consumer.waitFor((out) => out.toString().endsWith(line), 10_000);
  };
  // Plain chunks (F has one link) from each peer in turn, then interleaved with chunks with history.
  for (let n = 10; n < 15; n++) await send(plain, n);
  for (let n = 20; n < 25; n++) await send(bash, n);
  for (let n = 30; n < 45; n++) await send([plain, withHistory, bash][n % 3]!, n);
  for (const producer of [plain, bash, withHistory]) {
    producer.child.stdin!.end();
    expect(await producer.exited, producer.stderr()).toBe(0);
  }
  await sleep(200); // room for a duplicate to show up
  expect(consumer.stdout().toString()).toBe(expected);
  expect(consumer.stderr()).toBe('');
});

test('a producer killed between linking a chunk and advancing the head: the next producer keeps that chunk and goes on after it', async () => {
  const dir = tempDir();
  const bus = path.join(dir, 'bus');
  const args = ['--filename', bus, '--history', '10', '--block-size', '8'];
  await produceFile(args, lineFile(dir, 'in', 1, 30)); // seqs 1..30, kept 21..30
  // What SIGKILL between link(2) and rename(2) leaves: the staging file,
  // linked as entry 31, with the head still at 30.
  fs.writeFileSync(`${bus}.__new__`, '0000031\n');
  fs.linkSync(`${bus}.__new__`, path.join(`${bus}.history`, entryName(31)));
  const consumer = filebus(['--filename', bus, 'consumer'], { stdin: 'ignore' });
  await consumer.waitFor((out) => out.toString().endsWith('0000031\n'));

  await produceFile(args, lineFile(dir, 'next', 32, 1));
  await consumer.waitFor((out) => out.toString().endsWith('0000032\n'));
  expect(consumer.stdout().toString()).toBe(numbered(30, 3));
  expect(fs.readFileSync(path.join(`${bus}.history`, entryName(31)), 'latin1')).toBe('0000031\n');
  expect(fs.readFileSync(path.join(`${bus}.history`, entryName(32)), 'latin1')).toBe('0000032\n');
  expect(head(bus)).toBe(32);
  expect(entries(bus)).toEqual(Array.from({ length: 10 }, (_, i) => 23 + i));
  expect(consumer.stderr()).toBe('');
});

test('producers SIGKILLed mid-publish leave a bounded window that the next producer continues', async () => {
  const dir = tempDir();
  const bus = path.join(dir, 'bus');
  const keep = 30;
  const args = ['--filename', bus, '--history', String(keep), '--block-size', String(RECORD)];
  const rng = random(testSeed());
  const perIncarnation = 5000;
  let incarnation = 0;
  const start = (): Proc => {
    const input = path.join(dir, `in-${incarnation}`);
    writeRecordFile(input, incarnation * perIncarnation, perIncarnation);
    incarnation++;
    const fd = fs.openSync(input, 'r');
    const producer = filebus([...args, 'producer'], { stdin: fd });
    fs.closeSync(fd);
    fs.rmSync(input); // the producer holds it open
    return producer;
  };
  const outFile = path.join(dir, 'out');
  const outFd = fs.openSync(outFile, 'w');
  const consumer = filebus(['--filename', bus, 'consumer'], { stdin: 'ignore', stdout: outFd });
  fs.closeSync(outFd);

  const slots = [start(), start()];
  await waitForFile(`${bus}.history/head`);
  let kills = 0;
  let most = 0;
  const deadline = performance.now() + 3000;
  while (performance.now() < deadline) {
    await sleep(5 + rng() * 30);
    most = Math.max(most, entries(bus).length);
    const slot = Math.floor(rng() * slots.length);
    const victim = slots[slot]!;
    if (victim.child.exitCode === null && victim.child.signalCode === null) {
      victim.child.kill('SIGKILL');
      await victim.exited;
      kills++;
    }
    slots[slot] = start();
  }
  for (const producer of slots) producer.child.kill('SIGKILL');
  await Promise.all(slots.map((p) => p.exited));
  expect(kills).toBeGreaterThan(20);

  // A killed producer leaves at most one entry beyond the window, and only until the next one tidies.
  expect(most).toBeLessThanOrEqual(keep + 2);
  const before = entries(bus);
  const newest = Math.max(head(bus), before.at(-1)!);
  expect(before.length).toBeLessThanOrEqual(keep + 2);
  expect(before.every((seq, i) => i === 0 || seq === before[i - 1]! + 1), 'no gap in the window').toBe(true);

  // The next producer continues the sequence and trims the window back to `keep`.
  const lastId = incarnation * perIncarnation;
  writeRecordFile(path.join(dir, 'last'), lastId, 1);
  await produceFile(args, path.join(dir, 'last'));
  const after = entries(bus);
  expect(after.at(-1)).toBe(newest + 1);
  expect(head(bus)).toBe(newest + 1);
  expect(after).toEqual(Array.from({ length: keep }, (_, i) => newest + 1 - keep + 1 + i));
  expect(fs.existsSync(`${bus}.__new__`)).toBe(false);

  // The consumer gets the last record; it never got a record twice, nor a
  // torn one, and each incarnation's in order.
  await until(() => recordIds(fs.readFileSync(outFile)).at(-1) === lastId, 10_000, 'the consumer to print the last record');
  const data = fs.readFileSync(outFile);
  const tally = new RecordTally(lastId + 1);
  tally.add(data);
  expect(tally.garbage, tally.examples.join(', ')).toBe(0);
  const ids = recordIds(data);
  const seen = new Set<number>();
  for (const id of ids) {
    expect(seen.has(id), `record ${id} twice`).toBe(false);
    seen.add(id);
  }
  for (let k = 0; k < incarnation; k++) {
    const mine = ids.filter((id) => Math.floor(id / perIncarnation) === k);
    expect(mine.every((id, j) => j === 0 || id > mine[j - 1]!), `incarnation ${k} in order`).toBe(true);
  }
  // What it could not keep up with, it reported.
  expect(consumer.stderr()).toMatch(/^(filebus: missed \d+ chunks?( in \d+ gaps)? \(seq \d+(-\d+)?\)\n)*$/);
});

test('--history with --back-pressure, or a bad window, is a usage error', async () => {
  const bus = path.join(tempDir(), 'bus');
  for (const args of [
    ['--filename', bus, '--history', '10', '--back-pressure', 'producer'],
    ['--filename', bus, '--back-pressure', 'consumer', '--replay'],
    ['--filename', bus, '--history', '-1', 'producer'],
    ['--filename', bus, '--history', 'many', 'producer'],
    ['--filename', bus, 'producer', '--replay'],
  ]) {
    const proc = filebus(args, { stdin: 'ignore' });
    expect(await proc.exited, args.join(' ')).toBe(2);
    expect(proc.stderr(), args.join(' ')).toMatch(/^filebus: .*(history|replay).*\n$/);
  }
  const env = filebus(['--filename', bus, 'producer'], { stdin: 'ignore', env: { FILEBUS_HISTORY: 'x' } });
  expect(await env.exited).toBe(2);
  expect(fs.existsSync(`${bus}.history`)).toBe(false);
});

test('a symbolic link at F.history is refused: one line, exit 1, nothing written through it', async () => {
  const dir = tempDir();
  const bus = path.join(dir, 'bus');
  const elsewhere = path.join(dir, 'elsewhere');
  fs.mkdirSync(elsewhere);
  fs.symlinkSync(elsewhere, `${bus}.history`);
  const producer = filebus(['--filename', bus, '--history', '10', 'producer']);
  producer.child.stdin!.end('one line\n');
  expect(await producer.exited).toBe(1);
  expect(producer.stderr()).toBe(`filebus: ${bus}.history is a symbolic link; filebus does not follow links at the bus's files\n`);
  expect(fs.readdirSync(elsewhere)).toEqual([]);
});

/** A directory outside the bus shaped like a history: a head and one entry. */
function victimHistory(dir: string): string {
  const victim = path.join(dir, 'victim');
  fs.mkdirSync(victim);
  fs.writeFileSync(path.join(victim, 'head'), `${entryName(1)}\n`);
  fs.writeFileSync(path.join(victim, entryName(1)), 'secret\n');
  return victim;
}

test('a symbolic link at F.history at start: a consumer refuses it too, reading nothing through it', async () => {
  const dir = tempDir();
  const bus = path.join(dir, 'bus');
  const victim = victimHistory(dir);
  fs.symlinkSync(victim, `${bus}.history`);
  for (const args of [['consumer', '--replay'], ['consumer']]) {
    const consumer = filebus(['--filename', bus, ...args], { stdin: 'ignore' });
    expect(await consumer.exited, args.join(' ')).toBe(1);
    expect(consumer.stdout().toString()).toBe('');
    expect(consumer.stderr()).toBe(`filebus: ${bus}.history is a symbolic link; filebus does not follow links at the bus's files\n`);
  }
  expect(fs.readdirSync(victim).sort()).toEqual([entryName(1), 'head']);
  expect(fs.readFileSync(path.join(victim, 'head'), 'latin1')).toBe(`${entryName(1)}\n`);
});

test('F.history swapped for a link while a consumer and a producer run: both stop with one line, exit 1, nothing outside read or written', async () => {
  const dir = tempDir();
  const bus = path.join(dir, 'bus');
  const victim = victimHistory(dir);
  const consumer = filebus(['--filename', bus, 'consumer', '--replay'], { stdin: 'ignore' });
  const producer = filebus(['--filename', bus, '--history', '10', 'producer']);
  producer.child.stdin!.write('first\n');
  await consumer.waitFor((out) => out.toString() === 'first\n');
  // Swap: the real history moves aside and a link to the victim takes its place.
  fs.renameSync(`${bus}.history`, path.join(dir, 'moved'));
  fs.symlinkSync(victim, `${bus}.history`);
  producer.child.stdin!.end('second\n');
  expect(await producer.exited).toBe(1);
  expect(producer.stderr()).toMatch(new RegExp(`^filebus: ${bus}.history is a symbolic link[^\\n]*\\n$`));
  expect(await consumer.exited).toBe(1);
  expect(consumer.stderr()).toMatch(new RegExp(`^filebus: ${bus}.history is a symbolic link[^\\n]*\\n$`));
  expect(consumer.stdout().toString()).not.toMatch(/secret/);
  expect(fs.readdirSync(victim).sort()).toEqual([entryName(1), 'head']);
  expect(fs.readFileSync(path.join(victim, 'head'), 'latin1')).toBe(`${entryName(1)}\n`);
  expect(fs.readFileSync(path.join(victim, entryName(1)), 'latin1')).toBe('secret\n');
});

