/**
 * The yargs command line: usage errors (did-you-mean, options of the wrong
 * command, the options' ranges), the environment per command, option
 * order, --help/--version, and shell completion.
 */
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, test } from 'vitest';
import { cli, filebus, lines, root, run, tempDir, waitForFile } from '../helpers.js';

const { version } = JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8')) as { version: string };


describe('usage errors: exit status 2 and one line on stderr naming the problem', () => {
  const cases: Array<[string, (bus: string) => string[], RegExp, NodeJS.ProcessEnv?]> = [
    ['missing --filename', () => ['consumer'], /--filename|bus file/],
    ['unknown option', (bus) => ['--filename', bus, '--bogus-option', 'consumer'], /bogus-option/],
    ['--block-size 0', (bus) => ['--filename', bus, '--block-size', '0', 'consumer'], /--block-size.*'0'/],
    ['--block-size abc', (bus) => ['--filename', bus, '--block-size', 'abc', 'producer'], /--block-size.*'abc'/],
    ['negative --sleep-interval', (bus) => ['--filename', bus, '--sleep-interval', '-1', 'consumer'], /--sleep-interval.*'-1'/],
    ['non-numeric --sleep-interval', (bus) => ['--filename', bus, '--sleep-interval', 'soon', 'producer'], /--sleep-interval.*'soon'/],
    ['no command', (bus) => ['--filename', bus], /command/],
    ['unknown command', (bus) => ['--filename', bus, 'frobnicate'], /frobnicate/],
    ['--block-size without a value', (bus) => ['--filename', bus, 'consumer', '--block-size'], /--block-size/],
    ['FILEBUS_BLOCK_SIZE=0', (bus) => ['--filename', bus, 'consumer'], /block-size.*'0'/, { FILEBUS_BLOCK_SIZE: '0' }],
    // Out of range: refused in filebus's words, not Node's ("The value of "size" is out of range").
    ['--block-size 99999999999 (producer)', (bus) => ['--filename', bus, '--block-size', '99999999999', 'producer'], /--block-size.*1 GiB.*'99999999999'/],
    ['--block-size 99999999999 (consumer)', (bus) => ['--filename', bus, '--block-size', '99999999999', 'consumer'], /--block-size.*at most/],
    ['--block-size 1 GiB + 1', (bus) => ['--filename', bus, '--block-size', String(2 ** 30 + 1), 'producer'], /--block-size/],
    ['FILEBUS_BLOCK_SIZE=1e12', (bus) => ['--filename', bus, 'producer'], /block-size/, { FILEBUS_BLOCK_SIZE: '1000000000000' }],
    ['--sleep-interval 1e9', (bus) => ['--filename', bus, '--sleep-interval', '1e9', 'consumer'], /--sleep-interval.*at most/],
    ['--sleep-interval Infinity', (bus) => ['--filename', bus, '--sleep-interval', 'Infinity', 'consumer'], /--sleep-interval/],
    ['--producers 0', (bus) => ['--filename', bus, '--back-pressure', 'consumer', '--producers', '0'], /--producers.*'0'/],
    ['--producers 99999999999', (bus) => ['--filename', bus, '--back-pressure', 'consumer', '--producers', '99999999999'], /--producers.*at most/],
    ['--producers on a producer', (bus) => ['--filename', bus, '--back-pressure', 'producer', '--producers', '2'], /--producers/],
    ['--producers without --back-pressure', (bus) => ['--filename', bus, 'consumer', '--producers', '2'], /--producers.*back-pressure/],
    ['--history 99999999999', (bus) => ['--filename', bus, 'producer', '--history', '99999999999'], /--history.*at most/],
    ['FILEBUS_PRODUCERS=-1', (bus) => ['--filename', bus, '--back-pressure', 'consumer'], /producers.*'-1'/, { FILEBUS_PRODUCERS: '-1' }],
  ];
  test.each(cases)('%s', async (_name, args, problem, env) => {
    const dir = tempDir();
    const bus = path.join(dir, 'bus');
    const proc = filebus(args(bus), { stdin: 'ignore', env });
    expect(await proc.exited).toBe(2);
    const err = lines(proc.stderr());
    expect(err, proc.stderr()).toHaveLength(1);
    expect(err[0]).toMatch(/^filebus: /);
    expect(err[0]).toMatch(problem);
    expect(proc.stdout().length).toBe(0);
    // A usage error touches nothing on disk.
    expect(fs.readdirSync(dir)).toEqual([]);
  });
});

