/**
 * The files of durable groups (docs/protocol.md, "Extension: groups"), and
 * the small reads both sides need: a group's position, the history's head.
 *
 *   F.groups/<NAME>/lock            the group's flock target
 *   F.groups/<NAME>/position        next sequence number to hand out (fixed-width record)
 *   F.groups/<NAME>/plain           identity of the last chunk without history the group delivered
 *   F.groups/<NAME>/members/<id>    one per running member, held with an exclusive flock
 *   F.groups/<NAME>/claims/<id>.lock   one per batch taken, flocked by its taker; holds the attempts
 *   F.groups/<NAME>/claims/<id>.<seq>  a hard link of history entry <seq>, until delivered
 *   F.groups/<NAME>/claims/<id>.<seq>.attempts-<n>   the same after n failed attempts (`--exec`)
 *   F.groups/<NAME>/dead/<seq>.<status>.attempts-<n> a chunk whose every attempt failed
 */
import fs from 'node:fs';
import path from 'node:path';
import { errnoCode } from '../../errors.js';
import type { BusPaths } from '../../options.js';
import { RECORD_DIGITS, recordNumber } from '../../core/record-file.js';
import { EWOULDBLOCK, LOCK_EX, LOCK_NB, LOCK_UN, flock, preadStart } from '../../sys/libc.js';

// The name's checks live in a leaf module, so the command line can use them without loading libc.
import { NAME } from './name.js';
export { checkGroupOptions, parseGroupName } from './name.js';

export interface GroupPaths {
  readonly name: string;
  readonly dir: string;
  readonly lock: string;
  readonly position: string;
  /** The last chunk without history (one link at `F`) the group handed out: its identity, space-padded. */
  readonly plain: string;
  readonly members: string;
  readonly claims: string;
  /** Chunks whose every attempt failed (`consumer --group NAME --exec CMD`). */
  readonly dead: string;
}

/** `F.groups`: one directory per group. */
export function groupsDir(paths: Pick<BusPaths, 'file'>): string {
  return `${paths.file}.groups`;
}

export function groupPaths(paths: Pick<BusPaths, 'file'>, name: string): GroupPaths {
  const dir = path.join(groupsDir(paths), name);
  return { name, dir, lock: path.join(dir, 'lock'), position: path.join(dir, 'position'), plain: path.join(dir, 'plain'), members: path.join(dir, 'members'), claims: path.join(dir, 'claims'), dead: path.join(dir, 'dead') };
}

/** The names of the groups of a bus (directories in `F.groups`); empty when there are none. */
export function groupNames(paths: Pick<BusPaths, 'file'>): string[] {
  try {
    return fs.readdirSync(groupsDir(paths)).filter((name) => NAME.test(name));
  } catch (error) {
    if (errnoCode(error) === 'ENOENT' || errnoCode(error) === 'ENOTDIR') return [];
    throw error;
  }
}

const RECORD_BYTES = 64;
const scratch = Buffer.allocUnsafe(RECORD_BYTES);

/** The number at the start of a record file's bytes (digits, optional whitespace), or undefined. */
export function parseRecord(bytes: Buffer): number | undefined {
  const text = bytes.toString('latin1').trim();
  return /^\d{1,16}$/.test(text) ? Number(text) : undefined;
}

/** The number in the record file open at `fd`; undefined when empty or unreadable. */
export function readRecordFd(fd: number): number | undefined {
  const n = preadStart(fd, scratch, RECORD_BYTES);
  return n <= 0 ? undefined : parseRecord(scratch.subarray(0, n));
}

/** The number in the record file at `file`; undefined when it is missing, empty or unreadable. */
export function readRecordFile(file: string): number | undefined {
  let fd: number;
  try {
    fd = fs.openSync(file, fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW | fs.constants.O_NONBLOCK);
  } catch {
    return undefined;
  }
  try {
    return readRecordFd(fd);
  } finally {
    fs.closeSync(fd);
  }
}

/** `n` as a fixed-width record, for overwriteRecord. */
export function recordBytes(n: number): Buffer {
  return Buffer.from(`${recordNumber(n)}\n`, 'latin1');
}
export const RECORD_LENGTH = RECORD_DIGITS + 1;

/**
 * Width of the `plain` record: an identity (device:inode:ctime-ns:size,
 * at most 83 characters) padded with spaces, and a newline. Fixed, so one
 * pwrite replaces it whole (see core/record-file.ts).
 */
export const PLAIN_LENGTH = 128;

/** `identity` as a `plain` record. */
export function plainBytes(identity: string): Buffer {
  return Buffer.from(`${identity.slice(0, PLAIN_LENGTH - 1).padEnd(PLAIN_LENGTH - 1)}\n`, 'latin1');
}

/** The identity in the `plain` record open at `fd`; '' when there is none yet. */
export function readPlainFd(fd: number): string {
  const buffer = Buffer.allocUnsafe(PLAIN_LENGTH);
  const n = preadStart(fd, buffer, PLAIN_LENGTH);
  return n <= 0 ? '' : buffer.toString('latin1', 0, n).trim();
}

/** `F.history/head`: the last sequence number given, or undefined when there is no history yet. */
export function historyHead(paths: Pick<BusPaths, 'history'>): number | undefined {
  return readRecordFile(path.join(paths.history, 'head'));
}

/**
 * True when the file at `file` is held with a flock by a live process: an
 * exclusive non-blocking flock is refused. (When granted it is let go at
 * once; the caller only counts.)
 */
export function heldByLiveProcess(file: string): boolean {
  let fd: number;
  try {
    fd = fs.openSync(file, fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW | fs.constants.O_NONBLOCK);
  } catch {
    return false;
  }
  try {
    const result = flock(fd, LOCK_EX | LOCK_NB);
    if (result === 0) flock(fd, LOCK_UN);
    return result === -EWOULDBLOCK;
  } finally {
    fs.closeSync(fd);
  }
}

/** A chunk's link in `claims/`: `<id>.<seq>`, or `<id>.<seq>.attempts-<n>` after n failed attempts. */
const CLAIM_LINK = /^(.+)\.(\d{1,16})(?:\.attempts-(\d{1,9}))?$/;
/** A dead letter's name, `<seq>.<status>.attempts-<n>`; moved back into `claims/` it starts again. */
const DEAD_LETTER = /^(\d{1,16})\.(?:exit-\d+|signal-[A-Z0-9]+|error)\.attempts-\d+$/;

/** The claim id, sequence number and failed attempts of a chunk's link in `claims/`; undefined for anything else. */
export function parseClaimLink(name: string): { id: string; seq: number; attempts: number } | undefined {
  if (DEAD_LETTER.test(name)) return undefined;
  const m = CLAIM_LINK.exec(name);
  return m ? { id: m[1]!, seq: Number(m[2]), attempts: Number(m[3] ?? 0) } : undefined;
}

/** The sequence number of a dead letter (a name in `dead/`, or one moved back into `claims/`). */
export function parseDeadLetter(name: string): number | undefined {
  const m = DEAD_LETTER.exec(name);
  return m ? Number(m[1]) : undefined;
}

/** A chunk's link in `claims/` after `attempts` failed attempts. */
export function claimLinkName(id: string, seq: number, attempts: number): string {
  return attempts === 0 ? `${id}.${seq}` : `${id}.${seq}.attempts-${attempts}`;
}

/** Where a chunk that failed `attempts` times in all, the last with `status`, lies in the group's dead letters. */
export function groupDeadLetterPath(g: Pick<GroupPaths, 'dead'>, seq: number, status: string, attempts: number): string {
  return path.join(g.dead, `${seq}.${status}.attempts-${attempts}`);
}
