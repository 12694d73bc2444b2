/**
 * The bash implementation under signals, odd files at the bus path, planted
 * symlinks and bad option values (issue 9), and its command line beside the
 * TypeScript one (issues 10 and 11). Real processes, FIFOs and files.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, test } from 'vitest';
import { type Proc, cli, filebus, ioBytes, lockHeld, run, sleep, tempDir, until, waitForFile, within, writeLinesAtRate } from './helpers.js';

const bash = { impl: 'bash' } as const;
const exitOf = (proc: Proc, ms = 10_000) => within(proc.exited, ms, `bash ${proc.child.spawnargs.slice(2).join(' ')} to exit`);
/** Ends `proc`'s stdin with `data`; a process that exits without reading it (a usage error) is no test failure. */
function feed(proc: Proc, data: string): void {
  proc.child.stdin!.on('error', () => {});
  proc.child.stdin!.end(data);
}
const stderrLines = (proc: Proc) => proc.stderr().split('\n').filter((line) => line !== '');

/** A FIFO held open for reading and writing by this process: a child reading it never sees end of file. */
function fifo(dir: string, name = 'input.fifo'): { path: string; fd: number; write(data: string): void; unread(): string } {
  const file = path.join(dir, name);
  execFileSync('mkfifo', [file]);
  const fd = fs.openSync(file, 'r+');
  return {
    path: file,
    fd,
    write: (data) => void fs.writeSync(fd, data),
    /** What is left in the pipe, without blocking. */
    unread() {
      const reader = fs.openSync(file, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK);
      const chunks: Buffer[] = [];
      const buffer = Buffer.alloc(65536);
      try {
        for (;;) {
          const n = fs.readSync(reader, buffer);
          if (n === 0) break;
          chunks.push(Buffer.from(buffer.subarray(0, n)));
        }
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== 'EAGAIN') throw error;
      } finally {
        fs.closeSync(reader);
      }
      return Buffer.concat(chunks).toString();
    },
  };
}

/** Direct children of `pid` whose command is `name`, from /proc. */
/**
 * The first SIGTERM leaves the producer at work (publishing what it read,
 * or waiting for the bus to take it): it is still running a moment later.
 * The second ends it with 143 within a second.
 */
async function secondSignalEnds(producer: Proc): Promise<void> {
  producer.child.kill('SIGTERM');
  await sleep(300);
  expect(producer.child.exitCode).toBe(null);
  const second = performance.now();
  producer.child.kill('SIGTERM');
  expect(await exitOf(producer, 5000)).toBe(143);
  expect(performance.now() - second).toBeLessThan(1000);
}

function childNamed(pid: number, name: string): boolean {
  return fs
    .readdirSync('/proc')
    .filter((entry) => /^\d+$/.test(entry))
    .some((entry) => {
      try {
        const stat = fs.readFileSync(`/proc/${entry}/stat`, 'utf8');
        const comm = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'));
        return comm === name && Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]) === pid;
      } catch {
        return false;
      }
    });
}

/** True while `pid` is blocked reading its stdin: read(0, ...) or a select on fd 0 alone (/proc/PID/syscall). */
function waitsOnStdin(pid: number): boolean {
  try {
    return /^(0 0x0|270 0x1) /.test(fs.readFileSync(`/proc/${pid}/syscall`, 'utf8'));
  } catch {
    return false;
  }
}

/** True while `pid` (bash) is in a timed read on a descriptor other than stdin: its wait for the bus (pselect6, /proc/PID/syscall). */
function waitsOnBus(pid: number): boolean {
  try {
    return /^270 0x([2-9a-f]|[1-9a-f][0-9a-f]+) /.test(fs.readFileSync(`/proc/${pid}/syscall`, 'utf8'));
  } catch {
    return false;
  }
}

/** The command name of a live process (/proc/PID/comm), or '' once it has gone. */
function commandOf(pid: number): string {
  try {
    return fs.readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
  } catch {
    return '';
  }
}

const fileHolds = (file: string, data: string) => () => {
  try {
    return fs.readFileSync(file, 'utf8') === data;
  } catch {
    return false;
  }
};

