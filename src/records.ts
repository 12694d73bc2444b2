/**
 * Whole records (`--lines`, `--null`): where a producer may cut its input
 * so that every chunk holds whole newline- or NUL-terminated records.
 *
 * The producer keeps the bytes it has not published yet; these functions
 * say how much of them can go out as one chunk. They never copy.
 */
import type { RecordMode } from './options.js';

const NEWLINE = 0x0a;
const NUL = 0x00;

/** The byte that ends a record in this mode; undefined for plain bytes. */
export function recordTerminator(mode: RecordMode): number | undefined {
  return mode === 'lines' ? NEWLINE : mode === 'null' ? NUL : undefined;
}

export interface Cut {
  /** Length of the chunk to publish from the start of the data. */
  length: number;
  /** True when a record longer than a block had to be split. */
  split: boolean;
}

/**
 * The first chunk of `data`, which holds at least `blockSize` bytes: the
 * whole records that fit in a block, or, when not even one record fits,
 * one block of the overlong record.
 */
export function fullChunk(data: Uint8Array, blockSize: number, terminator: number | undefined): Cut {
  if (terminator === undefined) return { length: blockSize, split: false };
  const last = data.lastIndexOf(terminator, blockSize - 1);
  return last < 0 ? { length: blockSize, split: true } : { length: last + 1, split: false };
}

/**
 * Length of the whole records at the start of `data` (shorter than a
 * block); the rest is a record still waiting for its terminator.
 */
export function wholeRecords(data: Uint8Array, terminator: number | undefined): number {
  return terminator === undefined ? data.length : data.lastIndexOf(terminator) + 1;
}
