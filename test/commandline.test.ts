/**
 * The yargs command line: did-you-mean, options of the wrong command, the
 * new options' ranges, the environment per command, --impl python and
 * bash (exec'd in place), and shell completion.
 */
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, test } from 'vitest';
import { cli, filebus, root, run, tempDir, until } from './helpers.js';

/** Live processes whose command line mentions `text`. */
function processesMentioning(text: string): Array<{ pid: number; args: string }> {
  return fs.readdirSync('/proc').flatMap((entry) => {
    if (!/^\d+$/.test(entry) || Number(entry) === process.pid) return [];
    try {
      const args = fs.readFileSync(`/proc/${entry}/cmdline`, 'utf8').replaceAll('\0', ' ');
      return args.includes(text) ? [{ pid: Number(entry), args }] : [];
    } catch {
      return []; // gone meanwhile
    }
  });
}

function lines(text: string): string[] {
  return text.split('\n').filter((line) => line !== '');
}

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
  // The built module: it loads the yargs bundle from dist/vendor.
  const { parseCommandLine } = (await import(path.join(root, 'dist/src/cli/args.js'))) as typeof import('../src/cli/args.js');
  const saved = process.env;
  // Frozen: any write to it throws. Its FILEBUS_LINES must not leak into the parse either.
  process.env = Object.freeze({ ...saved, FILEBUS_LINES: '1', FILEBUS_BLOCK_SIZE: '7' }) as NodeJS.ProcessEnv;
  try {
    const env = { FILEBUS_FILENAME: '/tmp/bus', FILEBUS_BLOCK_SIZE: '10', FILEBUS_BACK_PRESSURE: 'yes', FILEBUS_REPLAY: 'no', FILEBUS_NULL: '1' };
    const producer = parseCommandLine(['producer'], env);
    expect(producer).toMatchObject({ kind: 'run', command: 'producer', options: { filename: '/tmp/bus', blockSize: 10, backPressure: true, records: 'null' } });
    const consumer = parseCommandLine(['--block-size', '12', 'consumer'], env);
    expect(consumer).toMatchObject({ kind: 'run', command: 'consumer', options: { filename: '/tmp/bus', blockSize: 12, backPressure: true, replay: false } });
    expect(parseCommandLine(['producer'], { FILEBUS_FILENAME: '/tmp/bus' })).toMatchObject({ options: { blockSize: 4096, backPressure: false, records: 'bytes' } });
  } finally {
    process.env = saved;
  }
});