describe('signals: a stopped bash producer publishes what it read (issue 9.1, 9.3)', () => {
  test.each([
    ['SIGTERM', 143],
    ['SIGINT', 130],
    ['SIGHUP', 129],
  ] as const)('back pressure, %s while l1 waits on the bus: published + unread in the pipe = written', async (signal, status) => {
    const dir = tempDir();
    const bus = path.join(dir, 'bus');
    const input = fifo(dir);
    const args = ['--filename', bus, '--back-pressure', '--block-size', '3'];
    const producer = filebus([...args, 'producer'], { ...bash, stdin: input.fd });
    const written = 'l1\nl2\nl3\n';
    input.write(written);
    await until(fileHolds(bus, 'l1\n'), 10_000, 'l1 on the bus');
    producer.child.kill(signal);
    // Still owes what it read: it waits for the bus to take it.
    await sleep(300);
    expect(producer.child.exitCode).toBe(null);
    const consumer = filebus([...args, 'consumer'], { stdin: 'ignore' });
    expect(await exitOf(producer)).toBe(status);
    const unread = input.unread();
    expect(written.endsWith(unread)).toBe(true);
    const published = written.slice(0, written.length - unread.length);
    // bash reads whatever the pipe holds at once: all three lines were taken.
    expect(published).toBe(written);
    await consumer.waitFor((out) => out.toString() === published);
    await until(() => !fs.existsSync(bus), 10_000, 'the last chunk to be taken');
    expect(consumer.stdout().toString()).toBe(published);
    // No end-of-stream chunk: the consumer is still waiting.
    expect(consumer.child.exitCode).toBe(null);
    expect(producer.stderr()).toBe('');
  });

  test('back pressure, records written 0.3 s apart, SIGTERM: what was read is published, the rest stays in the pipe', async () => {
    const dir = tempDir();
    const bus = path.join(dir, 'bus');
    const input = fifo(dir);
    const args = ['--filename', bus, '--back-pressure', '--block-size', '64'];
    const producer = filebus([...args, 'producer'], { ...bash, stdin: input.fd });
    const records = Array.from({ length: 5 }, (_, i) => `record ${i} `.padEnd(63, '.') + '\n');
    for (const record of records) {
      input.write(record);
      await sleep(300);
    }
    await until(fileHolds(bus, records[0]!), 10_000, 'the first record on the bus');
    producer.child.kill('SIGTERM');
    const consumer = filebus([...args, 'consumer'], { stdin: 'ignore' });
    expect(await exitOf(producer)).toBe(143);
    const unread = input.unread();
    const written = records.join('');
    expect(written.endsWith(unread)).toBe(true);
    const published = written.slice(0, written.length - unread.length);
    // Whole records only: what the producer read it published, the rest is intact in the pipe.
    expect(published.length % 64).toBe(0);
    expect(published.length).toBeGreaterThanOrEqual(64);
    await consumer.waitFor((out) => out.toString() === published);
    await until(() => !fs.existsSync(bus), 10_000, 'the last chunk to be taken');
    expect(consumer.stdout().toString()).toBe(published);
  });

  test('back pressure, SIGTERM in the middle of a 1 MiB stream: consumer output + what is left in the pipe = the input, byte for byte', async () => {
    const dir = tempDir();
    const bus = path.join(dir, 'bus');
    const input = fifo(dir);
    const data = Array.from({ length: 1 << 16 }, (_, i) => `record ${String(i).padStart(7, '0')}\n`).join('');
    fs.writeFileSync(path.join(dir, 'data'), data);
    const args = ['--filename', bus, '--back-pressure'];
    const consumer = filebus([...args, 'consumer'], { stdin: 'ignore' });
    const producer = filebus([...args, 'producer'], { ...bash, stdin: input.fd });
    // A writer of its own, so that a full pipe blocks it and not this test.
    const writer = run('dd', [`if=${path.join(dir, 'data')}`, `of=${input.path}`, 'bs=4096', 'status=none'], { stdin: 'ignore' });
    await consumer.waitForBytes(64 * 1024, 30_000);
    producer.child.kill('SIGTERM');
    expect(await exitOf(producer, 60_000)).toBe(143);
    // Drain the pipe until the writer has written everything.
    let unread = '';
    for (;;) {
      const done = writer.child.exitCode !== null;
      unread += input.unread();
      if (done) break;
      await sleep(5);
    }
    expect(await writer.exited).toBe(0);
    await until(() => !fs.existsSync(bus), 30_000, 'the last chunk to be taken');
    const published = data.slice(0, data.length - unread.length);
    expect(data.endsWith(unread)).toBe(true);
    await consumer.waitFor((out) => out.length >= published.length, 10_000);
    expect(consumer.stdout().toString()).toBe(published);
    expect(unread.length).toBeGreaterThan(0);
    expect(producer.stderr()).toBe('');
  }, 120_000);

  test.each([
    ['SIGTERM', 143],
    ['SIGINT', 130],
  ] as const)('multicast, %s: complete lines held back and a trailing partial line are published', async (signal, status) => {
    const dir = tempDir();
    const bus = path.join(dir, 'bus');
    const input = fifo(dir);
    // A long --sleep-interval holds complete lines back; a partial line waits for its end.
    const producer = filebus(['--filename', bus, '--sleep-interval', '30', 'producer'], { ...bash, stdin: input.fd });
    const pid = producer.child.pid!;
    await until(() => waitsOnStdin(pid), 10_000, 'the producer to wait for input');
    const before = ioBytes(pid).read;
    input.write('one\ntwo\npart');
    // All of it is read, and the producer waits for more, before the signal.
    await until(() => ioBytes(pid).read >= before + 12 && waitsOnStdin(pid), 10_000, 'the input to be read');
    producer.child.kill(signal);
    expect(await exitOf(producer)).toBe(status);
    expect(fs.readFileSync(bus, 'utf8')).toBe('one\ntwo\npart');
    expect(producer.stderr()).toBe('');
  });

  test('a second SIGTERM exits at once and says how many bytes were not published', async () => {
    const dir = tempDir();
    const bus = path.join(dir, 'bus');
    const input = fifo(dir);
    const producer = filebus(['--filename', bus, '--back-pressure', '--block-size', '3', 'producer'], { ...bash, stdin: input.fd });
    input.write('l1\nl2\nl3\n');
    await until(fileHolds(bus, 'l1\n'), 10_000, 'l1 on the bus');
    await secondSignalEnds(producer);
    expect(stderrLines(producer)).toEqual([expect.stringMatching(/^filebus: .*\b6 bytes\b.*not published|^filebus: .*not publish.*\b6 bytes\b/)]);
    // The chunk on the bus is untouched, and nothing half-written is left.
    expect(fs.readFileSync(bus, 'utf8')).toBe('l1\n');
    expect(fs.existsSync(`${bus}.__new__`)).toBe(false);
  });

  test('a second SIGTERM exits at once while the handler of the first waits to publish a partial line', async () => {
    const dir = tempDir();
    const bus = path.join(dir, 'bus');
    fs.writeFileSync(bus, 'not taken\n');
    const input = fifo(dir);
    // A long --sleep-interval: the wait for the bus is one long read, which the second signal must cut short.
    const producer = filebus(['--filename', bus, '--back-pressure', '--sleep-interval', '30', 'producer'], { ...bash, stdin: input.fd });
    const pid = producer.child.pid!;
    await until(() => waitsOnStdin(pid), 10_000, 'the producer to wait for input');
    const before = ioBytes(pid).read;
    input.write('part');
    await until(() => ioBytes(pid).read >= before + 4 && waitsOnStdin(pid), 10_000, 'the input to be read');
    await secondSignalEnds(producer);
    expect(stderrLines(producer)).toEqual([expect.stringMatching(/\b4 bytes\b.*not published/)]);
    expect(fs.readFileSync(bus, 'utf8')).toBe('not taken\n');
    expect(fs.existsSync(`${bus}.__new__`)).toBe(false);
  });

  test('a second SIGTERM exits within 1 s while another process holds the lock', async () => {
    const dir = tempDir();
    const bus = path.join(dir, 'bus');
    fs.writeFileSync(`${bus}.lock`, '');
    // One process that holds the lock, so that the clean-up's SIGTERM ends it.
    const lock = run('bash', ['-c', 'exec 9>>"$1" && flock 9 && exec sleep 8', 'bash', `${bus}.lock`], { stdin: 'ignore' });
    for (let i = 0; !(await lockHeld(`${bus}.lock`)); i++) {
      if (i > 500) throw new Error('flock did not take the lock');
      await sleep(10);
    }
    const input = fifo(dir);
    const producer = filebus(['--filename', bus, 'producer'], { ...bash, stdin: input.fd });
    input.write('hello\n');
    await until(() => childNamed(producer.child.pid!, 'flock'), 10_000, 'the producer to wait for the lock');
    await secondSignalEnds(producer);
    expect(stderrLines(producer)).toEqual([expect.stringMatching(/\b6 bytes\b/)]);
    expect(fs.existsSync(bus)).toBe(false);
    // The lock holder is still there: we did not touch it.
    expect(lock.child.exitCode).toBe(null);
  });

  test('a signal during the end-of-stream wait exits 143, and no end marker goes out', async () => {
    const dir = tempDir();
    const bus = path.join(dir, 'bus');
    // A long --sleep-interval: waiting for the bus is one long read, which the signal must cut short.
    const producer = filebus(['--filename', bus, '--back-pressure', '--sleep-interval', '30', 'producer'], bash);
    feed(producer, 'x\n');
    await until(fileHolds(bus, 'x\n'), 10_000, 'x on the bus');
    await sleep(100);
    producer.child.kill('SIGTERM');
    expect(await exitOf(producer, 2000)).toBe(143);
    expect(fs.readFileSync(bus, 'utf8')).toBe('x\n');
    // A consumer takes x and keeps waiting: there is no end marker.
    const consumer = filebus(['--filename', bus, '--back-pressure', 'consumer'], { stdin: 'ignore' });
    await consumer.waitFor((out) => out.toString() === 'x\n');
    await until(() => !fs.existsSync(bus), 10_000, 'x to be taken');
    await sleep(300);
    expect(consumer.child.exitCode).toBe(null);
  });
});

