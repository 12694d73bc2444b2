/**
 * Starting a job cheaply: posix_spawn(3) through koffi. Node's own spawn
 * forks the whole Node process (copying its page tables) and blocks the
 * event loop until the child has exec'd; glibc's posix_spawn runs the child
 * on the parent's memory (a vfork-style clone) up to its exec, which costs
 * a fraction of that. The job's standard input and output are memfds
 * (anonymous in-memory files): the chunk is written into one before the
 * spawn, its output is read back whole after the exit, and no pipe needs
 * the event loop while the job runs. Exits are collected with waitpid(2)
 * on SIGCHLD (and a slow poll, should a signal be coalesced or missed).
 */
import fs from 'node:fs';
import { cfunc, checked, errnoError } from './libc.js';

const posixSpawnFn = cfunc('int posix_spawn(_Out_ int *pid, const char *path, void *actions, void *attr, const char **argv, const char **envp)');
const actionsInitFn = cfunc('int posix_spawn_file_actions_init(void *actions)');
const actionsDup2Fn = cfunc('int posix_spawn_file_actions_adddup2(void *actions, int fd, int newfd)');
const actionsDestroyFn = cfunc('int posix_spawn_file_actions_destroy(void *actions)');
const attrInitFn = cfunc('int posix_spawnattr_init(void *attr)');
const attrSetFlagsFn = cfunc('int posix_spawnattr_setflags(void *attr, short flags)');
const attrSetPgroupFn = cfunc('int posix_spawnattr_setpgroup(void *attr, int pgroup)');
const attrSetSigmaskFn = cfunc('int posix_spawnattr_setsigmask(void *attr, void *sigset)');
const attrSetSigdefaultFn = cfunc('int posix_spawnattr_setsigdefault(void *attr, void *sigset)');
const attrDestroyFn = cfunc('int posix_spawnattr_destroy(void *attr)');
const memfdCreateFn = cfunc('int memfd_create(const char *name, unsigned int flags)');
const waitpidFn = cfunc('int waitpid(int pid, _Out_ int *status, int options)');

const POSIX_SPAWN_SETPGROUP = 0x02;
const POSIX_SPAWN_SETSIGDEF = 0x04;
const POSIX_SPAWN_SETSIGMASK = 0x08;
const MFD_CLOEXEC = 1;
const WNOHANG = 1;
/** Bigger than glibc's posix_spawn_file_actions_t (80 bytes) and posix_spawnattr_t (336). */
const OPAQUE_BYTES = 1024;
/** sigset_t is 1024 bits in glibc. */
const SIGSET_BYTES = 128;

/**
 * Signals a job gets back at their default action: Node ignores SIGPIPE
 * (and a job would inherit that through exec, so `yes | head` would never
 * end), and the others so that a job starts as from a shell.
 */
const DEFAULT_SIGNALS = [1, 2, 3, 13, 14, 15, 17, 20, 21, 22];

/** How a spawned process ended. */
export type Ended = { code: number; signal?: undefined } | { code?: undefined; signal: number };

export interface Spawned {
  readonly pid: number;
  /** Resolves once the process has exited and been reaped, with its stdout and stderr. */
  readonly ended: Promise<{ ended: Ended; stdout: Buffer; stderr: Buffer }>;
}

const running = new Map<number, (ended: Ended) => void>();
/** Spawns under way: the reaper stays on until they are registered. */
let spawning = 0;
let reaping: { timer: NodeJS.Timeout; onChild: () => void } | undefined;

/** An anonymous in-memory file, closed on exec. */
function memfd(name: string): number {
  const fd = checked(memfdCreateFn(name, MFD_CLOEXEC) as number);
  if (fd < 0) throw errnoError(fd, 'memfd_create');
  return fd;
}

function sigset(signals: number[]): Buffer {
  const set = Buffer.alloc(SIGSET_BYTES);
  for (const s of signals) set[(s - 1) >> 3]! |= 1 << ((s - 1) & 7);
  return set;
}

