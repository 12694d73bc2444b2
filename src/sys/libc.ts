/**
 * The C library, through koffi: the one place filebus loads it, and every
 * call Node has no API for (flock, poll, inotify's, fcntl's, exec) or only
 * a slow one on the hot path (write, link, unlink, pread, pwrite, statx).
 * Loaded only by the modules that need it, so `filebus --help` never pays
 * for it (README, "Dependencies").
 *
 * One errno convention for every wrapper here: a result >= 0 on success,
 * minus the errno on failure (`-EWOULDBLOCK`, ...), never a thrown Error
 * (the hot loop tests numbers) and never a separate errno() call for the
 * caller to forget. `errnoError` turns one into an Error with `code`, as
 * node:fs throws them.
 */
import fs from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import type Koffi from 'koffi';
import { BusError } from '../errors.js';

type KoffiModule = typeof Koffi;
type Library = ReturnType<KoffiModule['load']>;

/** Shared objects tried in turn: glibc, musl (Alpine), then the generic name. */
const candidates = ['libc.so.6', `libc.musl-${muslArch()}.so.1`, 'libc.so'];

const koffi: KoffiModule = loadKoffi();
const libc: Library = loadLibc();

function loadKoffi(): KoffiModule {
  try {
    return createRequire(import.meta.url)('koffi') as KoffiModule;
  } catch (error) {
    throw libraryError(`cannot load koffi, which filebus calls the C library through (${firstLine(error)})`);
  }
}

function loadLibc(): Library {
  const failures: string[] = [];
  for (const name of candidates) {
    try {
      return koffi.load(name);
    } catch (error) {
      failures.push(`${name}: ${firstLine(error)}`);
    }
  }
  throw libraryError(`cannot load the C library (tried ${failures.join('; ')}); filebus needs Linux with glibc or musl`);
}

function muslArch(): string {
  return ({ x64: 'x86_64', arm64: 'aarch64', arm: 'armhf', ia32: 'i386' } as Record<string, string>)[process.arch] ?? process.arch;
}

function firstLine(error: unknown): string {
  return String((error as Error)?.message ?? error).split('\n')[0]!;
}

function libraryError(message: string): BusError {
  return new BusError(message, 'libc', { code: 'ELIBACC' });
}

/**
 * Declares one function of the C library; a C library without it (not
 * Linux) is one line, not a stack trace.
 */
export function cfunc(...signature: [definition: string] | [name: string, result: unknown, parameters: unknown[]]): ReturnType<Library['func']> {
  try {
    return (libc.func as (...args: unknown[]) => ReturnType<Library['func']>)(...signature);
  } catch (error) {
    throw libraryError(`the C library has no ${String(signature[0]).replace(/\(.*$/, '')} that filebus can use (${firstLine(error)})`);
  }
}

/** `result`, or minus the errno when the call reported failure with -1. */
export function checked(result: number | bigint): number {
  const n = Number(result);
  return n >= 0 ? n : -koffi.errno();
}

export const { EAGAIN, EINTR, EWOULDBLOCK, ENOENT, EEXIST } = os.constants.errno;
const { O_NONBLOCK } = fs.constants;

// flock(2) operations: not in os.constants.
export const LOCK_SH = 1;
export const LOCK_EX = 2;
export const LOCK_NB = 4;
export const LOCK_UN = 8;

const errnoNames = new Map(Object.entries(os.constants.errno).map(([name, number]) => [number, name]));

/**
 * An Error for a failed call, from its errno (either sign), carrying
 * `code` (`ENOLCK`, ...) like node:fs's errors do, so `busError` names the
 * cause the same way.
 */
export function errnoError(errno: number, call?: string): Error {
  const number = Math.abs(errno);
  const code = errnoNames.get(number) ?? `E${number}`;
  return Object.assign(new Error(call === undefined ? code : `${call} failed: ${code}`), { code, errno: number });
}

// --- Locks -----------------------------------------------------------------

const flockFn = cfunc('int flock(int fd, int operation)');

