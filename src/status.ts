/**
 * What an operator wants to know about a bus, read from the outside
 * without taking its lock: the chunk file, who holds the lock, a leftover
 * staging file, the mode the bus looks like it is in, and the processes
 * that use the bus (from /proc), with a holder that was stopped called out.
 */
import fs from 'node:fs';
import path from 'node:path';
import { checkRegular, symlinkError } from './core/checks.js';
import { BusError, busError, errnoCode } from './errors.js';
import { historyWindow } from './ext/history/history.js';
import { type ClaimsStatus, claimsStatus, formatClaims } from './ext/claims/status.js';
import { type GroupStatus, formatGroups, groupsStatus } from './ext/groups/groups.js';
import { type BusPaths, busPaths } from './options.js';

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
 * A process's state, from the letter in /proc/PID/stat: `stopped` is T (a
 * stop signal), `traced` is t (stopped by a debugger); `gone` is a PID that
 * /proc/locks still names but that has exited (its lock lives on in a
 * descriptor it passed to a child).
 */
export type ProcessState = 'running' | 'sleeping' | 'disk-sleep' | 'stopped' | 'traced' | 'zombie' | 'dead' | 'idle' | 'gone' | 'unknown';

/**
 * What shows that a process uses the bus. Certain: `lock-table` (named in
 * /proc/locks), `lock`, `file`, `staging`, `ends`, `history` (a descriptor
 * open on `F.lock`, `F`, `F.__new__`, `F.ends`, `F.history/` or a file in
 * it), `watches-lock` (an inotify watch on `F.lock`, as waiting filebus
 * processes keep). A guess: `command-line` (a filebus command line whose
 * --filename is this bus) and `environment` (FILEBUS_FILENAME is), for a
 * process between chunks that holds no descriptor; `watches-directory` (an
 * inotify watch on the bus directory, shared by every bus in it) is only
 * reported beside another sign.
 */
export type UseSign = 'lock-table' | 'lock' | 'file' | 'staging' | 'ends' | 'history' | 'watches-lock' | 'watches-directory' | 'command-line' | 'environment';

