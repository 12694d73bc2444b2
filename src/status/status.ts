/**
 * What an operator wants to know about a bus, read from the outside
 * without taking its lock: the chunk file, who holds the lock, a leftover
 * staging file, the mode the bus looks like it is in, and the processes
 * that use the bus (from /proc), with a holder that was stopped called out.
 */
import fs from 'node:fs';
import { checkRegular, symlinkError } from '../core/checks.js';
import { BusError, busError, errnoCode } from '../errors.js';
import { historyWindow } from '../ext/history/history.js';
import { type ClaimsStatus, claimsStatus, formatClaims } from '../ext/claims/status.js';
import { type GroupStatus, formatGroups, groupsStatus } from '../ext/groups/groups.js';
import { busPaths } from '../options.js';
import { type BusProcess, busUsers, describeProcess, flockHolders } from './processes.js';

export type { BusProcess, ProcessState, UseSign } from './processes.js';

export interface FileStatus {
  /** Size in bytes. */
  size: number;
  /** Seconds since it was last modified. */
  ageSeconds: number;
}

/**
 * The status of one bus; `filebus status --json` prints this object as it
 * is, on one line, so its fields are public: they are added to, not
 * renamed.
 */
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
    /**
     * PIDs holding its flock(2) lock now: every process with a descriptor
     * that holds it (from /proc/PID/fdinfo, which also finds the shell that
     * kept the lock a flock(1) child took for it), else the PID /proc/locks
     * names (even a gone one, when the descriptors cannot be read).
     */
    holders: number[];
    /** PIDs blocked in flock(2) for it, from /proc/locks (filebus itself never blocks there: see `processes`). */
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
  /**
   * The processes that use the bus, by PID; empty where /proc tells
   * nothing (another OS, a bus used only from other hosts). filebus's own
   * waiters poll the lock with LOCK_NB, so /proc/locks never shows them
   * waiting: they are found by their descriptors, watches and command lines.
   */
  processes: BusProcess[];
  /**
   * PIDs of `lock.holders` that are stopped (SIGSTOP, SIGTSTP, or a
   * debugger): until each is continued, nobody can publish or take a chunk.
   * Empty when none is.
   */
  stoppedHolders: number[];
  /**
   * How many processes could not be looked at (another user's, for a
   * caller who is not root): any of them may use the bus unseen.
   */
  unreadable: number;
  /** The durable groups of the bus (docs/protocol.md, "Extension: groups"); absent when it has none. */
  groups?: GroupStatus[];
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
  const table = lockStat ? flockHolders(lockStat.dev, lockStat.ino) : { holders: [], waiting: [] };
  const history = historyWindow(paths);
  const groups = groupsStatus(paths);
  const claims = claimsStatus(paths.file);
  const [mode, looksLike] = guessMode(file, lockStat !== undefined, history !== undefined);
  const exists = file !== null || lockStat !== undefined;
  const users = exists ? busUsers(paths, lockStat, table) : { processes: [], unreadable: 0 };
  const holders = users.processes.filter((p) => p.activity === 'holds-lock').map((p) => p.pid);
  return {
    path: paths.file,
    exists,
    file,
    lock: { exists: lockStat !== undefined, holders: exists ? holders : table.holders, waiting: table.waiting },
    staging: describe(stagingStat),
    mode,
    looksLike,
    ...(history ? { history: { first: history.first, last: history.last } } : {}),
    processes: users.processes,
    stoppedHolders: users.processes.filter((p) => p.activity === 'holds-lock' && (p.state === 'stopped' || p.state === 'traced')).map((p) => p.pid),
    unreadable: users.unreadable,
    ...(groups.length > 0 ? { groups } : {}),
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


/** The status as a few lines for a person. */
export function formatStatus(s: BusStatus): string {
  const file = (f: FileStatus | null, none: string) => (f ? `${f.size} bytes, modified ${f.ageSeconds} s ago` : none);
  const byPid = new Map(s.processes.map((p) => [p.pid, p]));
  const pids = (list: number[]) =>
    list
      .map((pid) => {
        const p = byPid.get(pid);
        return p ? `PID ${pid} (${p.command}, ${p.state})` : `PID ${pid}`;
      })
      .join(', ');
  const lock = !s.lock.exists
    ? 'none'
    : `${s.path}.lock, ${s.lock.holders.length ? `held by ${pids(s.lock.holders)}` : 'not held'}${s.lock.waiting.length ? `; waiting: ${pids(s.lock.waiting)}` : ''}`;
  const lines: [string, string][] = [
    ['bus', s.path],
    ['file', file(s.file, 'none')],
    ['lock', lock],
  ];
  // The one thing to act on first: nothing moves until the holder runs again.
  for (const pid of s.stoppedHolders) {
    const p = byPid.get(pid);
    lines.push(['warning', `lock held by PID ${pid} (${p?.command ?? '?'}), STOPPED: the bus waits until it is continued (kill -CONT ${pid})`]);
  }
  lines.push(
    ['staging', s.staging ? `leftover ${s.path}.__new__, ${file(s.staging, '')} (a publish cut short; the next one removes it)` : 'none'],
    ['looks like', s.looksLike],
  );
  if (s.history) lines.push(['history', `chunks ${s.history.first} to ${s.history.last}`]);
  const users = s.processes.map(describeProcess);
  if (s.unreadable > 0) users.push(`${s.unreadable} process${s.unreadable === 1 ? '' : 'es'} of other users not looked at`);
  lines.push(['processes', users.length ? users.join(`\n${' '.repeat(12)}`) : 'none found']);
  if (s.groups) lines.push(...formatGroups(s.groups));
  if (s.claims) lines.push(...formatClaims(s.claims));
  return lines.map(([name, value]) => `${`${name}:`.padEnd(12)}${value}\n`).join('');
}
