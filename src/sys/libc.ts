/**
 * The two libc calls Node has no API for: flock(2) for the bus lock, and
 * poll(2) to notice that the reader of our stdout has gone away while we
 * have nothing to write. Bound through koffi (FFI with prebuilt binaries,
 * see README "Dependencies"); loaded only by the modules that need them, so
 * `filebus --help` never pays for it.
 */
import os from 'node:os';
import koffi from 'koffi';

const libc = koffi.load('libc.so.6');

export const LOCK_SH = 1;
export const LOCK_EX = 2;
export const LOCK_NB = 4;
export const LOCK_UN = 8;
export const EINTR = 4;
export const EWOULDBLOCK = 11;

const flockFn = libc.func('int flock(int fd, int operation)');

/** flock(2); returns 0 or the errno of the failure. */
export function flock(fd: number, operation: number): number {
  return flockFn(fd, operation) === 0 ? 0 : koffi.errno();
}

const PollFd = koffi.struct('filebus_pollfd', { fd: 'int', events: 'short', revents: 'short' });
const pollFn = libc.func('poll', 'int', [koffi.inout(koffi.pointer(PollFd)), 'unsigned long', 'int']);
const POLLERR = 0x008;
const POLLHUP = 0x010;

/**
 * True when `fd` is a pipe or socket whose reading end has closed, found
 * without writing to it (a write would be data, and a zero-byte write to a
 * pipe reports nothing).
 */
export function peerClosed(fd: number): boolean {
  const entry = { fd, events: 0, revents: 0 };
  if (pollFn(entry, 1, 0) !== 1) return false;
  return (entry.revents & (POLLERR | POLLHUP)) !== 0;
}

const fcntlFn = libc.func('int fcntl(int fd, int cmd, ...)');
const F_SETPIPE_SZ = 1031;

/**
 * Puts `fd` in non-blocking mode, as Node's own stream for a pipe does: a
 * write(2) to a full pipe then returns at once (EAGAIN or a short count)
 * instead of blocking the thread where no signal handler can run.
 */