describe('an odd file at the bus path under a waiting bash process (issue 9.5)', () => {
  const odd = {
    directory: (file: string) => fs.mkdirSync(file),
    FIFO: (file: string) => execFileSync('mkfifo', [file]),
    'symbolic link': (file: string) => fs.symlinkSync('/etc/hostname', file),
  };
  const roles = {
    'back-pressure producer waiting for the slot': (bus: string, flags: string[]) => {
      fs.writeFileSync(bus, 'taken by nobody\n');
      const producer = filebus(['--filename', bus, '--back-pressure', ...flags, 'producer'], bash);
      producer.child.stdin!.write('next\n');
      return producer;
    },
    'multicast consumer': (bus: string, flags: string[]) => filebus(['--filename', bus, ...flags, 'consumer'], { ...bash, stdin: 'ignore' }),
    'back-pressure consumer': (bus: string, flags: string[]) =>
      filebus(['--filename', bus, '--back-pressure', ...flags, 'consumer'], { ...bash, stdin: 'ignore' }),
  };
  for (const [role, start] of Object.entries(roles)) {
    for (const [kind, make] of Object.entries(odd)) {
      for (const flags of [[], ['--no-file-monitoring']]) {
        test(`${role}${flags.length ? ' (polling)' : ''}: F becomes a ${kind}: one line naming F and what it is, exit 1`, async () => {
          const dir = tempDir();
          const bus = path.join(dir, 'bus');
          const proc = start(bus, ['--sleep-interval', '1', ...flags]);
          // In its wait loop: a timed read on the notification or sleep pipe, not on stdin.
          await until(() => waitsOnBus(proc.child.pid!), 10_000, 'the process to wait on the bus');
          await sleep(200);
          expect(proc.child.exitCode).toBe(null);
          // Swapped under the lock, as a publish would be: a producer that wakes
          // between the two steps cannot publish into the gap.
          const holder = run('bash', ['-c', 'exec 9>>"$1" && flock 9 && exec sleep 30', 'bash', `${bus}.lock`], { stdin: 'ignore' });
          // It execs sleep once flock has the lock.
          await until(() => commandOf(holder.child.pid!) === 'sleep', 10_000, 'the lock to be held');
          fs.rmSync(bus, { force: true });
          make(bus);
          const replaced = performance.now();
          holder.child.kill('SIGKILL');
          expect(await exitOf(proc, 5000)).toBe(1);
          // Noticed within one --sleep-interval (1 s), with room for a busy machine.
          expect(performance.now() - replaced).toBeLessThan(1800);
          const errors = stderrLines(proc);
          expect(errors).toHaveLength(1);
          expect(errors[0]).toContain(bus);
          expect(errors[0]).toContain(kind === 'FIFO' ? 'FIFO' : kind);
        });
      }
    }
  }

  test('a multicast producer does not publish into a directory at F', async () => {
    const dir = tempDir();
    const bus = path.join(dir, 'bus');
    fs.mkdirSync(bus);
    const producer = filebus(['--filename', bus, 'producer'], bash);
    feed(producer, 'hello\n');
    expect(await exitOf(producer)).toBe(1);
    expect(stderrLines(producer)).toEqual([expect.stringContaining(`'${bus}'`)]);
    expect(fs.readdirSync(bus)).toEqual([]);
  });

  test('F turned into a directory while a multicast producer runs: the next publish fails with one line', async () => {
    const dir = tempDir();
    const bus = path.join(dir, 'bus');
    const producer = filebus(['--filename', bus, 'producer'], bash);
    producer.child.stdin!.write('first\n');
    await until(fileHolds(bus, 'first\n'), 10_000, 'the first chunk');
    fs.rmSync(bus);
    fs.mkdirSync(bus);
    producer.child.stdin!.write('second\n');
    expect(await exitOf(producer)).toBe(1);
    expect(stderrLines(producer)).toEqual([expect.stringMatching(new RegExp(`'${bus}'.*directory`))]);
    expect(fs.readdirSync(bus)).toEqual([]);
  });
});

