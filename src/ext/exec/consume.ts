/**
 * Claimed consumption of a back-pressure bus, for the library's `consume`
 * (with `jobs` or `retries`) and for `consumer --exec`: chunks are claimed
 * (../claims/), run up to `jobs` at once, retried, and dead-lettered.
 */
import type { Bus } from '../../core/bus.js';
import { UsageError } from '../../errors.js';
import { DEFAULT_ATTEMPTS, parseJobs, parseRetries } from './options.js';
import { BusClaims } from '../claims/bus-claims.js';
import { claimPaths, deadLetterPath } from '../claims/claims.js';
import type { ClaimedChunk } from '../claims/source.js';
import { type JobResult, type RunSummary, runJobs } from './runner.js';

export interface ClaimedOptions {
  /** Jobs at once; default 1. */
  readonly jobs?: number | undefined;
  /** Attempts in all per chunk before the dead letters; default DEFAULT_ATTEMPTS. */
  readonly retries?: number | undefined;
  /** One line per failed attempt. */
  readonly report?: ((line: string) => void) | undefined;
  readonly signal?: AbortSignal | undefined;
}

/**
 * Runs `run` on every chunk of the bus's stream, claimed, until the end of
 * the stream (every job done) or until `signal` aborts (the running jobs
 * finish first; then it rejects with the abort reason).
 */
export async function consumeClaimed(bus: Bus, run: (chunk: ClaimedChunk) => Promise<JobResult>, options: ClaimedOptions): Promise<RunSummary> {
  if (!bus.options.backPressure) throw new UsageError('claims (--exec, --jobs, --retries) need a --back-pressure bus');
  const jobs = parseJobs(options.jobs ?? 1);
  const attempts = parseRetries(options.retries ?? DEFAULT_ATTEMPTS);
  const paths = claimPaths(bus.options.paths.file);
  const source = await BusClaims.open(bus, options.signal);
  try {
    return await runJobs(source, {
      jobs,
      attempts,
      run,
      signal: options.signal,
      report: options.report,
      deadLetterOf: (chunk, failure) => deadLetterPath(paths, chunk.id, failure.status, chunk.attempts + 1),
    });
  } finally {
    source.close();
  }
}
