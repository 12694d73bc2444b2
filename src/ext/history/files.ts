/**
 * The history's files (docs/protocol.md, "Extension: history"), reached
 * through one descriptor of `F.history/` opened with O_DIRECTORY |
 * O_NOFOLLOW. Every entry and the head are named relative to it (the *at
 * calls, or `/proc/self/fd/<fd>/<name>` where a path is needed), so once
 * the directory is open, nothing renamed over `F.history` afterwards (a
 * link to a directory outside the bus, swapped in by anyone who can write
 * the bus directory) can redirect a link, a removal, a write or a read.
 * `check` says whether the path still names the directory we hold.
 */
import fs from 'node:fs';
import path from 'node:path';
import { BusError, busError, errnoCode } from '../../errors.js';
import { symlinkError } from '../../core/checks.js';
import { RECORD_DIGITS, recordNumber } from '../../core/record-file.js';
import { AT_CWD, ENOENT, closeFd, errnoError, linkat, lstatIdentity, mkdirat, openat, statIdentityAt, unlinkat } from '../../sys/libc.js';

const ENTRY = /^\d{16}$/;
export const HEAD = 'head';
/** Largest head file read: the record, a newline, room for a peer's whitespace (and to notice more). */
export const HEAD_BYTES = 64;
/**
 * The largest sequence number: above it a JavaScript number loses digits
 * (and 10^16 would need a 17th digit), so a head beyond it cannot be right.
 */
export const MAX_SEQ = Number.MAX_SAFE_INTEGER;
const S_IFLNK = 0o120000;
const S_IFDIR = 0o040000;
const { O_RDONLY, O_DIRECTORY, O_NOFOLLOW } = fs.constants;
/** Not in fs.constants; the same on every Linux architecture Node runs on. A child never inherits these. */
const O_CLOEXEC_FLAG = 0o2000000;

/** An entry's name: the sequence number, zero-padded to 16 digits so names sort in order. */
export function entryName(seq: number): string {
  return recordNumber(seq);
}

/**
 * What a head file's bytes say: a number (`ok`), nothing yet (`empty`, a
 * history just made), or `corrupt` when they cannot be a head written by a
 * producer: anything but 1-16 digits and whitespace, or a number above
 * MAX_SEQ. By hand, not by regular expression: producers parse it every publish.
 */
export type HeadValue = { readonly kind: 'ok'; readonly seq: number } | { readonly kind: 'empty' } | { readonly kind: 'corrupt' };

export function parseHead(bytes: Uint8Array): HeadValue {
  if (bytes.length === 0) return { kind: 'empty' };
  let n = 0;
  let digits = 0;
  for (; digits < bytes.length; digits++) {
    const c = bytes[digits]!;
    if (c < 48 || c > 57) break;
    n = n * 10 + (c - 48);
  }
  if (digits === 0 || digits > RECORD_DIGITS || n > MAX_SEQ) return { kind: 'corrupt' };
  for (let i = digits; i < bytes.length; i++) if (bytes[i] !== 10 && bytes[i] !== 32 && bytes[i] !== 13 && bytes[i] !== 9) return { kind: 'corrupt' };
  return { kind: 'ok', seq: n };
}

/** How the path relates to the directory held. */
export type DirState = 'same' | 'missing' | 'replaced';

/** An open `F.history/`. */
export class HistoryDir {
  /** `F.history`, for messages and the identity check. */
  readonly path: string;
  readonly fd: number;
  /** Device and inode of the directory held. */
  readonly id: string;
  /** `/proc/self/fd/<fd>`: a path that always resolves to the directory held. */
  readonly #self: string;

  private constructor(dir: string, fd: number, id: string) {
    this.path = dir;
    this.fd = fd;
    this.id = id;
    this.#self = `/proc/self/fd/${fd}`;
  }