describe('--help and --version', () => {
  const globalOptions = ['--filename', '--back-pressure', '--lossless', '--block-size', '--sleep-interval', '--no-file-monitoring'];
  test.each([[['--help']], [['-h']], [['--filename', 'x', '--help']]])('filebus %j lists the commands and every global option', async (args) => {
    const proc = filebus(args, { stdin: 'ignore' });
    expect(await proc.exited).toBe(0);
    const out = proc.stdout().toString();
    expect(out).toMatch(/usage/i);
    expect(out).toMatch(/producer/);
    expect(out).toMatch(/consumer/);
    for (const option of globalOptions) expect(out).toContain(option);
    expect(proc.stderr()).toBe('');
  });

  test.each([
    ['producer', ['--blocking-read']],
    ['consumer', []],
  ] as const)('filebus %s --help describes the command and its options', async (command, commandOptions) => {
    const proc = filebus([command, '--help'], { stdin: 'ignore' });
    expect(await proc.exited).toBe(0);
    const out = proc.stdout().toString();
    expect(out).toMatch(/usage/i);
    expect(out).toContain(command);
    for (const option of commandOptions) expect(out).toContain(option);
    // Either the global options themselves or where to find them.
    expect(out).toMatch(/--filename|filebus --help/);
    expect(proc.stderr()).toBe('');
    // The option may also come after the command's own options.
    const again = filebus(['--filename', 'x', command, '--help'], { stdin: 'ignore' });
    expect(await again.exited).toBe(0);
    expect(again.stdout().toString()).toBe(out);
  });

  test.each([['--version'], ['-V']])('%s prints the package.json version', async (flag) => {
    const proc = filebus([flag], { stdin: 'ignore' });
    expect(await proc.exited).toBe(0);
    const out = proc.stdout().toString();
    expect(out.trim().split(/\s+/).at(-1)).toBe(version);
    expect(lines(out)).toHaveLength(1);
    expect(proc.stderr()).toBe('');
  });
});

describe('environment', () => {
  test('FILEBUS_FILENAME stands in for --filename, for both commands', async () => {
    const bus = path.join(tempDir(), 'bus');
    const env = { FILEBUS_FILENAME: bus };
    const consumer = filebus(['consumer'], { env, stdin: 'ignore' });
    const producer = filebus(['producer'], { env });
    producer.child.stdin!.end('from the environment\n');
    expect(await producer.exited).toBe(0);
    expect(fs.readFileSync(bus, 'utf8')).toBe('from the environment\n');
    expect((await consumer.waitForBytes(21)).toString()).toBe('from the environment\n');
    expect(consumer.stderr()).toBe('');
  });

  test('FILEBUS_* variables that are not options (e.g. FILEBUS_SOAK_BYTES of npm run soak) are no error', async () => {
    const bus = path.join(tempDir(), 'bus');
    const env = { FILEBUS_FILENAME: bus, FILEBUS_SOAK_BYTES: '1024', FILEBUS_SOMETHING_ELSE: 'x' };
    const producer = filebus(['producer'], { env });
    producer.child.stdin!.end('ok\n');
    expect(await producer.exited).toBe(0);
    expect(producer.stderr()).toBe('');
    expect(fs.readFileSync(bus, 'utf8')).toBe('ok\n');
  });

  test('FILEBUS_BACK_PRESSURE and FILEBUS_BLOCK_SIZE are honoured', async () => {
    const bus = path.join(tempDir(), 'bus');
    const env = { FILEBUS_FILENAME: bus, FILEBUS_BACK_PRESSURE: 'true', FILEBUS_BLOCK_SIZE: '10' };
    const producer = filebus(['producer'], { env });
    producer.child.stdin!.end('0123456789abcdefghij');
    // Back pressure: the first 10-byte chunk waits for a consumer.
    await waitForFile(bus);
    expect(fs.readFileSync(bus, 'utf8')).toBe('0123456789');
    const consumer = filebus(['consumer'], { env, stdin: 'ignore' });
    expect(await consumer.exited).toBe(0);
    expect(await producer.exited).toBe(0);
    expect(consumer.stdout().toString()).toBe('0123456789abcdefghij');
  });
});

