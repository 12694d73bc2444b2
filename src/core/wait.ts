/**
 * The wait loop: sleep until the bus file may have changed. File-system
 * notifications on the parent directory wake us within microseconds; the
 * `sleepInterval` poll wakes us anyway, because notifications are only
 * hints (network file systems send none, and a dropped one must cost at
 * most one interval, never a hang).
 *
 * Two ways to wait, one loop (`until`: probe, wait, probe again):
 *
 * - `EventLoopWatcher`, for a library user's process: `fs.watch` on the
 *   directory and a timer, so the event loop stays free between chunks.
 *   `fs.watch` takes no event mask, so every event in the directory is a
 *   wake-up and a callback (4-5 per publish).
 * - `BlockingWatcher`, for a process that does nothing but move chunks
 *   (the filebus command): the thread blocks in poll(2) on an inotify
 *   descriptor whose kernel-side mask holds only the event the role waits
 *   for, so a consumer wakes once per chunk and runs no JavaScript in
 *   between. It returns to the event loop every `SLICE_MS` (and at once
 *   when a signal interrupts the poll, or another wakeup of
 *   src/sys/wakeups.ts is ready), so signal handlers and timers still
 *   run.
 *
 * Why the directory and not `F`: a rename over `F` is a new inode, which a
 * watch on the file itself does not follow.
 */
import fs from 'node:fs';
import { setImmediate as nextTurn } from 'node:timers/promises';
import { DirectoryWatch, type Wake } from '../sys/inotify.js';
import { pollWith, signalsWake, turnDeadline, turnTaken } from '../sys/wakeups.js';

/** Which change of `F` a role waits for; the others need not wake it. */
export type WaitsFor = 'arrival' | 'removal' | 'any' | 'nothing';

export interface Watcher {
  /**
   * Calls `probe` until it returns something other than undefined, waiting
   * between calls until a hint or the poll interval. Rejects with the
   * abort reason once `signal` aborts.
   */
  until<T>(probe: () => T | undefined, signal?: AbortSignal): Promise<T>;
  /**
   * The synchronous part of `until`, for a hot loop: probes, and for a
   * blocking watcher also waits and probes again, for as long as it may
   * keep the event loop waiting; undefined when the caller should go on
   * with `until` (which then waits before it probes again with the same
   * function: a look that found nothing is not repeated for nothing).
   */
  poll<T>(probe: () => T | undefined, options?: PollOptions): T | undefined;
  /**
   * Waits until the next hint or `timeoutMs` (at most the poll interval),
   * or until `signal` aborts (then resolves: the caller's next check
   * throws).
   */
  nextHint(signal?: AbortSignal, timeoutMs?: number): Promise<void>;
  /**
   * Also wake on changes of `file` (written, closed after writing, removed;
   * for a directory, entries made in it): for an extension whose wait ends
   * on a file other than `F` (the groups' positions, their claims), in the
   * same one wait loop. Best effort and idempotent: without notifications
   * the poll still looks every interval.
   */
  watchFile(file: string): void;
  close(): void;
}

export interface PollOptions {
  /**
   * Wait before the first probe when notifications are on: for a caller
   * that has just read the bus, since any change after that read raised an
   * event that ends the wait at once. (Probing at once would look at the
   * bus again some time after the caller's output went out, and pick up a
   * chunk nobody told us about: on a shared file system, one written by
   * another host, which this host's notifications never report.)
   */
  readonly waitFirst?: boolean;
}

export interface WatchTarget {
  readonly dir: string;
  readonly base: string;
  /**
   * `F.lock`, for roles that take the lock: a blocking watcher then also
   * wakes when a holder closes it (see BusLock's closeOnRelease).
   */
  readonly lock?: string | undefined;
  readonly intervalMs: number;
  /** False: poll only (--no-file-monitoring). */
  readonly monitoring: boolean;
  readonly waitsFor: WaitsFor;
  readonly log: (message: string) => void;
}

/** A probe's answer that the bus is held by another process (its lock is taken): look again after a back-off. */
export const BUSY: unique symbol = Symbol('busy');

/** First look after BUSY; doubles up to the poll interval (`nextHint`'s cap). */
const FIRST_BACKOFF_MS = 0.5;

/**
 * `until` for a probe that may find the lock held. Nothing marks a lock's
 * release but its holder's close of `F.lock`, which only a blocking
 * watcher of a lock-closing bus sees; so after BUSY, look again soon, then
 * less and less often. The synchronous `poll` goes first, for hot loops.
 */
export async function untilFree<T>(watcher: Watcher, probe: () => T | typeof BUSY | undefined, signal?: AbortSignal): Promise<T> {
  for (let backoff = FIRST_BACKOFF_MS; ; backoff *= 2) {
    signal?.throwIfAborted();
    const found = watcher.poll(probe) ?? (await watcher.until(probe, signal));
    if (found !== BUSY) return found;
    await watcher.nextHint(signal, backoff);
  }
}

