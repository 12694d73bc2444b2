/**
 * A producer's side of the history: gives each chunk the next sequence
 * number of the bus and keeps the window at `keep` chunks. Every method
 * runs under the bus lock (src/core/extension.ts, PublishHook), so all
 * producers of a bus share one sequence with no gaps and no duplicates:
 * the number comes from the head file, which only lock holders write, and
 * linkat(2) refuses a name that exists, so even a head left behind by a
 * producer killed mid-publish cannot give two chunks one number.
 *
 * Everything goes through the directory's descriptor (./files.ts), and
 * under the lock, before each publish, the path is checked to still name
 * that directory: a link there is refused, another directory is opened
 * afresh (a peer started the history over).
 */
import fs from 'node:fs';
import { BusError, busError } from '../../errors.js';
import type { PublishHook } from '../../core/extension.js';
import type { BusPaths } from '../../options.js';
import { errnoCode } from '../../errors.js';
import { closeFd, errnoError, ftruncate, preadStart, pwriteStart } from '../../sys/libc.js';
import { headFrom } from './decisions.js';
import { HEAD, HEAD_BYTES, HistoryDir, MAX_SEQ, entryName, parseHead } from './files.js';

/** Told of what is worth a line whatever the verbosity: a head repaired. */
export type Notice = (message: string) => void;

/** Repairs are shared state put right: never silent, so by default a line on stderr, as the bash peer does. */
const stderrNotice: Notice = (message) => {
  process.stderr.write(`filebus: ${message}\n`);
};

export class HistoryWriter implements PublishHook {
  readonly #path: string;
  readonly #keep: number;
  readonly #notice: Notice;
  #dir: HistoryDir | undefined;
  #headFd = -1;
  /** Publishes until the next full tidy of the window. */
  #untilTidy = 0;
  /** The number the chunk being published got in `staged`. */
  #seq = 0;
  readonly #headBytes = Buffer.allocUnsafe(HEAD_BYTES);

  constructor(paths: BusPaths, keep: number, notice: Notice = stderrNotice) {
    this.#path = paths.history;
    this.#keep = keep;
    this.#notice = notice;
    // Refused at once, before the first publish: a link at F.history.
    HistoryDir.open(this.#path)?.close();
  }

  get #headPath(): string {
    return `${this.#path}/${HEAD}`;
  }