/** flock(2): 0, or minus the errno. */
export function flock(fd: number, operation: number): number {
  return checked(flockFn(fd, operation));
}

// --- Waiting: poll -----------------------------------------------------------

// Buffers passed as void * are used in place: no copy in or out.
const ppollFn = cfunc('int ppoll(void *fds, unsigned long nfds, void *timeout, void *sigmask)');
const pollAsyncFn = cfunc('int poll(void *fds, unsigned long nfds, int timeout)');

export const POLLIN = 0x001;
export const POLLOUT = 0x004;
export const POLLERR = 0x008;
export const POLLHUP = 0x010;

const timespec = Buffer.alloc(16);

/**
 * ppoll(2) with a timeout in (fractional) milliseconds: ppoll takes a
 * timespec, so a 0.1 ms back-off is 0.1 ms, not poll's whole millisecond.
 * `fds` holds struct pollfd entries (int fd; short events; short revents).
 * Ready descriptors, or minus the errno (-EINTR when a signal came).
 */
export function pollMs(fds: Buffer | null, count: number, timeoutMs: number): number {
  const ns = Math.max(0, Math.round(timeoutMs * 1e6));
  timespec.writeBigInt64LE(BigInt(Math.floor(ns / 1e9)), 0);
  timespec.writeBigInt64LE(BigInt(ns % 1e9), 8);
  return checked(ppollFn(fds, count, timespec, null));
}

/** One struct pollfd asking `events` of `fd`. */
export function pollEntry(fd: number, events: number): Buffer {
  const entry = Buffer.alloc(8);
  entry.writeInt32LE(fd, 0);
  entry.writeInt16LE(events, 4);
  return entry;
}

/** What poll(2) reported for `entry`. */
export function revents(entry: Buffer): number {
  return entry.readInt16LE(6);
}

/**
 * True when `fd` is a pipe or socket whose reading end has closed, found
 * without writing to it (a write would be data, and a zero-byte write to a
 * pipe reports nothing).
 */
export function peerClosed(fd: number): boolean {
  const entry = pollEntry(fd, 0);
  return pollMs(entry, 1, 0) === 1 && (revents(entry) & (POLLERR | POLLHUP)) !== 0;
}

/**
 * Blocks until `fd` can take more bytes (POLLOUT), `timeoutMs` passes, or
 * a signal interrupts; true when writable (or in error: the write that
 * follows reports it).
 */
export function waitWritable(fd: number, timeoutMs: number): boolean {
  return pollMs(pollEntry(fd, POLLOUT), 1, timeoutMs) > 0;
}

/** Blocks the thread for `ms`; false when a signal cut the sleep short. */
export function sleepSync(ms: number): boolean {
  return pollMs(null, 0, ms) !== -EINTR;
}

/**
 * Resolves true once `fd` has data (or end of input) to read, false after
 * `timeoutMs` without. Runs poll(2) on a worker thread. A blocking read(2)
 * there instead would be simpler, but a worker blocked in read(2) holds up
 * process.exit() for as long as the input stays silent, since libuv joins
 * its threads at exit; a poll returns within `timeoutMs`.
 */
export function waitReadable(fd: number, timeoutMs: number): Promise<boolean> {
  const entry = pollEntry(fd, POLLIN);
  return new Promise((resolve, reject) => {
    pollAsyncFn.async(entry, 1, timeoutMs, (error: unknown, ready: number) => {
      if (error) reject(error);
      else resolve(ready > 0);
    });
  });
}

// --- inotify -------------------------------------------------------------------

const inotifyInit1Fn = cfunc('int inotify_init1(int flags)');
const inotifyAddWatchFn = cfunc('int inotify_add_watch(int fd, const char *path, uint32_t mask)');

/** inotify_init1(2): the descriptor, or minus the errno. */
export function inotifyInit(flags: number): number {
  return checked(inotifyInit1Fn(flags));
}

/** inotify_add_watch(2): the watch descriptor, or minus the errno. */
export function inotifyAddWatch(fd: number, file: string, mask: number): number {
  return checked(inotifyAddWatchFn(fd, file, mask));
}