export function createWatcher(target: WatchTarget, blocking: boolean): Watcher {
  return blocking ? new BlockingWatcher(target) : new EventLoopWatcher(target);
}

export class EventLoopWatcher implements Watcher {
  readonly #intervalMs: number;
  #watcher: fs.FSWatcher | undefined;
  /** Set by every hint; cleared by each check, so none falls between a check and the wait after it. */
  #hinted = false;
  #wake: (() => void) | undefined;
  readonly #monitoring: boolean;
  readonly #fileWatchers = new Map<string, fs.FSWatcher>();

  constructor({ dir, base, intervalMs, monitoring, waitsFor }: WatchTarget) {
    this.#intervalMs = intervalMs;
    this.#monitoring = monitoring;
    if (monitoring && waitsFor !== 'nothing') {
      try {
        this.#watcher = fs.watch(dir, { persistent: false }, (_event, name) => {
          // A null name means the kernel's queue overflowed: anything may have changed.
          if (name === null || name === base) this.#hint();
        });
        // If the directory goes away or the watch breaks, polling carries on alone.
        this.#watcher.on('error', () => this.#stopWatching());
      } catch {
        this.#watcher = undefined;
      }
    }
  }

  /** The probe that `poll` last ran without finding anything. */
  #polled: (() => unknown) | undefined;

  async until<T>(probe: () => T | undefined, signal?: AbortSignal): Promise<T> {
    if (this.#polled === probe) await this.nextHint(signal);
    this.#polled = undefined;
    for (;;) {
      signal?.throwIfAborted();
      this.#hinted = false;
      const found = probe();
      if (found !== undefined) return found;
      await this.nextHint(signal);
    }
  }

  poll<T>(probe: () => T | undefined, _options?: PollOptions): T | undefined {
    this.#hinted = false;
    const found = probe();
    this.#polled = found === undefined ? probe : undefined;
    return found;
  }

  nextHint(signal?: AbortSignal, timeoutMs = this.#intervalMs): Promise<void> {
    if (this.#hinted) {
      this.#hinted = false;
      return Promise.resolve();
    }
    return new Promise<void>((resolve) => {
      const done = () => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', done);
        this.#wake = undefined;
        resolve();
      };
      const timer = setTimeout(done, Math.min(timeoutMs, this.#intervalMs));
      signal?.addEventListener('abort', done, { once: true });
      this.#wake = done;
    });
  }

  watchFile(file: string): void {
    if (!this.#monitoring) return;
    // Made afresh each time: the file may have been removed and made again.
    this.#fileWatchers.get(file)?.close();
    this.#fileWatchers.delete(file);
    try {
      const watcher = fs.watch(file, { persistent: false }, () => this.#hint());
      watcher.on('error', () => {
        watcher.close();
        this.#fileWatchers.delete(file);
      });
      this.#fileWatchers.set(file, watcher);
    } catch {
      // Not there (yet): the poll looks anyway, and the caller asks again.
    }
  }

  close(): void {
    this.#stopWatching();
    for (const watcher of this.#fileWatchers.values()) watcher.close();
    this.#fileWatchers.clear();
    this.#wake?.();
  }

  #hint(): void {
    this.#hinted = true;
    this.#wake?.();
  }

  #stopWatching(): void {
    this.#watcher?.close();
    this.#watcher = undefined;
  }
}

/**
 * Longest stretch the blocking watcher keeps the event loop waiting. A
 * signal usually interrupts the poll and is handled at once; one that the
 * kernel gives to another of Node's threads (about one in six here) waits
 * for the end of the slice. Each turn of the event loop costs a cold
 * process 100-200 us: at 20 ms, the turns were a quarter of a consumer's
 * CPU per chunk at 100 chunks/s.
 */
const SLICE_MS = 100;

/**
 * The slice once every signal ends a blocking wait at once (the command
 * put libuv's signal pipe in the poll set: src/sys/wakeups.ts). Timers that
 * must run sooner ask for a turn (`requestTurn`). The poll interval's looks
 * at the bus go on in between without a turn: a stat each, not the ~600 us
 * a cold turn of the event loop costs.
 */
const LONG_SLICE_MS = 5000;

/** How long a blocking wait that began at `from` may keep the event loop waiting: until this time. */
function sliceEnd(from: number): number {
  return Math.min(from + (signalsWake() ? LONG_SLICE_MS : SLICE_MS), turnDeadline());
}

const masks: Record<WaitsFor, number> = {
  // A publish is a rename onto F (IN_MOVED_TO); the staging file's create
  // and writes, and other names, need not wake anyone. A back-pressure
  // consumer that finds the lock taken also wakes when the holder closes
  // F.lock (a separate watch): then F is gone (another consumer took it)
  // or free to take.
  arrival: 0x80,
  // A back-pressure consumer takes F with unlink (IN_DELETE); a rename
  // away (IN_MOVED_FROM) would also fire at each of our own publishes, so
  // that rare case is left to the poll.
  removal: 0x200,
  // Both, and the renames: for callers that did not say.
  any: 0x80 | 0x200 | 0x40 | 0x100,
  nothing: 0,
};

export class BlockingWatcher implements Watcher {
  readonly #intervalMs: number;
  #watch: DirectoryWatch | undefined;
  #lastYield = performance.now();
  /** An event came that no probe has looked at yet. */
  #hinted = false;
  /** The probe that `poll` last ran without finding anything. */
  #polled: (() => unknown) | undefined;
  /** When the poll interval calls for the next probe, events or not. */
  #due = 0;
  readonly #target: WatchTarget;

  constructor(target: WatchTarget) {
    const { dir, base, lock, intervalMs, monitoring, waitsFor, log } = target;
    this.#target = target;
    this.#intervalMs = intervalMs;
    if (monitoring && (waitsFor !== 'nothing' || lock !== undefined)) {
      try {
        this.#watch = new DirectoryWatch(dir, base, masks[waitsFor], lock);
      } catch (error) {
        log(`no inotify watch on ${dir} (${(error as Error).message}); polling every ${intervalMs} ms`);
      }
    }
  }

  async until<T>(probe: () => T | undefined, signal?: AbortSignal): Promise<T> {
    // After a `poll` with this probe that found nothing, the wait goes on.
    let probeNow = this.#polled !== probe;
    this.#polled = undefined;
    for (;;) {
      // After the turn: a signal's handler may have aborted it there.
      if (!probeNow) await this.#turn();
      signal?.throwIfAborted();
      const found = this.#run(probe, probeNow);
      if (found !== undefined) return found;
      probeNow = false;
    }
  }

  poll<T>(probe: () => T | undefined, { waitFirst = false }: PollOptions = {}): T | undefined {
    const found = this.#run(probe, !(waitFirst && this.#watch?.alive));
    this.#polled = found === undefined ? probe : undefined;
    return found;
  }

  /**
   * Probes (at once when `probeNow`, then on each event and each poll
   * interval) and waits in between, until the probe finds something or
   * the slice is used up. A slice that ends is not a reason to probe: the
   * wait goes on after the event loop's turn, towards the same interval.
   */
  #run<T>(probe: () => T | undefined, probeNow: boolean): T | undefined {
    const end = sliceEnd(this.#lastYield);
    for (;;) {
      let now = performance.now();
      if (probeNow || this.#hinted || now >= this.#due) {
        probeNow = this.#hinted = false;
        this.#due = now + this.#intervalMs;
        const found = probe();
        if (found !== undefined) return found;
        now = performance.now();
      }
      if (now >= end) return undefined;
      const wake = this.#wait(Math.min(this.#due, end) - now);
      if (wake === 'event') this.#hinted = true;
      else if (wake === 'interrupted') {
        // A signal for us is waiting in the event loop's queue: let it run.
        this.#lastYield = -Infinity;
        return undefined;
      }
    }
  }

  async nextHint(signal?: AbortSignal, timeoutMs = this.#intervalMs): Promise<void> {
    const deadline = performance.now() + Math.min(timeoutMs, this.#intervalMs);
    for (;;) {
      let now = performance.now();
      if (now >= sliceEnd(this.#lastYield)) {
        await this.#turn();
        now = performance.now();
      }
      if (signal?.aborted) return;
      const remaining = deadline - now;
      if (remaining <= 0) return;
      // Only here does a close of F.lock end the wait: `nextHint` follows a
      // probe that found the lock taken (untilFree). The probe loop (#run)
      // ignores it, since there it would mostly be our own release.
      const wake = this.#wait(Math.min(remaining, sliceEnd(this.#lastYield) - now), true);
      if (wake === 'event') return;
      if (wake === 'interrupted') this.#lastYield = -Infinity;
    }
  }

  watchFile(file: string): void {
    // Added again on every call (one system call; the same watch when it is
    // there): a file removed and made again needs a new one.
    if (!this.#target.monitoring) return;
    try {
      // A role that waited for nothing in the directory has no inotify instance yet.
      this.#watch ??= new DirectoryWatch(this.#target.dir, this.#target.base, 0, this.#target.lock);
    } catch {
      return;
    }
    this.#watch.watchFile(file);
  }

  #wait(ms: number, lockReleases = false): Wake {
    if (this.#watch?.alive) return this.#watch.wait(ms, lockReleases);
    return pollWith(null, ms) === 'interrupted' ? 'interrupted' : 'timeout';
  }

  /** One turn of the event loop: signal handlers, timers and I/O callbacks run. */
  async #turn(): Promise<void> {
    await nextTurn();
    this.#lastYield = performance.now();
    turnTaken(this.#lastYield);
  }

  close(): void {
    this.#watch?.close();
    this.#watch = undefined;
  }
}
