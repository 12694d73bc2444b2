/**
 * The history consumer's decisions, as pure functions of what it saw
 * (docs/protocol.md, "Consuming with history"): where to begin, and what
 * a missing entry means. The cursor (./cursor.ts) gathers the facts.
 */

/** What a consumer knows when the history's cursor takes over. */
export interface StartFacts {
  /** `--replay`: begin with the oldest entry kept. */
  readonly replay: boolean;
  /** The history existed when the consumer started. */
  readonly existedAtStart: boolean;
  /** Its newest entry then (0: none). */
  readonly newestAtStart: number;
  /** The consumer saw no `F` at its start: it was there before the first chunk. */
  readonly fromTheStart: boolean;
  /** It delivered (or passed over) a chunk before the history took over. */
  readonly deliveredBefore: boolean;
  /** The oldest entry kept now, if any. */
  readonly oldestNow: number | undefined;
}

/**
 * The first sequence number to deliver.
 * - `--replay`: the oldest kept.
 * - A history that did not exist at our start: every chunk in it came
 *   after we started, so from 1 (what left the window is reported missed).
 * - Otherwise the newest at our start, as a plain consumer begins with the
 *   chunk at `F`; or the one after it when that chunk was before us (no `F`
 *   at start) or behind what we already delivered.
 */
export function startAt(facts: StartFacts): number {
  if (facts.replay) return facts.oldestNow ?? 1;
  if (!facts.existedAtStart) return 1;
  if (facts.fromTheStart || facts.deliveredBefore) return facts.newestAtStart + 1;
  return Math.max(facts.newestAtStart, 1);
}

/** What to do when entry `next` is not there and `F` shows a chunk we have not delivered. */
export type GapStep =
  /** It is there after all (linked a moment ago): read it. */
  | { readonly kind: 'read' }
  /** Entries from `first` to `last` left the window unread; go on at `next`. */
  | { readonly kind: 'missed'; readonly first: number; readonly last: number; readonly next: number }
  /** Nothing at or after `next` yet (not linked yet, or `F` holds an older entry): wait. */
  | { readonly kind: 'wait' };

/**
 * Decides by the listing alone (`entries`, ascending), never by the head:
 * producers number chunks in order under the lock, so an entry above `next`
 * means `next` was linked before it and is gone.
 */
export function afterGap(next: number, entries: readonly number[]): GapStep {
  const kept = entries.find((seq) => seq >= next);
  if (kept === undefined) return { kind: 'wait' };
  if (kept === next) return { kind: 'read' };
  return { kind: 'missed', first: next, last: kept - 1, next: kept };
}

/**
 * The directory at `F.history` is another one than the one we read (removed
 * and made again), or appeared after the one we read went: a new history,
 * all of it published after we last looked. Begin at its first number.
 */
export function afterStartOver(): number {
  return 1;
}

/** The head a producer takes: the head file's, raised to the newest entry (one a producer killed before writing the head left). */
export function headFrom(headFile: number, newestEntry: number | undefined): number {
  return Math.max(headFile, newestEntry ?? 0);
}
