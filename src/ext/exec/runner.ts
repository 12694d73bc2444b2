/**
 * Runs jobs on claimed chunks, up to `jobs` at once, each on its own claim:
 * a job that succeeds acknowledges its chunk, one that fails has it retried
 * (by whichever consumer takes it next) until `attempts` attempts in all,
 * then moved to the dead letters. Knows nothing of processes or files: the
 * command line runs a shell command per chunk (./command.ts), the library
 * calls `deliver`.
 */
import type { AttemptFailure, ClaimSource, ClaimedChunk } from '../../core/extension.js';

/** A job's result: undefined when it succeeded, why it failed otherwise. */
export type JobResult = AttemptFailure | undefined;

export interface RunJobsOptions {
  /** Jobs at once. */
  readonly jobs: number;
  /** Attempts in all per chunk (`--retries`) before it goes to the dead letters. */
  readonly attempts: number;
  /** Runs one job; a rejection counts as a failed attempt. */
  readonly run: (chunk: ClaimedChunk) => Promise<JobResult>;
  /** Aborted: take no new chunk, let the running jobs finish. */
  readonly signal?: AbortSignal | undefined;
  /** One line per failed attempt. */
  readonly report?: ((line: string) => void) | undefined;
  /** Where a dead letter went, for the report. */
  readonly deadLetterOf?: ((chunk: ClaimedChunk, failure: AttemptFailure) => string) | undefined;
}

export interface RunSummary {
  acknowledged: number;
  retried: number;
  dead: number;
}

/**
 * Takes and runs until the source ends (every job finished) or `signal`
 * aborts (the running jobs still finish and are settled; then it rejects
 * with the abort reason).
 */
export async function runJobs(source: ClaimSource, options: RunJobsOptions): Promise<RunSummary> {
  const { jobs, signal } = options;
  const summary: RunSummary = { acknowledged: 0, retried: 0, dead: 0 };
  const running = new Set<Promise<void>>();
  let failure: unknown;
  // Aborted by the caller's signal, or by a claim that could not be settled
  // (a bus error): either way no new chunk is taken, even by a take waiting now.
  const taking = new AbortController();
  const onAbort = () => taking.abort(signal?.reason);
  signal?.addEventListener('abort', onAbort, { once: true });
  if (signal?.aborted) onAbort();
  const start = (chunk: ClaimedChunk) => {
    const job = settle(chunk, options, summary).catch((error: unknown) => {
      failure ??= error;
      taking.abort(error);
    });
    const tracked = job.finally(() => running.delete(tracked));
    running.add(tracked);
  };
  try {
    for (;;) {
      if (failure !== undefined) throw failure;
      if (running.size >= jobs) {
        await Promise.race(running);
        continue;
      }
      taking.signal.throwIfAborted();
      const chunk = await source.take(taking.signal);
      if (chunk !== undefined) {
        start(chunk);
        continue;
      }
      // The end, as far as the source knows; a job still running may yet give its chunk back.
      if (running.size === 0) break;
      await Promise.race(running);
    }
  } catch (error) {
    if (failure === undefined) throw error;
  } finally {
    signal?.removeEventListener('abort', onAbort);
    await Promise.all(running);
  }
  if (failure !== undefined) throw failure;
  return summary;
}

async function settle(chunk: ClaimedChunk, options: RunJobsOptions, summary: RunSummary): Promise<void> {
  let result: JobResult;
  try {
    result = await options.run(chunk);
  } catch (error) {
    result = { status: 'error', reason: firstLine(error) };
  }
  if (result === undefined) {
    chunk.ack();
    summary.acknowledged++;
    return;
  }
  const attempt = chunk.attempts + 1;
  const where = options.deadLetterOf?.(chunk, result);
  const to = chunk.fail(result, options.attempts);
  if (to === 'retry') summary.retried++;
  else summary.dead++;
  options.report?.(
    `chunk ${chunk.id} failed: ${result.reason} (attempt ${attempt} of ${options.attempts}); ${to === 'retry' ? 'to be retried' : `moved to ${where ?? 'the dead letters'}`}`,
  );
}

function firstLine(error: unknown): string {
  return String((error as Error)?.message ?? error).split('\n')[0]!;
}
