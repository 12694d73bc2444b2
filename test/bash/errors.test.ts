/**
 * What the bash implementation says when the system says no (issue
 * "Reliability and security, round 3", item 2): one line naming the file and
 * the cause, exit 1, and nothing already published lost. Real mounts, real
 * permissions (as an unprivileged user: root passes permission bits).
 */
import { execFileSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, test, type TestContext } from 'vitest';
import { type Proc, bashCli, filebus, isRoot, run, stop, tempDir, within } from '../helpers.js';

const bash = { impl: 'bash' } as const;
const exitOf = (proc: Proc, ms = 10_000) => within(proc.exited, ms, `${proc.child.spawnargs.join(' ')} to exit`);
const stderrLines = (proc: Proc) => proc.stderr().split('\n').filter((line) => line !== '');

/** A 64 KiB tmpfs mounted for `body`, unmounted (after its processes are stopped) whatever happens; the test is skipped, saying why, where mounting is not allowed. */
async function withSmallDisk(context: TestContext, body: (mnt: string, procs: Proc[]) => Promise<void>): Promise<void> {
  const mnt = path.join(tempDir(), 'mnt');
  fs.mkdirSync(mnt);
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=64k', 'tmpfs', mnt], { stdio: 'pipe' });
  } catch (error) {
    context.skip(`cannot mount a tmpfs here: ${String((error as Error).message).split('\n')[0]}`);
  }
  const procs: Proc[] = [];
  try {
    await body(mnt, procs);
  } finally {
    await Promise.all(procs.map((proc) => stop(proc.child)));
    try {
      execFileSync('umount', [mnt], { stdio: 'pipe' });
    } catch {
      execFileSync('umount', ['-l', mnt], { stdio: 'pipe' });
    }
  }
}

describe('a full disk', () => {
  test.skipIf(!isRoot)('a bash producer (root only: mounts a tmpfs): one line naming F.__new__ and "no space left on device", exit 1, the chunk before kept', async (context) => {
    await withSmallDisk(context, async (mnt, procs) => {
      const bus = path.join(mnt, 'bus');
      // Lines of 100 bytes in chunks of at most 40,000: two chunks do not fit in 64 KiB.
      const data = Array.from({ length: 1200 }, () => `${crypto.randomBytes(50).toString('hex').slice(0, 99)}\n`).join('');
      const producer = filebus(['--filename', bus, '--block-size', '40000', 'producer'], bash);
      procs.push(producer);
      producer.child.stdin!.on('error', () => {});
      producer.child.stdin!.end(data);
      expect(await exitOf(producer)).toBe(1);
      expect(stderrLines(producer)).toEqual([`filebus: cannot write '${bus}.__new__': no space left on device`]);
      // The first chunk is whole on the bus; the half-written second one is gone.
      expect(fs.readFileSync(bus, 'utf8')).toBe(data.slice(0, 40_000));
      expect(fs.readdirSync(mnt).sort()).toEqual(['bus', 'bus.lock']);
    });
  });
});

describe('a directory the user may not search', () => {
  const hasSetpriv = fs.existsSync('/usr/bin/setpriv') || fs.existsSync('/bin/setpriv');
  const skip = !isRoot ? 'needs root to run the processes as another user (nobody)' : !hasSetpriv ? 'needs setpriv(1) to run as nobody' : undefined;
  test.skipIf(skip !== undefined).each([
    [['consumer']],
    [['--lossless', 'consumer']],
    [['producer']],
    [['--lossless', 'producer']],
  ])(`bash %j as nobody in a mode-000 directory: exit 1, one line naming it and "permission denied"${skip ? ` (skipped: ${skip})` : ''}`, async (args) => {
    const dir = tempDir();
    fs.chmodSync(dir, 0o755);
    const locked = path.join(dir, 'locked');
    fs.mkdirSync(locked, { mode: 0o000 });
    fs.chmodSync(locked, 0o000);
    const proc = run('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', 'bash', bashCli, '--filename', path.join(locked, 'bus'), ...args]);
    proc.child.stdin!.on('error', () => {});
    proc.child.stdin!.end('x\n');
    expect(await exitOf(proc, 8000)).toBe(1);
    const lines = stderrLines(proc);
    expect(lines, proc.stderr()).toHaveLength(1);
    expect(lines[0]).toContain(`'${locked}'`);
    expect(lines[0]).toMatch(/permission denied/);
  });
});

describe('a chunk the user may not read', () => {
  const hasSetpriv = fs.existsSync('/usr/bin/setpriv') || fs.existsSync('/bin/setpriv');
  const skip = !isRoot ? 'needs root to run the processes as another user (nobody)' : !hasSetpriv ? 'needs setpriv(1) to run as nobody' : undefined;
  test.skipIf(skip !== undefined).each([[['consumer']], [['--lossless', 'consumer']]])(
    `bash %j as nobody, F mode 000: exit 1, one line naming F and "permission denied"${skip ? ` (skipped: ${skip})` : ''}`,
    async (args) => {
      const dir = tempDir();
      fs.chmodSync(dir, 0o777);
      const bus = path.join(dir, 'bus');
      fs.writeFileSync(bus, 'secret\n', { mode: 0o000 });
      fs.chmodSync(bus, 0o000);
      const proc = run('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', 'bash', bashCli, '--filename', bus, ...args], { stdin: 'ignore' });
      expect(await exitOf(proc, 8000)).toBe(1);
      expect(stderrLines(proc)).toEqual([`filebus: cannot read '${bus}': permission denied`]);
      expect(proc.stdout().length).toBe(0);
      expect(fs.readFileSync(bus, 'utf8')).toBe('secret\n');
    },
  );
});
