/**
 * The history extension (docs/protocol.md, "Extension: history"): besides
 * `F`, producers that opt in keep the last N chunks as numbered hard links
 * in `F.history/`, so a multicast consumer that is a moment late reads what
 * it missed in order instead of losing it, and one that is too late knows
 * how much it lost.
 *
 * Layout: `F.history/<seq>` (16 decimal digits, zero-padded, so `ls` sorts
 * them) and `F.history/head`, the last sequence number given. Under the
 * lock a producer links the finished staging file to the next number, then
 * renames it over `F` as every peer does: `F` and the newest entry are one
 * inode, so the history costs a link per chunk, never a copy of the data.
 * Peers that know nothing of this keep reading and writing `F` alone.
 *
 * Producer side: `HistoryWriter`, driven by publish.ts under the lock.
 * Consumer side: `HistoryCursor`, a synchronous cursor the wait loop calls
 * on each wake until it has nothing more to give.
 */
import fs from 'node:fs';
import path from 'node:path';
import { BusError, busError, errnoCode } from '../../errors.js';
import type { BusPaths } from '../../options.js';
import { checkRegular, refuseLink, symlinkError } from '../../core/checks.js';
import type { Cursor, PublishHook } from '../../core/extension.js';
import { identityOf, readChunk, type ScratchBuffer } from '../../core/read.js';
import { RECORD_DIGITS } from '../../core/record-file.js';
import { ENOENT, errnoError, link, lstatIdentity, preadStart, pwriteStart, unlink } from '../../sys/libc.js';

/** Digits of an entry's name: 10^16 chunks is three centuries at a million a second. */
const DIGITS = RECORD_DIGITS;
const ENTRY = /^\d{16}$/;
const HEAD = 'head';
/** Largest head file we read: the number, a newline, room for a peer's whitespace. */
const HEAD_BYTES = 64;
/** How often an idle consumer looks for an entry that a killed producer linked but never published at `F`. */
const LOOK_MS = 100;
const S_IFLNK = 0o120000;

/** Chunks a consumer skipped because they left the window before it read them. */
export interface MissedChunks {
  /** Sequence number of the first chunk missed. */
  readonly first: number;
  /** Sequence number of the last chunk missed. */
  readonly last: number;
  /** `last - first + 1`. */
  readonly count: number;
}

/** The sequence numbers a history holds now, oldest and newest. */
export interface HistoryWindow {
  readonly first: number;
  readonly last: number;
}

export function entryName(seq: number): string {
  return String(seq).padStart(DIGITS, '0');
}

/** Sequence numbers of the entries in `dir`, ascending; empty when it is missing. */
function listEntries(dir: string): number[] {
  let names: string[];
  try {
    names = fs.readdirSync(dir);
  } catch (error) {
    if (errnoCode(error) === 'ENOENT' || errnoCode(error) === 'ENOTDIR') return [];
    throw busError('list', dir, error);
  }
  const seqs: number[] = [];
  for (const name of names) if (ENTRY.test(name)) seqs.push(Number(name));
  return seqs.sort((a, b) => a - b);
}

/**
 * Refuses `F.history` when it is a symbolic link: entries and the head are
 * reached through it, and O_NOFOLLOW only guards the last component of a
 * path, so a link swapped in would have us read or write a directory
 * outside the bus. Returns the lstat, undefined when it is missing.
 */
function lstatHistory(dir: string): fs.Stats | undefined {
  let st: fs.Stats | undefined;
  try {
    st = fs.lstatSync(dir, { throwIfNoEntry: false });
  } catch (error) {
    // A component of the path is a file: no history there, as for a missing one.
    if (errnoCode(error) === 'ENOTDIR') return undefined;
    throw busError('look at', dir, error);
  }
  if (st?.isSymbolicLink()) throw symlinkError(dir);
  return st;
}

/**
 * The number in a head file's bytes (digits, then optional whitespace);
 * undefined if they hold none. By hand: producers parse it every publish.
 */