describe('symlinks planted in the bus directory (issue 9.8)', () => {
  /** A victim file in another directory, and a bus directory beside it. */
  function setup() {
    const elsewhere = tempDir();
    const victim = path.join(elsewhere, 'victim.txt');
    fs.writeFileSync(victim, 'precious\n');
    const dir = tempDir();
    return { elsewhere, victim, dir, bus: path.join(dir, 'bus') };
  }

  test.each([[[]], [['--back-pressure']]])('F.__new__ -> victim: the producer publishes (flags %j), the victim is untouched', async (flags) => {
    const { victim, bus, elsewhere } = setup();
    fs.symlinkSync(victim, `${bus}.__new__`);
    const producer = filebus(['--filename', bus, ...flags, 'producer'], bash);
    feed(producer, 'stream data\n');
    if (flags.length) {
      const consumer = filebus(['--filename', bus, '--back-pressure', 'consumer'], { stdin: 'ignore' });
      expect(await exitOf(consumer)).toBe(0);
      expect(consumer.stdout().toString()).toBe('stream data\n');
    }
    expect(await exitOf(producer)).toBe(0);
    expect(fs.readFileSync(victim, 'utf8')).toBe('precious\n');
    expect(fs.readdirSync(elsewhere)).toEqual(['victim.txt']);
    if (!flags.length) {
      expect(fs.lstatSync(bus).isFile()).toBe(true);
      expect(fs.readFileSync(bus, 'utf8')).toBe('stream data\n');
    }
    expect(fs.existsSync(`${bus}.__new__`)).toBe(false);
  });

  test.each(['producer', 'consumer'])('a dangling F.lock symlink: the %s refuses with one line and creates nothing', async (command) => {
    const { elsewhere, bus } = setup();
    const target = path.join(elsewhere, 'created-by-filebus');
    fs.symlinkSync(target, `${bus}.lock`);
    const proc = filebus(['--filename', bus, '--back-pressure', command], bash);
    feed(proc, 'data\n');
    expect(await exitOf(proc)).toBe(1);
    expect(stderrLines(proc)).toEqual([expect.stringContaining(`'${bus}.lock'`)]);
    expect(stderrLines(proc)[0]).toMatch(/symbolic link/);
    expect(fs.existsSync(target)).toBe(false);
    expect(fs.readdirSync(elsewhere)).toEqual(['victim.txt']);
  });

  test('F.lock -> an existing file: the producer refuses, the file is untouched', async () => {
    const { victim, bus } = setup();
    fs.symlinkSync(victim, `${bus}.lock`);
    const before = fs.statSync(victim);
    const producer = filebus(['--filename', bus, 'producer'], bash);
    feed(producer, 'data\n');
    expect(await exitOf(producer)).toBe(1);
    expect(stderrLines(producer)).toEqual([expect.stringContaining(`'${bus}.lock'`)]);
    expect(fs.readFileSync(victim, 'utf8')).toBe('precious\n');
    expect(fs.statSync(victim).mtimeMs).toBe(before.mtimeMs);
    expect(fs.existsSync(bus)).toBe(false);
  });

  test.each([[[]], [['--back-pressure']]])('F -> victim: a consumer (flags %j) refuses and prints none of it', async (flags) => {
    const { victim, bus } = setup();
    fs.symlinkSync(victim, bus);
    const consumer = filebus(['--filename', bus, ...flags, 'consumer'], { ...bash, stdin: 'ignore' });
    expect(await exitOf(consumer)).toBe(1);
    expect(consumer.stdout().toString()).toBe('');
    expect(stderrLines(consumer)).toEqual([expect.stringMatching(new RegExp(`'${bus}'.*symbolic link`))]);
    expect(fs.readFileSync(victim, 'utf8')).toBe('precious\n');
    expect(fs.lstatSync(bus).isSymbolicLink()).toBe(true);
  });

  test('F -> victim: a multicast producer refuses and leaves both alone', async () => {
    const { victim, bus } = setup();
    fs.symlinkSync(victim, bus);
    const producer = filebus(['--filename', bus, 'producer'], bash);
    feed(producer, 'data\n');
    expect(await exitOf(producer)).toBe(1);
    expect(stderrLines(producer)).toEqual([expect.stringMatching(new RegExp(`'${bus}'.*symbolic link`))]);
    expect(fs.readFileSync(victim, 'utf8')).toBe('precious\n');
    expect(fs.lstatSync(bus).isSymbolicLink()).toBe(true);
  });
});

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

