/**
 * The plain multicast cursor (docs/protocol.md, "Multicast mode"): a new
 * chunk is a new identity of `F` (device, inode, change time, size), read
 * without the lock, at most once. An extension that keeps chunks elsewhere
 * marks them with a second link; on the first such `F`, `takeOver` may
 * hand the consumer to the extension's cursor (src/core/extension.ts).
 */
import fs from 'node:fs';
import { busError } from '../errors.js';
import { ENOENT, errnoError, lstatChunk } from '../sys/libc.js';
import { checkRegular } from './checks.js';
import type { Cursor, TakeOver } from './extension.js';
import { type ScratchBuffer, readChunk } from './read.js';

const S_IFREG = 0o100000;

export interface FileCursorOptions {
  /** Read chunks into this reused buffer (valid until the next call). */
  readonly scratch?: ScratchBuffer | undefined;
  /** The bus is on a file system whose cached sizes may lag (NFS, FUSE): see readChunk. */
  readonly sizeMayBeStale?: boolean | undefined;
  readonly takeOver?: TakeOver | undefined;
}

export class FileCursor implements Cursor {
  readonly #file: string;
  readonly #options: FileCursorOptions;
  /** Identity of the last chunk delivered or passed over. */
  #last: string | undefined;
  /** Whether `F` was missing at our first look: we were there before the first chunk. */
  #emptyAtStart: boolean | undefined;
  /** The extension's cursor, once one took over. */
  #successor: Cursor | undefined;

  constructor(file: string, options: FileCursorOptions = {}) {
    this.#file = file;
    this.#options = options;
  }

  get behind(): boolean {
    return this.#successor?.behind ?? false;
  }

  next(): Buffer | undefined {
    if (this.#successor) return this.#successor.next();
    for (;;) {
      // lstat: a link put at `F` is refused, never looked through (a dangling one would pass for no chunk).
      // Through statx into a reused buffer: this look runs at every wake-up and every poll interval.
      const st = lstatChunk(this.#file);
      this.#emptyAtStart ??= st === -ENOENT;
      if (st === -ENOENT) return undefined;
      if (typeof st === 'number') throw busError('stat', this.#file, errnoError(st));
      // Not a regular file: node:fs's look says what it is, in the usual words.
      if (st.type !== S_IFREG) checkRegular(this.#file, fs.lstatSync(this.#file, { bigint: true, throwIfNoEntry: false }));
      if (st.identity === this.#last) return undefined;
      if (st.links > 1 && this.#handOver()) return this.#successor!.next();
      const chunk = readChunk(this.#file, this.#options.scratch, this.#options.sizeMayBeStale);
      // Gone (taken by a back-pressure consumer) or unchanged since the stat.
      if (chunk === undefined || chunk.identity === this.#last) return undefined;
      // Replaced between the stat and the open: look again.
      if (chunk.identity !== st.identity && chunk.links > 1 && this.#options.takeOver) continue;
      this.#last = chunk.identity;
      // Empty chunks (back-pressure end markers seen by an eavesdropper) are not passed on.
      if (chunk.data.length > 0) return chunk.data;
    }
  }

  close(): void {
    this.#successor?.close?.();
  }

  #handOver(): boolean {
    const { takeOver } = this.#options;
    if (!takeOver) return false;
    // Once per consumer at most: the extension gets node:fs's full look at F.
    const file = fs.lstatSync(this.#file, { bigint: true, throwIfNoEntry: false });
    if (file === undefined) return false;
    this.#successor = takeOver({ file, fromTheStart: this.#emptyAtStart === true && this.#last === undefined, lastIdentity: this.#last });
    return this.#successor !== undefined;
  }
}
