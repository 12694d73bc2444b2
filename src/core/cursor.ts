/**
 * The plain multicast cursor (docs/protocol.md, "Multicast mode"): a new
 * chunk is a new identity of `F` (device, inode, change time, size), read
 * without the lock, at most once. An extension that keeps chunks elsewhere
 * marks them with a second link; on the first such `F`, `takeOver` may
 * hand the consumer to the extension's cursor (src/core/extension.ts).
 */
import fs from 'node:fs';
import { checkRegular } from './checks.js';
import type { Cursor, TakeOver } from './extension.js';
import { type ScratchBuffer, identityOf, readChunk } from './read.js';

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
      const st = fs.lstatSync(this.#file, { bigint: true, throwIfNoEntry: false });
      this.#emptyAtStart ??= st === undefined;
      if (st === undefined) return undefined;
      checkRegular(this.#file, st);
      if (identityOf(st) === this.#last) return undefined;
      if (st.nlink > 1n && this.#handOver(st)) return this.#successor!.next();
      const chunk = readChunk(this.#file, this.#options.scratch, this.#options.sizeMayBeStale);
      // Gone (taken by a back-pressure consumer) or unchanged since the stat.
      if (chunk === undefined || chunk.identity === this.#last) return undefined;
      // Replaced between the stat and the open: look again.
      if (chunk.identity !== identityOf(st) && chunk.links > 1 && this.#options.takeOver) continue;
      this.#last = chunk.identity;
      // Empty chunks (back-pressure end markers seen by an eavesdropper) are not passed on.
      if (chunk.data.length > 0) return chunk.data;
    }
  }

  close(): void {
    this.#successor?.close?.();
  }

  #handOver(file: fs.BigIntStats): boolean {
    const { takeOver } = this.#options;
    this.#successor = takeOver?.({ file, fromTheStart: this.#emptyAtStart === true && this.#last === undefined, lastIdentity: this.#last });
    return this.#successor !== undefined;
  }
}
