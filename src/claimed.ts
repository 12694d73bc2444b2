/**
 * The consumer with claims, for the library's `consume` (with `jobs` or
 * `retries`) and for `consumer --exec`: chunks are claimed from a
 * back-pressure bus (ext/claims/) or by a member of a durable group
 * (ext/groups/), and the job runner (ext/exec/), which knows neither,
 * runs them up to `jobs` at once, retries them, and dead-letters them.
 * Here, beside the other modes, so that no extension imports another.
 */
import type { Bus } from './core/bus.js';
import { UsageError } from './errors.js';
import { DEFAULT_ATTEMPTS, parseJobs, parseRetries } from './ext/exec/options.js';
import { BusClaims } from './ext/claims/bus-claims.js';
import { claimPaths, deadLetterPath } from './ext/claims/claims.js';
import type { AttemptFailure, ClaimSource, ClaimedChunk } from './core/extension.js';
import { type GroupMemberOptions, GroupMember } from './ext/groups/member.js';
import { type JobResult, type RunSummary, runJobs } from './ext/exec/runner.js';

export interface ClaimedOptions {
  /** Jobs at once; default 1. */
  readonly jobs?: number | undefined;
  /** Attempts in all per chunk before the dead letters; default DEFAULT_ATTEMPTS. */
  readonly retries?: number | undefined;
  /** One line per failed attempt. */
  readonly report?: ((line: string) => void) | undefined;
  readonly signal?: AbortSignal | undefined;
  /** A multicast bus with history: run the chunks of this durable group, as one of its members. */
  readonly group?: string | undefined;
  /** The member's settings, with `group`. */
  readonly member?: GroupMemberOptions | undefined;
}

/**
 * Runs `run` on every chunk of the bus's stream, claimed, until the end of
 * the stream (every job done) or until `signal` aborts (the running jobs
 * finish first; then it rejects with the abort reason).
 */
export async function consumeClaimed(bus: Bus, run: (chunk: ClaimedChunk) => Promise<JobResult>, options: ClaimedOptions): Promise<RunSummary> {
  if (options.group === undefined && !bus.options.backPressure) throw new UsageError('claims (--exec, --jobs, --retries) need a --back-pressure bus or a --group');
  if (options.group !== undefined && bus.options.backPressure) throw new UsageError('--group is for multicast buses with history; a back-pressure bus already hands each chunk to one consumer');
  const jobs = parseJobs(options.jobs ?? 1);
  const attempts = parseRetries(options.retries ?? DEFAULT_ATTEMPTS);
  let source: ClaimSource;
  let deadLetterOf: (chunk: ClaimedChunk, failure: AttemptFailure) => string;
  if (options.group !== undefined) {
    const member = new GroupMember(bus, options.group, options.member);
    source = member;
    deadLetterOf = (chunk, failure) => member.deadLetterOf(chunk, failure);
    try {
      await member.open(options.signal);
    } catch (error) {
      member.close();
      throw error;
    }
  } else {
    const paths = claimPaths(bus.options.paths.file);
    source = await BusClaims.open(bus, options.signal);
    deadLetterOf = (chunk, failure) => deadLetterPath(paths, chunk.id, failure.status, chunk.attempts + 1);
  }
  try {
    return await runJobs(source, { jobs, attempts, run, signal: options.signal, report: options.report, deadLetterOf });
  } finally {
    source.close();
  }
}