export function setNonBlocking(fd: number): boolean {
  const flags = fcntlFn(fd, F_GETFL, 'int', 0);
  return flags >= 0 && fcntlFn(fd, F_SETFL, 'int', flags | O_NONBLOCK) >= 0;
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

const POLLIN = 0x001;

/**
 * Resolves true once `fd` has data (or end of input) to read, false after
 * `timeoutMs` without. Runs poll(2) on a worker thread. A blocking read(2)
 * there instead would be simpler, but a worker blocked in read(2) holds up
 * process.exit() for as long as the input stays silent, since libuv joins
 * its threads at exit; a poll returns within `timeoutMs`.
 */
export function waitReadable(fd: number, timeoutMs: number): Promise<boolean> {
  const entry = { fd, events: POLLIN, revents: 0 };
  return new Promise((resolve, reject) => {
    pollFn.async(entry, 1, timeoutMs, (error: unknown, ready: number) => {
      if (error) reject(error);
      else resolve(ready > 0);
    });
  });
}

const execvpFn = libc.func('int execvp(const char *file, const char **argv)');
const signalFn = libc.func('void *signal(int signum, void *handler)');
const sigprocmaskFn = libc.func('int sigprocmask(int how, const uint8_t *set, uint8_t *oldset)');
const F_GETFD = 1;
const F_SETFD = 2;
const F_GETFL = 3;
const F_SETFL = 4;
const FD_CLOEXEC = 1;
const O_NONBLOCK = 0o4000;
const SIG_SETMASK = 2;
/** Signals Node ignores for itself (SIGPIPE, SIGXFSZ): an ignored signal stays ignored across exec. */
const IGNORED_BY_NODE = [13, 25];

/**
 * Replaces this process with `file` (looked up on PATH), so that the PID
 * the caller holds is that program's: a SIGKILL reaches it, not a parent
 * that would leave it running. Before the exec, fds 0-2 are made what a
 * freshly started program expects: inherited (Node marks them close-on-exec)
 * and blocking; the signals Node ignores get their default action back and
 * none is blocked. Returns only on failure, with the errno code.
 */
export function execInPlace(file: string, argv: string[]): number {
  for (const fd of [0, 1, 2]) {
    const fdFlags = fcntlFn(fd, F_GETFD);
    if (fdFlags < 0) continue; // not open: the program gets it closed too
    if (fdFlags & FD_CLOEXEC) fcntlFn(fd, F_SETFD, 'int', fdFlags & ~FD_CLOEXEC);
    const statusFlags = fcntlFn(fd, F_GETFL);
    if (statusFlags >= 0 && statusFlags & O_NONBLOCK) fcntlFn(fd, F_SETFL, 'int', statusFlags & ~O_NONBLOCK);
  }
  for (const signal of IGNORED_BY_NODE) signalFn(signal, null);
  sigprocmaskFn(SIG_SETMASK, Buffer.alloc(128), null);
  execvpFn(file, [...argv, null]);
  return koffi.errno();
}

const errnoNames = new Map(Object.entries(os.constants.errno).map(([name, number]) => [number, name]));

/**
 * An Error for a failed libc call, carrying `code` (`ENOLCK`, ...) like
 * node:fs's errors do, so `busError` names the cause the same way.
 */
export function errnoError(number: number, call?: string): Error {
  const code = errnoNames.get(number) ?? `E${number}`;
  return Object.assign(new Error(call === undefined ? code : `${call} failed: ${code}`), { code, errno: number });
}

// The history writer's per-publish calls (src/history.ts). node:fs wraps
// each sync call in a request and, for lstat, a Stats object with four
// Dates; at tens of thousands of publishes a second that is a large share
// of the cost, so these go straight to libc. Each returns -1 and leaves
// koffi.errno() set on failure, as libc does.
const linkFn = libc.func('int link(const char *oldpath, const char *newpath)');
const unlinkFn = libc.func('int unlink(const char *pathname)');
const preadFn = libc.func('long pread(int fd, _Out_ uint8_t *buf, unsigned long count, long offset)');
const pwriteFn = libc.func('long pwrite(int fd, const uint8_t *buf, unsigned long count, long offset)');
const statxFn = libc.func('int statx(int dirfd, const char *pathname, int flags, unsigned int mask, _Out_ uint8_t *buf)');
const AT_FDCWD = -100;
const AT_SYMLINK_NOFOLLOW = 0x100;
const STATX_TYPE = 0x1;
const STATX_INO = 0x100;
/** struct statx is 256 bytes, its layout the same on every architecture. */
const statxBuffer = Buffer.alloc(256);

/** link(2); 0 or the errno. */
export function link(from: string, to: string): number {
  return linkFn(from, to) === 0 ? 0 : koffi.errno();
}

/** unlink(2); 0 or the errno. */
export function unlink(file: string): number {
  return unlinkFn(file) === 0 ? 0 : koffi.errno();
}

/** pread(2) into `buffer[0, length)` at offset 0; bytes read, or minus the errno. */
export function preadStart(fd: number, buffer: Buffer, length: number): number {
  const n = Number(preadFn(fd, buffer, length, 0));
  return n >= 0 ? n : -koffi.errno();
}

/** pwrite(2) of `buffer[0, length)` at offset 0; bytes written, or minus the errno. */
export function pwriteStart(fd: number, buffer: Buffer, length: number): number {
  const n = Number(pwriteFn(fd, buffer, length, 0));
  return n >= 0 ? n : -koffi.errno();
}

/** What lstat(2) says of a path, as far as the history writer needs it. */
export interface LinkIdentity {
  /** S_IFMT bits of the mode. */
  readonly type: number;
  /** Device and inode, `dev:ino`, to notice a path naming another file now. */
  readonly id: string;
}

/** lstat of `file` through statx(2), type and identity only; the errno on failure. */
export function lstatIdentity(file: string): LinkIdentity | number {
  if (statxFn(AT_FDCWD, file, AT_SYMLINK_NOFOLLOW, STATX_TYPE | STATX_INO, statxBuffer) !== 0) return koffi.errno();
  const type = statxBuffer.readUInt16LE(28) & 0o170000;
  const ino = statxBuffer.readBigUInt64LE(32);
  return { type, id: `${statxBuffer.readUInt32LE(136)}:${statxBuffer.readUInt32LE(140)}:${ino}` };
}
