/**
 * A member of a durable group (docs/protocol.md, "Extension: groups"): it
 * takes the group's next chunks from the bus's history in batches, under
 * the group's own lock (never the bus lock), and keeps each batch as a
 * claim until every chunk of it is delivered:
 *
 * - `claims/<id>.lock`, flocked (exclusive) by the member for as long as it
 *   lives: the kernel drops the flock when the member dies, however it
 *   dies, so a claim whose flock can be taken is a dead member's, and is
 *   taken over at once. No timeout: a slow live member keeps its claim.
 * - `claims/<id>.<seq>`, a hard link of history entry `<seq>`: the chunk
 *   stays readable after the history prunes the entry. Removed on delivery.
 *
 * The group's `position` is the next number to hand out; it moves under
 * the group lock when a batch is claimed. What the group has not delivered
 * is therefore `position` and on, plus what the claims still hold.
 *
 * Chunks published without history (one link at `F`: the original
 * filebus, a producer without `--history`) are outside the position: as in
 * plain multicast, the group gets each at most once, if a member looks
 * while it is at `F`. Under the group lock, the member that finds one whose
 * identity differs from the group's `plain` record writes the record and
 * delivers it; the others then find their own identity there.
 */
import fs from 'node:fs';
import path from 'node:path';
import { BusError, busError, errnoCode } from '../../errors.js';
import type { Bus } from '../../core/bus.js';
import type { AttemptFailure, ClaimSource, ClaimedChunk, FailedTo } from '../../core/extension.js';
import { BusLock } from '../../core/lock.js';
import { checkRegular } from '../../core/checks.js';
import { type ScratchBuffer, identityOf, readChunk } from '../../core/read.js';
import { overwriteRecord } from '../../core/record-file.js';
import { BUSY, untilFree } from '../../core/wait.js';
import { type MissedChunks, entryName } from '../history/history.js';
import { HistoryDir, readHeadOnce } from '../history/files.js';
import { AT_CWD, ENOENT, EWOULDBLOCK, LOCK_EX, LOCK_NB, errnoError, flock, linkat, unlink } from '../../sys/libc.js';
import {
  type GroupPaths,
  PLAIN_LENGTH,
  RECORD_LENGTH,
  claimLinkName,
  groupDeadLetterPath,
  groupPaths,
  groupsDir,
  parseClaimLink,
  parseDeadLetter,
  parseGroupName,
  plainBytes,
  readPlainFd,
  readRecordFd,
  recordBytes,
} from './files.js';

export interface GroupMemberOptions {
  /** A group made by this member starts at the oldest chunk kept instead of the newest. */
  replay?: boolean;
  scratch?: ScratchBuffer;
  sizeMayBeStale?: boolean;
  /** Told of chunks that left the window before the group took them. */
  onMissed?: (missed: MissedChunks) => void;
  log?: (message: string) => void;
}

/** Longest batch claimed in one turn of the group lock. */
const MAX_BATCH = 64;
/** A batch is sized to take about this long to deliver: a slow member (20 ms a chunk) takes one at a time, leaving the rest to the others; a fast one on a loaded machine (0.2-0.5 ms a chunk, time it is not scheduled included) still takes 10-25, so the group lock, the listing of claims and the claim file are paid per batch. */
const BATCH_MS = 5;

/** One claim file: a batch taken by this member, until all of it is delivered. */
interface Claim {
  readonly id: string;
  readonly fd: number;
  remaining: number;
}

/** A chunk of a claim, to deliver and then unlink. */
interface Pending {
  readonly seq: number;
  readonly claim: Claim;
  /** Failed attempts so far (`--exec`): the link's name says it, `claims/<id>.<seq>.attempts-<n>`. */
  readonly attempts: number;
}

/** A chunk without history, copied from `F` when the group took it: nothing to acknowledge. */
interface PendingPlain {
  readonly plain: Buffer;
  readonly identity: string;
  /** Failed attempts so far, kept in memory only. */
  readonly attempts: number;
}

const O_FLAGS = fs.constants.O_NOFOLLOW | fs.constants.O_NONBLOCK;

