/**
 * Several producers on one work queue (BusOptions.producers; docs/protocol.md,
 * "Extension: several producers"): each producer ends its stream with one
 * empty chunk, and each may be taken by a different consumer, so the
 * consumers count them together, in `F.ends`, under the bus lock. The file holds one line,
 * "<streams ended> <end markers counted in the current stream>", each number
 * zero-padded to 16 digits and the line rewritten in place (record-file.ts),
 * so a consumer killed mid-write never leaves it empty. When the
 * count reaches N, the consumer that took the last marker starts a new
 * stream (streams + 1, markers 0) and exits; every other consumer sees the
 * stream it joined has ended and exits too.
 *
 * Stale state must never end the next run early: every counting consumer
 * holds a shared flock on `F.ends` while it runs, and the first one to join
 * when nobody holds it (every consumer of the last run has gone, done or
 * dead) starts the count afresh. Consumers without the option, and peers
 * that know nothing of the file, never touch it.
 */
import fs from 'node:fs';
import { BusError, busError, errnoCode } from '../../errors.js';
import { LOCK_EX, LOCK_NB, LOCK_SH, errnoError, flock } from '../../sys/libc.js';
import { symlinkError } from '../../core/checks.js';
import { overwriteRecord, recordNumber } from '../../core/record-file.js';

interface Count {
  /** Streams that have ended on this bus so far. */
  streams: number;
  /** End-of-stream chunks taken in the current stream. */
  markers: number;
}

export class StreamEnds {
  readonly #file: string;
  readonly #producers: number;
  readonly #fd: number;
  /** `streams` when this consumer joined: the stream it belongs to. */
  readonly #stream: number;
  /** The count as this consumer last read or wrote it: stands in for a file found empty or torn. */
  #last: Count = { streams: 0, markers: 0 };

  /** Call with the bus lock held. */
  constructor(file: string, producers: number) {
    this.#file = file;
    this.#producers = producers;
    this.#fd = openCounter(file);
    try {
      // Nobody else counting: whatever the file says is left from a past run.
      const alone = flock(this.#fd, LOCK_EX | LOCK_NB) === 0;
      // Empty (new) or unreadable: a count from nothing.
      const count = this.#read() ?? { streams: 0, markers: 0 };
      if (alone) this.#write({ streams: count.streams, markers: 0 });
      this.#last = count;
      // Every exclusive attempt is made under the bus lock, which we hold, so this never waits.
      const result = flock(this.#fd, LOCK_SH | LOCK_NB);
      if (result < 0) throw busError('lock', file, errnoError(result, 'flock'));
      this.#stream = count.streams;
    } catch (error) {
      fs.closeSync(this.#fd);
      throw error;
    }
  }

  /** Under the bus lock: true once the stream this consumer joined has ended. */
  ended(): boolean {
    return this.#current().streams !== this.#stream;
  }

  /** Under the bus lock, on taking an end-of-stream chunk: counts it; true when it ends the stream. */
  count(): boolean {
    const { streams, markers } = this.#current();
    if (markers + 1 < this.#producers) {
      this.#write({ streams, markers: markers + 1 });
      return false;
    }
    this.#write({ streams: streams + 1, markers: 0 });
    return true;
  }

  /** Closing the fd drops our shared flock: we no longer count. */
  close(): void {
    fs.closeSync(this.#fd);
  }

  /**
   * The count now. A file found empty or unreadable while we count (left by
   * an older filebus killed between its truncate and its write) is no new
   * stream: it stands for what we saw last, and is written back as that.
   */
  #current(): Count {
    const count = this.#read();
    if (count !== undefined) return (this.#last = count);
    this.#write(this.#last);
    return this.#last;
  }

  /** The count in the file; undefined when it holds none (empty, torn, or garbage). */
  #read(): Count | undefined {
    const buffer = Buffer.alloc(64);
    let n: number;
    try {
      n = fs.readSync(this.#fd, buffer, 0, buffer.length, 0);
    } catch (error) {
      throw busError('read', this.#file, error);
    }
    const match = /^(\d+) (\d+)\n$/.exec(buffer.toString('latin1', 0, n));
    return match ? { streams: Number(match[1]), markers: Number(match[2]) } : undefined;
  }

  /** One fixed-width record over the old: never an empty file, whenever we are killed. */
  #write(count: Count): void {
    const line = Buffer.from(`${recordNumber(count.streams)} ${recordNumber(count.markers)}\n`, 'latin1');
    overwriteRecord(this.#fd, line, line.length, this.#file);
    this.#last = count;
  }
}

/** Opens (creating) `F.ends` for reading and writing, never through a link. */
function openCounter(file: string): number {
  let fd: number;
  try {
    fd = fs.openSync(file, fs.constants.O_RDWR | fs.constants.O_CREAT | fs.constants.O_NOFOLLOW | fs.constants.O_NONBLOCK, 0o666);
  } catch (error) {
    if (errnoCode(error) === 'ELOOP') throw symlinkError(file);
    throw busError('open', file, error);
  }
  if (!fs.fstatSync(fd).isFile()) {
    fs.closeSync(fd);
    throw new BusError(`${file} is not a regular file; the count of end-of-stream chunks must be one`, file, { code: 'EFTYPE' });
  }
  return fd;
}