  /**
   * Opens `F.history` without following a link at it; undefined when it is
   * missing (with `create`, it is made first). A link there is refused with
   * one line; a file there is an error too.
   */
  static open(dir: string, create = false): HistoryDir | undefined {
    for (let attempt = 0; ; attempt++) {
      const fd = openat(AT_CWD, dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC_FLAG);
      if (fd >= 0) {
        const st = statIdentityAt(fd, '');
        if (typeof st === 'number') {
          closeFd(fd);
          throw busError('look at', dir, errnoError(st));
        }
        return new HistoryDir(dir, fd, st.id);
      }
      if (fd === -ENOENT && create && attempt < 3) {
        const made = mkdirat(AT_CWD, dir, 0o777);
        if (made < 0 && errnoCode(errnoError(made)) !== 'EEXIST') throw busError('create the history directory', dir, errnoError(made));
        continue;
      }
      if (fd === -ENOENT) return undefined;
      const code = errnoCode(errnoError(fd));
      // O_NOFOLLOW | O_DIRECTORY on a link: ELOOP (or ENOTDIR on some kernels); tell them apart by lstat.
      if (code === 'ELOOP' || code === 'ENOTDIR') {
        const st = lstatIdentity(dir);
        if (typeof st !== 'number' && st.type === S_IFLNK) throw symlinkError(dir);
        if (typeof st !== 'number') throw new BusError(`${dir} is not a directory; the history must be one`, dir, { code: 'ENOTDIR' });
        // A component of the path is a file: no history there.
        if (!create) return undefined;
      }
      throw busError('open', dir, errnoError(fd));
    }
  }

  /**
   * Whether `F.history` still names the directory held: an lstat of the
   * path against the descriptor's identity. A link there is refused (one
   * line); anything else in its place is `replaced`. Under the lock this
   * is the producer's check that it still writes the bus's own directory.
   */
  check(): DirState {
    const st = lstatIdentity(this.path);
    if (typeof st === 'number') {
      if (st === -ENOENT || errnoCode(errnoError(st)) === 'ENOTDIR') return 'missing';
      throw busError('look at', this.path, errnoError(st));
    }
    if (st.type === S_IFLNK) throw symlinkError(this.path);
    return st.type === S_IFDIR && st.id === this.id ? 'same' : 'replaced';
  }

  /** Sequence numbers of the entries, ascending (a listing of the directory held). */
  list(): number[] {
    let names: string[];
    try {
      names = fs.readdirSync(this.#self);
    } catch (error) {
      throw busError('list', this.path, error);
    }
    const seqs: number[] = [];
    for (const name of names) if (ENTRY.test(name)) seqs.push(Number(name));
    return seqs.sort((a, b) => a - b);
  }

  /** A path to entry `seq` that resolves through the descriptor (for readChunk). */
  entryPath(seq: number): string {
    return `${this.#self}/${entryName(seq)}`;
  }

  /** The entry's name under `F.history`, for messages. */
  shownPath(name: string): string {
    return path.join(this.path, name);
  }

  /** Whether entry `seq` exists (not following a link). */
  has(seq: number): boolean {
    return typeof statIdentityAt(this.fd, entryName(seq)) !== 'number';
  }

  /** Links `staging` (a path) as entry `seq`: 0, or minus the errno (EEXIST: the number is taken). */
  link(staging: string, seq: number): number {
    return linkat(AT_CWD, staging, this.fd, entryName(seq));
  }

  /** Removes entry `seq`; a missing one is fine. Minus the errno on another failure. */
  remove(seq: number): number {
    const result = unlinkat(this.fd, entryName(seq));
    return result === -ENOENT ? 0 : result;
  }

  /** Opens the head file in the directory held (never through a link); minus the errno on failure. */
  openHead(flags: number, mode = 0o666): number {
    return openat(this.fd, HEAD, flags | O_NOFOLLOW | O_CLOEXEC_FLAG, mode);
  }

  close(): void {
    closeFd(this.fd);
  }
}

/** Reads a head file afresh through the directory held: its value, or undefined when there is none to read. */
export function readHeadOnce(dir: HistoryDir): HeadValue | undefined {
  const fd = dir.openHead(fs.constants.O_RDONLY | fs.constants.O_NONBLOCK);
  if (fd < 0) return undefined;
  try {
    const buffer = Buffer.allocUnsafe(HEAD_BYTES);
    return parseHead(buffer.subarray(0, fs.readSync(fd, buffer, 0, HEAD_BYTES, 0)));
  } catch {
    return undefined;
  } finally {
    closeFd(fd);
  }
}
