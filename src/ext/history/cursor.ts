/**
 * A history consumer's position on the bus (docs/protocol.md, "Consuming
 * with history"). The core's FileCursor reads `F` until it sees a chunk
 * with more than one link; `historyTakeOver` then hands the consumer to a
 * HistoryCursor, which reads entries by number through the directory's
 * descriptor (./files.ts). Chunks published by peers that write no history
 * still arrive by the identity of `F`, as in plain multicast: such an `F`
 * has one link, while a chunk with history is also an entry.
 *
 * Synchronous on purpose, so any wait loop can drive it. The decisions
 * themselves are pure functions in ./decisions.ts.
 */
import fs from 'node:fs';
import { busError, errnoCode } from '../../errors.js';
import { checkRegular, symlinkError } from '../../core/checks.js';
import type { Cursor, Handover, TakeOver } from '../../core/extension.js';
import { identityOf, readChunk, type ScratchBuffer } from '../../core/read.js';
import type { BusPaths } from '../../options.js';
import { afterGap, afterStartOver, startAt } from './decisions.js';
import { HistoryDir, entryName, readHeadOnce } from './files.js';

/** How often an idle consumer looks for an entry that a killed producer linked but never published at `F`. */
const LOOK_MS = 100;

/** Chunks a consumer skipped because they left the window before it read them. */
export interface MissedChunks {
  /** Sequence number of the first chunk missed. */
  readonly first: number;
  /** Sequence number of the last chunk missed. */
  readonly last: number;
  /** `last - first + 1`. */
  readonly count: number;
}

export interface CursorOptions {
  /** Start from the oldest chunk kept instead of the newest. */
  replay?: boolean;
  /** Read chunks into this reused buffer (valid until the next call). */
  scratch?: ScratchBuffer | undefined;
  /** The bus is on a file system whose cached sizes may lag (NFS, FUSE): see readChunk. */
  sizeMayBeStale?: boolean;
  /** Told, before the chunk that follows them, of chunks that left the window unread. */
  onMissed?: ((missed: MissedChunks) => void) | undefined;
  log?: (message: string) => void;
}

/** What the consumer saw of the history when it started. */
interface AtStart {
  /** Device and inode of `F.history` then; undefined when there was none. */
  readonly id: string | undefined;
  /** Its newest entry then (0: none). */
  readonly newest: number;
}

/**
 * The newest chunk published: the head file's number when that entry is
 * there (no listing needed), else the listing's newest. (An entry beyond
 * the head, linked by a producer killed before it wrote the head, is read
 * after it.)
 */
function newestEntry(dir: HistoryDir): number {
  const head = readHeadOnce(dir);
  if (head?.kind === 'ok' && head.seq > 0 && dir.has(head.seq)) return head.seq;
  return dir.list().at(-1) ?? 0;
}

/**
 * For FileCursor's `takeOver`: call it when the consumer starts, before it
 * first looks at `F`. It records whether the history exists then (and its
 * newest entry), which decides where the cursor begins when it takes over
 * (decisions.ts, `startAt`). A link at `F.history` is refused here already.
 */
export function historyTakeOver(paths: BusPaths, options: CursorOptions): TakeOver {
  const dir = HistoryDir.open(paths.history);
  const atStart: AtStart = { id: dir?.id, newest: dir === undefined ? 0 : newestEntry(dir) };
  dir?.close();
  return (handover) => new HistoryCursor(paths, options, atStart, handover);
}

export class HistoryCursor implements Cursor {
  readonly #file: string;
  readonly #path: string;
  readonly #options: CursorOptions;
  readonly #atStart: AtStart;
  readonly #handover: Handover;
  #dir: HistoryDir | undefined;
  /** The sequence number wanted next; undefined while there is no history to read. */
  #next: number | undefined;
  #started = false;
  /** Identity of `F` when last examined: unchanged means nothing was published since. */
  #lastF: string | undefined;
  /** Device and inode of the entry delivered last, which `F` is while we are caught up. */
  #lastEntry: string | undefined;
  /** When we last looked for an entry linked but never renamed over `F`. */
  #lastLook = 0;
  /** What `F` held when last looked at, while we read the entries up to it. */
  #target: { identity: string; inode: string } | undefined;

