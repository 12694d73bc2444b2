/**
 * The environment (issue 17, item 10): a FILEBUS_* variable that does not
 * apply to a role is ignored, so one exported environment serves every
 * command; `status` and `completion` run in TypeScript whatever
 * FILEBUS_IMPL says. And the help of --filename names every file of a bus
 * (item 11), --no-history is --history 0.
 */
import fs from 'node:fs';
import path from 'node:path';
import { expect, test } from 'vitest';
import { filebus, tempDir } from '../helpers.js';

test('FILEBUS_IMPL=bash exported: status, completion and completions run (in TypeScript)', async () => {
  const bus = path.join(tempDir(), 'bus');
  fs.writeFileSync(bus, 'chunk');
  const env = { FILEBUS_IMPL: 'bash', FILEBUS_FILENAME: bus, SHELL: '/bin/bash' };
  const status = filebus(['status', '--json'], { stdin: 'ignore', env });
  expect(await status.exited).toBe(0);
  expect(status.stderr()).toBe('');
  expect(JSON.parse(status.stdout().toString())).toMatchObject({ path: bus, exists: true });
  const script = filebus(['completion'], { stdin: 'ignore', env });
  expect(await script.exited).toBe(0);
  expect(script.stdout().toString()).toMatch(/complete .*filebus/);
  const help = filebus(['completion', '--help'], { stdin: 'ignore', env });
  expect(await help.exited).toBe(0);
  expect(help.stdout().toString()).toMatch(/^Usage: filebus completion/);
  expect(help.stdout().toString()).not.toMatch(/complete -/);
  const words = filebus(['--get-yargs-completions', 'filebus', '--impl', 'b'], { stdin: 'ignore', env });
  expect(await words.exited).toBe(0);
  expect(words.stdout().toString()).toBe('bash\n');
  expect(words.stderr()).toBe('');
});

test('FILEBUS_HISTORY, FILEBUS_REPLAY and FILEBUS_PRODUCERS exported: a back-pressure producer and consumer ignore the first two', async () => {
  const bus = path.join(tempDir(), 'bus');
  const env = { FILEBUS_FILENAME: bus, FILEBUS_HISTORY: '3000', FILEBUS_REPLAY: '1', FILEBUS_PRODUCERS: '1', FILEBUS_LINES: '1' };
  const consumer = filebus(['--lossless', 'consumer'], { stdin: 'ignore', env });
  const producer = filebus(['--lossless', 'producer'], { env });
  producer.child.stdin!.end('one\ntwo\n');
  expect(await producer.exited).toBe(0);
  expect(await consumer.exited).toBe(0);
  expect(producer.stderr() + consumer.stderr()).toBe('');
  expect(consumer.stdout().toString()).toBe('one\ntwo\n');
  expect(fs.existsSync(`${bus}.history`)).toBe(false);
});

test('FILEBUS_PRODUCERS exported: a multicast consumer ignores it; FILEBUS_HISTORY reaches the multicast producer', async () => {
  const bus = path.join(tempDir(), 'bus');
  const env = { FILEBUS_FILENAME: bus, FILEBUS_PRODUCERS: '2', FILEBUS_HISTORY: '5' };
  const consumer = filebus(['consumer'], { stdin: 'ignore', env });
  const producer = filebus(['producer'], { env });
  producer.child.stdin!.write('first\n');
  // The consumer is up and reading (or it exited 2, which this rejects).
  await consumer.waitFor((out) => out.toString().includes('first\n'), 10_000);
  producer.child.stdin!.end();
  expect(await producer.exited).toBe(0);
  expect(fs.existsSync(`${bus}.history`)).toBe(true);
  expect(consumer.stderr()).toBe('');
});

test('--no-history is --history 0: a producer keeps no history, also given FILEBUS_HISTORY', async () => {
  const bus = path.join(tempDir(), 'bus');
  const producer = filebus(['--filename', bus, '--no-history', 'producer'], { env: { FILEBUS_HISTORY: '5' } });
  producer.child.stdin!.end('x\n');
  expect(await producer.exited).toBe(0);
  expect(producer.stderr()).toBe('');
  expect(fs.readFileSync(bus, 'utf8')).toBe('x\n');
  expect(fs.existsSync(`${bus}.history`)).toBe(false);
});

test('a flag that does not apply is a usage error: --history on a back-pressure consumer, --block-size on status', async () => {
  const dir = tempDir();
  const bus = path.join(dir, 'bus');
  for (const [args, message] of [
    [['--filename', bus, '--lossless', '--history', '5', 'consumer'], /^filebus: --history is for multicast buses/],
    [['--filename', bus, '--block-size', '10', 'status'], /^filebus: --block-size does not apply to status/],
  ] as const) {
    const proc = filebus([...args], { stdin: 'ignore' });
    expect(await proc.exited).toBe(2);
    expect(proc.stderr()).toMatch(message);
    expect(proc.stderr().split('\n').filter(Boolean)).toHaveLength(1);
  }
  expect(fs.readdirSync(dir)).toEqual([]);
});

test('--help: --filename names the files beside F', async () => {
  const proc = filebus(['--help'], { stdin: 'ignore' });
  expect(await proc.exited).toBe(0);
  const filename = /\n +--filename +FILE[\s\S]*?(?=\n +--)/.exec(proc.stdout().toString())![0];
  for (const file of ['F.lock', 'F.__new__', 'F.ends', 'F.history/']) expect(filename).toContain(file);
});
