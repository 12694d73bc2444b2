/** The bash implementation's option values and environment (issue 9.9, 10, 11): range checks, refusals, and --help. */
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, test } from 'vitest';
import { bash, exitOf, feed, filebus, sleep, stderrLines, tempDir, until } from '../helpers.js';


describe('option values (issue 9.9, 10, 11)', () => {
  test.each([
    [['--block-size', '99999999999']],
    [['--block-size', '0']],
    [['--block-size', '-1']],
    [['--block-size', '1e3']],
    [['--sleep-interval', '-1']],
    [['--sleep-interval', '99999999999']],
    [['--sleep-interval', 'soon']],
    [['--history', '-1']],
    [['--history', 'lots']],
    [['--history', '99999999999']],
  ])('%j is a usage error: one line, exit 2', async (args) => {
    const dir = tempDir();
    const proc = filebus(['--filename', path.join(dir, 'bus'), ...args, 'producer'], bash);
    feed(proc, 'x\n');
    expect(await exitOf(proc)).toBe(2);
    expect(stderrLines(proc)).toEqual([expect.stringMatching(new RegExp(`^filebus: .*${args[0]}.*${args[1]}`))]);
    expect(fs.readdirSync(dir)).toEqual([]);
  });

  test.each([
    [{ FILEBUS_BLOCK_SIZE: '99999999999' }, 'FILEBUS_BLOCK_SIZE'],
    [{ FILEBUS_SLEEP_INTERVAL: '1e9' }, 'FILEBUS_SLEEP_INTERVAL'],
    [{ FILEBUS_HISTORY: '-5' }, 'FILEBUS_HISTORY'],
  ])('environment %j out of range: one line naming %s, exit 2', async (env, name) => {
    const dir = tempDir();
    const proc = filebus(['--filename', path.join(dir, 'bus'), 'producer'], { ...bash, env });
    feed(proc, 'x\n');
    expect(await exitOf(proc)).toBe(2);
    expect(stderrLines(proc)).toEqual([expect.stringContaining(name)]);
  });

  test.each([
    [['--null', 'producer'], {}],
    [['-0', 'producer'], {}],
    [['producer', '--null'], {}],
    [['producer', '-0'], {}],
    [['producer'], { FILEBUS_NULL: '1' }],
  ])('%j %j is refused: a usage error naming the TypeScript implementation', async (args, env) => {
    const dir = tempDir();
    const proc = filebus(['--filename', path.join(dir, 'bus'), ...args], { ...bash, env });
    feed(proc, 'x\0');
    expect(await exitOf(proc)).toBe(2);
    expect(stderrLines(proc)).toEqual([expect.stringMatching(/^filebus: .*TypeScript/)]);
    expect(fs.readdirSync(dir)).toEqual([]);
  });

  test.each([
    [['--lines', '--back-pressure', 'producer'], {}],
    [['--back-pressure', 'producer', '--lines'], {}],
    [['--back-pressure', 'producer'], { FILEBUS_LINES: '1' }],
    [['--back-pressure', 'producer'], { FILEBUS_HISTORY: '0', FILEBUS_NULL: '0', FILEBUS_LINES: 'yes' }],
  ])('%j %j is accepted', async (args, env) => {
    const bus = path.join(tempDir(), 'bus');
    const producer = filebus(['--filename', bus, ...args], { ...bash, env });
    const consumer = filebus(['--filename', bus, '--back-pressure', 'consumer'], { ...bash, stdin: 'ignore' });
    feed(producer, 'a\nb\n');
    expect(await exitOf(producer)).toBe(0);
    expect(await exitOf(consumer)).toBe(0);
    expect(consumer.stdout().toString()).toBe('a\nb\n');
    expect(producer.stderr()).toBe('');
  });

  test.each([
    [['--history', '10'], {}],
    [['--history=10'], {}],
    [[], { FILEBUS_HISTORY: '100' }],
  ])('multicast %j %j: bash producer and consumer accept the history option and carry the stream', async (flags, env) => {
    const bus = path.join(tempDir(), 'bus');
    const consumer = filebus(['--filename', bus, ...flags, 'consumer'], { ...bash, stdin: 'ignore', env });
    const producer = filebus(['--filename', bus, ...flags, 'producer'], { ...bash, env });
    producer.child.stdin!.write('warm-up\n');
    await consumer.waitFor((out) => out.toString() === 'warm-up\n');
    feed(producer, 'after\n');
    expect(await exitOf(producer)).toBe(0);
    await consumer.waitFor((out) => out.toString() === 'warm-up\nafter\n');
    expect(producer.stderr() + consumer.stderr()).toBe('');
  });

  test('--history with --back-pressure is a usage error, as in the TypeScript implementation', async () => {
    const dir = tempDir();
    const proc = filebus(['--filename', path.join(dir, 'bus'), '--history', '5', '--back-pressure', 'producer'], bash);
    feed(proc, 'x\n');
    expect(await exitOf(proc)).toBe(2);
    expect(stderrLines(proc)).toEqual([expect.stringMatching(/^filebus: --history is for multicast/)]);
  });

  test('consumer --history under -v: a note that the bash consumer reads F alone, and it goes on', async () => {
    const bus = path.join(tempDir(), 'bus');
    const proc = filebus(['--filename', bus, '--history', '5', '-v', 'consumer'], { ...bash, stdin: 'ignore' });
    await until(() => /--history 5: the bash consumer does not read the history/.test(proc.stderr()), 10_000, 'the note');
    await sleep(200);
    expect(proc.child.exitCode).toBe(null);
    expect(proc.stderr()).not.toMatch(/unknown|error/);
  });

  test('--help describes --lines, --null and --history', async () => {
    const proc = filebus(['--help'], { ...bash, stdin: 'ignore' });
    expect(await exitOf(proc)).toBe(0);
    const help = proc.stdout().toString();
    for (const flag of ['--lines', '--null', '--history']) expect(help).toContain(flag);
  });
});
