/**
 * F replaced by something that is not a regular file (a directory, a FIFO,
 * a symbolic link) under a waiting process, TypeScript and bash: one line
 * naming F and what it is, exit 1, within one --sleep-interval.
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, test } from 'vitest';
import { type Proc, bash, bp, busArgs, commandOf, exitOf, feed, filebus, fileHolds, hasStackTrace, lines, openFiles, run, sleep, stderrLines, tempDir, until, waitsOnBus } from '../helpers.js';


describe('5b. F replaced under a waiting process', () => {
  type Waiter = 'bp-producer' | 'consumer' | 'bp-consumer';
  const kinds = [
    ['a directory', (file: string) => fs.mkdirSync(file), /directory/],
    ['a FIFO', (file: string) => execFileSync('mkfifo', [file]), /FIFO/],
  ] as const;
  const cases = (['bp-producer', 'consumer', 'bp-consumer'] as Waiter[]).flatMap((role) => kinds.map(([kind, make, cause]) => [role, kind, make, cause] as const));
  test.each(cases)('%s notices F turned into %s within one --sleep-interval: one line naming F, exit 1', async (role, _kind, make, cause) => {
    const dir = tempDir();
    const bus = path.join(dir, 'bus');
    // Polling only, once a second: a process that notices must do so on its poll.
    const args = busArgs(bus, '--sleep-interval', '1', '--no-file-monitoring', ...(role === 'consumer' ? [] : bp));
    let proc: Proc;
    if (role === 'bp-producer') {
      proc = filebus([...args, 'producer']);
      proc.child.stdin!.write('first\n');
      await until(fileHolds(bus, 'first\n'), 10_000, 'the first chunk');
      proc.child.stdin!.write('second\n'); // waits for the slot
    } else {
      proc = filebus([...args, role.replace('bp-', '')], { stdin: 'ignore' });
      await until(() => openFiles(proc.child.pid!).length > 0 && (role === 'consumer' || fs.existsSync(`${bus}.lock`)), 10_000, 'the consumer to start');
    }
    await sleep(1200); // waiting, past a first poll
    fs.rmSync(bus, { force: true });
    const replaced = performance.now();
    make(bus);
    expect(await exitOf(proc, 5000)).toBe(1);
    expect(performance.now() - replaced, 'ms from the replacement to the exit').toBeLessThan(1000 + 500);
    const err = lines(proc.stderr());
    expect(err, proc.stderr()).toHaveLength(1);
    expect(err[0]).toMatch(/^filebus: /);
    expect(err[0]).toContain(bus);
    expect(err[0]).toMatch(cause);
    expect(hasStackTrace(proc.stderr())).toBe(false);
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
