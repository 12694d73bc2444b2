/**
 * Durable groups from the outside: what `filebus status` shows of them,
 * `filebus group remove`, and the producer's gate (`--wait-for-groups`),
 * which holds a publish back rather than let the history's window drop a
 * chunk some group has not taken yet.
 */
import fs from 'node:fs';
import path from 'node:path';
import { BusError, UsageError } from '../../errors.js';
import type { PublishHook } from '../../core/extension.js';
import type { BusPaths } from '../../options.js';
import { historyWindow } from '../history/history.js';
import { EWOULDBLOCK, LOCK_EX, LOCK_NB, flock, preadStart } from '../../sys/libc.js';
import { groupNames, groupPaths, groupsDir, heldByLiveProcess, historyHead, parseClaimLink, parseDeadLetter, parseGroupName, parseRecord, readRecordFile } from './files.js';

export { parseGroupName } from './files.js';
export { GroupMember, consumeGroup } from './member.js';

export interface GroupStatus {
  name: string;
  /** The next sequence number the group hands out. */
  position: number | null;
  /** The first chunk the group has not delivered: the lowest claimed in flight, else the position. */
  firstUndelivered: number | null;
  /** Chunks of the history the group has not delivered (newest - firstUndelivered + 1, at least 0). */
  lag: number | null;
  /** Members running now (holding their member file's flock). */
  membersAlive: number;
  /** Chunks taken by members and not yet delivered. */
  claimedInFlight: number;
  /** Chunks whose every attempt failed (`--exec`), in `F.groups/<name>/dead/`. */
  deadLetters: number;
  /**
   * The oldest chunk the history keeps is one this group has not delivered:
   * a producer with --wait-for-groups whose window is full waits for this group.
   */
  holdsWindow: boolean;
}

/** Each group of the bus, for `filebus status`; empty when it has none. */
export function groupsStatus(paths: Pick<BusPaths, 'file' | 'history'>): GroupStatus[] {
  const head = historyHead(paths);
  const window = historyWindow(paths);
  return groupNames(paths).map((name) => {
    const g = groupPaths(paths, name);
    const position = readRecordFile(g.position) ?? null;
    let claimed = 0;
    let lowest = Infinity;
    for (const entry of listOrNothing(g.claims)) {
      const link = parseClaimLink(entry);
      if (link === undefined) continue;
      claimed++;
      lowest = Math.min(lowest, link.seq);
    }
    const members = listOrNothing(g.members).filter((member) => heldByLiveProcess(path.join(g.members, member))).length;
    const firstUndelivered = position === null ? null : Math.min(position, lowest);
    const lag = firstUndelivered === null || head === undefined ? null : Math.max(0, head - firstUndelivered + 1);
    const holdsWindow = firstUndelivered !== null && window !== undefined && position !== null && position <= window.first;
    const deadLetters = listOrNothing(g.dead).filter((entry) => parseDeadLetter(entry) !== undefined).length;
    return { name, position, firstUndelivered, lag, membersAlive: members, claimedInFlight: claimed, deadLetters, holdsWindow };
  });
}

/** The groups as lines for `filebus status`. */
export function formatGroups(groups: GroupStatus[]): Array<[string, string]> {
  return groups.map((g): [string, string] => [
    `group ${g.name}`,
    `at seq ${g.position ?? '?'}, ${g.lag ?? '?'} behind, ${g.membersAlive} member(s) running, ${g.claimedInFlight} chunk(s) in flight${g.deadLetters > 0 ? `, ${g.deadLetters} dead letter(s) in ${g.name}/dead/` : ''}${g.holdsWindow ? '; holds the oldest chunk: a producer with --wait-for-groups waits for it' : ''}`,
  ]);
}

function listOrNothing(dir: string): string[] {
  try {
    return fs.readdirSync(dir);
  } catch {
    return [];
  }
}

/**
 * `filebus group remove NAME`: forgets the group (its position, claims and
 * member files). Refused while one of its members runs.
 */
export function removeGroup(paths: Pick<BusPaths, 'file'>, name: string): void {
  const g = groupPaths(paths, parseGroupName(name, 'group remove'));
  const st = fs.lstatSync(g.dir, { throwIfNoEntry: false });
  if (st === undefined || !st.isDirectory()) throw new BusError(`no group ${name} at ${paths.file} (${g.dir} is not there)`, g.dir, { code: 'ENOENT' });
  let fd: number;
  try {
    fd = fs.openSync(g.lock, fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_APPEND | fs.constants.O_NOFOLLOW | fs.constants.O_NONBLOCK, 0o666);
  } catch (error) {
    throw new BusError(`cannot open ${g.lock}: ${(error as Error).message}`, g.lock, { cause: error });
  }
  try {
    // Under the group's lock, so no member joins or claims meanwhile (a member holds it for a few system calls).
    const deadline = Date.now() + 2000;
    while (flock(fd, LOCK_EX | LOCK_NB) === -EWOULDBLOCK) {
      if (Date.now() > deadline) throw new BusError(`group ${name}: its lock ${g.lock} stays held; is a member stuck?`, g.lock, { code: 'EBUSY' });
    }
    const alive = listOrNothing(g.members).filter((member) => heldByLiveProcess(path.join(g.members, member)));
    if (alive.length > 0) {
      const pids = alive.map((member) => member.split('-')[0]).join(', ');
      throw new BusError(`group ${name} has ${alive.length} member(s) running (PID ${pids}); stop them first`, g.dir, { code: 'EBUSY' });
    }
    // Renamed away first: the group is gone at once, whatever the removal of its files meets.
    const gone = path.join(groupsDir(paths), `.removed-${name}-${process.pid}`);
    fs.renameSync(g.dir, gone);
    fs.rmSync(gone, { recursive: true, force: true });
  } finally {
    fs.closeSync(fd);
  }
}

