/**
 * A bash multicast consumer started before the bus exists delivers the
 * first chunk published (issue "Reliability and security, round 3", item
 * 6): in an empty directory, and on a bindfs (FUSE) view of a directory
 * that another "host" publishes into, where inotify sees nothing and the
 * consumer finds the chunk by polling. Real processes and mounts.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, test } from 'vitest';
import { type Impl, type Proc, filebus, stop, tempDir, until, within } from '../helpers.js';

/** True while `pid` (bash) is in a timed read on a descriptor other than stdin: its wait for the bus (pselect6, /proc/PID/syscall). */
function waitsOnBus(pid: number): boolean {
  try {
    return /^270 0x([2-9a-f]|[1-9a-f][0-9a-f]+) /.test(fs.readFileSync(`/proc/${pid}/syscall`, 'utf8'));
  } catch {
    return false;
  }
}

/** Publishes `data` with a producer of `impl` that exits at the end of it. */
async function publish(impl: Impl, bus: string, data: string): Promise<void> {
  const producer = filebus(['--filename', bus, 'producer'], { impl });
  producer.child.stdin!.end(data);
  expect(await within(producer.exited, 10_000, 'the producer to exit'), producer.stderr()).toBe(0);
}

async function firstChunkReaches(consumer: Proc, publishAt: string, impl: Impl): Promise<void> {
  await until(() => waitsOnBus(consumer.child.pid!), 10_000, 'the consumer to wait for the bus');
  await publish(impl, publishAt, 'one\n');
  // The first chunk stays on the bus until the next is published: a
  // consumer that misses or skips it never prints it.
  await consumer.waitFor((data) => data.toString() === 'one\n', 10_000);
  await publish(impl, publishAt, 'two\nthree\n');
  await consumer.waitFor((data) => data.toString() === 'one\ntwo\nthree\n', 10_000);
  expect(consumer.stderr()).toBe('');
}

describe.each(['ts', 'bash'] as Impl[])('a bash multicast consumer started before the bus, a %s producer', (impl) => {
  test('in an empty directory: its output starts with the first chunk', async () => {
    const bus = path.join(tempDir(), 'bus');
    const consumer = filebus(['--filename', bus, 'consumer'], { impl: 'bash', stdin: 'ignore' });
    await firstChunkReaches(consumer, bus, impl);
  });

  test('on a bindfs view, the producer on the other side: its output starts with the first chunk', async (context) => {
    const dir = tempDir();
    const [src, view] = [path.join(dir, 'src'), path.join(dir, 'view')];
    fs.mkdirSync(src);
    fs.mkdirSync(view);
    // The coherent view of test/netfs.test.ts: no attribute or entry caching.
    const mount = spawnSync('bindfs', ['--multithreaded', '--enable-lock-forwarding', '-o', 'attr_timeout=0,entry_timeout=0', src, view], { encoding: 'utf8' });
    if (mount.error || mount.status !== 0) context.skip(`cannot mount a bindfs (FUSE) view here: ${mount.error?.message ?? mount.stderr.trim()}`);
    const consumer = filebus(['--filename', path.join(view, 'bus'), 'consumer'], { impl: 'bash', stdin: 'ignore' });
    try {
      await firstChunkReaches(consumer, path.join(src, 'bus'), impl);
    } finally {
      await stop(consumer.child);
      try {
        execFileSync('fusermount3', ['-u', view], { stdio: 'pipe' });
      } catch {
        spawnSync('fusermount3', ['-u', '-z', view]);
      }
    }
  });
});
