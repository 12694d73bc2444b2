/**
 * The bus lock: an exclusive BSD flock(2) on `F.lock`, the lock that
 * flock(1), Python's filelock and the bash tools take (PROTOCOL.md, "The
 * lock"). The kernel drops it when its holder dies, so a crash never leaves
 * it stuck.
 */
import fs from 'node:fs';
import { BusError, busError, errnoCode } from '../errors.js';
import { symlinkError } from './checks.js';
import { EINTR, EWOULDBLOCK, LOCK_EX, LOCK_NB, LOCK_UN, errnoError, flock } from '../sys/libc.js';
import { BUSY, type Watcher, untilFree } from './wait.js';

/** How long `acquire` retries a contended lock before backing off. */
const SPIN_MS = 0.1;
/** How long `tryAcquire` retries: covers a rename-to-unlock window, not a consumer's whole turn. */
const TRY_SPIN_MS = 0.02;

export class BusLock {
  readonly path: string;
  #fd = -1;
  #dev = 0;
  #ino = 0;
  #held = false;
  readonly #closeOnRelease: boolean;

  /**
   * With `closeOnRelease`, each release also closes the descriptor (the
   * next acquisition opens it again): the close raises IN_CLOSE_WRITE on
   * `F.lock`, which is how processes that wait with inotify learn that the
   * lock is free (flock itself raises no event). flock(1), the bash tools
   * and Python's filelock close on release too.
   */
  constructor(lockPath: string, { closeOnRelease = false }: { closeOnRelease?: boolean } = {}) {
    this.path = lockPath;
    this.#closeOnRelease = closeOnRelease;
  }

  /**
   * Takes the lock, waiting as long as another process holds it: polled
   * through the bus's watcher with a back-off (`untilFree`), never a
   * blocking flock(2) on a worker thread, which an abort could not
   * interrupt and which libuv joins at exit (a process waiting for a lock
   * held elsewhere could then neither stop nor exit). Every acquisition
   * re-checks that the fd is on the file the path names now, as the
   * protocol asks.
   */
  async acquire(watcher: Watcher, signal?: AbortSignal): Promise<void> {
    await untilFree(watcher, () => (this.tryAcquire(SPIN_MS) ? true : BUSY), signal);
  }

  /**
   * Takes the lock if it is free now or within a few microseconds (the
   * window between a producer's rename and its unlock); false otherwise.
   * For back-pressure consumers: when another consumer holds the lock it
   * is taking the one chunk there is, and queueing behind it would only
   * crowd out the producer.
   */
  tryAcquire(spinMs = TRY_SPIN_MS): boolean {
    for (;;) {
      const result = this.#attempt(spinMs);
      if (result === -EWOULDBLOCK) return false;
      if (this.#granted(result)) return true;
    }
  }

  release(): void {
    if (!this.#held) return;
    this.#held = false;
    flock(this.#fd, LOCK_UN);
    if (this.#closeOnRelease) this.#closeFd();
  }

  /** Releases the lock if held and closes the fd. */
  close(): void {
    this.release();
    this.#closeFd();
  }

  /** Opens (creating if missing) `F.lock`; done lazily, or early to surface an unwritable path at start. */
  open(): void {
    if (this.#fd >= 0) return;
    let fd: number;
    try {
      // Append mode creates a missing lock file without truncating it (its
      // content means nothing); O_NONBLOCK keeps a FIFO in its place from
      // hanging the open until a reader comes; O_NOFOLLOW refuses a link,
      // dangling or not, so no file outside the bus directory is created
      // or locked through it.
      const flags = fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_APPEND | fs.constants.O_NONBLOCK | fs.constants.O_NOFOLLOW;
      fd = fs.openSync(this.path, flags, 0o666);
    } catch (error) {
      // ENXIO: a FIFO with no reader.
      if (errnoCode(error) === 'ENXIO') throw notRegular(this.path, 'a FIFO');
      if (errnoCode(error) === 'ELOOP') throw symlinkError(this.path);
      throw busError('open the lock file', this.path, error);
    }
    const st = fs.fstatSync(fd);
    if (!st.isFile()) {
      fs.closeSync(fd);
      throw notRegular(this.path, st.isFIFO() ? 'a FIFO' : 'not a regular file');
    }
    this.#fd = fd;
    this.#dev = st.dev;
    this.#ino = st.ino;
  }

  #closeFd(): void {
    if (this.#fd < 0) return;
    fs.closeSync(this.#fd);
    this.#fd = -1;
  }

  #stillCurrent(): boolean {
    const st = fs.lstatSync(this.path, { throwIfNoEntry: false });
    return st !== undefined && st.dev === this.#dev && st.ino === this.#ino;
  }

  /**
   * Uncontended, which is the usual case, this is one system call. Holders
   * keep the lock for a few system calls, so a contended lock is usually
   * free again within microseconds: retrying briefly beats the shortest
   * back-off (0.5 ms) by a wide margin.
   */
  #attempt(spinMs: number): number {
    if (this.#held) throw new Error(`BusLock: ${this.path} is already held by this process`);
    this.open();
    const deadline = performance.now() + spinMs;
    for (;;) {
      const result = flock(this.#fd, LOCK_EX | LOCK_NB);
      if (result !== -EWOULDBLOCK || performance.now() > deadline) return result;
    }
  }

  /** After flock returned `result`: true when we now hold the lock on the current F.lock. */
  #granted(result: number): boolean {
    if (result === -EINTR) return false;
    if (result < 0) throw busError('lock', this.path, errnoError(result, 'flock'));
    if (this.#stillCurrent()) {
      this.#held = true;
      return true;
    }
    // Someone replaced or removed F.lock while we waited: our lock guards a
    // file nobody else will lock. Start over on the file the path names.
    flock(this.#fd, LOCK_UN);
    this.#closeFd();
    return false;
  }

}

function notRegular(file: string, kind: string): BusError {
  return new BusError(`${file} is ${kind}; the lock file must be a regular file`, file, { code: 'EFTYPE' });
}
