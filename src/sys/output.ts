/**
 * Writing a chunk to a file descriptor with write(2), for the command's
 * standard output. A descriptor left non-blocking by whoever shared it
 * with us answers EAGAIN when the pipe is full: then we wait in poll(2)
 * for room, returning to the event loop between short waits so that
 * signals are still handled.
 */
import fs from 'node:fs';
import { setImmediate as nextTurn } from 'node:timers/promises';
import { errnoCode } from '../errors.js';
import { waitWritable } from './inotify.js';

/** Longest single wait for room in the pipe before a turn of the event loop. */
const SLICE_MS = 20;

export async function writeAll(fd: number, data: Uint8Array, signal?: AbortSignal): Promise<void> {
  let written = 0;
  while (written < data.length) {
    try {
      written += fs.writeSync(fd, data, written, data.length - written);
    } catch (error) {
      if (errnoCode(error) !== 'EAGAIN') throw error;
      while (!waitWritable(fd, SLICE_MS)) {
        await nextTurn();
        signal?.throwIfAborted();
      }
    }
  }
}
