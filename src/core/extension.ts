/**
 * How extensions plug into the protocol core. The core (lock, checks,
 * publish, read, wait) knows nothing of any extension; it owns these small
 * interfaces, and a mode hands it an implementation:
 *
 * - `PublishHook`: runs inside the one publish step, under the bus lock,
 *   around staging and the rename (the history numbers each chunk there).
 * - `Cursor`: what the multicast loop asks for its next chunk. The core's
 *   own is `FileCursor` (./cursor.ts), over the identity of `F`; an
 *   extension may take over from it (the history's cursor, on a bus that
 *   keeps one).
 */
import type fs from 'node:fs';

/**
 * Steps an extension adds to a publish (docs/protocol.md, "Publishing a
 * chunk"). Every method runs with the bus lock held, synchronously, so no
 * other writer of the bus runs in between. A method that throws fails the
 * publish: `F` still holds the previous chunk unless `published` threw.
 */
export interface PublishHook {
  /** Before the chunk is staged: open or check the extension's files. */
  beforeStage(): void;
  /**
   * The chunk is whole at `staging` and not yet at `F`. What is done here
   * is visible before `F` shows the chunk; a throw here leaves `F` as it was
   * (the hook must undo its own part first).
   */
  staged(staging: string): void;
  /**
   * `F` shows the chunk now. The publish has happened whatever this does:
   * a failure here must not be reported as a failed publish (a retry would
   * publish the chunk twice), so it is for tidying that may wait.
   */
  published(): void;
  /**
   * Optional, asked before each publish with the bus lock held: true when
   * the extension needs the publish to wait (the groups' window is full).
   * The lock is then released and the producer waits for the next hint or
   * poll before it asks again; `watch` adds files whose change should end
   * that wait (see Watcher.watchFile).
   */
  holdBack?(watch: (file: string) => void): boolean;
  /** The producer is done with the bus. */
  close(): void;
}

/**
 * A multicast consumer's position on the bus: the wait loop calls `next()`
 * on each wake until it returns undefined. Synchronous, so any wait loop
 * (the event loop's or the command's blocking one) can drive it.
 */
export interface Cursor {
  /** The next chunk to deliver, or undefined when there is none yet. */
  next(): Buffer | undefined;
  /**
   * True while chunks remain that no notification will announce (entries
   * older than `F`): the loop asks again before it waits.
   */
  readonly behind: boolean;
  /** Releases what the cursor holds open. */
  close?(): void;
}

/** What the core's cursor knows when it hands over to an extension's. */
export interface Handover {
  /** lstat of `F` that showed the extension's mark (more than one link). */
  readonly file: fs.BigIntStats;
  /**
   * True when this consumer has not delivered or passed over any chunk yet
   * and saw no `F` at its start: it was there before the first chunk, and
   * wants every chunk from the first.
   */
  readonly fromTheStart: boolean;
  /** Identity (readChunk's) of the last chunk this consumer delivered, if any. */
  readonly lastIdentity: string | undefined;
}

/**
 * Offered every `F` with more than one link (a chunk an extension also
 * keeps elsewhere); returns the cursor that takes over from now on, or
 * undefined to go on reading `F` alone.
 */
export type TakeOver = (handover: Handover) => Cursor | undefined;

/**
 * A source of chunks handed out one at a time, each claimed by this process
 * until it is acknowledged, given back or failed: the contract between
 * whoever holds chunks (a back-pressure bus's claims, src/ext/claims/; a
 * durable group's member, src/ext/groups/) and whoever delivers them or
 * runs jobs on them (the consumer, `--exec`'s runner in src/ext/exec/).
 * Nothing here touches a file.
 */
export interface ClaimSource {
  /**
   * The next chunk, claimed for this process; undefined at the end of the
   * stream (then nothing more will come from this source, though a caller
   * with jobs still running may ask again: a chunk one of them gives back
   * is offered once more). A source with no end (a group) never returns
   * undefined. Rejects with the abort reason when `signal` aborts.
   */
  take(signal?: AbortSignal): Promise<ClaimedChunk | undefined>;
  /** Lets go of what the source holds open: claims not settled become another taker's. */
  close(): void;
}

/** Why an attempt failed, in the two forms it is shown in. */
export interface AttemptFailure {
  /**
   * A short token safe in a file name, as dead letters are named by it:
   * `exit-3`, `signal-SIGKILL`, `error`.
   */
  readonly status: string;
  /** The same for a person: `exit status 3`, `killed by SIGKILL`, the error's message. */
  readonly reason: string;
}

/** Where a failed chunk went. */
export type FailedTo = 'retry' | 'dead';

export interface ClaimedChunk {
  /** The chunk's bytes; with a reused buffer, valid until the next `take`. */
  readonly data: Buffer;
  /** Names the chunk in its source for as long as it lives, across attempts, takers and dead letters. */
  readonly id: string;
  /** Failed attempts before this one (a taker that died or gave it back is not one). */
  readonly attempts: number;
  /** Delivered, the work is done: the source forgets it for good. */
  ack(): void;
  /** Gives the chunk back untried (no attempt counted): the next taker gets it. */
  release(): void;
  /**
   * This attempt failed. With fewer than `maxAttempts` attempts in all the
   * chunk is given back for another attempt ('retry'), otherwise it goes to
   * the source's dead letters ('dead').
   */
  fail(failure: AttemptFailure, maxAttempts: number): FailedTo;
}
