/**
 * The bash command line per role (issue "Reliability and security, round 3",
 * items 3 and 4): an environment variable that does not apply to a role is
 * ignored, a flag that does not apply is a usage error, a repeated option
 * takes its last value, and what only the TypeScript implementation has is
 * refused with one line that names it. Real processes and files.
 */
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, test } from 'vitest';
import { type Impl, type Proc, filebus, tempDir, within } from '../helpers.js';

const bash = { impl: 'bash' } as const;
const exitOf = (proc: Proc) => within(proc.exited, 30_000, `${proc.child.spawnargs.slice(1).join(' ')} to exit`);
const stderrLines = (proc: Proc) => proc.stderr().split('\n').filter((line) => line !== '');
/** Ends `proc`'s stdin with `data`; a process that exits without reading it (a usage error) is no test failure. */
function feed(proc: Proc, data: string): void {
  proc.child.stdin!.on('error', () => {});
  proc.child.stdin!.end(data);
}

type Role = 'lossless producer' | 'lossless consumer' | 'multicast producer' | 'multicast consumer';

/**
 * Runs `role` in bash with `env` on a fresh bus, its other side a TypeScript
 * process without that environment, and expects it to carry 'a\nb\n'.
 */
async function carries(role: Role, env: NodeJS.ProcessEnv): Promise<void> {
  const bus = path.join(tempDir(), 'bus');
  const lossless = role.startsWith('lossless') ? ['--lossless'] : [];
  const args = ['--filename', bus, ...lossless];
  if (role.endsWith('producer')) {
    const producer = filebus([...args, 'producer'], { ...bash, env });
    const consumer = lossless.length ? filebus([...args, 'consumer'], { stdin: 'ignore' }) : undefined;
    feed(producer, 'a\nb\n');
    expect(await exitOf(producer), producer.stderr()).toBe(0);
    expect(producer.stderr()).toBe('');
    if (consumer) {
      expect(await exitOf(consumer)).toBe(0);
      expect(consumer.stdout().toString()).toBe('a\nb\n');
    } else {
      expect(fs.readFileSync(bus, 'utf8')).toBe('a\nb\n');
    }
    return;
  }
  // A multicast consumer starts with the chunk already on the bus.
  const producer = filebus([...args, 'producer']);
  feed(producer, 'a\nb\n');
  if (!lossless.length) expect(await exitOf(producer)).toBe(0);
  const consumer = filebus([...args, 'consumer'], { ...bash, stdin: 'ignore', env });
  if (lossless.length) {
    expect(await exitOf(consumer), consumer.stderr()).toBe(0);
    expect(await exitOf(producer)).toBe(0);
  }
  await consumer.waitFor((out) => out.toString() === 'a\nb\n', 30_000);
  expect(consumer.stderr()).toBe('');
}

describe('an environment variable that does not apply to a role is ignored', () => {
  test.each([
    ['lossless consumer', { FILEBUS_HISTORY: '5' }],
    ['lossless producer', { FILEBUS_HISTORY: '5' }],
    ['multicast consumer', { FILEBUS_HISTORY: 'lots' }],
    ['lossless consumer', { FILEBUS_HISTORY: 'lots' }],
    ['multicast consumer', { FILEBUS_PRODUCERS: '3' }],
    ['multicast producer', { FILEBUS_PRODUCERS: '3' }],
    ['lossless producer', { FILEBUS_PRODUCERS: '3' }],
    ['lossless consumer', { FILEBUS_PRODUCERS: '1' }],
    ['lossless consumer', { FILEBUS_LINES: 'bad' }],
    ['multicast consumer', { FILEBUS_LINES: 'bad' }],
    ['multicast consumer', { FILEBUS_NULL: '1' }],
    ['lossless consumer', { FILEBUS_NULL: '1' }],
    ['lossless consumer', { FILEBUS_BLOCKING_READ: 'bad' }],
    ['lossless consumer', { FILEBUS_REPLAY: '1' }],
    ['multicast producer', { FILEBUS_REPLAY: '1' }],
    ['multicast producer', { FILEBUS_GROUP: 'g', FILEBUS_EXEC: 'wc', FILEBUS_JOBS: '4' }],
    ['lossless consumer', { FILEBUS_WAIT_FOR_GROUPS: '1' }],
  ] as [Role, NodeJS.ProcessEnv][])('bash %s with %j carries the stream', async (role, env) => {
    await carries(role, env);
  });

  test.each([
    ['multicast producer', { FILEBUS_LINES: 'bad' }, /FILEBUS_LINES/],
    ['lossless producer', { FILEBUS_BLOCKING_READ: 'maybe' }, /FILEBUS_BLOCKING_READ/],
    ['multicast producer', { FILEBUS_HISTORY: 'lots' }, /FILEBUS_HISTORY/],
  ] as [Role, NodeJS.ProcessEnv, RegExp][])('but one that applies is checked: bash %s with %j is a usage error', async (role, env, pattern) => {
    const dir = tempDir();
    const [mode, command] = role.split(' ') as [string, string];
    const proc = filebus(['--filename', path.join(dir, 'bus'), ...(mode === 'lossless' ? ['--lossless'] : []), command], { ...bash, env });
    feed(proc, 'x\n');
    expect(await exitOf(proc)).toBe(2);
    expect(stderrLines(proc)).toEqual([expect.stringMatching(pattern)]);
    expect(fs.readdirSync(dir)).toEqual([]);
  });
});

