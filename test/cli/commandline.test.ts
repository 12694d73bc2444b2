/**
 * The command line: usage errors, the environment, --help/--version, and
 * how a consumer ends (signals, a closed stdout).
 */
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, test } from 'vitest';
import { cli, filebus, hasStackTrace, root, run, tempDir, waitForFile } from './helpers.js';

const { version } = JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8')) as { version: string };

function lines(text: string): string[] {
  return text.split('\n').filter((line) => line !== '');
}

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

describe('signals end a process quietly', () => {
  test.each([
    ['SIGINT', 130],
    ['SIGTERM', 143],
  ] as const)('multicast producer waiting for input, %s -> %i', async (signal, status) => {
    const bus = path.join(tempDir(), 'bus');
    const producer = filebus(['--filename', bus, 'producer']);
    producer.child.stdin!.write('published\n');
    await waitForFile(bus);
    producer.child.kill(signal);
    expect(await producer.exited).toBe(status);
    expect(producer.child.signalCode).toBeNull();
    expect(producer.stderr()).toBe('');
    expect(fs.readFileSync(bus, 'utf8')).toBe('published\n');
  });


  test.each([
    ['SIGINT', 130],
    ['SIGTERM', 143],
  ] as const)('multicast consumer, %s -> %i', async (signal, status) => {
    const bus = path.join(tempDir(), 'bus');
    const consumer = filebus(['--filename', bus, 'consumer'], { stdin: 'ignore' });
    const producer = filebus(['--filename', bus, 'producer']);
    producer.child.stdin!.end('warm-up\n');
    // The consumer printed a chunk, so it is up, with its signal handlers in place.
    await consumer.waitForBytes(8);
    consumer.child.kill(signal);
    expect(await consumer.exited).toBe(status);
    // Exited on its own with that status, not killed by the signal.
    expect(consumer.child.signalCode).toBeNull();
    expect(consumer.stderr()).toBe('');
  });

  test.each([
    ['SIGINT', 130],
    ['SIGTERM', 143],
  ] as const)('back-pressure consumer waiting on an empty bus, %s -> %i', async (signal, status) => {
    const bus = path.join(tempDir(), 'bus');
    const consumer = filebus(['--filename', bus, '--back-pressure', 'consumer'], { stdin: 'ignore' });
    // The lock file is opened after the handlers are installed.
    await waitForFile(`${bus}.lock`);
    consumer.child.kill(signal);
    expect(await consumer.exited).toBe(status);
    expect(consumer.child.signalCode).toBeNull();
    expect(consumer.stderr()).toBe('');
  });
});

describe('a consumer whose stdout closes exits within a second, without a stack trace', () => {
  /** Feeds the bus: one line now and then, or a steady stream of lines. */
  function feed(bus: string, streaming: boolean) {
    const producer = filebus(['--filename', bus, 'producer']);
    const stdin = producer.child.stdin!;
    stdin.write('0123456789 first line, longer than what the reader wants\n');
    let n = 0;
    const timer = streaming ? setInterval(() => stdin.write(`line ${n++}\n`), 10) : undefined;
    return { producer, stop: () => clearInterval(timer) };
  }

  test.each([['idle', false], ['while chunks keep coming', true]] as const)(
    'stdout is a pipe to `head -c 10`, %s',
    async (_name, streaming) => {
      const bus = path.join(tempDir(), 'bus');
      // pipefail: the pipeline's status is the consumer's.
      const pipeline = run('bash', ['-c', 'set -o pipefail; "$0" "$1" --filename "$2" consumer | head -c 10', process.execPath, cli, bus], {
        stdin: 'ignore',
      });
      const { stop } = feed(bus, streaming);
      try {
        // head has printed its 10 bytes and exits: from now on the consumer's stdout is a broken pipe.
        await pipeline.waitForBytes(10);
        const closed = performance.now();
        const status = await pipeline.exited;
        const elapsed = performance.now() - closed;
        // Multicast: a consumer that starts late may get a later chunk than the first.
        expect(pipeline.stdout().length).toBe(10);
        expect(elapsed).toBeLessThan(1000);
        // README: 141, quietly.
        expect(status).toBe(141);
        expect(pipeline.stderr()).toBe('');
      } finally {
        stop();
      }
    },
  );

  test.each([['idle', false], ['while chunks keep coming', true]] as const)(
    'the reader of its stdout goes away, %s',
    async (_name, streaming) => {
      const bus = path.join(tempDir(), 'bus');
      const consumer = filebus(['--filename', bus, 'consumer'], { stdin: 'ignore' });
      const { stop } = feed(bus, streaming);
      try {
        await consumer.waitForBytes(10);
        const closed = performance.now();
        consumer.child.stdout!.destroy();
        const status = await consumer.exited;
        const elapsed = performance.now() - closed;
        expect(elapsed).toBeLessThan(1000);
        expect(status).toBe(141);
        expect(consumer.child.signalCode).toBeNull();
        expect(consumer.stderr()).toBe('');
      } finally {
        stop();
      }
    },
  );
});
