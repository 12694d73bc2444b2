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

export class BusWatcher {
  readonly #intervalMs: number;
  #watcher: fs.FSWatcher | undefined;
  /** Set by every hint; cleared by each check, so none falls between a check and the wait after it. */
  #hinted = false;
  #wake: (() => void) | undefined;

  constructor(dir: string, base: string, intervalMs: number, monitoring: boolean) {
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
   */
  async until<T>(probe: () => T | undefined, signal?: AbortSignal): Promise<T> {
    for (;;) {
      signal?.throwIfAborted();
      this.#hinted = false;
      const found = probe();
      if (found !== undefined) return found;
      await this.nextHint(signal);
    }
  }

  /**
   * Sleeps until the next hint or `timeoutMs` (the poll interval); at once
   * if a hint came since `until` last probed.
   */
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

  close(): void {
    this.#stopWatching();
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