test('20,000 lines through a lossless queue, bash producer, 3 TypeScript consumers: every line whole, exactly once', async () => {
  const dir = tempDir();
  const bus = path.join(dir, 'bus');
  const args = ['--filename', bus, '--lossless'];
  const consumers = [0, 1, 2].map(() => filebus([...args, 'consumer'], { stdin: 'ignore' }));
  const lines = Array.from({ length: 20_000 }, (_, i) => `job-${i + 1}`);
  // Through a pipe, as a user's `producer < jobs.txt` or `generate | producer` does.
  const producer = filebus([...args, '--lines', 'producer'], bash);
  feed(producer, lines.join('\n') + '\n');
  expect(await exitOf(producer, 120_000)).toBe(0);
  // One end-of-stream chunk per consumer: two more producers with empty input.
  for (let i = 0; i < 2; i++) {
    const extra = filebus([...args, 'producer'], { ...bash, stdin: 'ignore' });
    expect(await exitOf(extra, 30_000)).toBe(0);
  }
  expect(await Promise.all(consumers.map((consumer) => exitOf(consumer, 30_000)))).toEqual([0, 0, 0]);
  const received = consumers.flatMap((consumer) => {
    const out = consumer.stdout().toString();
    // Every chunk a consumer took ended at a line end, so its output does too.
    expect(out === '' || out.endsWith('\n')).toBe(true);
    return out.split('\n').filter(Boolean);
  });
  expect(received.length).toBe(lines.length);
  expect(new Set(received).size).toBe(lines.length);
  expect(received.sort()).toEqual([...lines].sort());
}, 180_000);