function parseHead(bytes: Buffer): number | undefined {
  let n = 0;
  let digits = 0;
  for (; digits < bytes.length; digits++) {
    const c = bytes[digits]!;
    if (c < 48 || c > 57) break;
    n = n * 10 + (c - 48);
  }
  if (digits === 0 || digits > DIGITS) return undefined;
  for (let i = digits; i < bytes.length; i++) if (bytes[i] !== 10 && bytes[i] !== 32 && bytes[i] !== 13 && bytes[i] !== 9) return undefined;
  return n;
}

/** Reads `F.history/head` afresh; undefined when there is no history (or no head yet). */
function readHead(dir: string): number | undefined {
  let fd: number;
  try {
    fd = fs.openSync(path.join(dir, HEAD), fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW | fs.constants.O_NONBLOCK);
  } catch {
    return undefined;
  }
  try {
    const buffer = Buffer.allocUnsafe(HEAD_BYTES);
    return parseHead(buffer.subarray(0, fs.readSync(fd, buffer, 0, HEAD_BYTES, 0)));
  } catch {
    return undefined;
  } finally {
    fs.closeSync(fd);
  }
}

/**
 * The window a bus's history holds now, for `filebus status`; undefined
 * when the bus keeps no history (or has not published into it yet).
 */
export function historyWindow(paths: Pick<BusPaths, 'history'>): HistoryWindow | undefined {
  lstatHistory(paths.history);
  const seqs = listEntries(paths.history);
  return seqs.length === 0 ? undefined : { first: seqs[0]!, last: seqs.at(-1)! };
}

/**
 * A producer's side: gives each chunk the next sequence number of the bus
 * and keeps the window at `keep` chunks. Every method runs under the bus
 * lock, so all producers of a bus share one sequence with no gaps and no
 * duplicates: the number comes from the head file, which only lock holders
 * write, and `link(2)` refuses a name that exists, so even a head file
 * left behind by a producer killed mid-publish cannot make two chunks
 * share a number.
 */
export class HistoryWriter implements PublishHook {
  readonly #dir: string;
  readonly #keep: number;
  readonly #headPath: string;
  #headFd = -1;
  /** Device and inode of the directory opened, to notice it being replaced. */
  #dirId = '';
  /** Publishes until the next full tidy of the window. */
  #untilTidy = 0;
  /** The number the chunk being published got in `staged`. */
  #seq = 0;
  readonly #headBytes = Buffer.allocUnsafe(HEAD_BYTES);

