/**
 * Several producers on one work queue (BusOptions.producers; docs/protocol.md,
 * "Extension: several producers"): each producer ends its stream with one
 * empty chunk, and each may be taken by a different consumer, so the
 * consumers count them together, in `F.ends`, under the bus lock. The file holds one line,
 * "<streams ended> <end markers counted in the current stream> <last marker
 * counted>", each number zero-padded and the line rewritten in place
 * (record-file.ts), so a consumer killed mid-write never leaves it empty.
 * The last field (inode and change time of the marker counted last) makes
 * counting and removing one step for every observer: a consumer killed
 * between the two leaves the marker on the bus, and whoever takes it next
 * finds it already counted and only removes it. When the
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
  /** The end-of-stream chunk counted last (`markerId`), NO_MARKER before any. */
  marker: string;
}

const NO_MARKER = '0:0';

/**
 * Which end-of-stream chunk a count is for: inode and change time (ns) of
 * the file, from readChunk's identity. Not the device: all of the bus is in
 * one directory, and hosts sharing it over NFS number devices each their own way.
 */
export function markerId(identity: string): string {
  const [, ino, ctime] = identity.split(':');
  return `${BigInt(ino ?? 0)}:${BigInt(ctime ?? 0)}`;
}

/** Digits of the marker's inode and change time: 2^64 has 20, so every line has the same length. */
const MARKER_DIGITS = 20;

export class StreamEnds {
  readonly #file: string;
  readonly #producers: number;
  readonly #fd: number;
  /** `streams` when this consumer joined: the stream it belongs to. */
  readonly #stream: number;
  /** The count as this consumer last read or wrote it: stands in for a file found empty or torn. */
  #last: Count = { streams: 0, markers: 0, marker: NO_MARKER };

  /** Call with the bus lock held. */
  constructor(file: string, producers: number) {
    this.#file = file;
    this.#producers = producers;
    this.#fd = openCounter(file);
    try {
      // Nobody else counting: whatever the file says is left from a past run.
      const alone = flock(this.#fd, LOCK_EX | LOCK_NB) === 0;
      // Empty (new) or unreadable: a count from nothing.
      const count = this.#read() ?? { streams: 0, markers: 0, marker: NO_MARKER };
      // The marker stays: if it is still on the bus, it was counted (in the past run), and is only removed.
      if (alone) this.#write({ ...count, markers: 0 });
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

  /**
   * Under the bus lock, on taking an end-of-stream chunk whose readChunk
   * identity is `identity`: true when a consumer has counted it already
   * (and died before removing it). It is then only to be removed.
   */
  counted(identity: string): boolean {
    return this.#current().marker === markerId(identity);
  }

  /**
   * Under the bus lock, on taking an end-of-stream chunk not `counted`
   * yet: counts it, recording which it was; true when it ends the stream.
   */
  count(identity: string): boolean {
    const { streams, markers } = this.#current();
    const marker = markerId(identity);
    if (markers + 1 < this.#producers) {
      this.#write({ streams, markers: markers + 1, marker });
      return false;
    }
    this.#write({ streams: streams + 1, markers: 0, marker });
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
    const buffer = Buffer.alloc(256);
    let n: number;
    try {
      n = fs.readSync(this.#fd, buffer, 0, buffer.length, 0);
    } catch (error) {
      throw busError('read', this.#file, error);
    }
    // The marker field is newer than the two counts: a line without it counted no marker we could know.
    const match = /^(\d+) (\d+)(?: (\d+):(\d+))?\n$/.exec(buffer.toString('latin1', 0, n));
    if (!match) return undefined;
    const marker = match[3] === undefined ? NO_MARKER : `${BigInt(match[3])}:${BigInt(match[4]!)}`;
    return { streams: Number(match[1]), markers: Number(match[2]), marker };
  }

  /** One fixed-width record over the old: never an empty file, whenever we are killed. */
  #write(count: Count): void {
    const [ino, ctime] = count.marker.split(':') as [string, string];
    const line = Buffer.from(`${recordNumber(count.streams)} ${recordNumber(count.markers)} ${ino.padStart(MARKER_DIGITS, '0')}:${ctime.padStart(MARKER_DIGITS, '0')}\n`, 'latin1');
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