test('a bash producer with --history keeps the last N chunks, numbered, with F the newest entry', async () => {
  const dir = tempDir();
  const bus = path.join(dir, 'bus');
  const runProducer = async (lines: string[]) => {
    const producer = filebus(['--filename', bus, '--history', '5', '--block-size', '8', 'producer'], bash);
    feed(producer, lines.join(''));
    expect(await exitOf(producer, 60_000)).toBe(0);
    expect(producer.stderr()).toBe('');
  };
  // 'n 10\n' and longer: one line a chunk with --block-size 8.
  await runProducer(Array.from({ length: 40 }, (_, i) => `n ${i + 10}\n`));
  const entries = () => fs.readdirSync(`${bus}.history`).filter((name) => name !== 'head').sort();
  expect(entries()).toEqual(['36', '37', '38', '39', '40'].map((n) => n.padStart(16, '0')));
  expect(fs.readFileSync(`${bus}.history/head`, 'utf8')).toBe(`${'40'.padStart(16, '0')}\n`);
  expect(fs.statSync(bus).ino).toBe(fs.statSync(`${bus}.history/${'40'.padStart(16, '0')}`).ino);
  expect(fs.readFileSync(`${bus}.history/${'36'.padStart(16, '0')}`, 'utf8')).toBe('n 45\n');
  // A second producer goes on with the same sequence.
  await runProducer(['n 90\n', 'n 91\n']);
  expect(entries()).toEqual(['38', '39', '40', '41', '42'].map((n) => n.padStart(16, '0')));
  expect(fs.readFileSync(bus, 'utf8')).toBe('n 91\n');
  expect(fs.readdirSync(dir).sort()).toEqual(['bus', 'bus.history', 'bus.lock']);
});