// --- Reads and writes ------------------------------------------------------------

const readFn = cfunc('long read(int fd, void *buf, unsigned long count)');
const writeFn = cfunc('long write(int fd, void *buf, unsigned long count)');
const preadFn = cfunc('long pread(int fd, _Out_ uint8_t *buf, unsigned long count, long offset)');
const pwriteFn = cfunc('long pwrite(int fd, const uint8_t *buf, unsigned long count, long offset)');

/**
 * read(2) into `buffer`: bytes read, or minus the errno. Through koffi,
 * not fs.readSync: an empty non-blocking descriptor (EAGAIN) is a number
 * here, not a thrown Error.
 */
export function read(fd: number, buffer: Buffer, length = buffer.length): number {
  return checked(readFn(fd, buffer, length));
}

/**
 * write(2) of `data` from `offset`: bytes written, or minus the errno.
 * node:fs wraps each call in argument checks and turns a full pipe
 * (EAGAIN) into a thrown Error; in a process that wakes cold for every
 * chunk that layer is measurable (docs/benchmarks.md, issue 12: the same
 * minimal consumer loop cost 220-240 us of CPU per chunk with node:fs and
 * 150 us with koffi calls).
 */
export function write(fd: number, data: Uint8Array, offset = 0): number {
  return checked(writeFn(fd, offset === 0 ? data : data.subarray(offset), data.length - offset));
}

/** pread(2) into `buffer[0, length)` at offset 0: bytes read, or minus the errno. */
export function preadStart(fd: number, buffer: Buffer, length: number): number {
  return checked(preadFn(fd, buffer, length, 0));
}

/** pwrite(2) of `buffer[0, length)` at offset 0: bytes written, or minus the errno. */
export function pwriteStart(fd: number, buffer: Buffer, length: number): number {
  return checked(pwriteFn(fd, buffer, length, 0));
}

// --- Names -------------------------------------------------------------------------
// The history writer's per-publish calls. node:fs wraps each sync call in a
// request and, for lstat, a Stats object with four Dates; at tens of
// thousands of publishes a second that is a large share of the cost.

const linkFn = cfunc('int link(const char *oldpath, const char *newpath)');
const unlinkFn = cfunc('int unlink(const char *pathname)');
const statxFn = cfunc('int statx(int dirfd, const char *pathname, int flags, unsigned int mask, _Out_ uint8_t *buf)');
const AT_FDCWD = -100;
const AT_SYMLINK_NOFOLLOW = 0x100;
const STATX_TYPE = 0x1;
const STATX_INO = 0x100;
/** struct statx is 256 bytes, its layout the same on every architecture. */
const statxBuffer = Buffer.alloc(256);

/** link(2): 0, or minus the errno. */
export function link(from: string, to: string): number {
  return checked(linkFn(from, to));
}

/** unlink(2): 0, or minus the errno. */
export function unlink(file: string): number {
  return checked(unlinkFn(file));
}

/** What lstat(2) says of a path, as far as a check of its identity needs. */
export interface LinkIdentity {
  /** S_IFMT bits of the mode. */
  readonly type: number;
  /** Device and inode, `dev:ino`, to notice a path naming another file now. */
  readonly id: string;
}

/** lstat of `file` through statx(2), type and identity only; minus the errno on failure. */
export function lstatIdentity(file: string): LinkIdentity | number {
  const result = checked(statxFn(AT_FDCWD, file, AT_SYMLINK_NOFOLLOW, STATX_TYPE | STATX_INO, statxBuffer));
  if (result < 0) return result;
  const type = statxBuffer.readUInt16LE(28) & 0o170000;
  const ino = statxBuffer.readBigUInt64LE(32);
  return { type, id: `${statxBuffer.readUInt32LE(136)}:${statxBuffer.readUInt32LE(140)}:${ino}` };
}

