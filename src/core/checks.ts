/**
 * What may stand at a bus's paths: `F` and the files beside it are regular
 * files (and `F.history` a directory), never symbolic links, which would
 * have filebus read, write or remove a file outside the bus directory.
 * A leaf module: the lock, the reader, the publish step and the extensions
 * all check with it.
 */
import fs from 'node:fs';
import { BusError, busError } from '../errors.js';

/**
 * `F` must be a regular file when it exists: a FIFO would block a reader
 * forever, a directory can never be replaced by rename, and a symbolic link
 * would have us read or remove a file outside the bus directory. `stats`
 * must come from lstat (or an fstat of an fd opened with O_NOFOLLOW).
 */
export function checkRegular(file: string, stats?: fs.Stats | fs.BigIntStats): void {
  const st = stats ?? lstat(file);
  if (st === undefined || st.isFile()) return;
  if (st.isSymbolicLink()) throw symlinkError(file);
  const kind = st.isDirectory() ? 'a directory' : st.isFIFO() ? 'a FIFO' : 'not a regular file';
  throw new BusError(`${file} is ${kind}; the bus file must be a regular file`, file, { code: 'EFTYPE' });
}

/** True when `F` holds a chunk, false when it is absent; an error for anything but a regular file. */
export function chunkPresent(file: string): boolean {
  const st = lstat(file);
  if (st === undefined) return false;
  checkRegular(file, st);
  return true;
}

/** Refuses a symbolic link at `file` (absent is fine). */
export function refuseLink(file: string): void {
  if (lstat(file)?.isSymbolicLink()) throw symlinkError(file);
}

/**
 * lstat of one of the bus's paths; undefined when it is absent. Any other
 * failure (a directory on the way without search permission: EACCES) is
 * one line naming the path, not Node's "EACCES: permission denied, lstat".
 */
export function lstat(file: string): fs.Stats | undefined {
  try {
    return fs.lstatSync(file, { throwIfNoEntry: false });
  } catch (error) {
    throw busError('reach', file, error);
  }
}

/** The one line for a link found at one of the bus's paths. */
export function symlinkError(file: string): BusError {
  return new BusError(`${file} is a symbolic link; filebus does not follow links at the bus's files`, file, { code: 'ELOOP' });
}
