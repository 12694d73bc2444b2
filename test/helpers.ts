/**
 * Test helpers: real processes, real files. Every process and temporary
 * directory a test makes is registered here and cleaned up after each test.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach } from 'vitest';

export const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
export const cli = path.join(root, 'dist/bin/filebus.js');
export const bashCli = path.join(root, 'compat/bash/filebus.bash');

const children = new Set<ChildProcess>();
const dirs = new Set<string>();

afterEach(async () => {
  await Promise.all([...children].map(stop));
  children.clear();
  for (const dir of dirs) fs.rmSync(dir, { recursive: true, force: true });
  dirs.clear();
});

/** A fresh temporary directory, on tmpfs when there is one, removed after the test. */
export function tempDir(base = fs.existsSync('/dev/shm') ? '/dev/shm' : os.tmpdir()): string {
  const dir = fs.mkdtempSync(path.join(base, 'filebus-test-'));
  dirs.add(dir);
  return dir;
}

export interface Proc {
  child: ChildProcess;
  /** Everything written to stdout so far. */
  stdout(): Buffer;
  stderr(): string;
  /** Resolves with exit code (or 128 + signal number) when the process ends. */
  exited: Promise<number>;
  /** Resolves once stdout holds at least `bytes` bytes (rejects if the process exits first). */
  waitForBytes(bytes: number, timeoutMs?: number): Promise<Buffer>;
  /** Resolves once `predicate(stdout)` holds. */
  waitFor(predicate: (out: Buffer) => boolean, timeoutMs?: number): Promise<Buffer>;
}

const signalNumbers: Record<string, number> = { SIGHUP: 1, SIGINT: 2, SIGKILL: 9, SIGPIPE: 13, SIGTERM: 15 };

export type Impl = 'ts' | 'bash';

/** Runs `filebus` (the compiled TypeScript CLI, or the bash one) with `args`. */
export function filebus(args: string[], options: { impl?: Impl; stdin?: 'pipe' | 'ignore' | number; env?: NodeJS.ProcessEnv; stdout?: 'pipe' | number } = {}): Proc {
  const [command, argv] = options.impl === 'bash' ? ['bash', [bashCli, ...args]] : [process.execPath, [cli, ...args]];
  return run(command, argv as string[], options);
}

export function run(command: string, args: string[], options: { stdin?: 'pipe' | 'ignore' | number; env?: NodeJS.ProcessEnv; stdout?: 'pipe' | number } = {}): Proc {
  const child = spawn(command, args, {
    stdio: [options.stdin ?? 'pipe', options.stdout ?? 'pipe', 'pipe'],
    env: { ...withoutFilebusEnv(process.env), ...options.env },
  });
  children.add(child);
  const out: Buffer[] = [];
  let outLength = 0;
  let err = '';
  const waiters = new Set<() => void>();
  child.stdout?.on('data', (data: Buffer) => {
    out.push(data);
    outLength += data.length;
    for (const waiter of waiters) waiter();
  });
  child.stderr?.on('data', (data: Buffer) => {
    err += data.toString();
  });
  // Set before the waiters run on 'close', so that a waitFor in progress sees the exit and rejects at once.
  let done = false;
  const exited = new Promise<number>((resolve) => {
    child.on('close', (code, signal) => {
      done = true;
      for (const waiter of waiters) waiter();
      resolve(code ?? 128 + (signal ? signalNumbers[signal] ?? 0 : 0));
    });
  });
  const stdout = () => (out.length === 1 ? out[0]! : Buffer.concat(out));
  const waitFor = (predicate: (data: Buffer) => boolean, timeoutMs = 20_000) =>
    new Promise<Buffer>((resolve, reject) => {
      const check = () => {
        const data = stdout();
        if (predicate(data)) {
          finish();
          resolve(data);
        } else if (done) {
          finish();
          reject(new Error(`process exited before the expected output; stdout ${data.length} bytes, stderr: ${err}`));
        }
      };
      const timer = setTimeout(() => {
        finish();
        reject(new Error(`timed out after ${timeoutMs} ms waiting for output; stdout ${stdout().length} bytes, stderr: ${err}`));
      }, timeoutMs);
      const finish = () => {
        clearTimeout(timer);
        waiters.delete(check);
      };
      waiters.add(check);
      check();
    });
  return {
    child,
    stdout,
    stderr: () => err,
    exited,
    waitFor,
    waitForBytes: (bytes, timeoutMs) => waitFor((data) => data.length >= bytes, timeoutMs),
  };
}

/** Tests must not inherit a developer's FILEBUS_* settings. */
function withoutFilebusEnv(env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  return Object.fromEntries(Object.entries(env).filter(([key]) => !key.startsWith('FILEBUS_')));
}

/** Sends SIGTERM, then SIGKILL if the process has not gone after 2 s. */
export async function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const closed = once(child, 'close');
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 2000);
  await closed;
  clearTimeout(timer);
}

