/**
 * Issue 17, item 11: problems the core meets at start or on a read, each
 * one line on stderr naming the file, never Node's own wording.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { expect, test } from 'vitest';
import { cli, filebus, hasStackTrace, isRoot, run, tempDir, within } from '../helpers.js';

test('a chunk over 4 GiB: one line naming F and the limit, not Node\'s "out of range"', async () => {
  const dir = tempDir();
  const bus = path.join(dir, 'bus');
  // Sparse: no 5 GiB written anywhere.
  expect(spawnSync('truncate', ['-s', '5G', bus]).status).toBe(0);
  const consumer = filebus(['--filename', bus, 'consumer'], { stdin: 'ignore' });
  expect(await within(consumer.exited, 10_000, 'the consumer')).toBe(1);
  const stderr = consumer.stderr();
  console.log(stderr.trim());
  expect(stderr).toBe(`filebus: cannot read ${bus}: chunk of ${5 * 2 ** 30} bytes is larger than filebus can hold (4 GiB)\n`);
});

test.skipIf(!isRoot)('a missing directory on a read-only file system is reported as EROFS, not ENOENT', async (context) => {
  const dir = tempDir();
  const mountPoint = path.join(dir, 'ro');
  fs.mkdirSync(mountPoint);
  const mounted = spawnSync('mount', ['-t', 'tmpfs', '-o', 'ro,size=1m', 'tmpfs', mountPoint]);
  if (mounted.status !== 0) return context.skip(`cannot mount a read-only tmpfs here: ${mounted.stderr.toString().trim()}`);
  try {
    const bus = path.join(mountPoint, 'missing', 'deeper', 'bus');
    const producer = filebus(['--filename', bus, 'producer'], { stdin: 'ignore' });
    expect(await within(producer.exited, 10_000, 'the producer')).toBe(1);
    console.log(producer.stderr().trim());
    expect(producer.stderr()).toBe(`filebus: cannot create the directory ${path.join(mountPoint, 'missing')}: read-only file system (EROFS)\n`);
  } finally {
    spawnSync('umount', [mountPoint]);
  }
});

test.skipIf(!isRoot)('a directory without search permission: one line naming the path, not the raw EACCES of lstat', async () => {
  const dir = tempDir();
  fs.chmodSync(dir, 0o755);
  const closed = path.join(dir, 'closed');
  fs.mkdirSync(closed, { mode: 0o644 });
  fs.chmodSync(closed, 0o644); // readable, not searchable, by others
  const bus = path.join(closed, 'bus');
  for (const command of ['producer', 'consumer']) {
    const proc = run('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', process.execPath, cli, '--filename', bus, command], { stdin: 'ignore' });
    expect(await within(proc.exited, 10_000, command)).toBe(1);
    const stderr = proc.stderr();
    console.log(`${command}: ${stderr.trim()}`);
    expect(stderr.split('\n')).toHaveLength(2);
    expect(stderr).toMatch(/^filebus: cannot [a-z ]+ \S+: permission denied \(EACCES\)\n$/);
    expect(stderr).toContain(bus);
    expect(stderr).not.toMatch(/EACCES: permission denied, lstat/);
    expect(hasStackTrace(stderr)).toBe(false);
  }
});
