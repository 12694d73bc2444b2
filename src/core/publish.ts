/**
 * Publishing one chunk (PROTOCOL.md, "Publishing a chunk"): under the lock,
 * write `F.__new__` and rename it over `F`, so readers see the old chunk or
 * the new one, never part of one. Both modes publish through here; back
 * pressure only adds "wait until F is gone, and re-check under the lock".
 */
import fs from 'node:fs';
import { type Bus } from './bus.js';
import { checkRegular, chunkPresent, symlinkError } from './checks.js';
import { BusError, busError, errnoCode } from '../errors.js';
import type { PublishHook } from './extension.js';
import type { BusPaths } from '../options.js';
import { BUSY, untilFree } from './wait.js';

export async function publish(bus: Bus, chunk: Uint8Array, signal?: AbortSignal): Promise<void> {
  const { paths, backPressure } = bus.options;
  for (;;) {
    if (bus.settings.blockingWait) await lockFreeSlot(bus, signal);
    else {
      // chunkPresent also ends the wait with an error when F turns into a directory, a FIFO or a link.
      if (backPressure) await bus.watcher.until(() => (chunkPresent(paths.file) ? undefined : true), signal);
      await bus.lock.acquire(bus.watcher, signal);
    }
    try {
      // Another producer may have filled the slot between our check and the lock.
      if (backPressure && chunkPresent(paths.file)) continue;
      // An extension that must not drop what it keeps yet (the groups' window) holds the publish back.
      if (!bus.publishHook?.holdBack?.(watchFile)) {
        stageAndRename(paths, chunk, bus.publishHook);
        return;
      }
    } finally {
      bus.lock.release();
    }
    await bus.watcher.nextHint(signal);
  }

  function watchFile(file: string): void {
    bus.watcher.watchFile(file);
  }
}

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
  // chunkPresent also ends the wait with an error when F turns into a directory, a FIFO or a link.
  const look = () => (backPressure && chunkPresent(paths.file) ? undefined : bus.lock.tryAcquire() ? true : BUSY);
  await untilFree(bus.watcher, look, signal);
}

/**
 * Synchronous on purpose: the lock is held for a handful of system calls
 * and no signal handler can run between them, so a staging file is only
 * ever left behind by SIGKILL (and the next publish replaces it).
 */
function stageAndRename(paths: BusPaths, chunk: Uint8Array, hook?: PublishHook): void {
  hook?.beforeStage();
  const fd = createStaging(paths.staging);
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
  try {
    // An extension's part (the history's numbered link) is in place before F shows the chunk.
    hook?.staged(paths.staging);
    fs.renameSync(paths.staging, paths.file);
  } catch (error) {
    removeQuietly(paths.staging);
    // A directory in F's place (EISDIR, ENOTEMPTY) is best named as such.
    checkRegular(paths.file);
    throw busError('publish', paths.staging, error);
  }
  hook?.published();
}

/**
 * Creates `F.__new__` afresh: O_EXCL never opens an existing file, so a
 * link planted there (by anyone who can write to the directory) is never
 * followed, and no file is created or truncated outside the directory. A
 * regular file left by a producer killed mid-publish is removed first; we
 * hold the lock, so no live producer is writing it. (Truncating it instead
 * would also be wrong with a history: a producer killed after linking
 * F.__new__ into F.history/ leaves it as a second name of that entry.)
 */
function createStaging(staging: string): number {
  const flags = fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_EXCL | fs.constants.O_NOFOLLOW;
  for (let attempt = 0; ; attempt++) {
    try {
      return fs.openSync(staging, flags, 0o666);
    } catch (error) {
      if (errnoCode(error) !== 'EEXIST' || attempt > 0) throw busError('create', staging, error);
    }
    const st = fs.lstatSync(staging, { throwIfNoEntry: false });
    if (st?.isSymbolicLink()) throw symlinkError(staging);
    if (st !== undefined && !st.isFile()) throw new BusError(`${staging} is not a regular file; the staging file must be one`, staging, { code: 'EFTYPE' });
    try {
      fs.unlinkSync(staging);
    } catch (error) {
      if (errnoCode(error) !== 'ENOENT') throw busError('remove the leftover', staging, error);
    }
  }
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
