/**
 * Real processes and real files, for the tests and the benchmark alike:
 * starting filebus (or anything else) with the caller's FILEBUS_* settings
 * filtered out, stopping it, temporary directories, waiting with a bound,
 * and what the kernel says about a live process (/proc: memory, CPU time,
 * I/O counters, open files, what it is blocked in).
 *
 * Every process and temporary directory made here is registered, so that
 * one call cleans up after a test (test/support/setup.ts runs it after
 * each) or after the benchmark (on exit and on SIGINT, SIGTERM, SIGHUP).
 * No vitest import here: the benchmark is plain Node.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Readable, Writable } from 'node:stream';
import { fileURLToPath } from 'node:url';

/** The repository: the folder above this file (or above its compiled copy in dist-bench/) that holds package.json. */
export const root = findRoot(path.dirname(fileURLToPath(import.meta.url)));
/** The compiled TypeScript command and the bash one. */
export const cli = path.join(root, 'dist/bin/filebus.js');
export const bashCli = path.join(root, 'compat/bash/filebus.bash');

function findRoot(from: string): string {
  for (let dir = from; ; dir = path.dirname(dir)) {
    if (fs.existsSync(path.join(dir, 'package.json'))) return dir;
    if (path.dirname(dir) === dir) throw new Error(`no package.json above ${from}`);
  }
}

/** A developer's FILEBUS_* settings would change what is tested or measured: children never inherit them. */
export const childEnv: NodeJS.ProcessEnv = Object.fromEntries(Object.entries(process.env).filter(([key]) => !key.startsWith('FILEBUS_')));

export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** `promise`, or a rejection naming `what` if it has not settled within `ms`. */
export function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** Resolves once `predicate()` is true, checking every few milliseconds. */
export async function until(predicate: () => boolean, timeoutMs = 10_000, what = 'condition'): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(5);
  }
}

// ---- processes ---------------------------------------------------------

export interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
  /** Set when the process could not be started at all. */
  error?: Error;
}

/** A started process, its pipes as streams. */
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
  /** What it wrote to stderr (the last `stderrLimit` characters). */
  stderr(): string;
  /** The last lines of stderr, kept short, for error messages. */
  stderrText(): string;
}

export type Stdio = 'pipe' | 'ignore' | number;

export interface StartOptions {
  stdin?: Stdio;
  stdout?: Stdio;
  /** Added to the filtered environment. */
  env?: NodeJS.ProcessEnv;
  /** Its own process group, so that stopping it stops whatever it started too (the benchmark's shell pipelines). */
  group?: boolean;
  /** Keep only the last this many characters of stderr. */
  stderrLimit?: number;
  cwd?: string;
}

const children = new Set<Child>();
const byProcess = new WeakMap<ChildProcess, Child>();
const groups = new WeakSet<Child>();
const tempDirs = new Set<string>();

