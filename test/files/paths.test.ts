/**
 * Bad paths: F a directory, a directory that is not writable, a path
 * through a regular file, and the like: exit 1 and one line naming the
 * file and the cause, from every role.
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { type TestContext, describe, expect, test } from 'vitest';
import { mountOrSkip, unmount, bp, busArgs, cli, exitOf, filebus, hasStackTrace, isRoot, lines, run, tempDir, within } from '../helpers.js';

if (!isRoot) console.warn('paths: not root; tests that need a read-only bind mount are skipped');

describe('5. bad input', () => {
  type Role = 'producer' | 'consumer' | 'bp-producer' | 'bp-consumer';
  interface Case {
    name: string;
    roles: Role[];
    /** Makes the bad situation in `dir`; returns the bus path and the file the message must name. */
    setup(dir: string, cleanups: Array<() => void>, context: TestContext): { bus: string; names: string };
    cause: RegExp;
    /** A reason to skip, when this case cannot be made here. */
    skip?: string;
    /** Run the processes with the permission checks root normally skips. */
    withoutDacOverride?: boolean;
  }
  const all: Role[] = ['producer', 'consumer', 'bp-producer', 'bp-consumer'];
  const writers: Role[] = ['producer', 'bp-producer', 'bp-consumer'];
  const hasSetpriv = fs.existsSync('/usr/bin/setpriv') || fs.existsSync('/bin/setpriv');
  const cases: Case[] = [
    {
      name: '--filename is a directory',
      roles: all,
      setup: (dir) => {
        fs.mkdirSync(path.join(dir, 'bus'));
        return { bus: path.join(dir, 'bus'), names: path.join(dir, 'bus') };
      },
      cause: /directory/,
    },
    {
      name: 'the directory is not writable',
      roles: writers,
      setup: (dir, cleanups, context) => {
        const sub = path.join(dir, 'ro');
        fs.mkdirSync(sub);
        if (isRoot) {
          // Permission bits do not stop root: a read-only bind mount does.
          mountOrSkip(context, ['--bind', '-o', 'ro', sub, sub]);
          cleanups.push(() => unmount(sub));
        } else {
          fs.chmodSync(sub, 0o555);
          cleanups.push(() => fs.chmodSync(sub, 0o755));
        }
        return { bus: path.join(sub, 'bus'), names: sub };
      },
      cause: /read-only|permission denied/,
    },
    {
      name: 'F.lock is a directory',
      roles: writers,
      setup: (dir) => {
        fs.mkdirSync(path.join(dir, 'bus.lock'));
        return { bus: path.join(dir, 'bus'), names: path.join(dir, 'bus.lock') };
      },
      cause: /directory/,
    },
    {
      name: 'F.lock is a FIFO',
      roles: writers,
      setup: (dir) => {
        execFileSync('mkfifo', [path.join(dir, 'bus.lock')]);
        return { bus: path.join(dir, 'bus'), names: path.join(dir, 'bus.lock') };
      },
      cause: /FIFO|regular file/i,
    },
    {
      name: 'F is not readable',
      roles: ['consumer', 'bp-consumer'],
      setup: (dir) => {
        fs.writeFileSync(path.join(dir, 'bus'), 'secret\n', { mode: 0o000 });
        fs.chmodSync(path.join(dir, 'bus'), 0o000);
        return { bus: path.join(dir, 'bus'), names: path.join(dir, 'bus') };
      },
      cause: /permission denied/,
      withoutDacOverride: isRoot,
      skip: isRoot && !hasSetpriv ? 'root reads anything, and setpriv(1) is missing to drop CAP_DAC_OVERRIDE' : undefined,
    },
    {
      name: 'F is a FIFO',
      roles: all,
      setup: (dir) => {
        execFileSync('mkfifo', [path.join(dir, 'bus')]);
        return { bus: path.join(dir, 'bus'), names: path.join(dir, 'bus') };
      },
      cause: /FIFO/,
    },
    {
      name: 'the path runs through a regular file',
      roles: all,
      setup: (dir) => {
        fs.writeFileSync(path.join(dir, 'file'), '');
        return { bus: path.join(dir, 'file', 'bus'), names: path.join(dir, 'file') };
      },
      cause: /not a directory/,
    },
    {
      name: 'the path runs through a regular file, two levels up',
      roles: all,
      setup: (dir) => {
        fs.writeFileSync(path.join(dir, 'file'), '');
        return { bus: path.join(dir, 'file', 'sub', 'bus'), names: path.join(dir, 'file') };
      },
      cause: /not a directory/,
    },
  ];

  for (const c of cases) {
    test.skipIf(c.skip !== undefined)(`${c.name}: exit 1, one line naming the file and the cause${c.skip ? ` (skipped: ${c.skip})` : ''}`, async (context) => {
      const dir = tempDir();
      const cleanups: Array<() => void> = [];
      try {
        const { bus, names } = c.setup(dir, cleanups, context);
        const procs = c.roles.map((role) => {
          const args = [...busArgs(bus, ...(role.startsWith('bp-') ? bp : [])), role.replace('bp-', '')];
          const proc = c.withoutDacOverride
            ? run('setpriv', ['--bounding-set', '-dac_override,-dac_read_search', '--inh-caps', '-dac_override,-dac_read_search', process.execPath, cli, ...args])
            : filebus(args);
          proc.child.stdin!.end('data\n');
          return [role, proc] as const;
        });
        for (const [role, proc] of procs) {
          const status = await within(proc.exited, 8000, `${role} to give up (it hangs)`).catch((error: Error) => {
            proc.child.kill('SIGKILL');
            throw error;
          });
          const err = lines(proc.stderr());
          expect(status, `${role}: ${proc.stderr()}`).toBe(1);
          expect(err, `${role}: ${proc.stderr()}`).toHaveLength(1);
          expect(err[0], role).toMatch(/^filebus: /);
          expect(err[0], role).toContain(names);
          expect(err[0], role).toMatch(c.cause);
          expect(hasStackTrace(proc.stderr()), role).toBe(false);
        }
      } finally {
        for (const cleanup of cleanups.reverse()) cleanup();
      }
    });
  }

  test('a wrong option: exit 2, one line', async () => {
    const proc = filebus(['--filename', path.join(tempDir(), 'bus'), '--sleep-interval', 'never', 'producer'], { stdin: 'ignore' });
    expect(await exitOf(proc)).toBe(2);
    expect(lines(proc.stderr())).toHaveLength(1);
    expect(proc.stderr()).toMatch(/sleep-interval/);
    expect(hasStackTrace(proc.stderr())).toBe(false);
  });
});