  constructor(paths: BusPaths, keep: number) {
    this.#dir = paths.history;
    this.#headPath = path.join(paths.history, HEAD);
    this.#keep = keep;
    refuseLink(this.#dir);
  }

  /**
   * Before the chunk is staged. The first publish (and then one in every
   * `keep`) tidies the window: what a producer killed mid-publish left
   * beyond it is removed there, so the bus never holds more than `keep`
   * chunks plus a few. (A staging file such a producer left linked to an
   * entry is never truncated: publish.ts stages into a fresh file.)
   */
  beforeStage(): void {
    if (this.#headFd < 0) this.#open();
    else this.#checkDir();
    if (--this.#untilTidy <= 0) this.#tidy();
  }

  /**
   * Once the staged chunk is whole, before it is renamed over `F`: links it
   * as the next entry and returns its sequence number. Linking first means
   * `F` never shows a chunk the history lacks.
   */
  staged(staging: string): void {
    this.#seq = this.#link(staging);
  }

  published(): void {
    this.#advance(this.#seq);
  }

  #link(staging: string): number {
    for (let attempt = 0; ; attempt++) {
      const seq = this.#head() + 1;
      const result = link(staging, `${this.#dir}/${entryName(seq)}`);
      if (result === 0) return seq;
      const error = errnoError(result);
      const code = errnoCode(error);
      // EEXIST: a producer was killed after linking an entry and before
      // advancing the head; that entry is a whole chunk that consumers may
      // already have read, so it keeps its number and we take the next.
      // ENOENT: someone removed the directory; start it again.
      if ((code === 'EEXIST' || code === 'ENOENT') && attempt < 3) {
        this.#reopen();
        continue;
      }
      throw busError('link into the history', path.join(this.#dir, entryName(seq)), error);
    }
  }

  /** After the rename: records the head and drops the entry that left the window. */
  #advance(seq: number): void {
    this.#writeHead(seq);
    if (seq - this.#keep >= 1) this.#remove(seq - this.#keep);
  }

  close(): void {
    if (this.#headFd < 0) return;
    fs.closeSync(this.#headFd);
    this.#headFd = -1;
  }

  /**
   * Under the lock, before each publish: `F.history` is still the directory
   * we opened. A link put in its place is refused; a directory removed or
   * replaced by another is opened afresh (a peer started the history over).
   */
  #checkDir(): void {
    // Through libc: an lstat through node:fs builds a Stats with four Dates, every publish.
    const st = lstatIdentity(this.#dir);
    if (typeof st !== 'number' && st.type === S_IFLNK) throw symlinkError(this.#dir);
    if (typeof st === 'number' || st.id !== this.#dirId) this.#reopen();
  }

  /** Makes the directory if missing and opens the head file, refusing anything planted in their place. */
  #open(): void {
    let st = lstatHistory(this.#dir);
    if (st === undefined) {
      try {
        fs.mkdirSync(this.#dir, 0o777);
      } catch (error) {
        if (errnoCode(error) !== 'EEXIST') throw busError('create the history directory', this.#dir, error);
      }
      st = lstatHistory(this.#dir);
    }
    if (st === undefined || !st.isDirectory()) {
      throw new BusError(`${this.#dir} is not a directory; the history must be one`, this.#dir, { code: 'ENOTDIR' });
    }
    const id = lstatIdentity(this.#dir);
    if (typeof id === 'number') throw busError('look at', this.#dir, errnoError(id));
    if (id.type === S_IFLNK) throw symlinkError(this.#dir);
    this.#dirId = id.id;
    try {
      this.#headFd = fs.openSync(this.#headPath, fs.constants.O_RDWR | fs.constants.O_CREAT | fs.constants.O_NOFOLLOW | fs.constants.O_NONBLOCK, 0o666);
    } catch (error) {
      throw busError('open', this.#headPath, error);
    }
    if (!fs.fstatSync(this.#headFd).isFile()) {
      this.close();
      throw new BusError(`${this.#headPath} is not a regular file`, this.#headPath, { code: 'EFTYPE' });
    }
  }

  /** The directory or head file may have been replaced (or removed) since we opened them. */
  #reopen(): void {
    this.close();
    this.#open();
    this.#tidy();
  }

  /**
   * One listing: the head becomes at least the newest entry (one may have
   * been linked by a producer killed before it advanced the head), and
   * entries older than the window go, with the dropped entry a killed
   * producer never got to.
   */
  #tidy(): void {
    const seqs = listEntries(this.#dir);
    const newest = seqs.at(-1) ?? 0;
    const head = Math.max(this.#head(), newest);
    if (head !== this.#head()) this.#writeHead(head);
    for (const seq of seqs) {
      if (seq > head - this.#keep) break;
      this.#remove(seq);
    }
    this.#untilTidy = Math.max(this.#keep, 64);
  }

  #head(): number {
    const n = preadStart(this.#headFd, this.#headBytes, HEAD_BYTES);
    if (n < 0) throw busError('read', this.#headPath, errnoError(n));
    // Empty: a new history. Anything unreadable is treated the same, and the
    // link that follows (EEXIST) and the tidy put the count right.
    return n === 0 ? 0 : (parseHead(this.#headBytes.subarray(0, n)) ?? 0);
  }

  /**
   * In place, one fixed-width write: producers read it under the lock;
   * consumers, which do not lock, only take it as a hint and check the
   * entries themselves.
   */
  #writeHead(seq: number): void {
    const length = this.#headBytes.write(`${entryName(seq)}\n`, 0, 'latin1');
    // One pwrite of the whole fixed-width record, as bus/record-file.ts's overwriteRecord.
    const written = pwriteStart(this.#headFd, this.#headBytes, length);
    if (written < 0) throw busError('write', this.#headPath, errnoError(written));
    if (written !== length) throw busError('write', this.#headPath, Object.assign(new Error(`short write: ${written} of ${length} bytes`), { code: 'EIO' }));
  }

  #remove(seq: number): void {
    const result = unlink(`${this.#dir}/${entryName(seq)}`);
    if (result < 0 && result !== -ENOENT) throw busError('remove', path.join(this.#dir, entryName(seq)), errnoError(result));
  }
}

export interface CursorOptions {
  /** Start from the oldest chunk kept instead of the newest. */
  replay?: boolean;
  /** Read chunks into this reused buffer (valid until the next call). */
  scratch?: ScratchBuffer;
  /** The bus is on a file system whose cached sizes may lag (NFS, FUSE): see readChunk. */
  sizeMayBeStale?: boolean;
  /** Told, before the chunk that follows them, of chunks that left the window unread. */
  onMissed?: (missed: MissedChunks) => void;
  log?: (message: string) => void;
}

/**
 * A multicast consumer's position on the bus. Call `next()` on each wake
 * until it returns undefined: it returns the chunks to deliver in order,
 * one per call, and reports missed chunks through `onMissed`.
 *
 * On a bus with history it reads entries by number; chunks published by
 * peers that write no history still arrive by the identity of `F`, as in
 * plain multicast: such an `F` has one link, while a chunk with history
 * is also an entry (two links at least as long as it is at `F`).
 *
 * Synchronous on purpose, so any wait loop can drive it.
 */
export class HistoryCursor implements Cursor {
  readonly #file: string;
  readonly #dir: string;
  readonly #options: CursorOptions;
  /** The sequence number wanted next; undefined until a history is found. */
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

  constructor(paths: BusPaths, options: CursorOptions = {}) {
    this.#file = paths.file;
    this.#dir = paths.history;
    this.#options = options;
  }

  /**
   * True while entries older than `F` remain to be read: the next call may
   * return one at once, with no notification to say so.
   */
  get behind(): boolean {
    return this.#target !== undefined;
  }

  /** The next chunk to deliver, or undefined when there is none yet. */
  next(): Buffer | undefined {
    if (!this.#started) this.#start();
    for (;;) {
      // Behind `F`, entries are read straight on. Otherwise `F` is looked at
      // first: unchanged, nothing was published, and a stat costs far less
      // than a failed open of an entry not there yet (a thrown error).
      let st: fs.BigIntStats | undefined;
      if (this.#target === undefined) {
        st = this.#statFile();
        if (st === undefined || identityOf(st) === this.#lastF) {
          if (!this.#linkedWithoutPublish()) return undefined;
          st = undefined;
        } else if (this.#next !== undefined && st.nlink > 1n) {
          this.#target = { identity: identityOf(st), inode: `${st.dev}:${st.ino}` };
        }
      }
      // A chunk with one link at F came from a peer without history: an
      // entry is unlikely, so ask before opening (a failed open throws).
      if (this.#next !== undefined && (st === undefined || st.nlink > 1n || this.#entryExists(this.#next))) {
        const entry = this.#readEntry(this.#next);
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

  /**
   * A producer killed between linking an entry and renaming it over `F`
   * leaves a whole chunk that `F` never shows; look for one now and then
   * (an access(2), no more), so it does not wait for the next publish.
   */
  #linkedWithoutPublish(): boolean {
    if (this.#next === undefined) return false;
    const now = performance.now();
    if (now - this.#lastLook < LOOK_MS) return false;
    this.#lastLook = now;
    lstatHistory(this.#dir);
    return this.#entryExists(this.#next);
  }

  #entryExists(seq: number): boolean {
    return fs.existsSync(`${this.#dir}/${entryName(seq)}`);
  }

  /** lstat: a link put at `F` is refused, never looked through (a dangling one would pass for no chunk). */
  #statFile(): fs.BigIntStats | undefined {
    const st = fs.lstatSync(this.#file, { bigint: true, throwIfNoEntry: false });
    if (st !== undefined) checkRegular(this.#file, st);
    return st;
  }

  /** Where to begin: the newest chunk (like a plain consumer) or, with replay, the oldest kept. */
  #start(): void {
    this.#started = true;
    lstatHistory(this.#dir);
    const head = readHead(this.#dir);
    if (head === undefined) {
      if (this.#options.replay) this.#options.log?.(`no history at ${this.#dir}: starting from the newest chunk`);
      return;
    }
    if (this.#options.replay) {
      this.#next = listEntries(this.#dir)[0] ?? head + 1;
      return;
    }
    // A chunk with one link at F was published by a peer without history
    // after the head: it is the newest, and the F check below delivers it.
    const st = fs.lstatSync(this.#file, { bigint: true, throwIfNoEntry: false });
    if (st !== undefined) checkRegular(this.#file, st);
    this.#next = st !== undefined && st.nlink === 1n ? head + 1 : head;
  }

  /** Reads entry `seq` and moves past it; undefined when it is not there. */
  #readEntry(seq: number): Buffer | undefined {
    let chunk;
    // Never through a symbolic link: an entry names a chunk of this bus,
    // nothing else (an lstat, about a microsecond, per entry read).
    lstatHistory(this.#dir);
    try {
      chunk = readChunk(path.join(this.#dir, entryName(seq)), this.#options.scratch, this.#options.sizeMayBeStale);
    } catch (error) {
      // ENOTDIR: F.history is not a directory; this bus has no history to read.
      if (errnoCode(error) === 'ENOTDIR') return undefined;
      throw error;
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
    if (st.nlink === 1n) return this.#readPlain();
    const inode = `${st.dev}:${st.ino}`;
    if (this.#next === undefined) {
      // A history appeared while we ran: every entry in it is newer than
      // our start. (At start-up without a head file, which only a producer
      // killed in its very first publish leaves, begin at the newest.)
      lstatHistory(this.#dir);
      const seqs = listEntries(this.#dir);
      if (seqs.length === 0) {
        this.#lastF = identity;
        return undefined;
      }
      this.#next = this.#lastF === undefined && !this.#options.replay ? seqs.at(-1)! : seqs[0]!;
      return 'again';
    }
    if (inode === this.#lastEntry) {
      // F is the entry we delivered last: caught up.
      this.#lastF = identity;
      return undefined;
    }
    return this.#catchUp(identity);
  }

  /**
   * `F` holds an entry other than the last we delivered and the next entry
   * is missing: it was pruned (we fell behind), or it was published a moment
   * ago, or the history was started again. The head says which, and a
   * listing settles where to go on.
   */
  #catchUp(identity: string): 'again' | undefined {
    const next = this.#next!;
    lstatHistory(this.#dir);
    const head = readHead(this.#dir);
    // Linked since we looked: nothing was missed.
    if (this.#entryExists(next)) return 'again';
    if (head !== undefined && head >= next) {
      const kept = listEntries(this.#dir).find((seq) => seq >= next);
      if (kept === undefined) {
        this.#lastF = identity;
        return undefined;
      }
      if (kept === next) return 'again'; // linked after all, just now
      this.#options.onMissed?.({ first: next, last: kept - 1, count: kept - next });
      this.#next = kept;
      return 'again';
    }
    // The head is never more than one behind what we read (it is written
    // just after the rename): further back, the history was removed and
    // started over. Follow the new one from its oldest entry.
    if (head !== undefined && head < next - 2) {
      const oldest = listEntries(this.#dir)[0];
      this.#options.log?.(`the history at ${this.#dir} started over (head ${head}, we were at ${next - 1})`);
      this.#next = oldest ?? head + 1;
      return 'again';
    }
    this.#lastF = identity;
    return undefined;
  }

  /** `F` has one link: a chunk from a peer that writes no history, delivered by its identity. */
  #readPlain(): Buffer | undefined | 'again' {
    const chunk = readChunk(this.#file, this.#options.scratch, this.#options.sizeMayBeStale);
    if (chunk === undefined || chunk.identity === this.#lastF) return undefined;
    // Replaced since the stat by a chunk with history: that one comes through the history.
    if (chunk.links > 1) return 'again';
    this.#lastF = chunk.identity;
    // The entry we delivered last, its history entry since removed (the
    // history deleted by hand): delivered already.
    if (chunk.inode === this.#lastEntry) return undefined;
    return chunk.data.length > 0 ? chunk.data : undefined;
  }
}
