/**
 * Symbolic links planted in the bus directory (F, F.lock, F.__new__), for
 * the TypeScript and the bash implementation: never followed to write,
 * read, lock or remove a file elsewhere; one line, exit 1.
 */
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, test } from 'vitest';
import { type Proc, asleepInEventLoop, bash, bp, busArgs, exitOf, feed, filebus, fileHolds, hasStackTrace, lines, sleep, stderrLines, tempDir, until } from '../helpers.js';


describe('5c. symbolic links planted in the bus directory', () => {
  type Role = 'producer' | 'consumer' | 'bp-producer' | 'bp-consumer';
  const all: Role[] = ['producer', 'consumer', 'bp-producer', 'bp-consumer'];
  /** Runs each role on `bus` with one line of input; each must exit 1 with one line naming `names`. */
  async function refusedBy(roles: Role[], bus: string, names: string): Promise<void> {
    for (const role of roles) {
      const proc = filebus([...busArgs(bus, ...(role.startsWith('bp-') ? bp : [])), role.replace('bp-', '')]);
      proc.child.stdin!.end('data from the bus\n');
      expect(await exitOf(proc, 8000), `${role}: ${proc.stderr()}`).toBe(1);
      const err = lines(proc.stderr());
      expect(err, `${role}: ${proc.stderr()}`).toHaveLength(1);
      expect(err[0], role).toMatch(/^filebus: /);
      expect(err[0], role).toContain(names);
      expect(err[0], role).toMatch(/symbolic link/);
      expect(hasStackTrace(proc.stderr()), role).toBe(false);
    }
  }
  function victim(): { dir: string; file: string } {
    const dir = tempDir();
    const file = path.join(dir, 'victim.txt');
    fs.writeFileSync(file, 'precious\n');
    return { dir, file };
  }

  test('F.__new__ -> a victim file: never written, never renamed into place', async () => {
    const { dir: victimDir, file } = victim();
    const dir = tempDir();
    const bus = path.join(dir, 'bus');
    fs.symlinkSync(file, `${bus}.__new__`);
    await refusedBy(all, bus, `${bus}.__new__`);
    expect(fs.readFileSync(file, 'utf8')).toBe('precious\n');
    expect(fs.lstatSync(`${bus}.__new__`).isSymbolicLink()).toBe(true);
    expect(fs.existsSync(bus)).toBe(false);
    expect(fs.readdirSync(victimDir)).toEqual(['victim.txt']);
  });

  test('F.__new__ -> a victim file planted while a producer runs: refused at the next publish', async () => {
    const { file } = victim();
    const dir = tempDir();
    const bus = path.join(dir, 'bus');
    const producer = filebus([...busArgs(bus), 'producer']);
    producer.child.stdin!.write('one\n');
    await until(fileHolds(bus, 'one\n'), 10_000, 'the first chunk');
    fs.symlinkSync(file, `${bus}.__new__`);
    producer.child.stdin!.write('two\n');
    expect(await exitOf(producer)).toBe(1);
    expect(lines(producer.stderr())).toHaveLength(1);
    expect(producer.stderr()).toContain(`${bus}.__new__`);
    expect(producer.stderr()).toMatch(/symbolic link/);
    expect(fs.readFileSync(file, 'utf8')).toBe('precious\n');
    expect(fs.readFileSync(bus, 'utf8')).toBe('one\n');
    expect(fs.lstatSync(bus).isFile()).toBe(true);
  });

  test('a dangling F.lock -> a file outside the directory: never created', async () => {
    const { dir: victimDir } = victim();
    const target = path.join(victimDir, 'created-by-filebus');
    const dir = tempDir();
    const bus = path.join(dir, 'bus');
    fs.symlinkSync(target, `${bus}.lock`);
    await refusedBy(all, bus, `${bus}.lock`);
    expect(fs.existsSync(target)).toBe(false);
    expect(fs.readdirSync(victimDir)).toEqual(['victim.txt']);
  });

  test('F.lock -> a victim file: never locked through, never truncated', async () => {
    const { file } = victim();
    const dir = tempDir();
    const bus = path.join(dir, 'bus');
    fs.symlinkSync(file, `${bus}.lock`);
    await refusedBy(all, bus, `${bus}.lock`);
    expect(fs.readFileSync(file, 'utf8')).toBe('precious\n');
  });

  test('F -> a victim file: never read out, never removed', async () => {
    const { file } = victim();
    const dir = tempDir();
    const bus = path.join(dir, 'bus');
    fs.symlinkSync(file, bus);
    await refusedBy(all, bus, bus);
    expect(fs.readFileSync(file, 'utf8')).toBe('precious\n');
    expect(fs.lstatSync(bus).isSymbolicLink()).toBe(true);
  });

  test.each([['consumer'], ['bp-consumer'], ['bp-producer']] as const)('F replaced by a link to a victim under a waiting %s: one line, exit 1', async (role) => {
    const { file } = victim();
    const dir = tempDir();
    const bus = path.join(dir, 'bus');
    const args = busArgs(bus, ...(role === 'consumer' ? [] : bp));
    let proc: Proc;
    if (role === 'bp-producer') {
      proc = filebus([...args, 'producer']);
      proc.child.stdin!.write('first\n');
      await until(fileHolds(bus, 'first\n'), 10_000, 'the first chunk');
      proc.child.stdin!.write('second\n');
      await sleep(300);
      // Replaced in one step (a link renamed over F): removing F first would
      // let a producer that wakes within microseconds of the removal publish
      // into the gap before the link exists, which is no fault of it.
      fs.symlinkSync(file, `${bus}.link`);
      fs.renameSync(`${bus}.link`, bus);
    } else {
      proc = filebus([...args, role.replace('bp-', '')], { stdin: 'ignore' });
      await sleep(500);
      fs.symlinkSync(file, bus);
    }
    expect(await exitOf(proc, 5000)).toBe(1);
    expect(lines(proc.stderr()), proc.stderr()).toHaveLength(1);
    expect(proc.stderr()).toContain(bus);
    expect(proc.stderr()).toMatch(/symbolic link/);
    expect(proc.stdout().toString()).toBe('');
    expect(fs.readFileSync(file, 'utf8')).toBe('precious\n');
  });

  // stat(2) would follow these: a dangling link looks like no chunk yet, and
  // a target with two links like a chunk with history whose entry is missing.
  test.each([
    ['a dangling link', (_dir: string) => '/nonexistent/filebus-target'],
    [
      'a link to a file with two links',
      (dir: string) => {
        const target = path.join(dir, 'target.txt');
        fs.writeFileSync(target, 'precious\n');
        fs.linkSync(target, path.join(dir, 'second-name.txt'));
        return target;
      },
    ],
  ])('F replaced by %s while a consumer sleeps: it exits 1 with one line', async (_what, target) => {
    const { dir: victimDir } = victim();
    const dir = tempDir();
    const bus = path.join(dir, 'bus');
    const producer = filebus([...busArgs(bus), 'producer']);
    producer.child.stdin!.end('first\n');
    expect(await exitOf(producer)).toBe(0);
    const consumer = filebus([...busArgs(bus), 'consumer'], { stdin: 'ignore' });
    await until(() => asleepInEventLoop(consumer.child.pid!), 10_000, 'the consumer asleep');
    fs.rmSync(bus);
    fs.symlinkSync(target(victimDir), bus);
    expect(await exitOf(consumer, 5000)).toBe(1);
    expect(lines(consumer.stderr()), consumer.stderr()).toHaveLength(1);
    expect(consumer.stderr()).toContain(bus);
    expect(consumer.stderr()).toMatch(/symbolic link/);
    expect(consumer.stdout().toString()).not.toContain('precious');
  });

  test.each([['a dangling link'], ['a link to a file']])('status on %s at F: exit 1, one line', async (what) => {
    const { file } = victim();
    const dir = tempDir();
    const bus = path.join(dir, 'bus');
    fs.symlinkSync(what === 'a dangling link' ? '/nonexistent/filebus-target' : file, bus);
    for (const args of [[], ['--json']]) {
      const proc = filebus([...busArgs(bus), 'status', ...args], { stdin: 'ignore' });
      expect(await exitOf(proc), proc.stderr()).toBe(1);
      expect(proc.stdout().toString()).toBe('');
      expect(lines(proc.stderr()), proc.stderr()).toHaveLength(1);
      expect(proc.stderr()).toMatch(new RegExp(`^filebus: .*${bus}.*symbolic link`));
    }
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
