/** Memory: a consumer gives back what one huge chunk took. */
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, test } from 'vitest';
import { busArgs, exitOf, filebus, ioBytes, memoryKiB, openFiles, tempDir, until } from '../helpers.js';

describe('7. memory', () => {
  test('a multicast consumer gives back the memory of one huge chunk: RSS at most 100 MiB after a 256 MiB chunk and ten small ones', async () => {
    const dir = tempDir();
    const bus = path.join(dir, 'bus');
    const huge = 256 << 20;
    const input = path.join(dir, 'huge');
    const fd = fs.openSync(input, 'w');
    const mib = Buffer.alloc(1 << 20, 'h');
    for (let i = 0; i < 256; i++) fs.writeSync(fd, mib);
    fs.closeSync(fd);
    const devNull = fs.openSync('/dev/null', 'w');
    const consumer = filebus([...busArgs(bus), 'consumer'], { stdin: 'ignore', stdout: devNull });
    fs.closeSync(devNull);
    const pid = consumer.child.pid!;
    await until(() => openFiles(pid).some((file) => file.includes('inotify')), 10_000, 'the consumer to watch the bus');
    const written = () => ioBytes(pid).written;
    const stdin = fs.openSync(input, 'r');
    const bigProducer = filebus([...busArgs(bus, '--block-size', String(huge)), 'producer'], { stdin });
    fs.closeSync(stdin);
    expect(await exitOf(bigProducer, 30_000)).toBe(0);
    await until(() => written() >= huge, 30_000, 'the consumer to write the huge chunk');
    const peak = memoryKiB(pid)!.peak;
    // Ten small chunks, each published once the consumer has written the one before.
    const small = filebus([...busArgs(bus), 'producer']);
    for (let i = 0; i < 10; i++) {
      const before = written();
      small.child.stdin!.write(`small chunk ${i}\n`);
      await until(() => written() > before, 10_000, `small chunk ${i}`);
    }
    small.child.stdin!.end();
    expect(await exitOf(small)).toBe(0);
    const limitKiB = 100 * 1024;
    await until(() => memoryKiB(pid)!.rss <= limitKiB, 5000, `RSS at most 100 MiB (now ${memoryKiB(pid)?.rss} KiB, peak ${peak} KiB)`).catch((error: Error) => {
      throw new Error(`${error.message}; rss ${memoryKiB(pid)?.rss} KiB, peak ${peak} KiB`);
    });
    expect(peak, 'the consumer did hold the huge chunk').toBeGreaterThan(huge / 1024);
  }, 120_000);
});