/** Starts `command`; stderr is always captured. Registered until it ends, for the clean-up. */
export function start(command: string, args: string[], options: StartOptions = {}): Child {
  const proc = spawn(command, args, {
    stdio: [options.stdin ?? 'ignore', options.stdout ?? 'pipe', 'pipe'],
    env: options.env ? { ...childEnv, ...options.env } : childEnv,
    detached: options.group ?? false,
    cwd: options.cwd,
  });
  const limit = options.stderrLimit ?? Infinity;
  let stderr = '';
  proc.stderr?.on('data', (data: Buffer) => {
    stderr += data.toString();
    if (stderr.length > limit) stderr = stderr.slice(-limit);
  });
  // EPIPE when a child dies early is reported through its exit status instead.
  proc.stdin?.on('error', () => {});
  const child: Child = {
    process: proc,
    pid: proc.pid ?? -1,
    stdin: proc.stdin,
    stdout: proc.stdout,
    exit: undefined,
    stderr: () => stderr,
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
  byProcess.set(proc, child);
  if (options.group) groups.add(child);
  return child;
}

const gone = (child: Child) => child.exit !== undefined || child.process.exitCode !== null || child.process.signalCode !== null || child.pid < 0;

function kill(child: Child, signal: NodeJS.Signals): void {
  if (gone(child)) return;
  try {
    if (groups.has(child)) process.kill(-child.pid, signal);
    else child.process.kill(signal);
  } catch {
    try {
      child.process.kill(signal);
    } catch {
      // Already gone.
    }
  }
}

/** Stops a process (and its group, if it leads one): SIGTERM, then SIGKILL after `graceMs`. */
export async function stop(target: Child | ChildProcess | undefined, graceMs = 2000): Promise<Exit | undefined> {
  if (!target) return undefined;
  const child = 'done' in target ? target : byProcess.get(target);
  if (!child) throw new Error('stop: not a process started by test/support/processes.ts');
  kill(child, 'SIGTERM');
  const timer = setTimeout(() => kill(child, 'SIGKILL'), graceMs);
  const exit = await child.done;
  clearTimeout(timer);
  return exit;
}

export const stopAll = (list: Array<Child | undefined>, graceMs?: number): Promise<unknown> => Promise.all(list.map((c) => stop(c, graceMs)));

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

/** An exit as one status, as a shell shows it: the code, or 128 + the signal's number (127: not started). */
export function statusOf(exit: Exit): number {
  if (exit.code !== null) return exit.code;
  if (exit.signal) return 128 + (os.constants.signals[exit.signal] ?? 0);
  return 127;
}

/** A process whose stdout is collected, for tests that look at what it printed. */
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

export interface RunOptions {
  stdin?: Stdio;
  env?: NodeJS.ProcessEnv;
  stdout?: Stdio;
  cwd?: string;
}

/** Starts `command` with stdin a pipe by default, and collects its stdout. */
export function run(command: string, args: string[], options: RunOptions = {}): Proc {
  const started = start(command, args, { stdin: options.stdin ?? 'pipe', stdout: options.stdout ?? 'pipe', env: options.env, cwd: options.cwd });
  const child = started.process;
  const out: Buffer[] = [];
  const waiters = new Set<() => void>();
  child.stdout?.on('data', (data: Buffer) => {
    out.push(data);
    for (const waiter of waiters) waiter();
  });
  // Set before the waiters run on 'close', so that a waitFor in progress sees the exit and rejects at once.
  let done = false;
  child.once('close', () => {
    done = true;
    for (const waiter of waiters) waiter();
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
          reject(new Error(`process exited before the expected output; stdout ${data.length} bytes, stderr: ${started.stderr()}`));
        }
      };
      const timer = setTimeout(() => {
        finish();
        reject(new Error(`timed out after ${timeoutMs} ms waiting for output; stdout ${stdout().length} bytes, stderr: ${started.stderr()}`));
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
    stderr: started.stderr,
    exited: started.done.then(statusOf),
    waitFor,
    waitForBytes: (bytes, timeoutMs) => waitFor((data) => data.length >= bytes, timeoutMs),
  };
}

export type Impl = 'ts' | 'bash';

/** The command line that runs `filebus args`: the compiled TypeScript CLI, or the bash one. */
export function filebusCommand(args: string[], impl: Impl = 'ts'): [string, string[]] {
  return impl === 'bash' ? ['bash', [bashCli, ...args]] : [process.execPath, [cli, ...args]];
}

/** Runs `filebus args` and collects its stdout. */
export function filebus(args: string[], options: RunOptions & { impl?: Impl } = {}): Proc {
  return run(...filebusCommand(args, options.impl), options);
}

// ---- temporary directories and clean-up -------------------------------

/** tmpfs when there is one: fast, and the file system the benchmark's figures are meant for. */
export function defaultBase(): string {
  try {
    fs.accessSync('/dev/shm', fs.constants.W_OK);
    if (fs.statSync('/dev/shm').isDirectory()) return '/dev/shm';
  } catch {
    // No writable /dev/shm.
  }
  return os.tmpdir();
}

/** A fresh temporary directory under `base`, removed by the clean-up. */
export function tempDir(base = defaultBase(), prefix = 'filebus-test-'): string {
  fs.mkdirSync(base, { recursive: true });
  const dir = fs.mkdtempSync(path.join(base, prefix));
  tempDirs.add(dir);
  return dir;
}

function removeTempDirs(): void {
  for (const dir of tempDirs) fs.rmSync(dir, { recursive: true, force: true });
  tempDirs.clear();
}

/** Stops every process still running (SIGTERM, then SIGKILL), then removes every temporary directory: after each test. */
export async function cleanUpGently(): Promise<void> {
  await stopAll([...children]);
  children.clear();
  removeTempDirs();
}

/** Kills every process still running and removes every temporary directory, at once (safe to call twice): on exit. */
export function cleanUp(): void {
  for (const child of children) kill(child, 'SIGKILL');
  children.clear();
  removeTempDirs();
}

// ---- what /proc says about a live process ------------------------------

/** Fields of /proc/PID/stat after the command name (which may hold spaces): [0] is the state, [11] utime, [12] stime. */
function statFields(pid: number): string[] {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  return stat.slice(stat.lastIndexOf(')') + 2).split(' ');
}

/** The command name of a live process (/proc/PID/comm), or '' once it has gone. */
export function commandOf(pid: number): string {
  try {
    return fs.readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
  } catch {
    return '';
  }
}

/** True while the process `pid` exists at all, a zombie not yet reaped included (kill -0). */
export function exists(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** False once `pid` has exited (gone, or a zombie not yet reaped). */
export function running(pid: number): boolean {
  try {
    return statFields(pid)[0] !== 'Z';
  } catch {
    return false;
  }
}

/** Direct children of `pid`, from the ppid field of /proc/N/stat: live ones, and zombies too if asked. */
export function childrenOf(pid: number, { zombies = false } = {}): Array<{ pid: number; comm: string }> {
  const found: Array<{ pid: number; comm: string }> = [];
  for (const entry of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = fs.readFileSync(`/proc/${entry}/stat`, 'utf8');
      const [state, ppid] = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (Number(ppid) === pid && (zombies || state !== 'Z')) found.push({ pid: Number(entry), comm: stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')')) });
    } catch {
      // gone meanwhile
    }
  }
  return found;
}