test('a bash producer with --history picks up after a producer killed between its link and the head, and tidies', async () => {
  const dir = tempDir();
  const bus = path.join(dir, 'bus');
  const name = (n: number) => String(n).padStart(16, '0');
  fs.mkdirSync(`${bus}.history`);
  fs.writeFileSync(`${bus}.history/head`, `${name(7)}\n`);
  // Entries 1..8: 8 was linked by a producer killed before it wrote the head.
  for (let n = 1; n <= 8; n++) fs.writeFileSync(`${bus}.history/${name(n)}`, `old ${n}\n`);
  const producer = filebus(['--filename', bus, '--history', '3', 'producer'], bash);
  feed(producer, 'new\n');
  expect(await exitOf(producer)).toBe(0);
  expect(fs.readdirSync(`${bus}.history`).sort()).toEqual([name(7), name(8), name(9), 'head']);
  expect(fs.readFileSync(`${bus}.history/${name(8)}`, 'utf8')).toBe('old 8\n');
  expect(fs.readFileSync(`${bus}.history/${name(9)}`, 'utf8')).toBe('new\n');
  expect(fs.readFileSync(`${bus}.history/head`, 'utf8')).toBe(`${name(9)}\n`);
});

test.each([
  ['a symlink', (target: string, file: string) => fs.symlinkSync(target, file)],
  ['a regular file', (_target: string, file: string) => fs.writeFileSync(file, '')],
])('F.history as %s: a bash producer with --history refuses with one line', async (_kind, make) => {
  const elsewhere = tempDir();
  const bus = path.join(tempDir(), 'bus');
  make(elsewhere, `${bus}.history`);
  const producer = filebus(['--filename', bus, '--history', '3', 'producer'], bash);
  feed(producer, 'x\n');
  expect(await exitOf(producer)).toBe(1);
  expect(stderrLines(producer)).toEqual([expect.stringContaining(`'${bus}.history'`)]);
  expect(fs.readdirSync(elsewhere)).toEqual([]);
});