/** What a multicast consumer's look at `F` needs, without node:fs's BigIntStats (14 BigInts and an object per call). */
export interface FileIdentity {
  /** S_IFMT bits of the mode. */
  readonly type: number;
  readonly links: number;
  /** `dev:ino:ctimeNs:size`, as core/read.ts's identityOf makes it from a BigIntStats. */
  readonly identity: string;
}

const STATX_BASIC_STATS = 0x7ff;

/**
 * lstat of `file` through statx(2) into a reused buffer: type, links and
 * the chunk identity; minus the errno on failure. The device number is
 * glibc's makedev of the major and minor, as libuv gives it to node:fs.
 */
export function lstatChunk(file: string): FileIdentity | number {
  const result = checked(statxFn(AT_FDCWD, file, AT_SYMLINK_NOFOLLOW, STATX_BASIC_STATS, statxBuffer));
  if (result < 0) return result;
  const b = statxBuffer;
  const type = b.readUInt16LE(28) & 0o170000;
  const links = b.readUInt32LE(16);
  const ino = b.readBigUInt64LE(32);
  const size = b.readBigUInt64LE(40);
  const ctimeNs = b.readBigInt64LE(112) * 1_000_000_000n + BigInt(b.readUInt32LE(120));
  const major = BigInt(b.readUInt32LE(136));
  const minor = BigInt(b.readUInt32LE(140));
  const dev = ((major & 0xfffff000n) << 32n) | ((major & 0xfffn) << 8n) | ((minor & 0xffffff00n) << 12n) | (minor & 0xffn);
  return { type, links, identity: `${dev}:${ino}:${ctimeNs}:${size}` };
}

// --- Descriptors -------------------------------------------------------------------

const fcntlFn = cfunc('int fcntl(int fd, int cmd, ...)');
const F_GETFD = 1;
const F_SETFD = 2;
const F_GETFL = 3;
const F_SETFL = 4;
const F_SETPIPE_SZ = 1031;
const FD_CLOEXEC = 1;

/**
 * Puts `fd` in non-blocking mode, as Node's own stream for a pipe does: a
 * write(2) to a full pipe then returns at once (EAGAIN or a short count)
 * instead of blocking the thread where no signal handler can run.
 */
export function setNonBlocking(fd: number): boolean {
  const flags = fcntlFn(fd, F_GETFL, 'int', 0);
  return flags >= 0 && fcntlFn(fd, F_SETFL, 'int', flags | O_NONBLOCK) >= 0;
}

/** fcntl(F_GETFL): the descriptor's status flags (access mode, O_NONBLOCK, ...), or minus the errno. */
export function statusFlags(fd: number): number {
  return checked(fcntlFn(fd, F_GETFL));
}

/**
 * Asks for a pipe buffer of at least `bytes` (Linux rounds up to a power of
 * two; unprivileged processes are capped by /proc/sys/fs/pipe-max-size, 1 MiB
 * by default). A 64 KiB pipe makes every large chunk cost many wake-ups of
 * the reader. Best effort: returns false when the kernel refuses.
 */
export function growPipe(fd: number, bytes: number): boolean {
  return fcntlFn(fd, F_SETPIPE_SZ, 'int', bytes) >= 0;
}

// --- Signals ---------------------------------------------------------------------

const raiseFn = cfunc('int raise(int sig)');

/** raise(3): the signal to this thread, its handler run before this returns; 0, or minus the errno. */
export function raiseSignal(signal: number): number {
  return checked(raiseFn(signal));
}

// --- Exec --------------------------------------------------------------------------

const execvpFn = cfunc('int execvp(const char *file, const char **argv)');
const signalFn = cfunc('void *signal(int signum, void *handler)');
const sigprocmaskFn = cfunc('int sigprocmask(int how, const uint8_t *set, uint8_t *oldset)');
const SIG_SETMASK = 2;
/** Signals Node ignores for itself: an ignored signal stays ignored across exec. */
const IGNORED_BY_NODE = [os.constants.signals.SIGPIPE, os.constants.signals.SIGXFSZ];