export interface BusProcess {
  pid: number;
  /** Short: `filebus producer --back-pressure` for a filebus process, else its name (/proc/PID/comm). */
  command: string;
  state: ProcessState;
  /** The state letter itself (R, S, D, T, t, Z...); empty when the process is gone. */
  stateCode: string;
  /**
   * `holds-lock`: holds `F.lock` now. `blocked-on-lock`: blocked in
   * flock(2) for it (flock(1), Python's filelock). `waiting`: uses the bus
   * without holding the lock: waiting for a chunk, for the slot to empty,
   * for the lock (polled), or for its own input.
   */
  activity: 'holds-lock' | 'blocked-on-lock' | 'waiting';
  /** What showed it, certain signs first. */
  seenBy: UseSign[];
  /** True when only a guess (`command-line`, `environment`) showed it. */
  guess: boolean;
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

const CERTAIN: ReadonlySet<UseSign> = new Set<UseSign>(['lock-table', 'lock', 'file', 'staging', 'ends', 'history', 'watches-lock']);
const GUESSES: ReadonlySet<UseSign> = new Set<UseSign>(['command-line', 'environment']);
const STATES: Record<string, ProcessState> = { R: 'running', S: 'sleeping', D: 'disk-sleep', T: 'stopped', t: 'traced', Z: 'zombie', X: 'dead', x: 'dead', I: 'idle' };

/** A file's identity as inotify's fdinfo prints it: the kernel's dev_t (not stat's encoding) and the inode, both in hex. */
function watchId(st: fs.BigIntStats): string {
  const { major, minor } = splitDev(st.dev);
  return `${((major << 20n) | minor).toString(16)}:${st.ino.toString(16)}`;
}

/** Linux's encoding of dev_t in stat(2) (new_decode_dev). */
function splitDev(dev: bigint): { major: bigint; minor: bigint } {
  return { major: ((dev >> 8n) & 0xfffn) | ((dev >> 32n) & ~0xfffn), minor: (dev & 0xffn) | ((dev >> 12n) & ~0xffn) };
}

/** The contents of a /proc file, or undefined when it cannot be read (the process has gone, or is another user's). */
function readProc(file: string): string | undefined {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch {
    return undefined;
  }
}

function readLink(link: string): string | undefined {
  try {
    return fs.readlinkSync(link);
  } catch {
    return undefined;
  }
}

/** The real path of `file`'s directory joined to its base name: how /proc names an open file. */
function canonical(file: string): string {
  try {
    return path.join(fs.realpathSync(path.dirname(file)), path.basename(file));
  } catch {
    return file;
  }
}

/**
 * Every process that uses the bus, found by walking /proc: its open
 * descriptors and inotify watches, and, for filebus processes that hold
 * neither between chunks, its command line or environment. Reads only;
 * a process that exits meanwhile is left out.
 */
function busUsers(paths: BusPaths, lockStat: fs.BigIntStats | undefined, table: { holders: number[]; waiting: number[] }): { processes: BusProcess[]; unreadable: number } {
  const file = canonical(paths.file);
  const dir = path.dirname(file);
  const opened = new Map<string, UseSign>([
    [file, 'file'],
    [`${file}.lock`, 'lock'],
    [`${file}.__new__`, 'staging'],
    [`${file}.ends`, 'ends'],
    [`${file}.history`, 'history'],
  ]);
  const historyDir = `${file}.history/`;
  const lockWatch = lockStat ? watchId(lockStat) : undefined;
  let dirStat: fs.BigIntStats | undefined;
  try {
    dirStat = fs.statSync(dir, { bigint: true });
  } catch {
    dirStat = undefined;
  }
  const dirWatch = dirStat ? watchId(dirStat) : undefined;

  let pids: number[];
  try {
    pids = fs.readdirSync('/proc').filter((name) => /^\d+$/.test(name)).map(Number);
  } catch {
    pids = [];
  }
  const processes: BusProcess[] = [];
  let unreadable = 0;
  for (const pid of pids) {
    if (pid === process.pid) continue;
    let fds: string[];
    try {
      fds = fs.readdirSync(`/proc/${pid}/fd`);
    } catch (error) {
      // EACCES: another user's; ENOENT: gone meanwhile.
      if (errnoCode(error) === 'EACCES') unreadable += 1;
      continue;
    }
    const signs = new Set<UseSign>();
    let holds = false;
    for (const fd of fds) {
      const target = readLink(`/proc/${pid}/fd/${fd}`)?.replace(/ \(deleted\)$/, '');
      if (target === undefined) continue;
      if (target === 'anon_inode:inotify') {
        const info = readProc(`/proc/${pid}/fdinfo/${fd}`) ?? '';
        for (const watch of info.matchAll(/^inotify .*?ino:(?<ino>[0-9a-f]+) sdev:(?<sdev>[0-9a-f]+)/gm)) {
          const id = `${watch.groups!.sdev}:${watch.groups!.ino}`;
          if (id === lockWatch) signs.add('watches-lock');
          else if (id === dirWatch) signs.add('watches-directory');
        }
        continue;
      }
      const sign = opened.get(target) ?? (target.startsWith(historyDir) ? 'history' : undefined);
      if (sign === undefined) continue;
      signs.add(sign);
      // The open file's locks, as held (a blocked flock(2) is not listed here).
      if (sign === 'lock' && /^lock:.*\bFLOCK\b/m.test(readProc(`/proc/${pid}/fdinfo/${fd}`) ?? '')) holds = true;
    }
    const argv = (readProc(`/proc/${pid}/cmdline`) ?? '').split('\0').filter((arg, i, all) => arg !== '' || i < all.length - 1);
    const filebus = isFilebus(argv);
    if (filebus) {
      const named = namedBus(pid, argv);
      if (named === undefined) {
        if (filebusRole(argv) !== 'status' && environmentBus(pid) === file) signs.add('environment');
      } else if (filebusRole(argv) !== 'status' && named === file) signs.add('command-line');
    }
    const inTable = table.holders.includes(pid) || table.waiting.includes(pid);
    if (inTable) signs.add('lock-table');
    if (!inTable && ![...signs].some((sign) => CERTAIN.has(sign) || GUESSES.has(sign))) continue;
    const [state, stateCode] = stateOf(pid);
    processes.push({
      pid,
      command: filebus ? filebusCommand(argv) : (readProc(`/proc/${pid}/comm`) ?? '').trim() || String(argv[0] ?? '?'),
      state,
      stateCode,
      activity: holds || (table.holders.includes(pid) && state !== 'gone') ? 'holds-lock' : table.waiting.includes(pid) ? 'blocked-on-lock' : 'waiting',
      seenBy: [...signs].sort((a, b) => Number(GUESSES.has(a) || a === 'watches-directory') - Number(GUESSES.has(b) || b === 'watches-directory')),
      guess: ![...signs].some((sign) => CERTAIN.has(sign)),
    });
  }
  // A holder /proc/locks names but that has gone: the lock lives on in a
  // descriptor it handed down (bash's flock(1) child), here held by a
  // process we could not read, or none we found. Named rather than hidden.
  const found = new Set(processes.map((p) => p.pid));
  if (!processes.some((p) => p.activity === 'holds-lock')) {
    for (const pid of table.holders.filter((pid) => !found.has(pid))) {
      const [state, stateCode] = stateOf(pid);
      const comm = (readProc(`/proc/${pid}/comm`) ?? '').trim();
      processes.push({ pid, command: comm || '?', state, stateCode, activity: 'holds-lock', seenBy: ['lock-table'], guess: false });
    }
  }
  return { processes: processes.sort((a, b) => a.pid - b.pid), unreadable };
}

function stateOf(pid: number): [ProcessState, string] {
  const stat = readProc(`/proc/${pid}/stat`);
  if (stat === undefined) return ['gone', ''];
  const code = stat.slice(stat.lastIndexOf(')') + 2).charAt(0);
  return [STATES[code] ?? 'unknown', code];
}

/** A filebus command line: the program, or the script it runs (filebus.js, filebus.bash, the Python filebus...), is called filebus. */
function isFilebus(argv: string[]): boolean {
  return argv.slice(0, 3).some((arg) => /^filebus(\.[a-z]+)?$/.test(path.basename(arg)));
}

function filebusRole(argv: string[]): string | undefined {
  return argv.find((arg) => arg === 'producer' || arg === 'consumer' || arg === 'status');
}

/** The bus a filebus command line names with --filename, resolved against the process's working directory as it would. */
function namedBus(pid: number, argv: string[]): string | undefined {
  let value: string | undefined;
  for (const [i, arg] of argv.entries()) {
    if (arg === '--filename') value = argv[i + 1];
    else if (arg.startsWith('--filename=')) value = arg.slice('--filename='.length);
  }
  return value === undefined ? undefined : resolveFor(pid, value);
}

function environmentBus(pid: number): string | undefined {
  const value = (readProc(`/proc/${pid}/environ`) ?? '').split('\0').find((entry) => entry.startsWith('FILEBUS_FILENAME='));
  return value === undefined ? undefined : resolveFor(pid, value.slice('FILEBUS_FILENAME='.length));
}

function resolveFor(pid: number, value: string): string | undefined {
  if (value === '') return undefined;
  const cwd = path.isAbsolute(value) ? '/' : readLink(`/proc/${pid}/cwd`);
  return cwd === undefined ? undefined : canonical(path.resolve(cwd, value));
}

/** `filebus consumer --back-pressure`: the role and mode, not the whole command line. */
function filebusCommand(argv: string[]): string {
  const role = filebusRole(argv);
  const lossless = argv.some((arg) => /^--(back-pressure|lossless)(=(1|true|yes|on))?$/.test(arg));
  const bash = argv.some((arg) => arg.endsWith('.bash')) || argv.some((arg, i) => /^--impl(ementation)?(=bash)?$/.test(arg) && (arg.endsWith('=bash') || argv[i + 1] === 'bash'));
  return ['filebus', role ?? '', lossless ? '--back-pressure' : '', bash ? '--impl bash' : ''].filter(Boolean).join(' ');
}

const SIGNS: Record<UseSign, string> = {
  'lock-table': 'in /proc/locks',
  lock: 'F.lock open',
  file: 'F open',
  staging: 'F.__new__ open',
  ends: 'F.ends open',
  history: 'F.history open',
  'watches-lock': 'watches F.lock',
  'watches-directory': 'watches the directory',
  'command-line': 'its command line names the bus',
  environment: 'its FILEBUS_FILENAME names the bus',
};

const ACTIVITIES: Record<BusProcess['activity'], string> = {
  'holds-lock': 'holds the lock',
  'blocked-on-lock': 'blocked in flock(2) for the lock',
  waiting: 'waiting',
};

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
  const users = s.processes.map(
    (p) => `PID ${p.pid} (${p.command}), ${p.state}, ${ACTIVITIES[p.activity]}; ${p.seenBy.map((sign) => SIGNS[sign]).join(', ')}${p.guess ? ' (a guess)' : ''}`,
  );
  if (s.unreadable > 0) users.push(`${s.unreadable} process${s.unreadable === 1 ? '' : 'es'} of other users not looked at`);
  lines.push(['processes', users.length ? users.join(`\n${' '.repeat(12)}`) : 'none found']);
  if (s.groups) lines.push(...formatGroups(s.groups));
  if (s.claims) lines.push(...formatClaims(s.claims));
  return lines.map(([name, value]) => `${`${name}:`.padEnd(12)}${value}\n`).join('');
}
