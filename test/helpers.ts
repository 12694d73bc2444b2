/**
 * What the tests import: the process, file and /proc helpers shared with the
 * benchmark (support/processes.ts), the seeded randomness
 * (support/random.ts), and small helpers only tests use. Nothing is
 * implemented twice; the clean-up after each test is registered in
 * test/setup.ts (vitest's setupFiles).
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import type { TestContext } from 'vitest';
import { type Proc, filebus, lockHeld, sleep, until, within } from './support/processes.js';
import { randomBytes } from './support/random.js';

export * from './support/processes.js';
export * from './support/random.js';

/** The lines of `text`, empty ones left out. */
export const lines = (text: string): string[] => text.split('\n').filter((line) => line !== '');
/** The lines a process wrote to stderr. */
export const stderrLines = (proc: Proc): string[] => lines(proc.stderr());

export const bp = ['--back-pressure'];
/** filebus() options that run the bash implementation. */
export const bash = { impl: 'bash' } as const;
export const busArgs = (bus: string, ...more: string[]): string[] => ['--filename', bus, ...more];

/** The exit status, or a failure naming the process if it has not ended within `ms`. */
export const exitOf = (proc: Proc, ms = 10_000): Promise<number> => within(proc.exited, ms, `${proc.child.spawnargs.slice(1).join(' ')} (pid ${proc.child.pid}) to exit`);

/** Ends `proc`'s stdin with `data`; a process that exits without reading it (a usage error) is no test failure. */
export function feed(proc: Proc, data: string): void {
  proc.child.stdin!.on('error', () => {});
  proc.child.stdin!.end(data);
}

/** A predicate: `file` exists and holds exactly `data`. */
export const fileHolds = (file: string, data: Buffer | string) => (): boolean => {
  try {
    return fs.readFileSync(file).equals(Buffer.from(data));
  } catch {
    return false;
  }
};

/** The exit status a shell gives for SIGINT or SIGTERM. */
export function signalNumber(signal: 'SIGINT' | 'SIGTERM'): number {
  return signal === 'SIGINT' ? 130 : 143;
}

/** Resolves once some process holds the flock(2) lock on `lock`. */
export async function untilLocked(lock: string): Promise<void> {
  const deadline = performance.now() + 10_000;
  while (!(fs.existsSync(lock) && (await lockHeld(lock)))) {
    if (performance.now() > deadline) throw new Error(`nobody took ${lock}`);
    await sleep(10);
  }
}

/** Bigger than any pipe a consumer makes, so writing it to a pipe nobody reads cannot complete. */
export const HUGE_CHUNK = 2 << 20;

/**
 * A pipe whose reading end we hold open and never read: a writer to `fd`
 * blocks once the pipe is full (64 KiB, at most 1 MiB if the writer grows it).
 */
export function stuckPipe(dir: string): { fd: number; close(): void } {
  const fifo = path.join(dir, 'stuck.fifo');
  execFileSync('mkfifo', [fifo]);
  const reader = fs.openSync(fifo, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK);
  const fd = fs.openSync(fifo, fs.constants.O_WRONLY);
  return {
    fd,
    close() {
      fs.closeSync(fd);
      fs.closeSync(reader);
    },
  };
}

/** A FIFO held open for reading and writing by this process: a child reading it never sees end of file. */
export function fifo(dir: string, name = 'input.fifo'): { path: string; fd: number; write(data: string): void; unread(): string } {
  const file = path.join(dir, name);
  execFileSync('mkfifo', [file]);
  const fd = fs.openSync(file, 'r+');
  return {
    path: file,
    fd,
    write: (data) => void fs.writeSync(fd, data),
    /** What is left in the pipe, without blocking. */
    unread: () => drainFifo(file).toString(),
  };
}

/** Everything a FIFO holds now, read without blocking through a reading end of its own (a process may have made the one it shares blocking). */
export function drainFifo(file: string): Buffer {
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
  return Buffer.concat(chunks);
}

/**
 * A back-pressure producer that has published one chunk of HUGE_CHUNK
 * random bytes on `bus` (args: the bus's arguments) and waits for it to be
 * taken: a consumer writing it to a pipe nobody reads cannot finish.
 */
export async function hugeChunkPublished(dir: string, bus: string, args: string[]): Promise<{ data: Buffer; producer: Proc }> {
  const data = randomBytes(HUGE_CHUNK);
  fs.writeFileSync(path.join(dir, 'input'), data);
  const input = fs.openSync(path.join(dir, 'input'), 'r');
  const producer = filebus([...args, '--block-size', String(HUGE_CHUNK), 'producer'], { stdin: input });
  fs.closeSync(input);
  await until(fileHolds(bus, data), 10_000, 'the chunk');
  return { data, producer };
}

/** mount(8) with `args`, or skip the test, saying why, where this machine does not allow it (root without CAP_SYS_ADMIN). */
export function mountOrSkip(context: TestContext, args: string[]): void {
  try {
    execFileSync('mount', args, { stdio: 'pipe' });
  } catch (error) {
    context.skip(`cannot mount here: ${String((error as Error).message).split('\n')[0]}`);
  }
}
/** umount(8), lazily if the mount is busy. */
export function unmount(dir: string): void {
  try {
    execFileSync('umount', [dir], { stdio: 'pipe' });
  } catch {
    execFileSync('umount', ['-l', dir], { stdio: 'pipe' });
  }
}
