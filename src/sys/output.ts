/**
 * Writing a chunk to a file descriptor with write(2), for the command's
 * standard output: no stream machinery, callback or event-loop turn per
 * chunk. A pipe is non-blocking (as Node's own stream for it makes it), so
 * a full pipe answers EAGAIN: then we wait in poll(2) for room, returning
 * to the event loop between short waits so that signals are still handled.
 */
import { setImmediate as nextTurn } from 'node:timers/promises';
import { EAGAIN, EINTR, errnoError, waitWritable, write } from './libc.js';

/** Longest single wait for room in the pipe before a turn of the event loop. */
const SLICE_MS = 20;

/**
 * Writes all of `data`; returns undefined when that was done at once (the
 * usual case), or a promise for the rest when the pipe was full.
 */
export function writeAll(fd: number, data: Uint8Array, signal?: AbortSignal): Promise<void> | undefined {
  const written = writeWhatFits(fd, data, 0);
  return written === data.length ? undefined : writeRest(fd, data, written, signal);
}

async function writeRest(fd: number, data: Uint8Array, written: number, signal?: AbortSignal): Promise<void> {
  while (written < data.length) {
    while (!waitWritable(fd, SLICE_MS)) {
      await nextTurn();
      signal?.throwIfAborted();
    }
    written = writeWhatFits(fd, data, written);
  }
}

/** Writes until done or the descriptor would block; returns the new offset. */
function writeWhatFits(fd: number, data: Uint8Array, written: number): number {
  while (written < data.length) {
    const n = write(fd, data, written);
    if (n >= 0) written += n;
    else if (n === -EAGAIN) return written;
    else if (n !== -EINTR) throw errnoError(n);
  }
  return written;
}
