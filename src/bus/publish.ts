/**
 * Publishing one chunk (PROTOCOL.md, "Publishing a chunk"): under the lock,
 * write `F.__new__` and rename it over `F`, so readers see the old chunk or
 * the new one, never part of one. Both modes publish through here; back
 * pressure only adds "wait until F is gone, and re-check under the lock".
 */
import fs from 'node:fs';
import type { Bus } from './open.js';
import { busError, errnoCode } from '../errors.js';
import type { HistoryWriter } from '../history.js';
import type { BusPaths } from '../options.js';

export async function publish(bus: Bus, chunk: Uint8Array, signal?: AbortSignal): Promise<void> {
  const { paths, backPressure } = bus.options;
  for (;;) {
    if (bus.options.blockingWait) await lockFreeSlot(bus, signal);
    else {
      if (backPressure) await bus.watcher.until(() => (fs.existsSync(paths.file) ? undefined : true), signal);
      await bus.lock.acquire(signal);
    }
    try {
      // Another producer may have filled the slot between our check and the lock.
      if (backPressure && fs.existsSync(paths.file)) continue;
      stageAndRename(paths, chunk, bus.history);
      return;
    } finally {
      bus.lock.release();
    }
  }
}

const BUSY = Symbol('lock busy');
/** First wait after finding the lock busy; doubles up to the poll interval. */
const FIRST_BACKOFF_MS = 0.5;

/**
 * With a blocking watcher: waits until the slot is free (back pressure)
 * and takes the lock, both in the hot loop. The watcher wakes when `F` is
 * removed and when a holder closes `F.lock` (its release), so a producer
 * neither spins on a held lock nor sends the wait to another thread; a
 * holder that keeps the lock file open is looked at again after a
 * doubling back-off.
 */
async function lockFreeSlot(bus: Bus, signal?: AbortSignal): Promise<void> {
  const { paths, backPressure } = bus.options;
  const look = () => (backPressure && fs.existsSync(paths.file) ? undefined : bus.lock.tryAcquire() ? true : BUSY);
  for (let backoff = FIRST_BACKOFF_MS; ; backoff *= 2) {
    signal?.throwIfAborted();
    const found = bus.watcher.poll(look) ?? (await bus.watcher.until(look, signal));
    if (found === true) return;
    await bus.watcher.nextHint(signal, backoff);
  }
}

/**
 * Synchronous on purpose: the lock is held for a handful of system calls
 * and no signal handler can run between them, so a staging file is only
 * ever left behind by SIGKILL (and the next publish replaces it).
 */
function stageAndRename(paths: BusPaths, chunk: Uint8Array, history?: HistoryWriter): void {
  history?.prepare();
  let fd: number;
  try {
    fd = createStaging(paths.staging);
  } catch (error) {
    throw busError('create', paths.staging, error);
  }
  // On any failure the previous chunk at F is untouched; the partial one is dropped.
  try {
    let written = 0;
    while (written < chunk.length) written += fs.writeSync(fd, chunk, written);
  } catch (error) {
    closeQuietly(fd);
    removeQuietly(paths.staging);
    throw busError('write', paths.staging, error);
  }
  try {
    // Some file systems (NFS) report a full disk only here. Linux frees the
    // fd even when close fails, so it is never closed twice.
    fs.closeSync(fd);
  } catch (error) {
    removeQuietly(paths.staging);
    throw busError('write', paths.staging, error);
  }
  let seq: number | undefined;
  try {
    // With history, the whole chunk gets its number before F shows it.
    seq = history?.link(paths.staging);
    fs.renameSync(paths.staging, paths.file);
  } catch (error) {
    removeQuietly(paths.staging);
    throw busError('publish', paths.staging, error);
  }
  if (seq !== undefined) history!.advance(seq);
}

/**
 * A fresh staging file, never one left behind: a producer killed after
 * linking F.__new__ into the history (src/history.ts) leaves it as a
 * second name of that entry, which truncating would rewrite under a
 * reader. O_EXCL costs nothing when there is no leftover, the usual case.
 */
function createStaging(staging: string): number {
  const flags = fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_EXCL;
  try {
    return fs.openSync(staging, flags, 0o666);
  } catch (error) {
    if (errnoCode(error) !== 'EEXIST') throw error;
  }
  fs.unlinkSync(staging);
  return fs.openSync(staging, flags, 0o666);
}

// In the two helpers below the first error is the one worth reporting.
function closeQuietly(fd: number): void {
  try {
    fs.closeSync(fd);
  } catch {}
}

function removeQuietly(file: string): void {
  try {
    fs.unlinkSync(file);
  } catch {}
}
