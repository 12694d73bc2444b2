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
  const exited = new Promise<number>((resolve) => {
    child.on('close', (code, signal) => {
      for (const waiter of waiters) waiter();
      resolve(code ?? 128 + (signal ? signalNumbers[signal] ?? 0 : 0));
    });
  });
  let done = false;
  void exited.then(() => {
    done = true;
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