/**
 * Runs `argv[0]` (a path) with `argv`, `env`, `input` on its standard
 * input, in a new process group of its own (its pid is the group's id).
 * Rejects when the process cannot be started. posix_spawn runs on a worker
 * thread: it returns only once the child has exec'd, which on a busy
 * machine waits for the child to be scheduled, and the event loop (other
 * jobs' exits, the bus) must not wait with it.
 */
export async function spawnJob(argv: string[], env: Record<string, string | undefined>, input: Buffer): Promise<Spawned> {
  const fds: number[] = [];
  const actions = Buffer.alloc(OPAQUE_BYTES);
  const attr = Buffer.alloc(OPAQUE_BYTES);
  let prepared = false;
  try {
    const [stdin, stdout, stderr] = [memfd('filebus-job-in'), memfd('filebus-job-out'), memfd('filebus-job-err')];
    fds.push(stdin, stdout, stderr);
    // Written at offset 0 with pwrite: the descriptor's own offset stays at 0 for the job's reads.
    if (input.length > 0) fs.writeSync(stdin, input, 0, input.length, 0);
    actionsInitFn(actions);
    attrInitFn(attr);
    prepared = true;
    actionsDup2Fn(actions, stdin, 0);
    actionsDup2Fn(actions, stdout, 1);
    actionsDup2Fn(actions, stderr, 2);
    attrSetFlagsFn(attr, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK);
    attrSetPgroupFn(attr, 0);
    attrSetSigmaskFn(attr, sigset([]));
    attrSetSigdefaultFn(attr, sigset(DEFAULT_SIGNALS));
    const envp = Object.entries(env).flatMap(([key, value]) => (value === undefined ? [] : [`${key}=${value}`]));
    const pid = [0];
    // Registered before the spawn: a job may end before the call returns here.
    startReaping();
    spawning++;
    let result: number;
    try {
      result = await new Promise<number>((resolve, reject) => {
        posixSpawnFn.async(pid, argv[0]!, actions, attr, [...argv, null], [...envp, null], (error: unknown, value: number) => (error ? reject(error) : resolve(value)));
      });
    } finally {
      spawning--;
    }
    if (result !== 0) {
      reap();
      throw errnoError(result, `posix_spawn ${argv[0]}`);
    }
    fs.closeSync(stdin);
    fds.shift();
    const child = pid[0]!;
    const ended = new Promise<Ended>((resolve) => running.set(child, resolve)).then((how) => {
      const out = { ended: how, stdout: readAll(stdout), stderr: readAll(stderr) };
      fs.closeSync(stdout);
      fs.closeSync(stderr);
      return out;
    });
    // It may have ended already, its SIGCHLD gone by before it was registered.
    reap();
    return { pid: child, ended };
  } catch (error) {
    for (const fd of fds) fs.closeSync(fd);
    throw error;
  } finally {
    if (prepared) {
      actionsDestroyFn(actions);
      attrDestroyFn(attr);
    }
  }
}

function readAll(fd: number): Buffer {
  const size = fs.fstatSync(fd).size;
  const buffer = Buffer.allocUnsafe(size);
  let at = 0;
  while (at < size) {
    const n = fs.readSync(fd, buffer, at, size - at, at);
    if (n === 0) break;
    at += n;
  }
  return buffer.subarray(0, at);
}

/** waitpid on each of our children, without waiting; libuv reaps only its own, so none is taken from it. */
function reap(): void {
  if (running.size === 0 && spawning === 0) return stopReaping();
  const status = [0];
  for (const [pid, resolve] of running) {
    if ((waitpidFn(pid, status, WNOHANG) as number) !== pid) continue;
    running.delete(pid);
    const s = status[0]!;
    resolve((s & 0x7f) === 0 ? { code: (s >> 8) & 0xff } : { signal: s & 0x7f });
  }
}

function startReaping(): void {
  if (reaping) return;
  const onChild = () => reap();
  process.on('SIGCHLD', onChild);
  // SIGCHLDs coalesce, and one may come between a waitpid and the next registration: poll as a safety net.
  const timer = setInterval(reap, 50);
  reaping = { timer, onChild };
}

function stopReaping(): void {
  if (!reaping) return;
  process.off('SIGCHLD', reaping.onChild);
  clearInterval(reaping.timer);
  reaping = undefined;
}
