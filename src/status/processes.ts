/**
 * Which processes use a bus, read from /proc: descriptors open on its
 * files, inotify watches of F.lock, /proc/locks, and command lines naming
 * it; with each one's state, so that a lock holder that was stopped can be
 * called out. For `filebus status` (./status.ts); Linux only, and a
 * process of another user is counted, not looked at.
 */
import fs from 'node:fs';
import path from 'node:path';
import { errnoCode } from '../errors.js';
import type { BusPaths } from '../options.js';

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
 * The processes holding or waiting for a flock(2) lock on the file with
 * this device and inode. /proc/locks names the file by "MAJOR:MINOR:INODE"
 * (major and minor in hex); a waiter's line has "->" after its number.
 */
export function flockHolders(dev: bigint, ino: bigint): { holders: number[]; waiting: number[] } {
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
export function busUsers(paths: BusPaths, lockStat: fs.BigIntStats | undefined, table: { holders: number[]; waiting: number[] }): { processes: BusProcess[]; unreadable: number } {
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

/** One process as a line of `filebus status`. */
export function describeProcess(p: BusProcess): string {
  return `PID ${p.pid} (${p.command}), ${p.state}, ${ACTIVITIES[p.activity]}; ${p.seenBy.map((sign) => SIGNS[sign]).join(', ')}${p.guess ? ' (a guess)' : ''}`;
}