/** Live processes (this one left out) whose command line mentions `text`. */
export function processesMentioning(text: string): Array<{ pid: number; args: string }> {
  return fs.readdirSync('/proc').flatMap((entry) => {
    if (!/^\d+$/.test(entry) || Number(entry) === process.pid) return [];
    try {
      const args = fs.readFileSync(`/proc/${entry}/cmdline`, 'utf8').replaceAll('\0', ' ');
      return args.includes(text) ? [{ pid: Number(entry), args }] : [];
    } catch {
      return []; // gone meanwhile
    }
  });
}

/** True when `pid` has a live direct child whose command is `name`. */
export const childNamed = (pid: number, name: string): boolean => childrenOf(pid).some(({ comm }) => comm === name);

/**
 * CPU time of a whole process in ns: the scheduler's exact run time of every
 * thread (/proc/PID/task/TID/schedstat), or if that is missing utime + stime
 * from /proc/PID/stat (clock ticks, so 10 ms steps). Undefined once the
 * process is gone.
 */
export function cpuNs(pid: number): number | undefined {
  try {
    let total = 0;
    for (const tid of fs.readdirSync(`/proc/${pid}/task`)) {
      total += Number(fs.readFileSync(`/proc/${pid}/task/${tid}/schedstat`, 'utf8').split(' ')[0]);
    }
    if (Number.isFinite(total)) return total;
  } catch {
    // Fall back to /proc/PID/stat.
  }
  try {
    const fields = statFields(pid);
    return ((Number(fields[11]) + Number(fields[12])) * 1e9) / 100; // CLK_TCK is 100 on Linux
  } catch {
    return undefined;
  }
}

/** CPU time (user + system) a live process has used so far, in seconds; throws once it has gone. */
export function cpuSeconds(pid: number): number {
  const ns = cpuNs(pid);
  if (ns === undefined) throw new Error(`no process ${pid}`);
  return ns / 1e9;
}

