/**
 * The bash implementation on its own: lint, a machine without inotify-tools,
 * signals, and its line-based chunks.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { expect, test } from 'vitest';
import { bashCli, childrenOf, exists, filebus, tempDir, until } from '../helpers.js';

const has = (command: string) => spawnSync('sh', ['-c', `command -v ${command}`]).status === 0;
const hasShellcheck = has('shellcheck');

// Skipped, and shown as skipped, where shellcheck is not installed; CI installs it.
test.skipIf(!hasShellcheck)('filebus.bash is clean under shellcheck', () => {
  const result = spawnSync('shellcheck', ['-x', bashCli], { encoding: 'utf8' });
  expect(result.stdout + result.stderr).toBe('');
  expect(result.status).toBe(0);
});

test('with only bash, coreutils and util-linux (no inotifywait on PATH) it polls and delivers', async () => {
  const dir = tempDir();
  // A PATH with every command of the system but inotifywait.
  const bin = path.join(dir, 'bin');
  fs.mkdirSync(bin);
  for (const system of ['/usr/local/bin', '/usr/bin', '/bin']) {
    if (!fs.existsSync(system)) continue;
    for (const name of fs.readdirSync(system)) {
      if (name !== 'inotifywait' && !fs.existsSync(path.join(bin, name))) fs.symlinkSync(path.join(system, name), path.join(bin, name));
    }
  }
  const env = { PATH: bin };
  const bus = path.join(dir, 'bus');
  const consumer = filebus(['--filename', bus, '--back-pressure', 'consumer'], { impl: 'bash', stdin: 'ignore', env });
  const producer = filebus(['--filename', bus, '--back-pressure', 'producer'], { impl: 'bash', env });
  const lines = Array.from({ length: 200 }, (_, i) => `line ${i}\n`).join('');
  producer.child.stdin!.end(lines);
  expect(await producer.exited).toBe(0);
  expect(await consumer.exited).toBe(0);
  expect(consumer.stdout().toString()).toBe(lines);
  expect(consumer.stderr() + producer.stderr()).toBe('');
});

test.each([
  ['SIGTERM', 143],
  ['SIGINT', 130],
] as const)('%s ends a bash consumer and the children it started, and nothing else', async (signal, status) => {
  const bus = path.join(tempDir(), 'bus');
  // Same process group as this test runner: a script that signalled its
  // caller's group would take the runner down with it.
  const consumer = filebus(['--filename', bus, 'consumer'], { impl: 'bash', stdin: 'ignore' });
  const producer = filebus(['--filename', bus, 'producer'], { impl: 'bash' });
  producer.child.stdin!.write('ready\n');
  await consumer.waitFor((out) => out.includes('ready\n'));
  const pid = consumer.child.pid!;
  const children = childrenOf(pid, { zombies: true }).map((child) => child.pid);
  // The consumer waits through an inotifywait child. CI installs
  // inotify-tools (.ci/run), so this is asserted, never skipped.
  expect(has('inotifywait')).toBe(true);
  expect(children.length).toBeGreaterThan(0);
  consumer.child.kill(signal);
  expect(await consumer.exited).toBe(status);
  await until(() => children.every((child) => !exists(child)), 3000, 'the consumer’s children to end');
  // The producer, in the same process group, was not touched.
  expect(exists(producer.child.pid!)).toBe(true);
  producer.child.stdin!.end();
  expect(await producer.exited).toBe(0);
});

test('bash chunks hold whole lines, and NUL bytes are not carried', async () => {
  const bus = path.join(tempDir(), 'bus');
  const args = ['--filename', bus, '--back-pressure', '--block-size', '64'];
  const producer = filebus([...args, 'producer'], { impl: 'bash' });
  const lines = Array.from({ length: 50 }, (_, i) => `line number ${i} ${'x'.repeat(i % 20)}\n`);
  producer.child.stdin!.end(Buffer.concat([Buffer.from('a\0b\n'), Buffer.from(lines.join(''))]));
  // The library consumer shows chunk boundaries: every chunk ends at a line end.
  const { createConsumer } = await import('../../src/index.js');
  const chunks: string[] = [];
  for await (const chunk of createConsumer({ filename: bus, backPressure: true })) chunks.push(String(chunk));
  expect(await producer.exited).toBe(0);
  for (const chunk of chunks) expect(chunk.endsWith('\n')).toBe(true);
  expect(chunks.join('')).toBe(`ab\n${lines.join('')}`);
});