describe('usage errors: one line naming the problem and what would be right, exit 2', () => {
  const cases: Array<[string, string[], RegExp, NodeJS.ProcessEnv?]> = [
    ['a mistyped command', ['consumr'], /unknown command 'consumr': did you mean consumer\?/],
    ['a mistyped command after options', ['--filename', 'BUS', 'prodcer'], /unknown command 'prodcer': did you mean producer\?/],
    ['a mistyped option', ['--filename', 'BUS', '--blok-size', '10', 'consumer'], /unknown option '--blok-size': did you mean --block-size\?/],
    ['an option of another command', ['--filename', 'BUS', 'consumer', '--lines'], /--lines is an option of producer, not of consumer/],
    ['an extra argument', ['--filename', 'BUS', 'consumer', 'more'], /unexpected argument 'more'/],
    ['--lines with --null', ['--filename', 'BUS', 'producer', '--lines', '--null'], /--lines and --null/],
    ['--history below 0', ['--filename', 'BUS', '--history', '-1', 'consumer'], /--history.*'-1'/],
    ['--history not a number', ['--filename', 'BUS', '--history', 'lots', 'consumer'], /--history.*'lots'/],
    ['--producers 0', ['--filename', 'BUS', '--lossless', 'consumer', '--producers', '0'], /--producers.*'0'/],
    ['FILEBUS_PRODUCERS=x', ['--filename', 'BUS', '--lossless', 'consumer'], /--producers.*'x'/, { FILEBUS_PRODUCERS: 'x' }],
    ['FILEBUS_LINES=maybe', ['--filename', 'BUS', 'producer'], /FILEBUS_LINES.*'maybe'/, { FILEBUS_LINES: 'maybe' }],
    ['an unknown implementation', ['--impl', 'perl', '--filename', 'BUS', 'consumer'], /--impl must be one of typescript, python, bash, got 'perl'/],
    ['no command', ['--filename', 'BUS'], /a command is required/],
  ];
  test.each(cases)('%s', async (_name, args, problem, env) => {
    const dir = tempDir();
    const bus = path.join(dir, 'bus');
    const proc = filebus(
      args.map((arg) => (arg === 'BUS' ? bus : arg)),
      { stdin: 'ignore', env },
    );
    expect(await proc.exited).toBe(2);
    const err = lines(proc.stderr());
    expect(err, proc.stderr()).toHaveLength(1);
    expect(err[0]).toMatch(/^filebus: /);
    expect(err[0]).toMatch(problem);
    expect(err[0]).toMatch(/\(see filebus --help\)$/);
    expect(proc.stdout().length).toBe(0);
    expect(fs.readdirSync(dir)).toEqual([]);
  });
});

test("a command's variable is no error for another command (FILEBUS_LINES set for a consumer)", async () => {
  const bus = path.join(tempDir(), 'bus');
  const env = { FILEBUS_FILENAME: bus, FILEBUS_LINES: '1', FILEBUS_BLOCKING_READ: 'yes', FILEBUS_BLOCK_SIZE: '6' };
  const consumer = filebus(['--lossless', 'consumer'], { stdin: 'ignore', env });
  const producer = filebus(['--lossless', 'producer'], { env });
  // FILEBUS_LINES=1 reached the producer: 6-byte blocks cut at line ends.
  producer.child.stdin!.end('ab\ncdefgh\n');
  expect(await producer.exited).toBe(0);
  expect(await consumer.exited).toBe(0);
  expect(consumer.stdout().toString()).toBe('ab\ncdefgh\n');
  expect(consumer.stderr()).toBe('');
  expect(producer.stderr()).toBe('');
});

test('command options may follow global ones after the command, and globals may follow the command', async () => {
  const bus = path.join(tempDir(), 'bus');
  const producer = filebus(['producer', '--filename', bus, '--lines', '--block-size', '5']);
  producer.child.stdin!.end('abc\ndef\n');
  expect(await producer.exited).toBe(0);
  expect(producer.stderr()).toBe('');
  // Multicast keeps the last chunk: a whole line, not "\ndef\n" cut at 5 bytes.
  expect(fs.readFileSync(bus, 'utf8')).toBe('def\n');
});