// Runs once the TypeScript implementation has the history extension (issue 11); shown as skipped before.
const tsHasHistory = spawnSync(process.execPath, [cli, '--help'], { encoding: 'utf8' }).stdout.includes('--history');
test.skipIf(!tsHasHistory)('a history bus: bash producer and consumer beside TypeScript ones, one sequence', async () => {
  const dir = tempDir();
  const bus = path.join(dir, 'bus');
  const history = ['--filename', bus, '--history', '50'];
  const tsConsumer = filebus([...history, 'consumer'], { stdin: 'ignore' });
  const bashConsumer = filebus([...history, 'consumer'], { ...bash, stdin: 'ignore' });
  const inOrder = (out: string, prefix: string) => {
    const numbers = out
      .split('\n')
      .filter((line) => line.startsWith(prefix))
      .map((line) => Number(line.slice(prefix.length)));
    // Never twice, never out of order, and (multicast) always the latest.
    expect(numbers).toEqual([...numbers].sort((a, b) => a - b));
    expect(new Set(numbers).size).toBe(numbers.length);
    return numbers;
  };

  const tsProducer = filebus([...history, 'producer']);
  tsProducer.child.stdin!.write('warm-up\n');
  await Promise.all([tsConsumer, bashConsumer].map((consumer) => consumer.waitFor((out) => out.includes('warm-up\n'))));
  await writeLinesAtRate(tsProducer.child.stdin!, Array.from({ length: 100 }, (_, i) => `ts ${i}\n`), 50);
  tsProducer.child.stdin!.end();
  expect(await exitOf(tsProducer)).toBe(0);
  // The warm-up and 100 lines, in at most 101 chunks: lines that reach the
  // producer together (a busy machine delays the writer or the producer)
  // share a chunk, as README says. The head says how many it made.
  const tsHead = Number(fs.readFileSync(`${bus}.history/head`, 'utf8'));
  expect(tsHead).toBeGreaterThanOrEqual(2);
  expect(tsHead).toBeLessThanOrEqual(101);
  // The history consumer gets every chunk with history, once, in order.
  await tsConsumer.waitFor((out) => out.toString().includes('ts 99\n'));
  expect(inOrder(tsConsumer.stdout().toString(), 'ts ')).toEqual(Array.from({ length: 100 }, (_, i) => i));
  await bashConsumer.waitFor((out) => out.toString().includes('ts 99\n'));
  inOrder(bashConsumer.stdout().toString(), 'ts ');

  // A bash producer with history, at full speed, one line a chunk: the
  // history consumer still gets every line, once, in order.
  const bashProducer = filebus([...history, '--block-size', '10', 'producer'], bash);
  feed(bashProducer, Array.from({ length: 300 }, (_, i) => `bash ${i}\n`).join(''));
  expect(await exitOf(bashProducer, 60_000)).toBe(0);
  await tsConsumer.waitFor((out) => out.toString().includes('bash 299\n'));
  expect(inOrder(tsConsumer.stdout().toString(), 'bash ')).toEqual(Array.from({ length: 300 }, (_, i) => i));
  await bashConsumer.waitFor((out) => out.toString().includes('bash 299\n'));
  inOrder(bashConsumer.stdout().toString(), 'bash ');
  expect(tsConsumer.stderr() + bashProducer.stderr()).toBe('');
  // One shared window: 50 entries numbered on from the TypeScript producer's, and the head.
  // The bash producer at --block-size 10 holds one line a chunk whatever the
  // timing: a chunk is cut at the last newline within 10 bytes, and two of
  // these lines are at least 14. So exactly 300 more, the last 50 of them kept.
  const names = fs.readdirSync(`${bus}.history`).filter((name) => name !== 'head');
  const entries = names.map(Number).sort((a, b) => a - b);
  expect(entries).toEqual(Array.from({ length: 50 }, (_, i) => tsHead + 251 + i));
  const chunks = entries.map((seq) => fs.readFileSync(path.join(`${bus}.history`, names.find((name) => Number(name) === seq)!), 'utf8'));
  expect(chunks).toEqual(Array.from({ length: 50 }, (_, i) => `bash ${250 + i}\n`));
});

/** Live (not zombie) direct children of `pid`, from the ppid field of /proc/N/stat. */
function childrenOf(pid: number): Array<{ pid: number; comm: string }> {
  const found: Array<{ pid: number; comm: string }> = [];
  for (const entry of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = fs.readFileSync(`/proc/${entry}/stat`, 'utf8');
      const [state, ppid] = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (Number(ppid) === pid && state !== 'Z') found.push({ pid: Number(entry), comm: stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')')) });
    } catch {
      // gone meanwhile
    }
  }
  return found;
}

/** False once `pid` has exited (gone, or a zombie not yet reaped by its new parent). */
function running(pid: number): boolean {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
}

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
