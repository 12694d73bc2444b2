/**
 * Claims on a back-pressure bus (docs/protocol.md, "Extension: claims"): a
 * consumer moves the chunk out of `F` into `F.claims/` under the bus lock,
 * so the slot is free for the producer while the work runs, and holds the
 * claim with an exclusive flock(2) on the chunk's own inode. The kernel
 * drops that flock when the consumer dies, so a claim whose flock can be
 * taken is an orphan, and any consumer may take it over. A chunk whose work
 * failed too often goes to `F.dead/`, named by its status and attempts.
 *
 * Names: a claim is `F.claims/<id>.attempts-<n>` (n failed attempts so
 * far); a dead letter is `F.dead/<id>.<status>.attempts-<n>`. Anything else
 * found in `F.claims/` (a dead letter moved back with `mv`) is taken over
 * as a fresh chunk: attempts start again from 0.
 */
import fs from 'node:fs';
import path from 'node:path';
import { BusError, busError, errnoCode } from '../../errors.js';
import { symlinkError } from '../../core/checks.js';
import { identityOf } from '../../core/read.js';
import { LOCK_EX, LOCK_NB, errnoError, flock } from '../../sys/libc.js';
import type { AttemptFailure, ClaimedChunk, FailedTo } from '../../core/extension.js';

export interface ClaimPaths {
  /** `F`, where the producer publishes. */
  readonly file: string;
  /** `F.claims/`: chunks being worked on, each held by its consumer's flock. */
  readonly claims: string;
  /** `F.dead/`: chunks whose every attempt failed. */
  readonly dead: string;
}

export function claimPaths(file: string): ClaimPaths {
  return { file, claims: `${file}.claims`, dead: `${file}.dead` };
}

const CANONICAL = /^(.+)\.attempts-(\d+)$/;
/** A dead letter's name; moved back into F.claims/ it starts again. */
const DEAD = /^(.+)\.(?:exit-\d+|signal-[A-Z0-9]+|error)\.attempts-\d+$/;

/** The chunk's id and failed attempts from a name in F.claims/. */
export function parseClaimName(name: string): { id: string; attempts: number; canonical: boolean } {
  const dead = DEAD.exec(name);
  if (dead) return { id: dead[1]!, attempts: 0, canonical: false };
  const claim = CANONICAL.exec(name);
  if (claim) return { id: claim[1]!, attempts: Number(claim[2]), canonical: true };
  return { id: name, attempts: 0, canonical: false };
}

function claimName(id: string, attempts: number): string {
  return `${id}.attempts-${attempts}`;
}

let counter = 0;

/**
 * Sortable by time, unique per process; across hosts sharing the bus a
 * clash is caught by link(2), which refuses a name that exists.
 */
function newId(): string {
  return `${String(Date.now()).padStart(13, '0')}-${process.pid}-${++counter}`;
}

/** Creates `dir` if missing; refuses a link or anything not a directory there. */
export function ensureDirectory(dir: string): void {
  try {
    fs.mkdirSync(dir);
  } catch (error) {
    if (errnoCode(error) !== 'EEXIST') throw busError('create the directory', dir, error);
  }
  const st = fs.lstatSync(dir);
  if (st.isSymbolicLink()) throw symlinkError(dir);
  if (!st.isDirectory()) throw new BusError(`${dir} is not a directory`, dir, { code: 'ENOTDIR' });
}

/** Where a chunk that failed `attempts` times in all, the last with `status`, lies in the dead letters. */
export function deadLetterPath(paths: ClaimPaths, id: string, status: string, attempts: number): string {
  return path.join(paths.dead, `${id}.${status}.attempts-${attempts}`);
}

/** What the holder is told when a claim settles, to keep count of its own. */
export type OnSettle = (claim: HeldClaim) => void;

/** A chunk held by this process: its flock is on `fd`, its name in F.claims/ is `name`. */
export class HeldClaim implements ClaimedChunk {
  readonly data: Buffer;
  readonly id: string;
  readonly attempts: number;
  readonly #paths: ClaimPaths;
  readonly #onSettle: OnSettle;
  #fd: number;
  #name: string;

  constructor(paths: ClaimPaths, fd: number, name: string, id: string, attempts: number, data: Buffer, onSettle: OnSettle) {
    this.#paths = paths;
    this.#fd = fd;
    this.#name = name;
    this.id = id;
    this.attempts = attempts;
    this.data = data;
    this.#onSettle = onSettle;
  }

  get settled(): boolean {
    return this.#fd < 0;
  }

  /**
   * Unlink first, close after: a consumer scanning for orphans that is
   * granted the flock once we close finds the name gone or the inode
   * unlinked, and never runs a finished chunk again.
   */
  ack(): void {
    this.#settle(() => unlinkIfThere(path.join(this.#paths.claims, this.#name)));
  }

  release(): void {
    this.#settle(() => {});
  }