/** Resolves once `predicate()` is true, checking every few milliseconds. */
export async function until(predicate: () => boolean, timeoutMs = 10_000, what = 'condition'): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

/** Writes `lines` to a process's stdin at `perSecond`, returning each line's send time (ms, performance.now()). */
export async function writeLinesAtRate(stream: NodeJS.WritableStream, lines: string[], perSecond: number): Promise<number[]> {
  const sent: number[] = [];
  const start = performance.now();
  for (const [i, line] of lines.entries()) {
    const due = start + (i * 1000) / perSecond;
    const wait = due - performance.now();
    if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
    sent.push(performance.now());
    stream.write(line);
  }
  return sent;
}

/** Resolves once `file` exists. */
export function waitForFile(file: string, timeoutMs = 10_000): Promise<void> {
  return until(() => fs.existsSync(file), timeoutMs, `${file} to exist`);
}

export function sha256(data: Buffer | string): string {
  return createHash('sha256').update(data).digest('hex');
}

/** CPU time (user + system) a live process has used so far, in seconds, from /proc/<pid>/stat. */
export function cpuSeconds(pid: number): number {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  // Fields after the command name, which is in parentheses and may hold spaces: state is field 3, utime 14, stime 15.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const ticks = Number(fields[11]) + Number(fields[12]);
  return ticks / 100; // CLK_TCK is 100 on Linux
}

/** True when `text` holds a JavaScript stack frame line ("    at fn (file:line:col)"). */
export function hasStackTrace(text: string): boolean {
  return /^\s+at\s/m.test(text);
}

/** Resident memory of a live process in KiB, from /proc/<pid>/status: now (VmRSS) and the peak so far (VmHWM); undefined once it has gone. */
export function memoryKiB(pid: number): { rss: number; peak: number } | undefined {
  let status: string;
  try {
    status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  } catch {
    return undefined;
  }
  const field = (name: string) => Number(new RegExp(`^${name}:\\s*(\\d+)`, 'm').exec(status)?.[1] ?? NaN);
  const rss = field('VmRSS');
  if (Number.isNaN(rss)) return undefined; // a zombie has no memory left
  return { rss, peak: Math.max(rss, field('VmHWM') || 0) };
}

/**
 * Bytes a live process has passed through read(2) and write(2) so far (rchar
 * and wchar in /proc/<pid>/io): shows, without timing guesses, that it took
 * its input from a pipe or is stuck writing to one.
 */
export function ioBytes(pid: number): { read: number; written: number } {
  const io = fs.readFileSync(`/proc/${pid}/io`, 'utf8');
  return { read: Number(/^rchar:\s*(\d+)/m.exec(io)?.[1]), written: Number(/^wchar:\s*(\d+)/m.exec(io)?.[1]) };
}

/** True when another process holds the flock(2) lock on `lockPath` now (asks flock(1) without waiting). */
export async function lockHeld(lockPath: string): Promise<boolean> {
  const probe = run('flock', ['--nonblock', '--conflict-exit-code', '99', lockPath, 'true'], { stdin: 'ignore' });
  const status = await probe.exited;
  if (status !== 0 && status !== 99) throw new Error(`flock ${lockPath} failed (${status}): ${probe.stderr()}`);
  return status === 99;
}

/** What the open file descriptors of a live process point at (readlink of /proc/<pid>/fd/*). */
export function openFiles(pid: number): string[] {
  const dir = `/proc/${pid}/fd`;
  const links: string[] = [];
  for (const fd of fs.readdirSync(dir)) {
    try {
      links.push(fs.readlinkSync(path.join(dir, fd)));
    } catch {} // closed meanwhile
  }
  return links;
}

/** `promise`, or a rejection naming `what` if it has not settled within `ms`. */
export function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

export const isRoot = process.getuid?.() === 0;

/**
 * True while the Node process `pid` sleeps waiting for the bus: its main
 * thread blocked in epoll_wait/epoll_pwait (x86_64: 232/281,
 * /proc/PID/syscall; the event loop) with a timeout other than 0, or in
 * ppoll (271; the command's blocking wait on its inotify descriptor) with a
 * timeout. A Node filebus reads the bus and writes to a pipe with
 * synchronous calls and queues nothing in between, so once a consumer
 * printed a chunk, this says it has also looked at the bus again and is
 * waiting for a hint or its poll: printing alone does not.
 */
export function asleepInEventLoop(pid: number): boolean {
  try {
    const call = fs.readFileSync(`/proc/${pid}/syscall`, 'utf8');
    // epoll: the 4th argument is the timeout; ppoll: the 3rd points to one.
    return /^(232|281) 0x[0-9a-f]+ 0x[0-9a-f]+ 0x[0-9a-f]+ 0x[1-9a-f][0-9a-f]* /.test(call) || /^271 0x[0-9a-f]+ 0x[0-9a-f]+ 0x[1-9a-f][0-9a-f]* /.test(call);
  } catch {
    return false;
  }
}