  constructor(paths: BusPaths, options: CursorOptions, atStart: AtStart, handover: Handover) {
    this.#file = paths.file;
    this.#path = paths.history;
    this.#options = options;
    this.#atStart = atStart;
    this.#handover = handover;
    this.#lastF = handover.lastIdentity;
  }

  /**
   * True while entries older than `F` remain to be read: the next call may
   * return one at once, with no notification to say so.
   */
  get behind(): boolean {
    return this.#target !== undefined;
  }

  close(): void {
    this.#dir?.close();
    this.#dir = undefined;
  }

  /** The next chunk to deliver, or undefined when there is none yet. */
  next(): Buffer | undefined {
    if (!this.#started) this.#start();
    for (;;) {
      // Behind `F`, entries are read straight on. Otherwise `F` is looked at
      // first: unchanged, nothing was published, and a stat costs far less
      // than looking for an entry not there yet.
      let st: fs.BigIntStats | undefined;
      if (this.#target === undefined) {
        st = this.#statFile();
        if (st === undefined || identityOf(st) === this.#lastF) {
          if (!this.#linkedWithoutPublish()) return undefined;
          st = undefined;
        } else {
          // Something was published: is F.history still the directory we read?
          this.#checkDir();
          if (this.#next !== undefined && st.nlink > 1n) this.#target = { identity: identityOf(st), inode: `${st.dev}:${st.ino}` };
        }
      }
      // A chunk with one link at F came from a peer without history: an
      // entry is unlikely, so ask before opening.
      if (this.#next !== undefined && this.#dir !== undefined && (st === undefined || st.nlink > 1n || this.#dir.has(this.#next))) {
        const entry = this.#readEntry(this.#dir, this.#next);
        if (entry !== undefined) {
          // The entry F showed: caught up with what we saw of it.
          if (this.#target !== undefined && this.#lastEntry === this.#target.inode) {
            this.#lastF = this.#target.identity;
            this.#target = undefined;
          }
          if (entry.length > 0) return entry;
          continue; // an empty chunk: nothing to pass on
        }
      }
      this.#target = undefined;
      const step = this.#examineFile(st ?? this.#statFile());
      if (step !== 'again') return step;
    }
  }

  /** Where to begin (decisions.ts, `startAt`). */
  #start(): void {
    this.#started = true;
    const dir = HistoryDir.open(this.#path);
    if (dir === undefined) {
      if (this.#options.replay) this.#options.log?.(`no history at ${this.#path}: starting from the newest chunk`);
      return;
    }
    this.#dir = dir;
    const same = dir.id === this.#atStart.id;
    if (this.#atStart.id !== undefined && !same) {
      // Made again between our start and now: all of it is new to us.
      this.#next = afterStartOver();
      return;
    }
    this.#next = startAt({
      replay: this.#options.replay === true,
      existedAtStart: same,
      newestAtStart: this.#atStart.newest,
      fromTheStart: this.#handover.fromTheStart,
      deliveredBefore: this.#handover.lastIdentity !== undefined,
      oldestNow: this.#options.replay ? dir.list()[0] : undefined,
    });
  }

  /**
   * Whether `F.history` is still the directory we hold. Removed: read `F`
   * alone until one appears. Another one (removed and made again, or one
   * appearing where there was none): a new history, read from its first
   * number. A link there: refused.
   */
  #checkDir(): void {
    if (this.#dir !== undefined) {
      const state = this.#dir.check();
      if (state === 'same') return;
      this.close();
      if (state === 'missing') return;
    }
    const dir = HistoryDir.open(this.#path);
    if (dir === undefined) return;
    this.#dir = dir;
    if (this.#next !== undefined) this.#options.log?.(`the history at ${this.#path} started over (we were at ${this.#next - 1})`);
    this.#next = afterStartOver();
  }

  /**
   * A producer killed between linking an entry and renaming it over `F`
   * leaves a whole chunk that `F` never shows; look for one now and then
   * (and whether the history is still ours), so it does not wait for the
   * next publish.
   */
  #linkedWithoutPublish(): boolean {
    const now = performance.now();
    if (now - this.#lastLook < LOOK_MS) return false;
    this.#lastLook = now;
    this.#checkDir();
    return this.#next !== undefined && this.#dir !== undefined && this.#dir.has(this.#next);
  }

  /** lstat: a link put at `F` is refused, never looked through (a dangling one would pass for no chunk). */
  #statFile(): fs.BigIntStats | undefined {
    const st = fs.lstatSync(this.#file, { bigint: true, throwIfNoEntry: false });
    if (st !== undefined) checkRegular(this.#file, st);
    return st;
  }

  /** Reads entry `seq` through the directory held and moves past it; undefined when it is not there. */
  #readEntry(dir: HistoryDir, seq: number): Buffer | undefined {
    let chunk;
    try {
      chunk = readChunk(dir.entryPath(seq), this.#options.scratch, this.#options.sizeMayBeStale);
    } catch (error) {
      // Named under F.history, not through /proc.
      const shown = dir.shownPath(entryName(seq));
      if (errnoCode(error) === 'ELOOP') throw symlinkError(shown);
      throw busError('read', shown, error);
    }
    if (chunk === undefined) return undefined;
    this.#next = seq + 1;
    this.#lastEntry = chunk.inode;
    return chunk.data;
  }

  /**
   * The next entry is not there: look at `F` (as `st` says). Returns a
   * chunk from a peer without history, undefined when there is nothing
   * new, or 'again' when the position moved and entries should be read
   * again.
   */
  #examineFile(st: fs.BigIntStats | undefined): Buffer | undefined | 'again' {
    if (st === undefined) return undefined;
    const identity = identityOf(st);
    if (identity === this.#lastF) return undefined;
    // One link: a peer without history. No history to read: F alone, by its identity.
    if (st.nlink === 1n || this.#dir === undefined || this.#next === undefined) return this.#readPlain();
    if (`${st.dev}:${st.ino}` === this.#lastEntry) {
      // F is the entry we delivered last: caught up.
      this.#lastF = identity;
      return undefined;
    }
    return this.#catchUp(this.#dir, this.#next, identity);
  }

  /**
   * `F` holds an entry other than the last we delivered and the next entry
   * is missing: the listing decides (decisions.ts, `afterGap`).
   */
  #catchUp(dir: HistoryDir, next: number, identity: string): 'again' | undefined {
    if (dir.has(next)) return 'again';
    const step = afterGap(next, dir.list());
    if (step.kind === 'read') return 'again';
    if (step.kind === 'wait') {
      this.#lastF = identity;
      return undefined;
    }
    this.#options.onMissed?.({ first: step.first, last: step.last, count: step.last - step.first + 1 });
    this.#next = step.next;
    return 'again';
  }

  /** A chunk read from `F` by its identity: from a peer without history, or while no history can be read. */
  #readPlain(): Buffer | undefined | 'again' {
    const chunk = readChunk(this.#file, this.#options.scratch, this.#options.sizeMayBeStale);
    if (chunk === undefined || chunk.identity === this.#lastF) return undefined;
    // Replaced since the stat by a chunk with history: that one comes through the history.
    if (chunk.links > 1 && this.#dir !== undefined && this.#next !== undefined) return 'again';
    this.#lastF = chunk.identity;
    // The entry we delivered last, its history entry since removed (the
    // history deleted by hand): delivered already.
    if (chunk.inode === this.#lastEntry) return undefined;
    return chunk.data.length > 0 ? chunk.data : undefined;
  }
}