export class GroupMember implements ClaimSource {
  readonly #bus: Bus;
  readonly #g: GroupPaths;
  readonly #options: GroupMemberOptions;
  readonly #lock: BusLock;
  #positionFd = -1;
  #plainFd = -1;
  /** The last identity of a chunk without history this member saw the group take (it or another member). */
  #plainSeen = '';
  #memberFd = -1;
  #memberFile = '';
  /** Chunks claimed and not yet handed out, in order. */
  #queue: Array<Pending | PendingPlain> = [];
  /** Claims this member holds, by id. */
  readonly #held = new Map<string, Claim>();
  /** Milliseconds a chunk took from take to ack, smoothed: sizes the batches. The first batch is one chunk, until a delivery was timed. */
  #perChunkMs = BATCH_MS;
  #takenAt = 0;
  #waitingForHistory = false;
  /**
   * `F.history/`, open: entries are looked at, listed and linked relative
   * to this descriptor, so a link swapped in at `F.history` later cannot
   * send the member's links or reads outside the bus (see
   * ../history/files.ts). Opened once the history is there.
   */
  #history: HistoryDir | undefined;
  #closed = false;
  readonly #probe = () => this.#fill();

  constructor(bus: Bus, name: string, options: GroupMemberOptions = {}) {
    this.#bus = bus;
    this.#g = groupPaths(bus.options.paths, parseGroupName(name));
    this.#options = options;
    this.#lock = new BusLock(this.#g.lock);
  }