  fail(failure: AttemptFailure, maxAttempts: number): FailedTo {
    const attempts = this.attempts + 1;
    const from = path.join(this.#paths.claims, this.#name);
    if (attempts < maxAttempts) {
      // Renamed while we hold its flock: nobody else can be working on it.
      this.#settle(() => renameOwn(from, path.join(this.#paths.claims, claimName(this.id, attempts))));
      return 'retry';
    }
    this.#settle(() => {
      ensureDirectory(this.#paths.dead);
      renameOwn(from, deadLetterPath(this.#paths, this.id, failure.status, attempts));
    });
    return 'dead';
  }

  #settle(step: () => void): void {
    if (this.#fd < 0) throw new Error(`claim ${this.id} is already settled`);
    try {
      step();
    } finally {
      fs.closeSync(this.#fd);
      this.#fd = -1;
      this.#onSettle(this);
    }
  }
}

function unlinkIfThere(file: string): void {
  try {
    fs.unlinkSync(file);
  } catch (error) {
    if (errnoCode(error) !== 'ENOENT') throw busError('remove', file, error);
  }
}

function renameOwn(from: string, to: string): void {
  try {
    fs.renameSync(from, to);
  } catch (error) {
    throw busError('move', from, error);
  }
}

function openNoFollow(file: string): number | undefined {
  try {
    return fs.openSync(file, fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW | fs.constants.O_NONBLOCK);
  } catch (error) {
    const code = errnoCode(error);
    if (code === 'ENOENT' || code === 'ENOTDIR') return undefined;
    if (code === 'ELOOP') throw symlinkError(file);
    throw busError('open', file, error);
  }
}

function readWhole(fd: number, file: string): Buffer {
  try {
    return fs.readFileSync(fd);
  } catch (error) {
    throw busError('read', file, error);
  }
}

/** What `claimFromBus` found at `F`. */
/** A claim, the end-of-stream chunk (by its identity, for the end count), or nothing. */
export type BusTake = HeldClaim | EndOfStream | undefined;

export interface EndOfStream {
  /** readChunk's identity of the empty chunk: the end count knows a marker it counted already by it. */
  readonly endOfStream: string;
}

/**
 * With the bus lock held: claims the chunk at `F`, or reports the empty
 * end-of-stream chunk (left at `F` for the caller to remove, as the plain
 * queue does), or undefined when `F` is gone.
 *
 * The chunk moves by link(2) into F.claims/ and unlink(2) of `F`, not by
 * rename: the unlink raises the same event as a plain consumer's take, the
 * one a waiting producer listens for. The flock is taken first, on the
 * open file, so the claim is never visible unheld.
 */
export function claimFromBus(paths: ClaimPaths, onSettle: OnSettle): BusTake {
  const fd = openNoFollow(paths.file);
  if (fd === undefined) return undefined;
  try {
    const st = fs.fstatSync(fd, { bigint: true });
    if (!st.isFile()) throw new BusError(`${paths.file} is not a regular file; the bus file must be one`, paths.file, { code: 'EFTYPE' });
    if (st.size === 0n) {
      fs.closeSync(fd);
      return { endOfStream: identityOf(st) };
    }
    const locked = flock(fd, LOCK_EX | LOCK_NB);
    if (locked < 0) throw busError('lock', paths.file, errnoError(locked, 'flock'));
    let name: string;
    let id: string;
    for (;;) {
      id = newId();
      name = claimName(id, 0);
      try {
        fs.linkSync(paths.file, path.join(paths.claims, name));
        break;
      } catch (error) {
        if (errnoCode(error) !== 'EEXIST') throw busError('claim', paths.file, error);
      }
    }
    unlinkIfThere(paths.file);
    return new HeldClaim(paths, fd, name, id, 0, readWhole(fd, paths.file), onSettle);
  } catch (error) {
    try {
      fs.closeSync(fd);
    } catch {}
    throw error;
  }
}

/** Names in F.claims/ now; none when the directory is gone. */
export function claimNames(paths: ClaimPaths): string[] {
  try {
    return fs.readdirSync(paths.claims);
  } catch (error) {
    if (errnoCode(error) === 'ENOENT') return [];
    throw busError('list', paths.claims, error);
  }
}

/**
 * Takes over the first orphan in F.claims/ (a claim whose flock is free:
 * its consumer died, gave it back, or a person moved it there), or returns
 * undefined. Our own claims are held on other open files, so their flocks
 * refuse us as they refuse everyone. Run under the bus lock, so a scan and
 * a take from `F` never cross.
 */
export function takeOrphan(paths: ClaimPaths, onSettle: OnSettle, skip?: (id: string) => boolean): HeldClaim | undefined {
  for (const name of claimNames(paths).sort()) {
    const { id, attempts, canonical } = parseClaimName(name);
    if (skip?.(id)) continue;
    const file = path.join(paths.claims, name);
    const fd = openNoFollow(file);
    if (fd === undefined) continue;
    let keep = false;
    try {
      const st = fs.fstatSync(fd);
      if (!st.isFile()) continue;
      if (flock(fd, LOCK_EX | LOCK_NB) < 0) continue;
      // Granted because its holder acknowledged it (unlinked, then closed) or
      // moved it on: not an orphan. Only a name still on this inode is.
      const now = fs.lstatSync(file, { throwIfNoEntry: false });
      if (now === undefined || now.ino !== st.ino || now.dev !== st.dev || now.nlink === 0) continue;
      let current = name;
      if (!canonical) {
        current = claimName(id, attempts);
        renameOwn(file, path.join(paths.claims, current));
      }
      const data = readWhole(fd, file);
      keep = true;
      return new HeldClaim(paths, fd, current, id, attempts, data, onSettle);
    } finally {
      if (!keep) fs.closeSync(fd);
    }
  }
  return undefined;
}
