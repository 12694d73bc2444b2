/**
 * Every process and temporary directory the benchmark makes, and their
 * cleanup: on success, on failure, on Ctrl-C (SIGINT), SIGTERM and SIGHUP.
 *
 * Each child leads its own process group, so that stopping it also stops
 * whatever it started (a shell pipeline's `cat`s, the C handoff's forked
 * consumer). The bench's own signal handlers kill every group still alive
 * and remove the temporary directories before exiting.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Readable, Writable } from 'node:stream';

export interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
  /** Set when the process could not be started at all. */
  error?: Error;
}

export interface Child {
  process: ChildProcess;
  pid: number;
  /** Null unless started with `stdin: 'pipe'`. */
  stdin: Writable | null;
  /** Null unless started with `stdout: 'pipe'`. */
  stdout: Readable | null;
  /** Resolves once the process exited and its pipes closed. */
  done: Promise<Exit>;
  /** Set once `done` resolved. */
  exit: Exit | undefined;
  /** The last lines it wrote to stderr (kept short), for error messages. */
  stderrText(): string;
}

type Stdio = 'pipe' | 'ignore' | number;

const children = new Set<Child>();
const tempDirs = new Set<string>();

/** FILEBUS_* variables of the caller would change what is measured. */
export const childEnv: NodeJS.ProcessEnv = Object.fromEntries(Object.entries(process.env).filter(([key]) => !key.startsWith('FILEBUS_')));

/** Starts `command` in its own process group; stderr is always captured. */
export function start(command: string, args: string[], options: { stdin?: Stdio; stdout?: Stdio } = {}): Child {
  const proc = spawn(command, args, { stdio: [options.stdin ?? 'ignore', options.stdout ?? 'pipe', 'pipe'], env: childEnv, detached: true });
  let stderr = '';
  proc.stderr?.on('data', (data: Buffer) => {
    stderr = (stderr + data.toString()).slice(-2000);
  });
  // EPIPE when a child dies early is reported through its exit status instead.
  proc.stdin?.on('error', () => {});
  const child: Child = {
    process: proc,
    pid: proc.pid ?? -1,
    stdin: proc.stdin,
    stdout: proc.stdout,
    exit: undefined,
    stderrText: () => stderr.trim().split('\n').slice(-3).join(' | '),
    done: new Promise<Exit>((resolve) => {
      proc.once('error', (error) => resolve({ code: null, signal: null, error }));
      proc.once('close', (code, signal) => resolve({ code, signal }));
    }).then((exit) => {
      child.exit = exit;
      children.delete(child);
      return exit;
    }),
  };
  children.add(child);
  return child;
}

function killGroup(child: Child, signal: NodeJS.Signals): void {
  if (child.exit || child.process.exitCode !== null || child.process.signalCode !== null || child.pid < 0) return;
  try {
    process.kill(-child.pid, signal);
  } catch {
    try {
      child.process.kill(signal);
    } catch {
      // Already gone.
    }
  }
}

/** Stops a child and its group: SIGTERM, then SIGKILL after `graceMs`. */
export async function stop(child: Child | undefined, graceMs = 3000): Promise<Exit | undefined> {
  if (!child) return undefined;
  killGroup(child, 'SIGTERM');
  const timer = setTimeout(() => killGroup(child, 'SIGKILL'), graceMs);
  const exit = await child.done;
  clearTimeout(timer);
  return exit;
}

export const stopAll = (list: Array<Child | undefined>): Promise<unknown> => Promise.all(list.map((c) => stop(c)));

/** How a process ended, in words, with the end of its stderr. */
export function describeExit(child: Child, exit: Exit | undefined = child.exit): string {
  const how = !exit ? 'still running' : exit.error ? `failed to start: ${exit.error.message}` : exit.signal ? `killed by ${exit.signal}` : `exit ${exit.code}`;
  const err = child.stderrText();
  return err ? `${how}; stderr: ${err}` : how;
}

/** Rejects when `child` ends with a failure; never resolves otherwise. For racing against the work it should be doing. */
export function failureOf(child: Child, who: string): Promise<never> {
  const failed = child.done.then((exit) => (exit.code === 0 ? new Promise<never>(() => {}) : Promise.reject(new Error(`${who} ${describeExit(child, exit)}`))));
  failed.catch(() => {}); // it may settle only after the work it guards is over
  return failed;
}

/** A fresh temporary directory under `base`, removed at exit whatever happens. */
export function tempDir(base: string, prefix = 'filebus-bench-'): string {
  fs.mkdirSync(base, { recursive: true });
  const dir = fs.mkdtempSync(path.join(base, prefix));
  tempDirs.add(dir);
  return dir;
}

/** tmpfs when there is one: the file system the figures are meant for. */
export function defaultBase(): string {
  try {
    fs.accessSync('/dev/shm', fs.constants.W_OK);
    if (fs.statSync('/dev/shm').isDirectory()) return '/dev/shm';
  } catch {
    // No writable /dev/shm.
  }
  return os.tmpdir();
}

/** Kills every child still running and removes every temporary directory. Safe to call twice. */
export function cleanUp(): void {
  for (const child of children) killGroup(child, 'SIGKILL');
  children.clear();
  for (const dir of tempDirs) fs.rmSync(dir, { recursive: true, force: true });
  tempDirs.clear();
}

export function cleanUpOnExit(): void {
  const signals: Array<[NodeJS.Signals, number]> = [
    ['SIGINT', 2],
    ['SIGTERM', 15],
    ['SIGHUP', 1],
  ];
  for (const [signal, number] of signals) {
    process.on(signal, () => {
      cleanUp();
      process.stderr.write(`\nbench: interrupted by ${signal}; every child killed, temporary files removed\n`);
      process.exit(128 + number);
    });
  }
  process.on('exit', cleanUp);
}

export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** Rejects with `what: timed out` after `ms`. */
export function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: timed out after ${(ms / 1000).toFixed(0)} s`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}