describe('what only the TypeScript implementation has is a usage error naming it', () => {
  test.each([
    [['consumer', '--group', 'g'], {}],
    [['consumer', '--group=g'], {}],
    [['--group', 'g', 'consumer'], {}],
    [['--lossless', 'consumer', '--group', 'g'], {}],
    [['producer', '--wait-for-groups'], {}],
    [['--lossless', 'producer', '--wait-for-groups'], {}],
    [['consumer', '--exec', 'wc -l'], {}],
    [['--lossless', 'consumer', '--exec=wc -l'], {}],
    [['--lossless', 'consumer', '--', 'wc', '-l'], {}],
    [['consumer', '--', 'wc'], {}],
    [['--lossless', 'consumer', '--jobs', '4'], {}],
    [['--lossless', 'consumer', '--retries', '3'], {}],
    [['consumer', '--replay'], {}],
    [['--lossless', 'consumer', '--producers', '2'], {}],
    [['group', 'remove', 'g'], {}],
    [['consumer'], { FILEBUS_GROUP: 'g' }],
    [['--lossless', 'consumer'], { FILEBUS_EXEC: 'wc -l' }],
    [['--lossless', 'consumer'], { FILEBUS_JOBS: '4' }],
    [['--lossless', 'consumer'], { FILEBUS_PRODUCERS: '2' }],
    [['consumer'], { FILEBUS_REPLAY: '1' }],
    [['producer'], { FILEBUS_WAIT_FOR_GROUPS: '1' }],
  ])('%j %j', async (args, env) => {
    const dir = tempDir();
    const proc = filebus(['--filename', path.join(dir, 'bus'), ...args], { ...bash, stdin: 'pipe', env });
    feed(proc, 'x\n');
    expect(await exitOf(proc)).toBe(2);
    expect(stderrLines(proc)).toEqual([expect.stringMatching(/^filebus: .*not in the bash implementation; use the TypeScript one/)]);
    expect(fs.readdirSync(dir)).toEqual([]);
  });

  test.each([
    [['producer', '--group', 'g'], /unknown option '--group' for producer/],
    [['producer', '--jobs', '2'], /unknown option '--jobs' for producer/],
    [['producer', '--replay'], /unknown option '--replay' for producer/],
    [['consumer', '--wait-for-groups'], /unknown option '--wait-for-groups' for consumer/],
    [['consumer', '--lines'], /unknown option '--lines' for consumer/],
    [['consumer', '--blocking-read'], /unknown option '--blocking-read' for consumer/],
  ])('a flag of the other role is a plain usage error: %j', async (args, pattern) => {
    const dir = tempDir();
    const proc = filebus(['--filename', path.join(dir, 'bus'), ...args], bash);
    feed(proc, 'x\n');
    expect(await exitOf(proc)).toBe(2);
    expect(stderrLines(proc)).toEqual([expect.stringMatching(pattern)]);
  });
});

// 'ts' joins when the TypeScript command line takes the last of repeated
// options (today yargs makes '--block-size 10 --block-size 20' the array
// '10,20', a usage error).
const impls: Impl[] = ['bash'];
describe.each(impls)('%s: a repeated option takes its last value', (impl) => {
  test('--filename a --filename b, --block-size 10 --block-size 20: one 16-byte chunk on b', async () => {
    const dir = tempDir();
    const producer = filebus(['--filename', path.join(dir, 'a'), '--filename', path.join(dir, 'bus'), '--block-size', '10', '--block-size=20', 'producer', '--lines'], { impl });
    feed(producer, '123456789012345\n');
    expect(await exitOf(producer), producer.stderr()).toBe(0);
    expect(fs.readdirSync(dir).sort()).toEqual(['bus', 'bus.lock']);
    // With 10 the line would go out in two pieces, the bus holding the last.
    expect(fs.readFileSync(path.join(dir, 'bus'), 'utf8')).toBe('123456789012345\n');
  });

  test('--history 5 --history 0 on a lossless bus: the last one is no history, so no usage error', async () => {
    await carriesWith(impl, ['--history', '5', '--lossless', '--history', '0']);
  });

  test('environment, then the command line twice: the command line last wins', async () => {
    const dir = tempDir();
    const producer = filebus(['--block-size', '3', '--block-size', '20', 'producer'], { impl, env: { FILEBUS_FILENAME: path.join(dir, 'bus'), FILEBUS_BLOCK_SIZE: '5' } });
    feed(producer, '123456789012345\n');
    expect(await exitOf(producer), producer.stderr()).toBe(0);
    expect(fs.readFileSync(path.join(dir, 'bus'), 'utf8')).toBe('123456789012345\n');
  });
});

async function carriesWith(impl: Impl, flags: string[]): Promise<void> {
  const bus = path.join(tempDir(), 'bus');
  const producer = filebus(['--filename', bus, ...flags, 'producer'], { impl });
  const consumer = filebus(['--filename', bus, '--lossless', 'consumer'], { stdin: 'ignore' });
  feed(producer, 'a\n');
  expect(await exitOf(producer), producer.stderr()).toBe(0);
  expect(await exitOf(consumer)).toBe(0);
  expect(consumer.stdout().toString()).toBe('a\n');
}
