/**
 * SIGKILL to a bash process (consumer) leaves none of its children
 * (inotifywait, its watchdog, cat) running.
 */
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, test } from 'vitest';
import { type Proc, bash, childNamed, childrenOf, exitOf, fifo, filebus, running, tempDir, until, waitsOnBus } from '../helpers.js';


/** SIGKILLs `proc` and waits (bounded) until every child it had is gone too. */
async function killLeavesNoOrphan(proc: Proc, children: Array<{ pid: number; comm: string }>): Promise<void> {
  proc.child.kill('SIGKILL');
  // Not its exit event first: that waits for its stderr pipe, which an
  // orphan holds open.
  try {
    await until(() => !running(proc.child.pid!), 5_000, 'the killed bash to die');
    await until(() => children.every(({ pid }) => !running(pid)), 5_000, 'the children of the killed bash to die');
  } finally {
    // Whatever the outcome, this test's processes go with it.
    for (const { pid } of children.filter(({ pid }) => running(pid))) process.kill(pid, 'SIGKILL');
  }
  expect(await exitOf(proc)).toBe(137);
}

describe('SIGKILL to a bash process leaves no child of it running', () => {
  test('a consumer: its inotifywait dies with it, on a quiet directory', async () => {
    const bus = path.join(tempDir(), 'bus');
    const consumer = filebus(['--filename', bus, 'consumer'], { ...bash, stdin: 'ignore' });
    const pid = consumer.child.pid!;
    await until(() => childNamed(pid, 'inotifywait') && waitsOnBus(pid), 10_000, 'the consumer to watch the bus');
    const children = childrenOf(pid);
    expect(children.map(({ comm }) => comm)).toContain('inotifywait');
    await killLeavesNoOrphan(consumer, children);
  });

  test('without setpriv --pdeathsig, a watchdog of its own ends the inotifywait soon after', async () => {
    const dir = tempDir();
    const bus = path.join(dir, 'bus');
    // A setpriv from before util-linux 2.33, which has no --pdeathsig.
    const bin = path.join(dir, 'bin');
    fs.mkdirSync(bin);
    fs.writeFileSync(path.join(bin, 'setpriv'), "#!/bin/sh\necho \"setpriv: unrecognized option '--pdeathsig'\" >&2\nexit 1\n", { mode: 0o755 });
    const consumer = filebus(['--filename', bus, 'consumer'], { ...bash, stdin: 'ignore', env: { PATH: `${bin}:${process.env.PATH}` } });
    const pid = consumer.child.pid!;
    await until(() => childNamed(pid, 'inotifywait') && waitsOnBus(pid), 10_000, 'the consumer to watch the bus');
    const children = childrenOf(pid);
    // inotifywait itself, not under setpriv, and the watchdog subshell.
    expect(children.map(({ comm }) => comm).sort()).toEqual(['bash', 'inotifywait']);
    // It still works: a chunk reaches it.
    const producer = filebus(['--filename', bus, 'producer']);
    producer.child.stdin!.end('watched\n');
    expect((await consumer.waitForBytes(8)).toString()).toBe('watched\n');
    await killLeavesNoOrphan(consumer, children);
  });

  test('a consumer blocked writing a chunk to a full pipe: its cat dies with it', async () => {
    const dir = tempDir();
    const bus = path.join(dir, 'bus');
    // Nobody reads this pipe: once its 64 KiB are full, cat blocks for good.
    const out = fifo(dir, 'output.fifo');
    const consumer = filebus(['--filename', bus, '--no-file-monitoring', 'consumer'], { ...bash, stdin: 'ignore', stdout: out.fd });
    const pid = consumer.child.pid!;
    await until(() => waitsOnBus(pid), 10_000, 'the consumer to wait for the bus');
    const producer = filebus(['--filename', bus, '--block-size', '1000000', 'producer'], { ...bash });
    producer.child.stdin!.end('x'.repeat(500_000));
    expect(await exitOf(producer)).toBe(0);
    await until(() => childNamed(pid, 'cat'), 10_000, 'the consumer to copy the chunk out');
    const children = childrenOf(pid);
    expect(children.map(({ comm }) => comm)).toContain('cat');
    try {
      await killLeavesNoOrphan(consumer, children);
    } finally {
      fs.closeSync(out.fd);
    }
  });
});
