/**
 * The few file system calls of a multicast consumer's hot path, made
 * straight through koffi. node:fs wraps each call in path validation,
 * option parsing, a stats object and an Error on failure; in a process
 * that wakes cold for every chunk that layer cost about 80 us of CPU per
 * chunk here (a wake-up with node:fs 220-240 us, with these calls 150 us,
 * the C consumer 53 us: docs/benchmarks.md, issue 12). Only the calls
 * whose outcome is routine come here; anything unusual (an error other
 * than "no such file", a file that is not regular) is handed back to the
 * node:fs code, which reports it.
 */
import os from 'node:os';
import koffi from 'koffi';

const libc = koffi.load('libc.so.6');
const statxFn = libc.func('int statx(int dirfd, const char *path, int flags, unsigned int mask, void *buf)');
const openFn = libc.func('int open(const char *path, int flags, ...)');
const readFn = libc.func('long read(int fd, void *buf, unsigned long count)');
const writeFn = libc.func('long write(int fd, void *buf, unsigned long count)');
const closeFn = libc.func('int close(int fd)');

const AT_FDCWD = -100;
const AT_EMPTY_PATH = 0x1000;
const STATX_BASIC_STATS = 0x7ff;
const O_RDONLY_NONBLOCK_CLOEXEC = 0o4000 | 0o2000000;
const S_IFMT = 0o170000;
const S_IFREG = 0o100000;
export const ENOENT = 2;
export const EAGAIN = 11;
export const EINTR = 4;

/**
 * struct statx is the same on every architecture (unlike struct stat):
 * mode at 28, ino at 32, size at 40, ctime at 96 (sec) and 104 (nsec),
 * dev major and minor at 136 and 140.
 */
const STATX_SIZE = 256;
/** Byte ranges of the identity (PROTOCOL.md: device, inode, ctime, size). */
const IDENTITY: ReadonlyArray<readonly [number, number]> = [
  [32, 48], // ino, size
  [96, 108], // ctime seconds and nanoseconds
  [136, 144], // dev major, minor
];

/** A stat result kept as the kernel's bytes: compared without allocating. */
export class RawStat {
  readonly bytes = Buffer.alloc(STATX_SIZE);
  #valid = false;

  /** stat(2) of `path`; false with the errno when it failed. */
  ofPath(path: string): boolean {
    this.#valid = statxFn(AT_FDCWD, path, 0, STATX_BASIC_STATS, this.bytes) === 0;
    return this.#valid;
  }

  /** fstat(2) of `fd`. */
  ofFd(fd: number): boolean {
    this.#valid = statxFn(fd, '', AT_EMPTY_PATH, STATX_BASIC_STATS, this.bytes) === 0;
    return this.#valid;
  }

  get valid(): boolean {
    return this.#valid;
  }

  get regular(): boolean {
    return (this.bytes.readUInt16LE(28) & S_IFMT) === S_IFREG;
  }

  get size(): number {
    return Number(this.bytes.readBigUInt64LE(40));
  }

  sameFile(other: RawStat): boolean {
    if (!this.#valid || !other.#valid) return false;
    for (const [start, end] of IDENTITY) {
      if (this.bytes.compare(other.bytes, start, end, start, end) !== 0) return false;
    }
    return true;
  }

  copyFrom(other: RawStat): void {
    other.bytes.copy(this.bytes);
    this.#valid = other.#valid;
  }
}

export function errno(): number {
  return koffi.errno();
}

const errnoNames = new Map(Object.entries(os.constants.errno).map(([name, number]) => [number, name]));

/** An Error carrying `code` like node:fs's, for busError's message. */
export function errnoError(number: number): Error {
  const code = errnoNames.get(number) ?? `E${number}`;
  return Object.assign(new Error(code), { code, errno: number });
}

/** open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC); -1 with errno on failure. */
export function openForReading(path: string): number {
  return openFn(path, O_RDONLY_NONBLOCK_CLOEXEC);
}

/** read(2) into `buffer` from `offset`; -1 with errno on failure. */
export function readInto(fd: number, buffer: Buffer, offset: number): number {
  return Number(readFn(fd, offset === 0 ? buffer : buffer.subarray(offset), buffer.length - offset));
}

/** write(2) of `data` from `offset`; -1 with errno on failure. */
export function writeFrom(fd: number, data: Uint8Array, offset: number): number {
  return Number(writeFn(fd, offset === 0 ? data : data.subarray(offset), data.length - offset));
}

export function close(fd: number): void {
  closeFn(fd);
}
