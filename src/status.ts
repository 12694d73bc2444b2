/**
 * What an operator wants to know about a bus, read from the outside
 * without taking its lock: the chunk file, who holds the lock, a leftover
 * staging file, and the mode the bus looks like it is in.
 */
import fs from 'node:fs';
import { checkRegular, symlinkError } from './core/checks.js';
import { BusError, busError, errnoCode } from './errors.js';
import { historyWindow } from './ext/history/history.js';
import { type ClaimsStatus, claimsStatus, formatClaims } from './ext/claims/status.js';
import { busPaths } from './options.js';

export interface FileStatus {
  /** Size in bytes. */
  size: number;
  /** Seconds since it was last modified. */
  ageSeconds: number;
}

export interface BusStatus {
  /** The bus file `F`, as an absolute path. */
  path: string;
  /** True when `F` or `F.lock` exists: there is a bus at this path. */
  exists: boolean;
  /** `F`, the current chunk; null when there is none. */
  file: FileStatus | null;
  /** `F.lock`, never deleted once made. */
  lock: {
    exists: boolean;
    /** PIDs holding its flock(2) lock now, from /proc/locks. */
    holders: number[];
    /** PIDs waiting for it. */
    waiting: number[];
  };
  /** A leftover `F.__new__` (a publish cut short by SIGKILL or a crash); null when there is none. */
  staging: FileStatus | null;
  /** The mode the bus looks like it is in, as far as the files tell. */
  mode: 'back-pressure-ended' | 'multicast-with-history' | 'chunk-waiting-or-multicast' | 'empty' | 'none';
  /** The same in words. */
  looksLike: string;
  /**
   * The multicast history window (--history), when the bus keeps one: the
   * sequence numbers of the first and last chunk it still holds (from
   * history.ts); absent when the bus keeps no history.
   */
  history?: { first: number; last: number };
  /** Claims (`consumer --exec`) and dead letters, when the bus has `F.claims/` or `F.dead/` (ext/claims). */
  claims?: ClaimsStatus;
}

/**
 * The status of the bus at `filename`; a missing bus is no error (see
 * `exists`), a bus file that is not a regular file (a directory, a FIFO)
 * or a path that cannot be looked at is a BusError.
 */
export function status(filename: string): BusStatus {
  const paths = busPaths(filename);
  const now = Date.now();
  const describe = (st: fs.Stats | undefined): FileStatus | null =>
    st === undefined ? null : { size: st.size, ageSeconds: Math.max(0, Math.round((now - st.mtimeMs) / 100) / 10) };
  const fileStat = statOrNothing(paths.file);
  if (fileStat) checkRegular(paths.file, fileStat);
  const lockStat = statOrNothing(paths.lock, true);
  const stagingStat = statOrNothing(paths.staging);
  const file = describe(fileStat);
  const locks = lockStat ? flockHolders(lockStat.dev, lockStat.ino) : { holders: [], waiting: [] };
  const history = historyWindow(paths);
  const claims = claimsStatus(paths.file);
  const [mode, looksLike] = guessMode(file, lockStat !== undefined, history !== undefined);
  return {
    path: paths.file,
    exists: file !== null || lockStat !== undefined,
    file,
    lock: { exists: lockStat !== undefined, ...locks },
    staging: describe(stagingStat),
    mode,
    looksLike,
    ...(history ? { history: { first: history.first, last: history.last } } : {}),
    ...(claims ? { claims } : {}),
  };
}

/**
 * lstat(2), or undefined when nothing is there (a component of the path
 * missing or not a directory). A symbolic link at one of the bus's paths is
 * an error, as for every other command: its target is not the bus.
 */
function statOrNothing(file: string): fs.Stats | undefined;
function statOrNothing(file: string, bigint: true): fs.BigIntStats | undefined;
function statOrNothing(file: string, bigint = false): fs.Stats | fs.BigIntStats | undefined {
  try {
    const st = fs.lstatSync(file, { throwIfNoEntry: false, bigint });
    if (st?.isSymbolicLink()) throw symlinkError(file);
    return st;
  } catch (error) {
    if (error instanceof BusError) throw error;
    if (errnoCode(error) === 'ENOTDIR') return undefined;
    throw busError('look at', file, error);
  }
}

function guessMode(file: FileStatus | null, hasLock: boolean, hasHistory: boolean): [BusStatus['mode'], string] {
  // Only multicast producers keep a history (a work queue refuses --history).
  if (hasHistory) return ['multicast-with-history', 'multicast, with a history window: consumers within it get every chunk'];
  if (file?.size === 0) return ['back-pressure-ended', 'back pressure, ended: F is empty, the end-of-stream marker waiting for a consumer'];
  if (file) return ['chunk-waiting-or-multicast', 'holds a chunk: the latest of a multicast bus, or one waiting for a back-pressure consumer'];
  if (hasLock) return ['empty', 'no chunk: a back-pressure bus whose chunks were all taken, or a bus nothing was published on yet'];
  return ['none', 'no bus'];
}

/**
 * The processes holding or waiting for a flock(2) lock on the file with
 * this device and inode. /proc/locks names the file by "MAJOR:MINOR:INODE"
 * (major and minor in hex); a waiter's line has "->" after its number.
 */
function flockHolders(dev: bigint, ino: bigint): { holders: number[]; waiting: number[] } {
  const holders: number[] = [];
  const waiting: number[] = [];
  let table: string;
  try {
    table = fs.readFileSync('/proc/locks', 'utf8');
  } catch {
    return { holders, waiting };
  }
  // Linux's encoding of dev_t (new_decode_dev).
  const major = ((dev >> 8n) & 0xfffn) | ((dev >> 32n) & ~0xfffn);
  const minor = (dev & 0xffn) | ((dev >> 12n) & ~0xffn);
  for (const line of table.split('\n')) {
    const fields = line.trim().split(/\s+/);
    const blocked = fields[1] === '->';
    const [type, , , pid, id] = fields.slice(blocked ? 2 : 1);
    if (type !== 'FLOCK' || id === undefined) continue;
    const [maj, min, inode] = id.split(':');
    if (maj === undefined || min === undefined || inode === undefined) continue;
    if (BigInt(`0x${maj}`) !== major || BigInt(`0x${min}`) !== minor || BigInt(inode) !== ino) continue;
    (blocked ? waiting : holders).push(Number(pid));
  }
  return { holders, waiting };
}

/** The status as a few lines for a person. */
export function formatStatus(s: BusStatus): string {
  const file = (f: FileStatus | null, none: string) => (f ? `${f.size} bytes, modified ${f.ageSeconds} s ago` : none);
  const pids = (list: number[]) => list.map((pid) => `PID ${pid}`).join(', ');
  const lock = !s.lock.exists
    ? 'none'
    : `${s.path}.lock, ${s.lock.holders.length ? `held by ${pids(s.lock.holders)}` : 'not held'}${s.lock.waiting.length ? `; waiting: ${pids(s.lock.waiting)}` : ''}`;
  const lines = [
    ['bus', s.path],
    ['file', file(s.file, 'none')],
    ['lock', lock],
    ['staging', s.staging ? `leftover ${s.path}.__new__, ${file(s.staging, '')} (a publish cut short; the next one removes it)` : 'none'],
    ['looks like', s.looksLike],
  ];
  if (s.history) lines.push(['history', `chunks ${s.history.first} to ${s.history.last}`]);
  if (s.claims) lines.push(...formatClaims(s.claims));
  return lines.map(([name, value]) => `${`${name}:`.padEnd(12)}${value}\n`).join('');
}
