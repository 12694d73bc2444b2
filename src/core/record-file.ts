/**
 * Small counter files (`F.history/head`, `F.ends`) are rewritten in place
 * with one fixed-width record at offset 0: a single pwrite(2) of the whole
 * record, never a truncate followed by a write, so a process killed at any
 * moment leaves either the old record or the new one, never an empty file.
 * Every record of a file has the same length, so a shorter old one cannot
 * leave a tail behind.
 */
import fs from 'node:fs';
import { busError } from '../errors.js';

/** Digits of each number in a record: zero-padded, as `ls` and the bash peer read them. */
export const RECORD_DIGITS = 16;

/** `n` zero-padded to RECORD_DIGITS. */
export function recordNumber(n: number): string {
  return String(n).padStart(RECORD_DIGITS, '0');
}

/** Writes `bytes[0, length)` over the start of the file open at `fd`, in one call. */
export function overwriteRecord(fd: number, bytes: Buffer, length: number, file: string): void {
  let written: number;
  try {
    written = fs.writeSync(fd, bytes, 0, length, 0);
  } catch (error) {
    throw busError('write', file, error);
  }
  // A regular file on a local disk takes it whole; anything else is an error, not a torn count.
  if (written !== length) throw busError('write', file, Object.assign(new Error(`short write: ${written} of ${length} bytes`), { code: 'EIO' }));
}
