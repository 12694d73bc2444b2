/**
 * `filebus --filename F status`: what is on disk and who holds the lock,
 * read from real buses made by real producers, flock(1) and leftovers.
 */
import fs from 'node:fs';
import path from 'node:path';
import { expect, test } from 'vitest';
import { BusLock } from '../../src/core/lock.js';
import { filebus, run, sleep, tempDir } from '../helpers.js';

interface Status {
  path: string;
  exists: boolean;
  file: { size: number; ageSeconds: number } | null;
  lock: { exists: boolean; holders: number[]; waiting: number[] };
  staging: { size: number; ageSeconds: number } | null;
  mode: string;
  looksLike: string;
  history?: { first: number; last: number };
}

async function status(bus: string): Promise<Status> {
  const proc = filebus(['--filename', bus, 'status', '--json'], { stdin: 'ignore' });
  expect(await proc.exited, proc.stderr()).toBe(0);
  const out = proc.stdout().toString();
  // One JSON object on one line.
  expect(out.trimEnd().split('\n')).toHaveLength(1);
  return JSON.parse(out) as Status;
}

test('no bus at the path: exit 1 and one line', async () => {
  const dir = tempDir();
  const bus = path.join(dir, 'nothing');
  for (const args of [[], ['--json']]) {
    const proc = filebus(['--filename', bus, 'status', ...args], { stdin: 'ignore' });
    expect(await proc.exited).toBe(1);
    expect(proc.stdout().length).toBe(0);
    const err = proc.stderr().split('\n').filter(Boolean);
    expect(err).toHaveLength(1);
    expect(err[0]).toMatch(new RegExp(`^filebus: no bus at ${bus}`));
  }
  // Looking creates nothing.
  expect(fs.readdirSync(dir)).toEqual([]);
});

test('a multicast bus after a producer: the chunk, its size and age, the lock not held', async () => {
  const bus = path.join(tempDir(), 'bus');
  const producer = filebus(['--filename', bus, 'producer']);
  producer.child.stdin!.end('twelve bytes');
  expect(await producer.exited).toBe(0);
  const s = await status(bus);
  expect(s).toMatchObject({ path: bus, exists: true, file: { size: 12 }, lock: { exists: true, holders: [], waiting: [] }, staging: null });
  expect(s.file!.ageSeconds).toBeGreaterThanOrEqual(0);
  expect(s.file!.ageSeconds).toBeLessThan(60);
  expect(s.mode).toBe('chunk-waiting-or-multicast');
  // No history window on this bus: the field is absent, not made up.
  expect(s.history).toBeUndefined();

  const human = filebus(['--filename', bus, 'status'], { stdin: 'ignore' });
  expect(await human.exited).toBe(0);
  const text = human.stdout().toString();
  expect(text).toContain(bus);
  expect(text).toMatch(/12 bytes/);
  expect(text).toMatch(/not held/);
});

test('a back-pressure bus whose producer ended with no consumer: F is the empty end marker', async () => {
  const bus = path.join(tempDir(), 'bus');
  const producer = filebus(['--filename', bus, '--lossless', 'producer']);
  producer.child.stdin!.end();
  expect(await producer.exited).toBe(0);
  const s = await status(bus);
  expect(s.file).toMatchObject({ size: 0 });
  expect(s.mode).toBe('back-pressure-ended');
  expect(s.looksLike).toMatch(/end-of-stream/);
});

test('the PID holding F.lock, and one waiting for it (flock(1) blocked), are named', async () => {
  const bus = path.join(tempDir(), 'bus');
  // This process holds the lock, through the same flock(2) a producer takes.
  const lock = new BusLock(`${bus}.lock`);
  lock.open();
  expect(lock.tryAcquire()).toBe(true);
  try {
    const waiter = run('flock', [`${bus}.lock`, 'true'], { stdin: 'ignore' });
    // The waiter shows once it has blocked in flock(2).
    let s = await status(bus);
    for (const deadline = Date.now() + 10_000; s.lock.waiting.length === 0 && Date.now() < deadline; ) {
      await sleep(50);
      s = await status(bus);
    }
    expect(s.exists).toBe(true);
    expect(s.file).toBeNull();
    expect(s.lock.holders).toEqual([process.pid]);
    expect(s.lock.waiting).toEqual([waiter.child.pid]);
    expect(s.mode).toBe('empty');
    lock.release();
    expect(await waiter.exited).toBe(0);
    expect((await status(bus)).lock).toEqual({ exists: true, holders: [], waiting: [] });
  } finally {
    lock.close();
  }
});

test('a leftover F.__new__ is reported', async () => {
  const bus = path.join(tempDir(), 'bus');
  fs.writeFileSync(`${bus}.__new__`, 'half a chunk');
  fs.writeFileSync(bus, 'a chunk');
  const s = await status(bus);
  expect(s.staging).toMatchObject({ size: 12 });
  const human = filebus(['--filename', bus, 'status'], { stdin: 'ignore' });
  expect(await human.exited).toBe(0);
  expect(human.stdout().toString()).toMatch(/leftover .*__new__/);
});

test('a path through a regular file is no bus; a directory in the place of F is an error, in one line', async () => {
  const dir = tempDir();
  fs.writeFileSync(path.join(dir, 'file'), '');
  const through = filebus(['--filename', path.join(dir, 'file', 'bus'), 'status'], { stdin: 'ignore' });
  expect(await through.exited).toBe(1);
  expect(through.stderr()).toMatch(/^filebus: no bus at .*\n$/);
  fs.mkdirSync(path.join(dir, 'bus'));
  const directory = filebus(['--filename', path.join(dir, 'bus'), 'status'], { stdin: 'ignore' });
  expect(await directory.exited).toBe(1);
  expect(directory.stderr()).toMatch(/^filebus: .*bus is a directory; the bus file must be a regular file\n$/);
});

test('a multicast bus with --history: the window of sequence numbers it keeps', async () => {
  const bus = path.join(tempDir(), 'bus');
  for (const line of ['one\n', 'two\n', 'three\n', 'four\n', 'five\n']) {
    const producer = filebus(['--filename', bus, '--history', '3', 'producer']);
    producer.child.stdin!.end(line);
    expect(await producer.exited, producer.stderr()).toBe(0);
  }
  const s = await status(bus);
  expect(s.history).toEqual({ first: 3, last: 5 });
  expect(s.mode).toBe('multicast-with-history');
  const human = filebus(['--filename', bus, 'status'], { stdin: 'ignore' });
  expect(await human.exited).toBe(0);
  expect(human.stdout().toString()).toMatch(/history: +chunks 3 to 5/);
});