  /**
   * Before the chunk is staged: the directory is the bus's own. The first
   * publish (and then one in every `keep`) tidies the window: what a
   * producer killed mid-publish left beyond it is removed there, so the bus
   * never holds more than `keep` chunks plus a few.
   */
  beforeStage(): void {
    if (this.#dir === undefined) this.#open();
    else if (this.#dir.check() !== 'same') this.#reopen();
    if (--this.#untilTidy <= 0) this.#tidy();
  }

  /**
   * The chunk is whole and not yet at `F`: link it as the next entry and
   * write the head, both before `F` shows it. A head that cannot be written
   * (a full disk) fails the publish with the entry removed again, so the
   * chunk is nowhere and a retry publishes it once.
   */
  staged(staging: string): void {
    const seq = this.#link(staging);
    try {
      this.#writeHead(seq);
    } catch (error) {
      this.#dir!.remove(seq);
      throw error;
    }
    this.#seq = seq;
  }

  /** `F` shows the chunk: drop the entry that left the window. Its failure waits for the next tidy. */
  published(): void {
    if (this.#seq - this.#keep >= 1) this.#dir!.remove(this.#seq - this.#keep);
  }

  close(): void {
    if (this.#headFd >= 0) closeFd(this.#headFd);
    this.#headFd = -1;
    this.#dir?.close();
    this.#dir = undefined;
  }

  #link(staging: string): number {
    const dir = this.#dir!;
    for (let attempt = 0; ; attempt++) {
      const seq = this.#head() + 1;
      const result = seq > MAX_SEQ ? -1 : dir.link(staging, seq);
      if (result === 0) return seq;
      const error = seq > MAX_SEQ ? Object.assign(new Error('sequence numbers used up'), { code: 'EOVERFLOW' }) : errnoError(result);
      // EEXIST: a producer was killed after linking an entry and before
      // writing the head; that entry is a whole chunk that consumers may
      // already have read, so it keeps its number and we take the next.
      // ENOENT: the directory we hold was removed; open the new one.
      const code = errnoCode(error);
      if ((code === 'EEXIST' || code === 'ENOENT') && attempt < 3) {
        this.#reopen();
        continue;
      }
      throw busError('link into the history', dir.shownPath(entryName(seq)), error);
    }
  }

  /** Makes the directory if missing and opens it and the head file, refusing anything planted in their place. */
  #open(): void {
    const dir = HistoryDir.open(this.#path, true);
    if (dir === undefined) throw new BusError(`cannot open the history directory ${this.#path}`, this.#path, { code: 'ENOENT' });
    const fd = dir.openHead(fs.constants.O_RDWR | fs.constants.O_CREAT | fs.constants.O_NONBLOCK);
    if (fd < 0) {
      dir.close();
      throw busError('open', this.#headPath, errnoError(fd));
    }
    if (!fs.fstatSync(fd).isFile()) {
      closeFd(fd);
      dir.close();
      throw new BusError(`${this.#headPath} is not a regular file`, this.#headPath, { code: 'EFTYPE' });
    }
    this.#dir = dir;
    this.#headFd = fd;
  }

  /** The directory or head file may have been replaced (or removed) since we opened them. */
  #reopen(): void {
    this.close();
    this.#open();
    this.#tidy();
  }

  /**
   * One listing: the head becomes at least the newest entry (one may have
   * been linked by a producer killed before it wrote the head), and
   * entries older than the window go, with the dropped entry a killed
   * producer never got to.
   */
  #tidy(): void {
    const seqs = this.#dir!.list();
    const current = this.#head(seqs);
    const head = headFrom(current, seqs.at(-1));
    if (head !== current) this.#writeHead(head);
    for (const seq of seqs) {
      if (seq > head - this.#keep) break;
      const removed = this.#dir!.remove(seq);
      if (removed < 0) throw busError('remove', this.#dir!.shownPath(entryName(seq)), errnoError(removed));
    }
    this.#untilTidy = Math.max(this.#keep, 64);
  }

  /**
   * The head file's number: 0 for a new history. One that cannot be right
   * (bytes after the record, a number beyond MAX_SEQ) is repaired from the
   * listing (`seqs`, or a fresh one) with one line: the listing decides.
   */
  #head(seqs?: number[]): number {
    const n = preadStart(this.#headFd, this.#headBytes, HEAD_BYTES);
    if (n < 0) throw busError('read', this.#headPath, errnoError(n));
    const value = parseHead(this.#headBytes.subarray(0, n));
    if (value.kind === 'ok') return value.seq;
    if (value.kind === 'empty') return 0;
    const shown = JSON.stringify(this.#headBytes.toString('latin1', 0, Math.min(n, 40)));
    const newest = (seqs ?? this.#dir!.list()).at(-1) ?? 0;
    this.#writeHead(newest, true);
    this.#notice(`${this.#headPath} held ${shown}, not a sequence number; repaired from the entries to ${newest}`);
    return newest;
  }

  /**
   * In place, one fixed-width pwrite: producers read it under the lock;
   * consumers, which do not lock, only take it as a hint. `truncate` after
   * a repair: whatever followed the old record goes.
   */
  #writeHead(seq: number, truncate = false): void {
    const length = this.#headBytes.write(`${entryName(seq)}\n`, 0, 'latin1');
    const written = pwriteStart(this.#headFd, this.#headBytes, length);
    if (written < 0) throw busError('write', this.#headPath, errnoError(written));
    if (written !== length) throw busError('write', this.#headPath, Object.assign(new Error(`short write: ${written} of ${length} bytes`), { code: 'EIO' }));
    if (truncate) {
      const result = ftruncate(this.#headFd, length);
      if (result < 0) throw busError('write', this.#headPath, errnoError(result));
    }
  }
}