/**
 * `--wait-for-groups`: wraps the history's publish hook, and holds a
 * publish back while it would prune a chunk some group has not taken yet
 * (a chunk taken is safe: its claim keeps a link of it). Positions only
 * grow, so the lowest one is cached and read again only when the cache
 * says the window is full, or when a group came or went.
 */
export class GroupGate implements PublishHook {
  readonly #inner: PublishHook;
  readonly #paths: BusPaths;
  readonly #window: number;
  readonly #log: (message: string) => void;
  readonly #headFile: string;
  readonly #groupsDir: string;
  #headFd = -1;
  readonly #headBytes = Buffer.allocUnsafe(64);
  /** The lowest position of any group, as last read; undefined: read it again. */
  #lowest: number | undefined;
  #lowestName = '';
  /** `F.groups`'s change time when the groups were last listed: a group made or removed changes it. */
  #groupsStamp = -1;
  #positions: string[] = [];
  #waitingFor = '';

  constructor(paths: BusPaths, window: number, inner: PublishHook, log: (message: string) => void) {
    this.#paths = paths;
    this.#window = window;
    this.#inner = inner;
    this.#log = log;
    this.#headFile = path.join(paths.history, 'head');
    this.#groupsDir = groupsDir(paths);
  }

  beforeStage(): void {
    this.#inner.beforeStage();
  }

  staged(staging: string): void {
    this.#inner.staged(staging);
  }

  published(): void {
    this.#inner.published();
  }

  close(): void {
    this.#inner.close();
    if (this.#headFd >= 0) fs.closeSync(this.#headFd);
    this.#headFd = -1;
  }

  holdBack(watch: (file: string) => void): boolean {
    // This publish gets head + 1 and prunes entry head + 1 - window.
    const pruned = this.#head() + 1 - this.#window;
    if (pruned < 1) return false;
    const stamp = this.#stamp();
    if (stamp !== this.#groupsStamp) this.#lowest = undefined;
    if (this.#lowest !== undefined && this.#lowest > pruned) return false;
    this.#readPositions(stamp);
    if (this.#lowest! > pruned) {
      if (this.#waitingFor !== '') this.#log(`group ${this.#waitingFor} took its chunk; publishing again`);
      this.#waitingFor = '';
      return false;
    }
    for (const file of this.#positions) watch(file);
    watch(this.#groupsDir);
    if (this.#waitingFor !== this.#lowestName) this.#log(`waiting for group ${this.#lowestName} (at seq ${this.#lowest}): the window of ${this.#window} chunks is full`);
    this.#waitingFor = this.#lowestName;
    return true;
  }

  /** The history's head (0 when there is none yet), read under the bus lock: exact. */
  #head(): number {
    if (this.#headFd < 0) {
      try {
        this.#headFd = fs.openSync(this.#headFile, fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW | fs.constants.O_NONBLOCK);
      } catch {
        return 0;
      }
    }
    const n = preadStart(this.#headFd, this.#headBytes, this.#headBytes.length);
    if (n > 0) return parseRecord(this.#headBytes.subarray(0, n)) ?? 0;
    // Unreadable or replaced: open it afresh next time.
    fs.closeSync(this.#headFd);
    this.#headFd = -1;
    return 0;
  }

  #stamp(): number {
    const st = fs.statSync(this.#groupsDir, { throwIfNoEntry: false });
    return st === undefined ? 0 : st.ctimeMs + st.ino;
  }

  #readPositions(stamp: number): void {
    // No group: nothing to wait for (Infinity, cached like any other value).
    let lowest = Infinity;
    let complete = true;
    this.#positions = [];
    for (const name of groupNames(this.#paths)) {
      const file = groupPaths(this.#paths, name).position;
      this.#positions.push(file);
      const position = readRecordFile(file);
      // A group being made has no position yet: not cached, so it is read again next time.
      if (position === undefined) complete = false;
      else if (position < lowest) {
        lowest = position;
        this.#lowestName = name;
      }
    }
    this.#lowest = lowest;
    this.#groupsStamp = complete ? stamp : -1;
  }
}

/** The producer's publish hook with `--wait-for-groups`; a UsageError without a history. */
export function groupGate(paths: BusPaths, history: number, waitForGroups: boolean | undefined, inner: PublishHook | undefined, log: (message: string) => void): PublishHook | undefined {
  if (!waitForGroups) return inner;
  if (inner === undefined || history === 0) throw new UsageError('--wait-for-groups needs --history N: a group reads its chunks from the history');
  return new GroupGate(paths, history, inner, log);
}