describe('--help', () => {
  test('says that python names the default implementation, and lists the commands and new options', async () => {
    const proc = filebus(['--help'], { stdin: 'ignore' });
    expect(await proc.exited).toBe(0);
    const out = proc.stdout().toString();
    expect(out).toMatch(/python/);
    for (const word of ['producer', 'consumer', 'status', 'completion', '--history', '--impl', 'FILEBUS_']) expect(out).toContain(word);
    expect(proc.stderr()).toBe('');
  });

  test.each([
    ['producer', ['--lines', '--null', '-0', '--blocking-read']],
    ['consumer', ['--replay', '--producers']],
    ['status', ['--json']],
  ] as const)('filebus %s --help lists its own options', async (command, options) => {
    const proc = filebus([command, '--help'], { stdin: 'ignore' });
    expect(await proc.exited).toBe(0);
    const out = proc.stdout().toString();
    for (const option of options) expect(out).toContain(option);
  });
});

describe('completion', () => {
  test('filebus completion prints a bash completion script that completes commands and options', async () => {
    const script = filebus(['completion'], { stdin: 'ignore', env: { SHELL: '/bin/bash' } });
    expect(await script.exited).toBe(0);
    const text = script.stdout().toString();
    expect(text).toMatch(/complete .*filebus/);
    const dir = tempDir();
    fs.writeFileSync(path.join(dir, 'completion.bash'), text);
    // `filebus` on PATH, as after `npm install -g`.
    fs.writeFileSync(path.join(dir, 'filebus'), `#!/bin/sh\nexec "${process.execPath}" "${cli}" "$@"\n`, { mode: 0o755 });
    const complete = async (words: string[]) => {
      const proc = run(
        'bash',
        ['-c', 'source "$0"; COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); _filebus_yargs_completions; printf "%s\\n" "${COMPREPLY[@]}"', path.join(dir, 'completion.bash'), ...words],
        { stdin: 'ignore', env: { PATH: `${dir}:${process.env.PATH}` } },
      );
      expect(await proc.exited).toBe(0);
      return lines(proc.stdout().toString()).sort();
    };
    expect(await complete(['filebus', 'con'])).toEqual(['consumer']);
    expect(await complete(['filebus', 'st'])).toEqual(['status']);
    expect(await complete(['filebus', '--blo'])).toEqual(['--block-size']);
    expect(await complete(['filebus', '--filename', 'x', 'producer', '--l'])).toEqual(['--lines', '--lossless']);
    expect(await complete(['filebus', 'consumer', '--re'])).toEqual(['--replay', '--retries']);
  });

  test('from zsh it prints a zsh script', async () => {
    const script = filebus(['completion'], { stdin: 'ignore', env: { SHELL: '/usr/bin/zsh' } });
    expect(await script.exited).toBe(0);
    expect(script.stdout().toString()).toMatch(/compdef/);
  });
});

test('parsing is pure: the FILEBUS_* variables come from the env given, process.env is neither read nor written', async () => {
  // The built module, as the command runs it.
  const { parseCommandLine } = (await import(path.join(root, 'dist/src/cli/args.js'))) as typeof import('../../src/cli/args.js');
  const saved = process.env;
  // Frozen: any write to it throws. Its FILEBUS_LINES must not leak into the parse either.
  process.env = Object.freeze({ ...saved, FILEBUS_LINES: '1', FILEBUS_BLOCK_SIZE: '7' }) as NodeJS.ProcessEnv;
  try {
    const env = { FILEBUS_FILENAME: '/tmp/bus', FILEBUS_BLOCK_SIZE: '10', FILEBUS_BACK_PRESSURE: 'yes', FILEBUS_REPLAY: 'no', FILEBUS_NULL: '1' };
    const producer = parseCommandLine(['producer'], env);
    expect(producer).toMatchObject({ kind: 'run', command: 'producer', options: { filename: '/tmp/bus', blockSize: 10, backPressure: true, records: 'null' } });
    const consumer = parseCommandLine(['--block-size', '12', 'consumer'], env);
    expect(consumer).toMatchObject({ kind: 'run', command: 'consumer', options: { filename: '/tmp/bus', blockSize: 12, backPressure: true } });
    // FILEBUS_REPLAY does not apply to a back-pressure consumer: ignored.
    expect(consumer).not.toHaveProperty('options.replay');
    expect(parseCommandLine(['producer'], { FILEBUS_FILENAME: '/tmp/bus' })).toMatchObject({ options: { blockSize: 4096, backPressure: false, records: 'bytes' } });
  } finally {
    process.env = saved;
  }
});
