/**
 * The wait loop: sleep until the bus file may have changed. File-system
 * notifications on the parent directory wake us within microseconds; a
 * `sleepInterval` timer wakes us anyway, because notifications are only
 * hints (network file systems send none, and a dropped one must cost at
 * most one interval, never a hang).
 *
 * Why `fs.watch` on the directory and not chokidar: a rename over `F` is a
 * new inode, which a watch on the file itself does not follow, and chokidar
 * filters and coalesces events. Measured in README "Dependencies".
 */
import fs from 'node:fs';

/** How long a busy stream is probed before sleeping. */
const SPIN_MS = 0.2;
/** A stream whose last chunk moved less than this long ago counts as busy. */
const BUSY_MS = 2;

export class BusWatcher {
  readonly #base: string;
  readonly #intervalMs: number;
  #watcher: fs.FSWatcher | undefined;
  /** Set by every hint; cleared by each check, so none falls between a check and the wait after it. */
  #hinted = false;
  #wake: (() => void) | undefined;
  /** When a probe last succeeded (performance.now()), to tell a busy stream from an idle one. */
  #lastFound = -Infinity;

  constructor(dir: string, base: string, intervalMs: number, monitoring: boolean) {
    this.#base = base;
    this.#intervalMs = intervalMs;
    if (monitoring) {
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

  /**
   * Calls `probe` until it returns something other than undefined, sleeping
   * between calls until a hint or the poll interval.
   *
   * With `spin`, a busy stream is probed in a tight loop for a moment
   * before sleeping: in back-pressure mode the other side usually answers
   * within ~100 us, while a wake-up through the event loop costs about as
   * much again (measured in docs/benchmarks.md). Only a stream that was
   * busy a moment ago spins, so an idle bus costs no CPU.
   */
  async until<T>(probe: () => T | undefined, signal?: AbortSignal, spin = false): Promise<T> {
    for (let first = true; ; first = false) {
      signal?.throwIfAborted();
      this.#hinted = false;
      const found = spin && first && this.#busy() ? this.#spin(probe) : probe();
      if (found !== undefined) {
        this.#lastFound = performance.now();
        return found;
      }
      await this.#sleep(signal);
    }
  }

  close(): void {
    this.#stopWatching();
    this.#wake?.();
  }

  #busy(): boolean {
    return performance.now() - this.#lastFound < BUSY_MS;
  }

  #spin<T>(probe: () => T | undefined): T | undefined {
    const deadline = performance.now() + SPIN_MS;
    for (;;) {
      const found = probe();
      if (found !== undefined || performance.now() > deadline) return found;
    }
  }

  #hint(): void {
    this.#hinted = true;
    this.#wake?.();
  }

  #stopWatching(): void {
    this.#watcher?.close();
    this.#watcher = undefined;
  }

  #sleep(signal?: AbortSignal): Promise<void> {
    if (this.#hinted) return Promise.resolve();
    return new Promise<void>((resolve) => {
      const done = () => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', done);
        this.#wake = undefined;
        resolve();
      };
      const timer = setTimeout(done, this.#intervalMs);
      signal?.addEventListener('abort', done, { once: true });
      this.#wake = done;
    });
  }
}