/** Resident memory of a live process in KiB, from /proc/PID/status: now (VmRSS) and the peak so far (VmHWM); undefined for a zombie or a gone process. */
export function memoryKiB(pid: number): { rss: number; peak: number } | undefined {
  try {
    const text = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
    const kib = (key: string): number => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(text)?.[1]);
    const rss = kib('VmRSS');
    return Number.isFinite(rss) ? { rss, peak: Math.max(rss, kib('VmHWM') || 0) } : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Bytes a live process has passed through read(2) and write(2) so far (rchar
 * and wchar in /proc/PID/io): shows, without timing guesses, that it took
 * its input from a pipe or is stuck writing to one.
 */
export function ioBytes(pid: number): { read: number; written: number } {
  const io = fs.readFileSync(`/proc/${pid}/io`, 'utf8');
  return { read: Number(/^rchar:\s*(\d+)/m.exec(io)?.[1]), written: Number(/^wchar:\s*(\d+)/m.exec(io)?.[1]) };
}

/** What the open file descriptors of a live process point at (readlink of /proc/PID/fd/*). */
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

/** inotify instances a live process holds. */
export function inotifyFds(pid: number): number {
  return openFiles(pid).filter((link) => link.includes('inotify')).length;
}

/**
 * System-call numbers of the calls the tests look for in /proc/PID/syscall,
 * by process.arch: they differ between architectures (arm64 uses the
 * generic table, which has no poll, select nor epoll_wait at all; its libc
 * calls ppoll, pselect6 and epoll_pwait instead).
 */
const syscallNumbers: Partial<Record<NodeJS.Architecture, Record<number, string>>> = {
  x64: { 0: 'read', 7: 'poll', 23: 'select', 232: 'epoll_wait', 270: 'pselect6', 271: 'ppoll', 281: 'epoll_pwait', 441: 'epoll_pwait2' },
  arm64: { 63: 'read', 22: 'epoll_pwait', 72: 'pselect6', 73: 'ppoll', 441: 'epoll_pwait2' },
};

/** Why /proc/PID/syscall probes cannot run here, or undefined when they can. */
export const syscallProbeUnavailable: string | undefined = syscallNumbers[process.arch]
  ? undefined
  : `no system-call numbers for ${process.arch} in test/support/processes.ts (x64 and arm64 only)`;

/**
 * The system call a live process is blocked in, by name, with its
 * arguments (/proc/PID/syscall); undefined when it runs, is gone, or the
 * call is not one the tests know. Throws on an architecture without a
 * table, so that a test says why at once instead of timing out.
 */
export function blockedIn(pid: number): { call: string; args: bigint[] } | undefined {
  if (syscallProbeUnavailable) throw new Error(syscallProbeUnavailable);
  let text: string;
  try {
    text = fs.readFileSync(`/proc/${pid}/syscall`, 'utf8');
  } catch {
    return undefined;
  }
  const [number, ...args] = text.trim().split(' ');
  const call = syscallNumbers[process.arch]?.[Number(number)];
  if (!call) return undefined;
  return { call, args: args.slice(0, 6).map((arg) => BigInt(arg)) };
}

/**
 * True while the Node process `pid` sleeps waiting for the bus: its main
 * thread blocked in epoll_wait/epoll_pwait (the event loop) with a timeout
 * other than 0, or in ppoll (the command's blocking wait on its inotify
 * descriptor) with a timeout. A Node filebus reads the bus and writes to a
 * pipe with synchronous calls and queues nothing in between, so once a
 * consumer printed a chunk, this says it has also looked at the bus again
 * and is waiting for a hint or its poll: printing alone does not.
 */
export function asleepInEventLoop(pid: number): boolean {
  const blocked = blockedIn(pid);
  if (!blocked) return false;
  const { call, args } = blocked;
  // epoll: the 4th argument is the timeout (-1 or > 0, never 0); ppoll: the 3rd points to one.
  if (call === 'epoll_wait' || call === 'epoll_pwait') return args[3] !== 0n;
  if (call === 'epoll_pwait2' || call === 'ppoll') return args[call === 'ppoll' ? 2 : 3] !== 0n;
  return false;
}

/** True while `pid` is blocked reading its stdin: read(0, ...), or a select on fd 0 alone. */
export function waitsOnStdin(pid: number): boolean {
  const blocked = blockedIn(pid);
  return (blocked?.call === 'read' && blocked.args[0] === 0n) || (blocked?.call === 'pselect6' && blocked.args[0] === 1n);
}

/** True while `pid` (bash) is in a timed read on a descriptor other than stdin: its wait for the bus (a select over more than fd 0). */
export function waitsOnBus(pid: number): boolean {
  const blocked = blockedIn(pid);
  return blocked?.call === 'pselect6' && blocked.args[0]! >= 2n;
}

// ---- small things ------------------------------------------------------

export function sha256(data: Buffer | string): string {
  return createHash('sha256').update(data).digest('hex');
}

/** True when `text` holds a JavaScript stack frame line ("    at fn (file:line:col)"). */
export function hasStackTrace(text: string): boolean {
  return /^\s+at\s/m.test(text);
}

export const isRoot = process.getuid?.() === 0;

/** True when another process holds the flock(2) lock on `lockPath` now (asks flock(1) without waiting). */
export async function lockHeld(lockPath: string): Promise<boolean> {
  const probe = run('flock', ['--nonblock', '--conflict-exit-code', '99', lockPath, 'true'], { stdin: 'ignore' });
  const status = await probe.exited;
  if (status !== 0 && status !== 99) throw new Error(`flock ${lockPath} failed (${status}): ${probe.stderr()}`);
  return status === 99;
}

/** Resolves once `file` exists. */
export function waitForFile(file: string, timeoutMs = 10_000): Promise<void> {
  return until(() => fs.existsSync(file), timeoutMs, `${file} to exist`);
}

/** Writes `lines` to a process's stdin at `perSecond`, returning each line's send time (ms, performance.now()). */
export async function writeLinesAtRate(stream: NodeJS.WritableStream, lines: string[], perSecond: number): Promise<number[]> {
  const sent: number[] = [];
  const begin = performance.now();
  for (const [i, line] of lines.entries()) {
    const due = begin + (i * 1000) / perSecond;
    const wait = due - performance.now();
    if (wait > 0) await sleep(wait);
    sent.push(performance.now());
    stream.write(line);
  }
  return sent;
}
