/**
 * inotify(7) through koffi, for a thread that waits for the bus by
 * blocking in poll(2). Node's own `fs.watch` takes no event mask: it
 * reports every event on the directory (a publish raises four or five:
 * create and modify of `F.__new__`, moved-from, moved-to) and each one is
 * a wake-up of the event loop and a callback. Here the kernel filters: a
 * role asks only for the event it waits for, so a consumer wakes once per
 * chunk.
 */
import fs from 'node:fs';
import { POLLIN, errnoError, inotifyAddWatch, inotifyInit, read } from './libc.js';
import { pollWith } from './wakeups.js';

export const IN_MOVED_TO = 0x80;
export const IN_CREATE = 0x100;
export const IN_DELETE = 0x200;
export const IN_MOVED_FROM = 0x40;
const IN_CLOSE_WRITE = 0x8;
const IN_MODIFY = 0x2;
const IN_DELETE_SELF = 0x400;
const IN_Q_OVERFLOW = 0x4000;
const IN_IGNORED = 0x8000;
const IN_ONLYDIR = 0x1000000;
const IN_NONBLOCK = 0o4000;
const IN_CLOEXEC = 0o2000000;

/** What one wait ended with. */
export type Wake = 'event' | 'timeout' | 'interrupted';

/**
 * One inotify instance watching one directory for changes of one name in
 * it. Not thread-safe; one per waiting thread.
 */
export class DirectoryWatch {
  readonly #fd: number;
  readonly #name: Buffer;
  /** One pollfd (int fd; short events; short revents). */
  readonly #pollfd = Buffer.alloc(8);
  /** Enough for a burst of events; the kernel never splits one. */
  readonly #events = Buffer.alloc(16 * 1024);
  #alive = true;
  /** Watch descriptor of `F.lock`, -1 when none. */
  readonly #lockWatch: number;
  /** Watch descriptors of the files added with `watchFile`: any event on them is a wake. */
  readonly #fileWatches = new Set<number>();

  /**
   * Watches `dir` for `mask` (IN_* bits) on entries called `name`. Throws
   * with the errno when inotify is unavailable (ENOSPC: too many watches;
   * ENOSYS; EMFILE).
   */
  constructor(dir: string, name: string, mask: number, lockFile?: string) {
    const fd = inotifyInit(IN_NONBLOCK | IN_CLOEXEC);
    if (fd < 0) throw errnoError(fd, 'inotify_init1');
    const dirWatch = mask === 0 ? -1 : inotifyAddWatch(fd, dir, mask | IN_ONLYDIR);
    if (mask !== 0 && dirWatch < 0) {
      fs.closeSync(fd);
      throw errnoError(dirWatch, `inotify_add_watch ${dir}`);
    }
    // The lock file is never replaced, so a watch on the file itself holds.
    // Best effort: without it a waiter for the lock falls back to its back-off.
    this.#lockWatch = lockFile === undefined ? -1 : Math.max(-1, inotifyAddWatch(fd, lockFile, IN_CLOSE_WRITE));
    this.#fd = fd;
    this.#name = Buffer.from(name);
    this.#pollfd.writeInt32LE(fd, 0);
    this.#pollfd.writeInt16LE(POLLIN, 4);
  }

  /**
   * Also wakes on any write, close after writing or removal of `file` (a
   * file or a directory, whose entries' changes then count). Best effort:
   * false when it cannot be watched, and the poll carries on alone.
   */
  watchFile(file: string): boolean {
    const watch = inotifyAddWatch(this.#fd, file, IN_MODIFY | IN_CLOSE_WRITE | IN_DELETE_SELF | IN_CREATE | IN_MOVED_TO);
    if (watch < 0) return false;
    this.#fileWatches.add(watch);
    return true;
  }

  /** False once the directory's watch is gone (the directory was removed): polling carries on alone. */
  get alive(): boolean {
    return this.#alive;
  }

  /**
   * Blocks until an event for our name arrives or `timeoutMs` passes (or a
   * signal or another wakeup interrupts the wait: src/sys/wakeups.ts).
   * Events for other names are read and dropped on the way. A close of the
   * lock file counts only with `lockReleases`: for a waiter that found the
   * lock taken. Otherwise it is dropped too, since it is as likely to be
   * this process's own release (each one closes `F.lock`), and waking on it
   * made an idle consumer wake itself in a loop (issue 17, item 7).
   */
  wait(timeoutMs: number, lockReleases = false): Wake {
    let deadline: number | undefined;
    for (;;) {
      const polled = pollWith(this.#pollfd, timeoutMs);
      if (polled !== 'ready') return polled;
      if (this.#drain(lockReleases)) return 'event';
      if (!this.#alive) return 'timeout';
      // Only other names' events: wait out the rest of the timeout.
      deadline ??= performance.now() + timeoutMs;
      timeoutMs = deadline - performance.now();
      if (timeoutMs <= 0) return 'timeout';
    }
  }

  close(): void {
    if (this.#fd < 0) return;
    try {
      fs.closeSync(this.#fd);
    } catch {}
    this.#alive = false;
  }

  /** Reads every queued event; true when one concerns our name (or the queue overflowed), or is a release of the lock that `lockReleases` asks for. */
  #drain(lockReleases: boolean): boolean {
    let hit = false;
    for (;;) {
      // An empty queue is -EAGAIN here, not a thrown Error.
      const length = read(this.#fd, this.#events);
      if (length <= 0) return hit;
      for (let offset = 0; offset + 16 <= length; ) {
        const watch = this.#events.readInt32LE(offset);
        const mask = this.#events.readUInt32LE(offset + 4);
        const nameLength = this.#events.readUInt32LE(offset + 12);
        if (mask & IN_Q_OVERFLOW) hit = true;
        else if (watch === this.#lockWatch) hit ||= lockReleases && (mask & IN_CLOSE_WRITE) !== 0;
        else if (this.#fileWatches.has(watch)) {
          // IN_IGNORED: that file is gone (its watch with it); a wake, so its watcher looks again.
          if (mask & IN_IGNORED) this.#fileWatches.delete(watch);
          hit = true;
        } else if (mask & IN_IGNORED) this.#alive = false;
        else if (this.#named(offset + 16, nameLength)) hit = true;
        offset += 16 + nameLength;
      }
      // A full buffer may have left events queued.
      if (length < this.#events.length - 4096) return hit;
    }
  }

  /** The event's name is NUL-padded to `length` bytes. */
  #named(start: number, length: number): boolean {
    const name = this.#name;
    if (length < name.length) return false;
    if (this.#events.compare(name, 0, name.length, start, start + name.length) !== 0) return false;
    return length === name.length || this.#events[start + name.length] === 0;
  }
}
