/**
 * Reading the current chunk. Whatever `open` returns is a whole chunk, since
 * producers only ever rename complete files over `F`.
 */
import { constants as bufferConstants } from 'node:buffer';
import fs from 'node:fs';
import v8 from 'node:v8';
import vm from 'node:vm';
import { BusError, busError, errnoCode } from '../errors.js';
import { requestTurn } from '../sys/wakeups.js';
import { checkRegular, symlinkError } from './checks.js';

export interface Chunk {
  readonly data: Buffer;
  /** Identity of the file read (PROTOCOL.md, "Multicast mode"). */
  readonly identity: string;
  /** Device and inode alone: the same file under another name (history entries). */
  readonly inode: string;
  /** Hard links to the file when it was read: a chunk with history has at least two. */
  readonly links: number;
}

/**
 * Device, inode, change time and size: inode numbers are reused quickly, so
 * the inode alone cannot tell two chunks apart.
 */
export function identityOf(st: fs.BigIntStats): string {
  return `${st.dev}:${st.ino}:${st.ctimeNs}:${st.size}`;
}

/** A scratch buffer up to this size is kept whatever the chunks that follow (1 MiB blocks stay garbage-free). */
const KEEP_BYTES = 8 << 20;
/** A dropped scratch buffer at least this big is collected at once (see `collectSoon`). */
const COLLECT_BYTES = 32 << 20;

/**
 * One buffer reused for every chunk, for readers that are done with a
 * chunk before they read the next: no garbage per chunk. It grows to the
 * largest chunk, and is dropped again for a chunk that needs less than half
 * of a buffer over KEEP_BYTES: one huge chunk must not cost its size in
 * memory for the rest of the process's life (README: flat memory).
 */
export class ScratchBuffer {
  #buffer = Buffer.alloc(0);
  readonly #collect: boolean;

  /**
   * `collect`: force a garbage collection after dropping a huge buffer (see
   * `collectSoon`). Only for a process that does nothing but move chunks
   * (the command: RunSettings.blockingWait): it changes V8's flags, which a library
   * user's process should never have done to it behind its back.
   */
  constructor(options: { collect?: boolean } = {}) {
    this.#collect = options.collect ?? false;
  }