  /** Makes the group's files if missing and joins it. */
  async open(signal?: AbortSignal): Promise<void> {
    const g = this.#g;
    for (const dir of [groupsDir(this.#bus.options.paths), g.dir, g.claims, g.members]) {
      try {
        fs.mkdirSync(dir, 0o777);
      } catch (error) {
        if (errnoCode(error) !== 'EEXIST') throw busError('create the group directory', dir, error);
      }
      const st = fs.lstatSync(dir);
      if (!st.isDirectory()) throw new BusError(`${dir} is not a directory; a group's files must be in one`, dir, { code: 'ENOTDIR' });
    }
    await this.#lock.acquire(this.#bus.watcher, signal);
    try {
      this.#positionFd = openRecord(g.position);
      if (readRecordFd(this.#positionFd) === undefined) this.#writePosition(this.#startPosition());
      this.#plainFd = openRecord(g.plain);
      this.#join();
    } finally {
      this.#lock.release();
    }
    // A member that dies closes its claim files: that close wakes the others, which take its claims over.
    this.#bus.watcher.watchFile(g.claims);
  }

  /** The next chunk for this member, once there is one (never undefined: a group does not end). */
  async take(signal?: AbortSignal): Promise<ClaimedChunk | undefined> {
    for (;;) {
      const next = this.#queue.shift();
      if (next !== undefined) {
        const chunk = 'plain' in next ? plainChunk(next, this.#queue) : this.#read(next);
        if (chunk !== undefined) return chunk;
        continue;
      }
      await untilFree(this.#bus.watcher, this.#probe, signal);
    }
  }

  /** Lets go of every claim (the kernel would as well): what was not delivered goes to the next taker. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    for (const claim of this.#held.values()) fs.closeSync(claim.fd);
    this.#held.clear();
    this.#queue = [];
    if (this.#memberFd >= 0) {
      unlink(this.#memberFile);
      fs.closeSync(this.#memberFd);
    }
    this.#history?.close();
    this.#history = undefined;
    if (this.#positionFd >= 0) fs.closeSync(this.#positionFd);
    if (this.#plainFd >= 0) fs.closeSync(this.#plainFd);
    this.#lock.close();
  }

  /** Where a new group starts: the newest chunk (the oldest kept with replay), or the first when there is no history yet. */
  #startPosition(): number {
    const head = this.#head();
    if (head === undefined) return 1;
    if (this.#options.replay) return this.#window()?.first ?? head + 1;
    return Math.max(1, head);
  }

  /** A member file, held for as long as this member runs (status counts them); dead members' files are removed. */
  #join(): void {
    const { members } = this.#g;
    for (const name of fs.readdirSync(members)) {
      const file = path.join(members, name);
      const fd = openRecordOrNothing(file);
      if (fd === undefined) continue;
      if (flock(fd, LOCK_EX | LOCK_NB) === 0) unlink(file);
      fs.closeSync(fd);
    }
    this.#memberFile = path.join(members, `${process.pid}-${Math.random().toString(36).slice(2, 10)}`);
    this.#memberFd = fs.openSync(this.#memberFile, fs.constants.O_RDWR | fs.constants.O_CREAT | fs.constants.O_EXCL | O_FLAGS, 0o666);
    flock(this.#memberFd, LOCK_EX | LOCK_NB);
  }

  /**
   * The probe of the wait loop: under the group lock, takes over dead
   * members' claims, or else claims the next batch. True when the queue
   * has chunks, BUSY when another member holds the lock.
   */
  #fill(): true | typeof BUSY | undefined {
    if (!this.#lock.tryAcquire()) return BUSY;
    try {
      this.#takeOver();
      // Every chunk of the history taken, in order: a chunk without history at F came after them.
      if (this.#queue.length === 0 && this.#claim()) this.#takePlain();
    } finally {
      this.#lock.release();
    }
    return this.#queue.length > 0 ? true : undefined;
  }

  /** Takes over every claim whose flock can be taken: its member is dead. */
  #takeOver(): void {
    const { claims } = this.#g;
    let names: string[];
    try {
      names = fs.readdirSync(claims);
    } catch (error) {
      throw busError('list', claims, error);
    }
    if (names.length === 0) return;
    let highest = 0;
    const taken: Pending[] = [];
    for (const name of names) {
      if (!name.endsWith('.lock')) continue;
      const id = name.slice(0, -5);
      if (this.#held.has(id)) continue;
      const file = path.join(claims, name);
      const fd = openRecordOrNothing(file);
      if (fd === undefined) continue;
      const result = flock(fd, LOCK_EX | LOCK_NB);
      // Held: a live member's. Granted on a file no longer at that name: acked meanwhile.
      if (result !== 0 || !sameFile(fd, file)) {
        if (result !== 0 && result !== -EWOULDBLOCK) this.#options.log?.(`cannot lock ${file}: ${errnoError(result).message}`);
        fs.closeSync(fd);
        continue;
      }
      const links = names
        .map(parseClaimLink)
        .filter((link) => link !== undefined && link.id === id)
        .sort((a, b) => a!.seq - b!.seq) as Array<{ seq: number; attempts: number }>;
      const seqs = links.map((link) => link.seq);
      if (seqs.length === 0) {
        unlink(file);
        fs.closeSync(fd);
        continue;
      }
      const handedOut = (readRecordFd(fd) ?? 1) + 1;
      overwriteRecord(fd, recordBytes(handedOut), RECORD_LENGTH, file);
      const claim: Claim = { id, fd, remaining: seqs.length };
      this.#held.set(id, claim);
      for (const link of links) taken.push({ seq: link.seq, claim, attempts: link.attempts });
      highest = Math.max(highest, seqs.at(-1)!);
      this.#options.log?.(`took over ${seqs.length} chunk(s) (seq ${seqs[0]}-${seqs.at(-1)}) from a member of group ${this.#g.name} that stopped`);
    }
    this.#adoptDeadLetters(names, taken);
    if (taken.length === 0) return;
    this.#queue.push(...taken.sort((a, b) => a.seq - b.seq));
    // A member killed after linking a batch and before moving the position: go on after it.
    const position = this.#readPosition();
    if (highest >= position) this.#writePosition(highest + 1);
  }

  /**
   * Under the group lock: dead letters a person moved back into `claims/`
   * (`mv F.groups/NAME/dead/* F.groups/NAME/claims/`) become claims of
   * this member, `back-<seq>.lock` and `back-<seq>.<seq>`, their attempts
   * back at 0. The lock file comes first, as for any claim, so a member
   * killed in between leaves the loose file or a claim, never neither.
   */
  #adoptDeadLetters(names: string[], taken: Pending[]): void {
    for (const name of names) {
      const seq = parseDeadLetter(name);
      if (seq === undefined) continue;
      const id = `back-${seq}`;
      const lockFile = path.join(this.#g.claims, `${id}.lock`);
      let fd: number;
      try {
        fd = fs.openSync(lockFile, fs.constants.O_RDWR | fs.constants.O_CREAT | fs.constants.O_EXCL | O_FLAGS, 0o666);
      } catch (error) {
        // The same chunk is back already, and its claim not yet done: this copy waits for it.
        if (errnoCode(error) === 'EEXIST') continue;
        throw busError('create the claim', lockFile, error);
      }
      flock(fd, LOCK_EX | LOCK_NB);
      overwriteRecord(fd, recordBytes(1), RECORD_LENGTH, lockFile);
      const from = path.join(this.#g.claims, name);
      try {
        fs.renameSync(from, path.join(this.#g.claims, claimLinkName(id, seq, 0)));
      } catch (error) {
        unlink(lockFile);
        fs.closeSync(fd);
        if (errnoCode(error) === 'ENOENT') continue;
        throw busError('move', from, error);
      }
      const claim: Claim = { id, fd, remaining: 1 };
      this.#held.set(id, claim);
      taken.push({ seq, claim, attempts: 0 });
      this.#options.log?.(`group ${this.#g.name}: dead letter seq ${seq} is back; taking it again`);
    }
  }

  /**
   * Claims the next chunks from the position on, as many as the batch size,
   * all there are at most. True when it took every chunk the history has.
   */
  #claim(): boolean {
    let position = this.#readPosition();
    if (!this.#entryExists(position)) {
      const from = this.#skipMissed(position);
      if (from === undefined) return true;
      position = from;
    }
    if (this.#waitingForHistory) this.#options.log?.(`group ${this.#g.name}: the history is there; starting from seq ${position}`);
    this.#waitingForHistory = false;
    const id = entryName(position);
    const lockFile = path.join(this.#g.claims, `${id}.lock`);
    let fd: number;
    try {
      fd = fs.openSync(lockFile, fs.constants.O_RDWR | fs.constants.O_CREAT | fs.constants.O_EXCL | O_FLAGS, 0o666);
    } catch (error) {
      throw busError('create the claim', lockFile, error);
    }
    // A new file no one else has opened (we hold the group lock): granted at once.
    flock(fd, LOCK_EX | LOCK_NB);
    overwriteRecord(fd, recordBytes(1), RECORD_LENGTH, lockFile);
    const claim: Claim = { id, fd, remaining: 0 };
    const batch = Math.max(1, Math.min(MAX_BATCH, Math.floor(BATCH_MS / this.#perChunkMs)));
    let seq = position;
    for (; seq < position + batch; seq++) {
      const history = this.#history;
      const result = history === undefined ? -ENOENT : linkat(history.fd, entryName(seq), AT_CWD, `${this.#g.claims}/${id}.${seq}`);
      if (result === -ENOENT) break;
      if (result < 0) {
        unlink(lockFile);
        fs.closeSync(fd);
        throw busError('link into the claim', path.join(this.#g.claims, `${id}.${seq}`), errnoError(result));
      }
      this.#queue.push({ seq, claim, attempts: 0 });
      claim.remaining++;
    }
    if (claim.remaining === 0) {
      // Pruned between the look and the link: the next turn reports it.
      unlink(lockFile);
      fs.closeSync(fd);
      return false;
    }
    this.#held.set(id, claim);
    this.#writePosition(seq);
    return seq < position + batch;
  }

  /**
   * Under the group lock: a chunk without history at `F` (one link) that
   * the group has not taken yet is this member's, at most once for the
   * group: its identity goes into the `plain` record before it is handed
   * out, so a member killed meanwhile loses it rather than lets it come
   * twice, as a plain multicast consumer would.
   */
  #takePlain(): void {
    const { file } = this.#bus.options.paths;
    const st = fs.lstatSync(file, { bigint: true, throwIfNoEntry: false });
    if (st === undefined || st.nlink !== 1n) return;
    checkRegular(file, st);
    const identity = identityOf(st);
    if (identity === this.#plainSeen) return;
    this.#plainSeen = readPlainFd(this.#plainFd);
    if (identity === this.#plainSeen) return;
    // Its own buffer: the batch before it may still be read into the scratch one.
    const chunk = readChunk(file, undefined, this.#options.sizeMayBeStale);
    // Replaced since the lstat: the publish that replaced it wakes us again.
    if (chunk === undefined || chunk.identity !== identity || chunk.links !== 1) return;
    overwriteRecord(this.#plainFd, plainBytes(identity), PLAIN_LENGTH, this.#g.plain);
    this.#plainSeen = identity;
    if (chunk.data.length > 0) this.#queue.push({ plain: chunk.data, identity, attempts: 0 });
  }

  /**
   * Entry `position` is not there: not published yet, or pruned before the
   * group took it (the head says which). Returns the position to claim
   * from, or undefined when there is nothing to take yet.
   */
  #skipMissed(position: number): number | undefined {
    const head = this.#head();
    if (head === undefined) {
      if (!this.#waitingForHistory) this.#options.log?.(`group ${this.#g.name}: waiting for the history at ${this.#bus.options.paths.history} (a producer with --history N)`);
      this.#waitingForHistory = true;
      return undefined;
    }
    if (head < position) return undefined;
    const window = this.#window();
    if (window === undefined || window.last < position) return undefined;
    if (window.first <= position) return this.#entryExists(position) ? position : undefined;
    this.#options.onMissed?.({ first: position, last: window.first - 1, count: window.first - position });
    this.#writePosition(window.first);
    return window.first;
  }

  #entryExists(seq: number): boolean {
    return this.#historyDir()?.has(seq) ?? false;
  }

  /**
   * The history's directory, held open; checked against `F.history` on
   * each use (one lstat): removed, it is let go; made again, the new one
   * is opened; a link there is refused with one line, never followed.
   */
  #historyDir(): HistoryDir | undefined {
    if (this.#history !== undefined) {
      if (this.#history.check() === 'same') return this.#history;
      this.#history.close();
      this.#history = undefined;
    }
    this.#history = HistoryDir.open(this.#bus.options.paths.history);
    return this.#history;
  }

  /** `F.history/head` read through the directory held: the last number given, or undefined. */
  #head(): number | undefined {
    const dir = this.#historyDir();
    const head = dir && readHeadOnce(dir);
    return head?.kind === 'ok' ? head.seq : undefined;
  }

  /** The oldest and newest entries the history keeps, listed through the directory held. */
  #window(): { first: number; last: number } | undefined {
    const seqs = this.#historyDir()?.list() ?? [];
    return seqs.length === 0 ? undefined : { first: seqs[0]!, last: seqs.at(-1)! };
  }

  #read(pending: Pending): ClaimedChunk | undefined {
    const { seq, claim, attempts } = pending;
    const file = `${this.#g.claims}/${claimLinkName(claim.id, seq, attempts)}`;
    const chunk = readChunk(file, this.#options.scratch, this.#options.sizeMayBeStale);
    // Gone (removed by hand): nothing to deliver. Empty: nothing to pass on.
    if (chunk === undefined || chunk.data.length === 0) {
      this.#ack(pending);
      return undefined;
    }
    this.#takenAt = performance.now();
    let done = false;
    return {
      data: chunk.data,
      id: String(seq),
      attempts,
      ack: () => {
        if (done) return;
        done = true;
        this.#perChunkMs = 0.8 * this.#perChunkMs + 0.2 * Math.max(0.001, performance.now() - this.#takenAt);
        this.#ack(pending);
      },
      release: () => {
        if (done) return;
        done = true;
        // Still claimed by this member: it comes again from the next take (another member's if this one stops first).
        this.#queue.unshift(pending);
      },
      fail: (failure: AttemptFailure, maxAttempts: number): FailedTo => {
        if (done) throw new Error(`chunk ${seq} is already settled`);
        done = true;
        return this.#fail(pending, failure, maxAttempts);
      },
    };
  }

  /**
   * A failed attempt, settled by this member alone (it holds the claim):
   * the link is renamed to count it and the chunk comes again from this
   * member's next take (another member's if this one stops first); after
   * the last allowed attempt it moves to the group's dead letters.
   */
  #fail(pending: Pending, failure: AttemptFailure, maxAttempts: number): FailedTo {
    const { seq, claim } = pending;
    const attempts = pending.attempts + 1;
    const from = path.join(this.#g.claims, claimLinkName(claim.id, seq, pending.attempts));
    if (this.#closed) return attempts < maxAttempts ? 'retry' : 'dead';
    if (attempts < maxAttempts) {
      const to = path.join(this.#g.claims, claimLinkName(claim.id, seq, attempts));
      try {
        fs.renameSync(from, to);
      } catch (error) {
        throw busError('move', from, error);
      }
      this.#queue.unshift({ seq, claim, attempts });
      return 'retry';
    }
    try {
      fs.mkdirSync(this.#g.dead, 0o777);
    } catch (error) {
      if (errnoCode(error) !== 'EEXIST') throw busError('create the directory', this.#g.dead, error);
    }
    try {
      fs.renameSync(from, groupDeadLetterPath(this.#g, seq, failure.status, attempts));
    } catch (error) {
      throw busError('move', from, error);
    }
    this.#settled(claim);
    return 'dead';
  }

  /** Where a chunk of this group goes once its last allowed attempt failed. */
  deadLetterOf(chunk: ClaimedChunk, failure: AttemptFailure): string {
    if (!/^\d+$/.test(chunk.id)) return 'nowhere (a chunk without history has no claim to keep it)';
    return groupDeadLetterPath(this.#g, Number(chunk.id), failure.status, chunk.attempts + 1);
  }

  /** Delivered: the claim's link goes, and with the last one the claim. No group lock: only this member touches its claim. */
  #ack({ seq, claim, attempts }: Pending): void {
    if (this.#closed) return;
    const file = path.join(this.#g.claims, claimLinkName(claim.id, seq, attempts));
    const result = unlink(file);
    if (result < 0 && result !== -ENOENT) throw busError('remove', file, errnoError(result));
    this.#settled(claim);
  }

  /** One chunk of `claim` is settled: with the last, the claim goes. */
  #settled(claim: Claim): void {
    if (--claim.remaining > 0) return;
    unlink(`${this.#g.claims}/${claim.id}.lock`);
    fs.closeSync(claim.fd);
    this.#held.delete(claim.id);
  }

  #readPosition(): number {
    const position = readRecordFd(this.#positionFd);
    if (position === undefined) throw new BusError(`${this.#g.position} holds no position; remove the group (filebus group remove ${this.#g.name}) to start it again`, this.#g.position, { code: 'EINVAL' });
    return position;
  }

  #writePosition(position: number): void {
    overwriteRecord(this.#positionFd, recordBytes(position), RECORD_LENGTH, this.#g.position);
  }
}

/** A chunk without history as a claimed chunk: delivered at most once, so its ack has nothing to do. */
function plainChunk(pending: PendingPlain, queue: Array<Pending | PendingPlain>): ClaimedChunk {
  let done = false;
  return {
    data: pending.plain,
    id: `plain ${pending.identity}`,
    attempts: pending.attempts,
    ack: () => {
      done = true;
    },
    release: () => {
      if (done) return;
      done = true;
      // Kept by this member only: it is lost if this member stops first (at most once).
      queue.unshift(pending);
    },
    // Retried from memory, as it was kept: no dead letter, since no claim keeps its bytes on disk.
    fail: (_failure: AttemptFailure, maxAttempts: number): FailedTo => {
      if (done) throw new Error(`chunk plain ${pending.identity} is already settled`);
      done = true;
      if (pending.attempts + 1 >= maxAttempts) return 'dead';
      queue.unshift({ ...pending, attempts: pending.attempts + 1 });
      return 'retry';
    },
  };
}

/** Opens (creating) a record file for reading and writing, never through a link. */
function openRecord(file: string): number {
  try {
    const fd = fs.openSync(file, fs.constants.O_RDWR | fs.constants.O_CREAT | O_FLAGS, 0o666);
    if (!fs.fstatSync(fd).isFile()) {
      fs.closeSync(fd);
      throw new BusError(`${file} is not a regular file`, file, { code: 'EFTYPE' });
    }
    return fd;
  } catch (error) {
    throw busError('open', file, error);
  }
}

function openRecordOrNothing(file: string): number | undefined {
  try {
    return fs.openSync(file, fs.constants.O_RDWR | O_FLAGS);
  } catch (error) {
    if (errnoCode(error) === 'ENOENT') return undefined;
    throw busError('open', file, error);
  }
}

/** The open file is still the one at `file` (not removed or replaced since the open). */
function sameFile(fd: number, file: string): boolean {
  const st = fs.lstatSync(file, { throwIfNoEntry: false });
  if (st === undefined) return false;
  const own = fs.fstatSync(fd);
  return st.dev === own.dev && st.ino === own.ino;
}

/**
 * A member of group `name` delivering through `deliver`: a chunk is
 * acknowledged (forgotten by the group) only once `deliver`'s promise
 * resolves. Runs until `signal` aborts.
 */
export async function consumeGroup(bus: Bus, name: string, deliver: (chunk: Buffer) => Promise<void> | undefined | void, options: GroupMemberOptions & { signal?: AbortSignal | undefined }): Promise<void> {
  const member = new GroupMember(bus, name, options);
  try {
    await member.open(options.signal);
    for (;;) {
      const claimed = await member.take(options.signal);
      if (claimed === undefined) return;
      const delivered = deliver(claimed.data);
      if (delivered) await delivered;
      claimed.ack();
    }
  } finally {
    member.close();
  }
}
