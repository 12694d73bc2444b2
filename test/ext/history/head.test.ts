/**
 * Issue "Reliability and security, round 3", items 5 and 6: the history's
 * head file. A head that cannot be right is repaired from the listing, with
 * one line; a head that cannot be written fails the publish before the
 * chunk is visible, so a retry never publishes it twice.
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { expect, test } from 'vitest';
import { type Impl, filebus, isRoot, tempDir } from '../../helpers.js';
import { entries, lineFile, numbered, produce, produceQuietly } from './util.js';

const impls: Impl[] = ['ts', 'bash'];

for (const impl of impls) {
  test(`${impl}: a head with bytes after its record is repaired, with one line, and numbering goes on`, async () => {
    const dir = tempDir();
    const bus = path.join(dir, 'bus');
    const args = ['--filename', bus, '--history', '100', '--block-size', '8'];
    await produceQuietly(args, lineFile(dir, 'a', 1, 3), impl);
    fs.writeFileSync(`${bus}.history/head`, '0000000000000003\n9999\n');
    for (const run of [0, 1]) {
      const { status, stderr } = await produce(args, lineFile(dir, `b${run}`, 4 + 3 * run, 3), impl);
      expect(status, stderr).toBe(0);
      // One line for the repair, then none: the head is right again.
      if (run === 0) expect(stderr).toMatch(new RegExp(`^filebus: ${bus}.history/head[^\\n]*repair[^\\n]*\\n$`));
      else expect(stderr).toBe('');
    }
    expect(entries(`${bus}.history`)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9]);
    expect(fs.readFileSync(`${bus}.history/head`, 'latin1')).toBe('0000000000000009\n');
  });

  test(`${impl}: a head above 2^53 is repaired from the listing: no 17-digit entry, no numbering restarted`, async () => {
    const dir = tempDir();
    const bus = path.join(dir, 'bus');
    const args = ['--filename', bus, '--history', '100', '--block-size', '8'];
    await produceQuietly(args, lineFile(dir, 'a', 1, 2), impl);
    fs.writeFileSync(`${bus}.history/head`, '9999999999999999\n');
    const { status, stderr } = await produce(args, lineFile(dir, 'b', 3, 3), impl);
    expect(status, stderr).toBe(0);
    expect(stderr).toMatch(new RegExp(`^filebus: ${bus}.history/head[^\\n]*repair[^\\n]*\\n$`));
    expect(fs.readdirSync(`${bus}.history`).sort()).toEqual([1, 2, 3, 4, 5].map((n) => String(n).padStart(16, '0')).concat('head'));
    expect(fs.readFileSync(`${bus}.history/head`, 'latin1')).toBe('0000000000000005\n');
  });

  test.skipIf(!isRoot)(`${impl}: no room for the head on a full file system: the publish fails before F shows the chunk (tmpfs; needs root)`, async () => {
    const dir = tempDir();
    const mount = path.join(dir, 'mnt');
    fs.mkdirSync(mount);
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=64k', 'tmpfs', mount]);
    try {
      const bus = path.join(mount, 'bus');
      // Fill all but one page: the chunk takes it, and the head (a new file) finds none.
      const page = 4096;
      const free = () => fs.statfsSync(mount).bavail * fs.statfsSync(mount).bsize;
      fs.writeFileSync(path.join(mount, 'filler'), Buffer.alloc(free() - page));
      expect(free()).toBe(page);
      const input = path.join(dir, 'in');
      fs.writeFileSync(input, 'one chunk\n');
      const { status, stderr } = await produce(['--filename', bus, '--history', '10'], input, impl);
      expect(status).toBe(1);
      expect(stderr).toMatch(new RegExp(`^filebus: [^\\n]*${bus}.history/head[^\\n]*\\n$`));
      // Not published: a retry will not give the chunk twice.
      expect(fs.existsSync(bus)).toBe(false);
      expect(entries(`${bus}.history`)).toEqual([]);
      // Room again: the retry publishes it once, as seq 1.
      fs.rmSync(path.join(mount, 'filler'));
      const consumer = filebus(['--filename', bus, 'consumer', '--replay'], { stdin: 'ignore' });
      await produceQuietly(['--filename', bus, '--history', '10'], input, impl);
      await consumer.waitFor((out) => out.length >= 10);
      expect(entries(`${bus}.history`)).toEqual([1]);
      expect(fs.readFileSync(`${bus}.history/head`, 'latin1')).toBe('0000000000000001\n');
      expect(consumer.stdout().toString()).toBe('one chunk\n');
    } finally {
      execFileSync('umount', ['-l', mount]);
    }
  });
}

test('a head that cannot be read, and chunks pruned while a consumer was stopped: it reports them and goes on', async () => {
  const dir = tempDir();
  const bus = path.join(dir, 'bus');
  const args = ['--filename', bus, '--history', '5', '--block-size', '8'];
  await produceQuietly(args, lineFile(dir, 'a', 1, 3));
  const consumer = filebus(['--filename', bus, 'consumer', '--replay'], { stdin: 'ignore' });
  await consumer.waitFor((out) => out.toString().endsWith('0000003\n'));
  consumer.child.kill('SIGSTOP');
  try {
    await produceQuietly(args, lineFile(dir, 'b', 4, 20)); // seqs 4..23, 19..23 kept
    fs.writeFileSync(`${bus}.history/head`, '0000000000000023\n9999\n');
  } finally {
    consumer.child.kill('SIGCONT');
  }
  await consumer.waitFor((out) => out.toString().endsWith('0000023\n'), 5000);
  expect(consumer.stdout().toString()).toBe(numbered(1, 3) + numbered(19, 5));
  expect(consumer.stderr()).toBe('filebus: missed 15 chunks (seq 4-18)\n');
});