  get(size: number): Buffer {
    const length = this.#buffer.length;
    if (length < size) this.#buffer = Buffer.allocUnsafe(Math.max(size, Math.min(2 * length, KEEP_BYTES)));
    else if (length > KEEP_BYTES && size < length / 2) {
      this.#buffer = Buffer.allocUnsafe(Math.max(size, KEEP_BYTES));
      if (this.#collect && length >= COLLECT_BYTES) collectSoon();
    }
    return this.#buffer.subarray(0, size);
  }
}

let collect: (() => void) | null | undefined;

/**
 * Runs a full garbage collection once the current chunk is done with. A
 * dropped Buffer's memory lives outside the JavaScript heap, and an idle
 * consumer allocates too little for V8 ever to collect it: measured, a
 * multicast consumer stayed at 300 MB for good after one 256 MiB chunk.
 * Only ever after a huge chunk, so the few milliseconds do not matter.
 * `gc` is not exposed by default; --expose-gc set at run time makes it
 * available to a new context. Where that fails, memory is freed whenever
 * V8 next collects.
 */
function collectSoon(): void {
  if (collect === undefined) {
    try {
      v8.setFlagsFromString('--expose-gc');
      collect = vm.runInNewContext('gc') as () => void;
    } catch {
      collect = null;
    }
  }
  if (collect) {
    setImmediate(collect);
    // A blocking wait gives the event loop its turn now, not at the end of a long slice.
    requestTurn(performance.now());
  }
}

/**
 * Reads `F` whole; undefined when it vanished before the open. With
 * `scratch`, the bytes land in its buffer and are valid until the next read.
 * `sizeMayBeStale`: the bus is on a file system whose attributes may lag
 * behind another writer (NFS, FUSE; see readGrown). A symbolic link (at
 * `F` or a history entry) is never followed: it is an error.
 */
export function readChunk(file: string, scratch?: ScratchBuffer, sizeMayBeStale = false): Chunk | undefined {
  let fd: number;
  try {
    // O_NOFOLLOW: a link at F, or swapped in after our lstat, is refused, never read through.
    fd = fs.openSync(file, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK | fs.constants.O_NOFOLLOW);
  } catch (error) {
    if (vanished(error)) return undefined;
    if (errnoCode(error) === 'ELOOP') throw symlinkError(file);
    throw busError('open', file, error);
  }
  try {
    const st = fstat(fd, file);
    if (st === undefined) return undefined;
    checkRegular(file, st);
    const size = fitting(Number(st.size), file);
    const data = readAll(fd, scratch ? scratch.get(size) : Buffer.allocUnsafe(size), 0, file);
    return sizeMayBeStale ? readGrown(fd, data, st, file) : chunkOf(data, st);
  } finally {
    fs.closeSync(fd);
  }
}

/**
 * `size`, when a Buffer can hold that many bytes (4 GiB on Node 20). No
 * producer of ours publishes more than 1 GiB, but anyone can write a file
 * at `F` (or `truncate -s 5G` it), and Node's own "The value of "size" is
 * out of range" names no file.
 */
function fitting(size: number, file: string): number {
  if (size <= bufferConstants.MAX_LENGTH) return size;
  const limit = bufferConstants.MAX_LENGTH >= 2 ** 30 ? `${Math.floor(bufferConstants.MAX_LENGTH / 2 ** 30)} GiB` : `${bufferConstants.MAX_LENGTH} bytes`;
  throw new BusError(`cannot read ${file}: chunk of ${size} bytes is larger than filebus can hold (${limit})`, file, { code: 'EFBIG' });
}

/**
 * fstat of an open file; undefined when the file is gone from under it. A
 * FUSE daemon that answers by path (bindfs) says ENOENT once another
 * consumer removed `F`, and an NFS server says ESTALE: the chunk we opened
 * is then someone else's, as if the open had failed.
 */
function fstat(fd: number, file: string): fs.BigIntStats | undefined {
  try {
    return fs.fstatSync(fd, { bigint: true });
  } catch (error) {
    if (vanished(error)) return undefined;
    throw busError('stat', file, error);
  }
}

/** ENOENT, or ESTALE where NFS finds the file removed by another host. */
function vanished(error: unknown): boolean {
  const code = errnoCode(error);
  return code === 'ENOENT' || code === 'ESTALE';
}

/**
 * Published files are never written again, so the size from fstat is the
 * size to read: one read(2) in the usual case. Fills `buffer` from `from`.
 */
function readAll(fd: number, buffer: Buffer, from: number, file: string): Buffer {
  const size = buffer.length;
  let length = from;
  try {
    while (length < size) {
      const n = fs.readSync(fd, buffer, length, size - length, null);
      if (n === 0) break;
      length += n;
    }
  } catch (error) {
    throw busError('read', file, error);
  }
  return length === size ? buffer : buffer.subarray(0, length);
}

/**
 * Where attributes are cached (FUSE with attr_timeout > 0, NFS with nocto),
 * the kernel may give the new file at `F` the size of the one it replaced,
 * and it stops every read at that size: a longer chunk comes out cut, and
 * reading on to end of file does not help. Once the file has been read the
 * cached size is no longer trusted (on FUSE a read drops it; measured in
 * docs/network-filesystems.md), so ask again and read what was missed.
 */
function readGrown(fd: number, first: Buffer, firstStat: fs.BigIntStats, file: string): Chunk | undefined {
  let data = first;
  let st = firstStat;
  for (;;) {
    const again = fstat(fd, file);
    if (again === undefined) return undefined;
    const size = fitting(Number(again.size), file);
    if (size <= data.length) break;
    st = again;
    const bigger = Buffer.allocUnsafe(size);
    data.copy(bigger);
    const before = data.length;
    data = readAll(fd, bigger, before, file);
    if (data.length === before) break; // the size says more, the file has no more: keep what is there
  }
  return chunkOf(data, st);
}

function chunkOf(data: Buffer, st: fs.BigIntStats): Chunk {
  return { data, identity: identityOf(st), inode: `${st.dev}:${st.ino}`, links: Number(st.nlink) };
}
