/**
 * Crashes: SIGKILL at random moments, leftovers of a killed process
 * (F.__new__, a replaced F.lock), a consumer killed mid-write. Every wait
 * is on an event; the few fixed pauses only give a process the chance to
 * do something wrong.
 */
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, test } from 'vitest';
import { type Proc, bp, busArgs,  exitOf, filebus, fileHolds,  hugeChunkPublished, ioBytes, lockHeld, openFiles, random,  run, sleep, stop, stuckPipe, tempDir, testSeed, until, untilLocked } from '../helpers.js';
import { RecordTally, writeRecordFile } from '../load/load.js';

describe('1. crashes', () => {
  test('SIGKILL at random moments never leaves the lock stuck, and no consumer sees garbage', async () => {
    const dir = tempDir();
    const bus = path.join(dir, 'bus');
    const input = path.join(dir, 'input');
    const total = 1 << 18; // 16 MiB of records: more than the test moves, so producers never reach their end
    writeRecordFile(input, 0, total);
    const args = busArgs(bus, ...bp, '--block-size', '4096');
    const seed = testSeed();
    const rng = random(seed);
    const consumers: Proc[] = [];
    let producer: Proc | undefined;
    let consumer: Proc | undefined;
    const alive = (proc: Proc | undefined): proc is Proc => proc !== undefined && proc.child.exitCode === null && proc.child.signalCode === null;
    for (let round = 0; round < 12; round++) {
      if (!alive(producer)) {
        const fd = fs.openSync(input, 'r');
        producer = filebus([...args, 'producer'], { stdin: fd });
        fs.closeSync(fd);
      }
      if (!alive(consumer)) {
        consumer = filebus([...args, 'consumer'], { stdin: 'ignore' });
        consumers.push(consumer);
      }
      // Whoever survived the last kill and whoever replaced the victim move chunks again.
      const before = consumer.stdout().length;
      await consumer.waitForBytes(before + 2 * 4096, 15_000);
      await sleep(rng() * 150);
      const victim = rng() < 0.5 ? producer : consumer;
      victim.child.kill('SIGKILL');
      await victim.exited;
      // The kernel dropped the victim's lock: flock(1) gets it (the survivor holds it only for a few system calls).
      const probe = run('flock', ['--wait', '5', `${bus}.lock`, 'true'], { stdin: 'ignore' });
      expect(await probe.exited, `lock still held after SIGKILL in round ${round} (seed ${seed})`).toBe(0);
    }
    await stop(producer!.child);
    await stop(consumer!.child);
    const tally = new RecordTally(total);
    for (const proc of consumers) tally.add(proc.stdout());
    expect(tally.garbage, `not intact (seed ${seed}): ${tally.examples.join(', ')}`).toBe(0);
    // Nothing lost: each producer reads the input from its start and publishes
    // in order, and a chunk whose consumer was killed stays for the next one,
    // so every record up to the furthest one delivered arrived at least once.
    let furthest = -1;
    for (let id = 0; id < total; id++) if (tally.counts[id]! > 0) furthest = id;
    const lost: number[] = [];
    for (let id = 0; id <= furthest; id++) if (tally.counts[id] === 0) lost.push(id);
    expect(lost.slice(0, 10), `${lost.length} records lost below record ${furthest} (seed ${seed})`).toEqual([]);
    expect(furthest, 'records moved').toBeGreaterThan(12 * 2 * 64);
  });

  test.each([['multicast'], ['back-pressure']])('a leftover F.__new__ with garbage is harmless (%s)', async (mode) => {
    const dir = tempDir();
    const bus = path.join(dir, 'bus');
    const staging = `${bus}.__new__`;
    fs.writeFileSync(staging, 'GARBAGE!'.repeat(2048)); // what a producer killed mid-write leaves, and longer than the next chunk
    const args = busArgs(bus, ...(mode === 'back-pressure' ? bp : []));
    const consumer = filebus([...args, 'consumer'], { stdin: 'ignore' });
    const producer = filebus([...args, 'producer']);
    producer.child.stdin!.write('hello\n');
    await consumer.waitForBytes(6);
    producer.child.stdin!.end('world\n');
    await consumer.waitForBytes(12);
    expect(await exitOf(producer)).toBe(0);
    expect(producer.stderr()).toBe('');
    if (mode === 'back-pressure') expect(await exitOf(consumer)).toBe(0); // the end marker
    expect(consumer.stdout().toString()).toBe('hello\nworld\n');
    // The publishing rename took the staging file away.
    expect(fs.existsSync(staging)).toBe(false);
  });

  test('a replaced F.lock: processes still work, and a lock on the old file does not fool them', async () => {
    const dir = tempDir();
    const bus = path.join(dir, 'bus');
    const lock = `${bus}.lock`;
    const args = busArgs(bus, ...bp);
    // C1 and P1 open the lock file (inode A) at start.
    const c1 = filebus([...args, 'consumer'], { stdin: 'ignore' });
    const p1 = filebus([...args, 'producer']);
    await until(() => [c1, p1].every((p) => openFiles(p.child.pid!).includes(lock)), 10_000, 'C1 and P1 to open F.lock');
    // H_A: flock(1) holds the lock on inode A until its stdin closes.
    const holdA = run('flock', [lock, 'cat'], { stdout: 'pipe' });
    await untilLocked(lock);
    // Replace F.lock by a new file (inode B), as `mv` does.
    fs.writeFileSync(`${lock}.new`, '');
    fs.renameSync(`${lock}.new`, lock);
    expect(await lockHeld(lock)).toBe(false);

    // A producer started now works at once, although the old lock is held.
    const p2 = filebus([...args, 'producer']);
    p2.child.stdin!.write('one\n');
    await until(fileHolds(bus, 'one\n'), 10_000, 'P2 to publish while the old lock is held');
    expect(holdA.child.exitCode).toBe(null);

    // H_B holds the real lock (inode B).
    const holdB = run('flock', [lock, 'cat'], { stdout: 'pipe' });
    await untilLocked(lock);
    p1.child.stdin!.write('two\n'); // P1 waits for the slot, on its stale fd

    // Release A. C1, waiting on A, gets it, must notice that F.lock is now
    // B, and wait for B: it must not take the chunk while H_B holds the lock.
    holdA.child.stdin!.end();
    expect(await exitOf(holdA)).toBe(0);
    await until(() => {
      const files = openFiles(c1.child.pid!);
      return c1.stdout().length > 0 || (files.includes(lock) && !files.includes(`${lock} (deleted)`));
    }, 10_000, 'C1 to reopen the new F.lock');
    await sleep(300); // a chance to be fooled
    expect(c1.stdout().toString()).toBe('');
    expect(fs.readFileSync(bus, 'utf8')).toBe('one\n');

    // Release B: C1 gets P2's chunk, then P1's (P1 must move to the new file too).
    holdB.child.stdin!.end();
    expect(await exitOf(holdB)).toBe(0);
    await c1.waitFor((out) => out.toString() === 'one\ntwo\n', 10_000);
    p1.child.stdin!.end();
    p2.child.stdin!.end();
    expect(await exitOf(c1)).toBe(0); // the first end marker
    expect(c1.stderr()).toBe('');
  });

  test('back-pressure: a consumer SIGKILLed in the middle of writing a chunk leaves it for the next consumer', async () => {
    const dir = tempDir();
    const bus = path.join(dir, 'bus');
    const args = busArgs(bus, ...bp);
    const { data, producer } = await hugeChunkPublished(dir, bus, args);

    const pipe = stuckPipe(dir);
    try {
      const c1 = filebus([...args, 'consumer'], { stdin: 'ignore', stdout: pipe.fd });
      // It has filled the pipe and waits to write the rest, holding the lock.
      await until(() => ioBytes(c1.child.pid!).written >= 65536, 10_000, 'C1 to fill its output pipe');
      expect(await lockHeld(`${bus}.lock`)).toBe(true);
      c1.child.kill('SIGKILL');
      await c1.exited;
    } finally {
      pipe.close();
    }
    expect(fs.readFileSync(bus).equals(data)).toBe(true);
    const c2 = filebus([...args, 'consumer'], { stdin: 'ignore' });
    expect(await exitOf(c2)).toBe(0); // the chunk, then the producer's end marker
    expect(c2.stdout().equals(data)).toBe(true);
    expect(await exitOf(producer)).toBe(0);
  });
});
