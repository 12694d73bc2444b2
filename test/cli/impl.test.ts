/**
 * --impl: python names the default (TypeScript) implementation; bash
 * becomes the bash process (exec'd in place), with the same arguments.
 */
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, test } from 'vitest';
import { filebus, tempDir, until, processesMentioning, root } from '../helpers.js';

test('--impl python runs the default (TypeScript) implementation', async () => {
  const bus = path.join(tempDir(), 'bus');
  const producer = filebus(['--impl', 'python', '--filename', bus, '--block-size', '5', 'producer', '--null']);
  producer.child.stdin!.end('a b\0cd e\0');
  expect(await producer.exited).toBe(0);
  expect(producer.stderr()).toBe('');
  // --null, an option only the TypeScript implementation has, cut at the NUL ("a b\0c" in bytes).
  expect(fs.readFileSync(bus, 'utf8')).toBe('cd e\0');
  const viaEnv = filebus(['--version'], { stdin: 'ignore', env: { FILEBUS_IMPL: 'python' } });
  expect(await viaEnv.exited).toBe(0);
  expect(viaEnv.stdout().toString()).not.toMatch(/bash/);
});

describe('--impl bash becomes the bash process', () => {
  test('the PID is bash running filebus.bash; SIGKILL to it leaves no bash consumer nor child of it behind', async () => {
    const bus = path.join(tempDir(), 'bus');
    const proc = filebus(['--impl', 'bash', '--filename', bus, 'consumer'], { stdin: 'ignore' });
    const pid = proc.child.pid!;
    const cmdline = () => fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
    // Node first, then (after the exec) bash with the untouched command line.
    await until(() => cmdline()[0] === 'bash', 10_000, 'the exec of bash');
    expect(cmdline().slice(1, 2)[0]).toBe(path.join(root, 'compat/bash/filebus.bash'));
    expect(cmdline().slice(2, 7)).toEqual(['--impl', 'bash', '--filename', bus, 'consumer']);
    // Node ignores SIGPIPE for itself; an ignored signal would stay ignored across the exec.
    const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
    const ignored = BigInt(`0x${/^SigIgn:\s*([0-9a-f]+)/m.exec(status)![1]}`);
    expect(ignored & (1n << 12n), 'SIGPIPE (bit 12) ignored').toBe(0n);
    // It is the consumer itself: it delivers a chunk.
    const producer = filebus(['--filename', bus, 'producer']);
    producer.child.stdin!.end('to bash\n');
    expect((await proc.waitForBytes(8)).toString()).toBe('to bash\n');
    // Its inotifywait, a child of bash, not of filebus: the helpers' cleanup
    // does not know it, so it must die with bash.
    const watchers = processesMentioning(path.dirname(bus)).filter(({ args }) => args.startsWith('inotifywait '));
    expect(watchers).toHaveLength(1);
    proc.child.kill('SIGKILL');
    expect(await proc.exited).toBe(137);
    // Nothing left running the bash implementation on this bus.
    expect(processesMentioning(bus).filter(({ args }) => args.includes('filebus.bash'))).toEqual([]);
    try {
      await until(() => processesMentioning(path.dirname(bus)).length === 0, 5_000, 'the orphaned inotifywait of the bash consumer to die');
    } finally {
      // Only if that failed: this test's processes go with it all the same.
      for (const { pid } of processesMentioning(path.dirname(bus))) process.kill(pid, 'SIGKILL');
    }
  });

  test('its stdio is inherited (not closed on exec) and its exit status is its own', async () => {
    const bus = path.join(tempDir(), 'bus');
    const consumer = filebus(['--impl', 'bash', '--filename', bus, '--lossless', 'consumer'], { stdin: 'ignore' });
    const producer = filebus(['--impl', 'bash', '--filename', bus, '--lossless', 'producer']);
    producer.child.stdin!.end('one\ntwo\n');
    expect(await producer.exited).toBe(0);
    expect(await consumer.exited).toBe(0);
    expect(consumer.stdout().toString()).toBe('one\ntwo\n');
    // A usage error of the bash implementation, on the inherited stderr.
    const wrong = filebus(['--impl', 'bash', '--filename', bus, 'consumer', '--bogus'], { stdin: 'ignore' });
    expect(await wrong.exited).toBe(2);
    expect(wrong.stderr()).toMatch(/bogus/);
  });
});

test.each(['--impl', '--implementation'])('filebus %s bash runs the bash implementation with the same arguments', async (flag) => {
  const version = filebus([flag, 'bash', '--version'], { stdin: 'ignore' });
  expect(await version.exited).toBe(0);
  expect(version.stdout().toString()).toMatch(/bash/);

  const bus = path.join(tempDir(), 'bus');
  const consumer = filebus(['--filename', bus, '--back-pressure', 'consumer'], { stdin: 'ignore' });
  const producer = filebus(['--filename', bus, '--back-pressure', flag, 'bash', 'producer']);
  producer.child.stdin!.end('from bash\n');
  expect(await producer.exited).toBe(0);
  expect(await consumer.exited).toBe(0);
  expect(consumer.stdout().toString()).toBe('from bash\n');
});
