/**
 * `consumer --exec CMD`: each chunk is the standard input of `/bin/sh -c
 * CMD`, as `xargs sh -c` or GNU parallel run a command line. A job's
 * standard output and error are collected and written whole when it ends
 * (like `parallel --group`), so jobs running side by side never interleave
 * mid-line. Each job runs in a process group of its own: a Ctrl-C meant for
 * the consumer does not reach it, and the consumer can end it with its
 * children.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import type { ClaimedChunk } from '../claims/source.js';
import type { JobResult } from './runner.js';

export interface CommandJobsOptions {
  /** The command line, run by /bin/sh -c. */
  readonly command: string;
  /** Receives a finished job's whole standard output, then its whole standard error. */
  readonly output: (stdout: Buffer, stderr: Buffer) => void;
}

export class CommandJobs {
  readonly #options: CommandJobsOptions;
  readonly #running = new Set<ChildProcess>();

  constructor(options: CommandJobsOptions) {
    this.#options = options;
  }

  get running(): number {
    return this.#running.size;
  }

  /** Runs the command on one chunk; resolves with how it ended (never rejects). */
  readonly run = (chunk: ClaimedChunk): Promise<JobResult> =>
    new Promise<JobResult>((resolve) => {
      const child = spawn('/bin/sh', ['-c', this.#options.command], {
        detached: true,
        stdio: ['pipe', 'pipe', 'pipe'],
        // Which chunk and which attempt, for a job that wants to log it or behave differently on a retry.
        env: { ...process.env, FILEBUS_CHUNK_ID: chunk.id, FILEBUS_ATTEMPT: String(chunk.attempts + 1) },
      });
      this.#running.add(child);
      const out: Buffer[] = [];
      const err: Buffer[] = [];
      child.stdout!.on('data', (data: Buffer) => out.push(data));
      child.stderr!.on('data', (data: Buffer) => err.push(data));
      // A job that does not read its input, or exits before reading all of it, is no error of ours.
      child.stdin!.on('error', () => {});
      child.stdin!.end(chunk.data);
      let spawnError: Error | undefined;
      child.on('error', (error) => {
        spawnError = error;
      });
      child.on('close', (code, signal) => {
        this.#running.delete(child);
        this.#options.output(Buffer.concat(out), Buffer.concat(err));
        if (spawnError) resolve({ status: 'error', reason: `cannot run /bin/sh: ${spawnError.message}` });
        else if (signal) resolve({ status: `signal-${signal}`, reason: `killed by ${signal}` });
        else if (code !== 0) resolve({ status: `exit-${code}`, reason: `exit status ${code}` });
        else resolve(undefined);
      });
    });

  /**
   * Synchronously ends every running job with its process group (the
   * command's children too), for a consumer about to exit: their chunks
   * stay claimed until the exit drops the flocks, then go to another
   * consumer.
   */
  killAll(signal: NodeJS.Signals = 'SIGKILL'): void {
    for (const child of this.#running) {
      if (child.pid === undefined) continue;
      try {
        process.kill(-child.pid, signal);
      } catch {}
    }
  }
}
