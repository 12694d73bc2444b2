/**
 * What ends a thread's blocking wait besides the descriptor it waits on.
 * A process that blocks in poll(2) between chunks (the filebus command)
 * must still notice signals, a reader of its standard output going away,
 * and timers; returning to the event loop every so often to find out
 * costs a cold wake-up and a loop turn each time (~600 us of CPU), which
 * is all an idle consumer spends. Instead, every blocking wait polls these
 * descriptors too, and the event loop gets a turn when one of them is
 * ready or a turn was asked for.
 *
 * - libuv's signal pipe: libuv's signal handler, on whichever thread the
 *   kernel picked, writes the signal's number into a per-loop pipe that
 *   the loop reads on its next turn. Its read end in the poll set ends the
 *   wait at once for any signal; it is never read here (libuv does).
 * - any descriptor the command names, e.g. standard output: a pipe's
 *   write end reports POLLERR once the reader has closed.
 */
import fs from 'node:fs';
import { EINTR, POLLIN, pollMs, raiseSignal, statusFlags } from './libc.js';

/** What a wait with the extra descriptors ended with. */
export type Polled = 'ready' | 'timeout' | 'interrupted';

interface Wakeup {
  readonly fd: number;
  readonly events: number;
  /** Called with the revents when the descriptor is ready; the entry is then dropped (a closed pipe stays in error). */
  readonly onReady: ((revents: number) => void) | undefined;
}

const wakeups: Wakeup[] = [];
/** pollfd entries: slot 0 for the caller's descriptor, then one per wakeup. */
let pollSet = Buffer.alloc(8);
let signalPipe: number | undefined;
/** performance.now() by which the event loop should get a turn (a timer is due). */
let turnDue = Infinity;

/**
 * Makes every blocking wait of this process end when `fd` reports one of
 * `events` (POLLERR and POLLHUP are always reported). With `onReady`, that
 * is called first and the descriptor leaves the set; without, it stays
 * (for descriptors that someone else drains on the event loop's turn).
 */
export function wakeOn(fd: number, events: number, onReady?: (revents: number) => void): void {
  wakeups.push({ fd, events, onReady });
  rebuild();
}

function rebuild(): void {
  pollSet = Buffer.alloc(8 * (1 + wakeups.length));
  wakeups.forEach((w, i) => {
    pollSet.writeInt32LE(w.fd, 8 * (i + 1));
    pollSet.writeInt16LE(w.events, 8 * (i + 1) + 4);
  });
}

/** A signal that the command ignores anyway (terminal resized), raised once to find libuv's pipe. */
const SIGWINCH = 28;

/**
 * Finds the read end of the event loop's signal pipe and adds it to every
 * blocking wait: call after `process.on(signal)` for the signals that
 * matter. libuv makes one such pipe per loop when the loop starts (Node has
 * several loops), so the one that is ours is found by raising a signal we
 * handle and seeing which non-blocking pipe read end became readable. True
 * when found; false leaves waits as they were (they then return to the
 * event loop every 100 ms to run signal handlers).
 */
export function wakeOnSignals(): boolean {
  if (signalPipe !== undefined) return true;
  const candidates = readEnds();
  if (candidates.length === 0) return false;
  const readable = (): number[] => {
    const set = Buffer.alloc(8 * candidates.length);
    candidates.forEach((fd, i) => {
      set.writeInt32LE(fd, 8 * i);
      set.writeInt16LE(POLLIN, 8 * i + 4);
    });
    if (pollMs(set, candidates.length, 0) <= 0) return [];
    return candidates.filter((_, i) => (set.readInt16LE(8 * i + 6) & POLLIN) !== 0);
  };
  const before = new Set(readable());
  // Our handler (a no-op) is what makes libuv write to our loop's pipe.
  process.on('SIGWINCH', () => {});
  if (raiseSignal(SIGWINCH) < 0) return false;
  const now = readable().filter((fd) => !before.has(fd));
  if (now.length !== 1) return false;
  signalPipe = now[0]!;
  wakeOn(signalPipe, POLLIN);
  return true;
}

/** Whether signals end blocking waits at once (so the waits may be long). */
export function signalsWake(): boolean {
  return signalPipe !== undefined;
}

const O_ACCMODE = 3;
const O_RDONLY = 0;

/** Non-blocking pipe read ends above standard error: where libuv's signal pipes are. */
function readEnds(): number[] {
  let names: string[];
  try {
    names = fs.readdirSync('/proc/self/fd');
  } catch {
    return [];
  }
  return names
    .map(Number)
    .filter((fd) => {
      if (!(fd > 2)) return false;
      const flags = statusFlags(fd);
      if (flags < 0 || (flags & O_ACCMODE) !== O_RDONLY || (flags & fs.constants.O_NONBLOCK) === 0) return false;
      try {
        return fs.fstatSync(fd).isFIFO();
      } catch {
        return false;
      }
    });
}

/** Asks blocking waits to give the event loop a turn by `at` (performance.now() time): a timer is due then. */
export function requestTurn(at: number): void {
  if (at < turnDue) turnDue = at;
}

/** When the event loop should next get a turn, Infinity when nothing asked. */
export function turnDeadline(): number {
  return turnDue;
}

/** The event loop just had a turn: requests that fell due are met. */
export function turnTaken(now: number): void {
  if (turnDue <= now) turnDue = Infinity;
}

/**
 * poll(2) on `primary` (one struct pollfd, or null for none) and every
 * wakeup, up to `timeoutMs`. 'ready': `primary` is, its revents filled in;
 * 'interrupted': a signal or a wakeup came (the caller should let the
 * event loop run); 'timeout' otherwise, errors included.
 */
export function pollWith(primary: Buffer | null, timeoutMs: number): Polled {
  if (wakeups.length === 0) {
    const ready = pollMs(primary, primary ? 1 : 0, timeoutMs);
    return ready > 0 ? 'ready' : ready === -EINTR ? 'interrupted' : 'timeout';
  }
  const set = pollSet;
  if (primary) primary.copy(set, 0, 0, 8);
  else set.writeInt32LE(-1, 0);
  set.writeInt16LE(0, 6);
  for (let i = 1; i <= wakeups.length; i++) set.writeInt16LE(0, 8 * i + 6);
  const ready = pollMs(set, 1 + wakeups.length, timeoutMs);
  if (ready <= 0) return ready === -EINTR ? 'interrupted' : 'timeout';
  let woken = false;
  for (let i = wakeups.length; i >= 1; i--) {
    const revents = set.readInt16LE(8 * i + 6);
    if (revents === 0) continue;
    woken = true;
    const w = wakeups[i - 1]!;
    if (w.onReady) {
      wakeups.splice(i - 1, 1);
      w.onReady(revents);
    }
  }
  if (woken) {
    if (pollSet === set && wakeups.length + 1 !== set.length / 8) rebuild();
    return 'interrupted';
  }
  if (primary) set.copy(primary, 6, 6, 8);
  return 'ready';
}
