/**
 * A full disk (ENOSPC), on the bus's side or the output's: one line, exit
 * 1, and nothing consumed or pending is lost. Root only: mounts a tmpfs.
 */
import fs from 'node:fs';
import path from 'node:path';
import { type TestContext, describe, expect, test } from 'vitest';
import { type Proc, bp, busArgs, exitOf, filebus, fileHolds, hasStackTrace, isRoot, lines, mountOrSkip, randomBytes, stop, tempDir, unmount, until, within } from '../helpers.js';

if (!isRoot) console.warn('full disk: not root; tests that need mount(8) are skipped');

/** A 64 KiB tmpfs, unmounted (after `procs` are stopped) whatever happens. */
async function withSmallDisk(context: TestContext, body: (mnt: string, procs: Proc[]) => Promise<void>): Promise<void> {
  const mnt = path.join(tempDir(), 'mnt');
  fs.mkdirSync(mnt);
  mountOrSkip(context, ['-t', 'tmpfs', '-o', 'size=64k', 'tmpfs', mnt]);
  const procs: Proc[] = [];
  try {
    await body(mnt, procs);
  } finally {
    await Promise.all(procs.map((proc) => stop(proc.child)));
    unmount(mnt);
  }
}

describe('4. full disk', () => {
  function fillUp(dir: string): void {
    const fd = fs.openSync(path.join(dir, 'filler'), 'w');
    try {
      for (;;) fs.writeSync(fd, Buffer.alloc(4096, 'f'));
    } catch (error) {
      expect((error as NodeJS.ErrnoException).code).toBe('ENOSPC');
    } finally {
      fs.closeSync(fd);
    }
  }
  function expectOneLineError(proc: Proc, file: string): void {
    const err = lines(proc.stderr());
    expect(err, proc.stderr()).toHaveLength(1);
    expect(err[0]).toContain(file);
    expect(err[0]).toMatch(/no space/i);
    expect(hasStackTrace(proc.stderr())).toBe(false);
  }

  test.skipIf(!isRoot)('multicast (root only: mounts a tmpfs): ENOSPC on F.__new__ keeps the previous chunk, one line, exit 1', async (context) => {
    await withSmallDisk(context, async (mnt, procs) => {
      const bus = path.join(mnt, 'bus');
      const block = 40_000; // two of them do not fit in 64 KiB
      const data = randomBytes(3 * block);
      const dir = tempDir();
      fs.writeFileSync(path.join(dir, 'input'), data);
      const consumer = filebus([...busArgs(bus), 'consumer'], { stdin: 'ignore' });
      procs.push(consumer);
      const input = fs.openSync(path.join(dir, 'input'), 'r');
      const producer = filebus([...busArgs(bus, '--block-size', String(block)), 'producer'], { stdin: input });
      procs.push(producer);
      fs.closeSync(input);
      expect(await exitOf(producer)).toBe(1);
      expectOneLineError(producer, `${bus}.__new__`);
      expect(fs.readFileSync(bus).equals(data.subarray(0, block))).toBe(true);
      // A consumer got the chunk that was published, and never part of the one that was not.
      await consumer.waitForBytes(block);
      expect(consumer.stdout().equals(data.subarray(0, block))).toBe(true);
    });
  });

  test.skipIf(!isRoot)('back-pressure (root only: mounts a tmpfs): ENOSPC loses nothing consumed or pending', async (context) => {
    await withSmallDisk(context, async (mnt, procs) => {
      const bus = path.join(mnt, 'bus');
      const args = busArgs(bus, ...bp, '--block-size', '8192');
      const producer = filebus([...args, 'producer']);
      const c1 = filebus([...args, 'consumer'], { stdin: 'ignore' });
      procs.push(producer, c1);
      const [a, b, c] = ['A', 'B', 'C'].map((letter) => Buffer.alloc(4096, letter)) as [Buffer, Buffer, Buffer];
      const d = randomBytes(3 * 8192);
      producer.child.stdin!.write(a);
      await c1.waitForBytes(4096);
      producer.child.stdin!.write(b);
      await c1.waitForBytes(8192);
      c1.child.kill('SIGTERM');
      expect(await exitOf(c1)).toBe(143);
      // C is pending on the bus when the disk fills up.
      producer.child.stdin!.write(c);
      await until(fileHolds(bus, c), 10_000, 'chunk C');
      fillUp(mnt);
      // Taking C frees one page, and only ever one page is free from now
      // on: the first chunk of D bigger than a page cannot be staged.
      producer.child.stdin!.write(d);
      const c2 = filebus([...args, 'consumer'], { stdin: 'ignore' });
      procs.push(c2);
      expect(await within(producer.exited, 10_000, 'the producer to fail')).toBe(1);
      expectOneLineError(producer, `${bus}.__new__`);
      await c2.waitForBytes(4096);
      expect(c1.stdout().equals(Buffer.concat([a, b]))).toBe(true);
      // C, then perhaps a page-sized first piece of D, if the producer read D in pieces.
      expect(c2.stdout().subarray(0, 4096).equals(c)).toBe(true);
      expect(d.subarray(0, c2.stdout().length - 4096).equals(c2.stdout().subarray(4096))).toBe(true);
      expect(fs.existsSync(bus)).toBe(false);
    });
  });
});

describe('4. full disk, on the output side', () => {
  test.skipIf(!isRoot)('a consumer whose output is on a full disk (root only: mounts a tmpfs): exit 1, one line, the chunk stays', async (context) => {
    await withSmallDisk(context, async (mnt, procs) => {
      const dir = tempDir();
      const bus = path.join(dir, 'bus');
      const data = randomBytes(100 * 1024);
      fs.writeFileSync(path.join(dir, 'input'), data);
      const args = busArgs(bus, ...bp);
      const input = fs.openSync(path.join(dir, 'input'), 'r');
      const producer = filebus([...args, 'producer'], { stdin: input });
      fs.closeSync(input);
      const out = fs.openSync(path.join(mnt, 'out'), 'w');
      const consumer = filebus([...args, 'consumer'], { stdin: 'ignore', stdout: out });
      procs.push(producer, consumer);
      fs.closeSync(out);
      const status = await within(consumer.exited, 10_000, 'the consumer to give up');
      const written = fs.readFileSync(path.join(mnt, 'out'));
      expect(written.equals(data.subarray(0, written.length))).toBe(true);
      // The chunk it could not write whole is still there for the next consumer.
      const next = filebus([...args, 'consumer'], { stdin: 'ignore' });
      expect(await exitOf(next)).toBe(0);
      expect(next.stdout().equals(data.subarray(Math.floor(written.length / 4096) * 4096))).toBe(true);
      expect(await exitOf(producer)).toBe(0);
      // A full disk is an error to report, not a reader that went away (141, quietly).
      expect(lines(consumer.stderr()), consumer.stderr()).toHaveLength(1);
      expect(consumer.stderr()).toMatch(/standard output|stdout/i);
      expect(consumer.stderr()).toMatch(/no space/i);
      expect(hasStackTrace(consumer.stderr())).toBe(false);
      expect(status).toBe(1);
    });
  });
});
