/**
 * The shape a job runner drives: a source of claimed chunks, each held by
 * this process until it is acknowledged, given back or failed. The
 * back-pressure bus's claims (./bus-claims.ts) are one source; a durable
 * group's member can be another. Nothing here touches a file: it is the
 * contract between whoever holds chunks and whoever runs jobs on them.
 */

export interface ClaimSource {
  /**
   * The next chunk, claimed for this process; undefined at the end of the
   * stream (then nothing more will come from this source, though a caller
   * with jobs still running may ask again: a chunk one of them gives back
   * is offered once more). Rejects with the abort reason when `signal`
   * aborts.
   */
  take(signal?: AbortSignal): Promise<ClaimedChunk | undefined>;
  /** Lets go of what the source holds open (claims not settled become another consumer's). */
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
  readonly data: Buffer;
  /** Names the chunk for as long as it lives, across attempts, consumers and dead letters. */
  readonly id: string;
  /** Failed attempts before this one. */
  readonly attempts: number;
  /** The work is done: the chunk leaves the bus for good. */
  ack(): void;
  /** Gives the chunk back untried (no attempt counted): any consumer may take it. */
  release(): void;
  /**
   * This attempt failed. With fewer than `maxAttempts` attempts in all the
   * chunk is given back for another attempt ('retry'), otherwise it goes to
   * the dead letters ('dead').
   */
  fail(failure: AttemptFailure, maxAttempts: number): FailedTo;
}