/**
 * Replaces this process with `file` (looked up on PATH), so that the PID
 * the caller holds is that program's: a SIGKILL reaches it, not a parent
 * that would leave it running. Before the exec, fds 0-2 are made what a
 * freshly started program expects: inherited (Node marks them close-on-exec)
 * and blocking; the signals Node ignores get their default action back and
 * none is blocked. Returns only on failure, with minus the errno.
 */
export function execInPlace(file: string, argv: string[]): number {
  for (const fd of [0, 1, 2]) {
    const fdFlags = fcntlFn(fd, F_GETFD);
    if (fdFlags < 0) continue; // not open: the program gets it closed too
    if (fdFlags & FD_CLOEXEC) fcntlFn(fd, F_SETFD, 'int', fdFlags & ~FD_CLOEXEC);
    const flags = fcntlFn(fd, F_GETFL);
    if (flags >= 0 && flags & O_NONBLOCK) fcntlFn(fd, F_SETFL, 'int', flags & ~O_NONBLOCK);
  }
  for (const signal of IGNORED_BY_NODE) signalFn(signal, null);
  sigprocmaskFn(SIG_SETMASK, Buffer.alloc(128), null);
  return checked(execvpFn(file, [...argv, null]));
}

// --- Names relative to a directory descriptor (the history extension) ------------
// A directory opened once with O_DIRECTORY | O_NOFOLLOW stays that directory
// whatever is renamed over its path afterwards; calls relative to it never
// resolve the path again, so a link swapped in cannot redirect them.

const openatFn = cfunc('int openat(int dirfd, const char *pathname, int flags, unsigned int mode)');
const linkatFn = cfunc('int linkat(int olddirfd, const char *oldpath, int newdirfd, const char *newpath, int flags)');
const unlinkatFn = cfunc('int unlinkat(int dirfd, const char *pathname, int flags)');
const mkdiratFn = cfunc('int mkdirat(int dirfd, const char *pathname, unsigned int mode)');
const ftruncateFn = cfunc('int ftruncate(int fd, long length)');
const closeFn = cfunc('int close(int fd)');
const AT_EMPTY_PATH = 0x1000;
/** `dirfd` meaning the working directory: paths then resolve as usual. */
export const AT_CWD = AT_FDCWD;

/** openat(2): the descriptor, or minus the errno. */
export function openat(dirfd: number, name: string, flags: number, mode = 0): number {
  return checked(openatFn(dirfd, name, flags, mode));
}

/** linkat(2) without following a link at `from`: 0, or minus the errno. */
export function linkat(fromDirfd: number, from: string, toDirfd: number, to: string): number {
  return checked(linkatFn(fromDirfd, from, toDirfd, to, 0));
}

/** unlinkat(2) of a file (not a directory): 0, or minus the errno. */
export function unlinkat(dirfd: number, name: string): number {
  return checked(unlinkatFn(dirfd, name, 0));
}

/** mkdirat(2): 0, or minus the errno. */
export function mkdirat(dirfd: number, name: string, mode: number): number {
  return checked(mkdiratFn(dirfd, name, mode));
}

/** ftruncate(2): 0, or minus the errno. */
export function ftruncate(fd: number, length: number): number {
  return checked(ftruncateFn(fd, length));
}

/** close(2): 0, or minus the errno. */
export function closeFd(fd: number): number {
  return checked(closeFn(fd));
}

/**
 * fstatat(2) without following a link, type and identity only (as
 * lstatIdentity); `name` '' is the descriptor itself (fstat). Minus the
 * errno on failure.
 */
export function statIdentityAt(dirfd: number, name: string): LinkIdentity | number {
  const flags = AT_SYMLINK_NOFOLLOW | (name === '' ? AT_EMPTY_PATH : 0);
  const result = checked(statxFn(dirfd, name, flags, STATX_TYPE | STATX_INO, statxBuffer));
  if (result < 0) return result;
  const type = statxBuffer.readUInt16LE(28) & 0o170000;
  const ino = statxBuffer.readBigUInt64LE(32);
  return { type, id: `${statxBuffer.readUInt32LE(136)}:${statxBuffer.readUInt32LE(140)}:${ino}` };
}
