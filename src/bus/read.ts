/**
 * Reading the current chunk. Whatever `open` returns is a whole chunk, since
 * producers only ever rename complete files over `F`.
 */
import fs from 'node:fs';
import { busError, errnoCode } from '../errors.js';
import { checkRegular } from './open.js';

export interface Chunk {
  readonly data: Buffer;
  /** Identity of the file read (PROTOCOL.md, "Multicast mode"). */
  readonly identity: Identity;
}

/**
 * Device, inode, change time and size: inode numbers are reused quickly, so
 * the inode alone cannot tell two chunks apart. Kept as the stat itself and
 * compared field by field: no string to build on every look at the bus.
 */
export type Identity = Pick<fs.BigIntStats, 'dev' | 'ino' | 'ctimeNs' | 'size'>;

export function sameIdentity(a: Identity, b: Identity): boolean {
  return a.ino === b.ino && a.ctimeNs === b.ctimeNs && a.size === b.size && a.dev === b.dev;
}

/** The identity of `F` now, or undefined when there is no chunk. */
export function currentIdentity(file: string): Identity | undefined {
  const st = fs.statSync(file, { bigint: true, throwIfNoEntry: false });
  if (st === undefined) return undefined;
  checkRegular(file, st);
  return st;
}

/**
 * One buffer reused for every chunk, for readers that are done with a
 * chunk before they read the next: no garbage per chunk.
 */
export class ScratchBuffer {
  #buffer = Buffer.alloc(0);

  get(size: number): Buffer {
    if (this.#buffer.length < size) this.#buffer = Buffer.allocUnsafe(Math.max(size, this.#buffer.length * 2));
    return this.#buffer.subarray(0, size);
  }
}

/**
 * Reads `F` whole; undefined when it vanished before the open. With
 * `scratch`, the bytes land in its buffer and are valid until the next read.
 */
export function readChunk(file: string, scratch?: ScratchBuffer): Chunk | undefined {
  let fd: number;
  try {
    fd = fs.openSync(file, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK);
  } catch (error) {
    if (errnoCode(error) === 'ENOENT') return undefined;
    throw busError('open', file, error);
  }
  try {
    const st = fs.fstatSync(fd, { bigint: true });
    checkRegular(file, st);
    const size = Number(st.size);
    return { data: readAll(fd, scratch ? scratch.get(size) : Buffer.allocUnsafe(size), file), identity: st };
  } finally {
    fs.closeSync(fd);
  }
}

/**
 * Published files are never written again, so the size from fstat is the
 * size to read: one read(2) in the usual case.
 */
function readAll(fd: number, buffer: Buffer, file: string): Buffer {
  const size = buffer.length;
  let length = 0;
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
