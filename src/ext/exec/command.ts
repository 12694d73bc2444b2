/**
 * `consumer --exec CMD`: each chunk is the standard input of `/bin/sh -c
 * CMD`, as `xargs sh -c` or GNU parallel run a command line. A job's
 * standard output and error are collected and written whole when it ends
 * (like `parallel --group`), so jobs running side by side never interleave
 * mid-line. Each job runs in a process group of its own: a Ctrl-C meant for
 * the consumer does not reach it, and the consumer can end it with its
 * children.
 */
import os from 'node:os';
import { spawnJob } from '../../sys/spawn.js';
import type { ClaimedChunk } from '../../core/extension.js';
import type { JobResult } from './runner.js';

export interface CommandJobsOptions {
  /** The command line, run by /bin/sh -c. */
  readonly command: string;
  /** Receives a finished job's whole standard output, then its whole standard error. */
  readonly output: (stdout: Buffer, stderr: Buffer) => void;
}

export class CommandJobs {
  readonly #options: CommandJobsOptions;
  /** Process group ids (the jobs' pids) of the jobs running now. */
  readonly #running = new Set<number>();

  constructor(options: CommandJobsOptions) {
    this.#options = options;
  }

  get running(): number {
    return this.#running.size;
  }

  /** Runs the command on one chunk; resolves with how it ended (never rejects). */
  readonly run = async (chunk: ClaimedChunk): Promise<JobResult> => {
    let job;
    try {
      // Which chunk and which attempt, for a job that wants to log it or behave differently on a retry.
      job = await spawnJob(['/bin/sh', '-c', this.#options.command], { ...process.env, FILEBUS_CHUNK_ID: chunk.id, FILEBUS_ATTEMPT: String(chunk.attempts + 1) }, chunk.data);
    } catch (error) {
      return { status: 'error', reason: `cannot run /bin/sh: ${(error as Error).message}` };
    }
    this.#running.add(job.pid);
    const { ended, stdout, stderr } = await job.ended;
    this.#running.delete(job.pid);
    this.#options.output(stdout, stderr);
    if (ended.signal !== undefined) {
      const name = signalName(ended.signal);
      return { status: `signal-${name}`, reason: `killed by ${name}` };
    }
    return ended.code === 0 ? undefined : { status: `exit-${ended.code}`, reason: `exit status ${ended.code}` };
  };

  /**
   * Synchronously ends every running job with its process group (the
   * command's children too), for a consumer about to exit: their chunks
   * stay claimed until the exit drops the flocks, then go to another
   * consumer.
   */
  killAll(signal: NodeJS.Signals = 'SIGKILL'): void {
    for (const pid of this.#running) {
      try {
        process.kill(-pid, signal);
      } catch {}
    }
  }
}

function signalName(number: number): string {
  return Object.entries(os.constants.signals).find(([, n]) => n === number)?.[0] ?? `SIG${number}`;
}
