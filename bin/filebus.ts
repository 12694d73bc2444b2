#!/usr/bin/env node
/**
 * The `filebus` command: parse arguments, then pipe stdin into a producer
 * or a consumer into stdout. The library modules are imported only once a
 * command runs, so `--help` and usage errors stay cheap.
 */
import fs from 'node:fs';
import { fileURLToPath } from 'node:url';
import { type Invocation, parseCommandLine } from '../src/cli/args.js';
import { BusError, UsageError, busError, errnoCode } from '../src/errors.js';
import type { MissedChunks } from '../src/consumer.js';

type Run = Extract<Invocation, { kind: 'run' }>;

const signalNumbers: Partial<Record<NodeJS.Signals, number>> = { SIGHUP: 1, SIGINT: 2, SIGTERM: 15 };

main().catch(fail);

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const invocation = parseCommandLine(args, process.env);
  if (invocation.kind === 'print') process.stdout.write(invocation.text);
  else if (invocation.kind === 'bash') await runBash(args);
  else if (invocation.kind === 'status') await runStatus(invocation);
  else if (invocation.kind === 'group') await runGroup(invocation);
  else if (invocation.command === 'producer') await runProducer(invocation);
  else if (invocation.options.exec !== undefined) await runExec(invocation);
  else await runConsumer(invocation);
}

/**
 * The bash implementation takes the same command line, handed over
 * untouched, and takes this process's place: its PID is ours, so every
 * signal (SIGKILL included) reaches the implementation itself.
 */
async function runBash(args: string[]): Promise<void> {
  const script = fileURLToPath(new URL('../../compat/bash/filebus.bash', import.meta.url));
  const { errnoError, execInPlace } = await import('../src/sys/libc.js');
  throw busError('run bash for', script, errnoError(execInPlace('bash', ['bash', script, ...args])));
}

async function runStatus({ filename, json }: Extract<Invocation, { kind: 'status' }>): Promise<void> {
  const { status, formatStatus } = await import('../src/status/status.js');
  const found = status(filename);
  if (!found.exists) throw new BusError(`no bus at ${found.path}: neither it nor ${found.path}.lock exists`, found.path);
  process.stdout.write(json ? `${JSON.stringify(found)}\n` : formatStatus(found));
}

async function runGroup({ filename, name }: Extract<Invocation, { kind: 'group' }>): Promise<void> {
  const { removeGroup } = await import('../src/ext/groups/groups.js');
  const { busPaths } = await import('../src/options.js');
  removeGroup(busPaths(filename), name);
}

/**
 * First SIGINT/SIGTERM: `onFirst` winds down gracefully and the process
 * exits with 128 + the signal number. A second one calls `onSecond` (a last
 * word on stderr) and exits at once with that status.
 */
function onSignals(onFirst: (status: number) => void, onSecond?: () => void): void {
  let status: number | undefined;
  for (const [signal, number] of Object.entries(signalNumbers)) {
    process.on(signal, () => {
      if (status !== undefined) {
        onSecond?.();
        process.exit(status);
      }
      status = 128 + number;
      onFirst(status);
    });
  }
}

async function runProducer({ options, verbose }: Run): Promise<void> {
  const { produceFromFd } = await import('../src/producer.js');
  const stopped = new AbortController();
  const progress = { bytesRead: 0, bytesPublished: 0 };
  let signalStatus: number | undefined;
  onSignals(
    (status) => {
      signalStatus = status;
      // Stop reading: what was read is still published (the producer loop
      // sees to it), what was not stays in the input for someone else; the
      // end-of-stream chunk is not published, or dropped if it is waiting
      // for the bus: status 0 would say it went out.
      stopped.abort();
    },
    () => {
      // Synchronous: the process is about to go.
      const unpublished = progress.bytesRead - progress.bytesPublished;
      fs.writeSync(2, `filebus: stopped by a second signal: ${unpublished} bytes read from standard input were not published\n`);
    },
  );
  log(verbose, `producer on ${options.filename} (${options.backPressure ? 'back-pressure' : 'multicast'})`);
  await produceFromFd({ ...options, log: logger(verbose) }, 0, { blockingWait: true }, stopped.signal, progress);
  process.exit(signalStatus ?? 0);
}

async function runConsumer({ options, verbose }: Run): Promise<void> {
  const { consumeWith } = await import('../src/consumer.js');
  const { POLLERR, POLLHUP, growPipe, setNonBlocking } = await import('../src/sys/libc.js');
  const { requestTurn, wakeOn, wakeOnSignals } = await import('../src/sys/wakeups.js');
  const { writeAll } = await import('../src/sys/output.js');
  const { MissedReporter } = await import('../src/cli/missed.js');
  const missed = new MissedReporter((line) => process.stderr.write(line));
  // The reporter's line is due within a second: the blocking wait gives its timer a turn by then.
  const onMissed = (gap: MissedChunks): void => {
    missed.add(gap);
    requestTurn(performance.now() + 1005);
  };
  const stop = new AbortController();
  let exitStatus = 0;
  /** Bytes of the chunk whose write to stdout is under way and waiting for room; 0 when none. */
  let unfinished = 0;
  onSignals(
    (status) => {
      exitStatus = status;
      // A chunk whose write has begun is finished first (writeOut does not
      // watch `stop`): a torn record in the output, and the whole chunk
      // again at the next consumer, would be the worst of both.
      stop.abort();
    },
    () => {
      if (unfinished === 0) return;
      const fate = options.backPressure ? 'it stays on the bus for the next consumer' : 'the rest of it is lost';
      fs.writeSync(2, `filebus: stopped by a second signal while writing a chunk of ${unfinished} bytes to standard output: the output holds part of it; ${fate}\n`);
    },
  );
  // Any signal then ends the blocking wait between chunks at once, so the
  // wait need not return to the event loop every 100 ms to let handlers run.
  wakeOnSignals();
  // A closed stdout ends the consumer like SIGPIPE would end a C program,
  // quietly and with the same status, even while there is nothing to write.
  const stdoutGone = () => {
    exitStatus = 141;
    stop.abort();
  };
  const stdoutStat = fs.fstatSync(1);
  if (stdoutStat.isFIFO() || stdoutStat.isSocket()) {
    // Found by the wait between chunks: a pipe's write end reports POLLERR
    // (a socket POLLHUP) once the reader closed; no timer, no event-loop turn.
    wakeOn(1, 0, (revents) => revents & (POLLERR | POLLHUP) && stdoutGone());
    setNonBlocking(1);
  }
  // Room for a whole chunk in the pipe: one write, one wake-up of the reader.
  if (stdoutStat.isFIFO() && options.blockSize > 65536) growPipe(1, Math.min(options.blockSize, 1 << 20));
  // Straight to fd 1 with write(2), not through process.stdout: no stream
  // machinery, callback or event-loop turn per chunk (process.stdout is
  // synchronous for files and pipes on Linux anyway).
  const writeOut = (chunk: Buffer): Promise<void> | undefined => {
    try {
      const rest = writeAll(1, chunk);
      if (rest === undefined) return undefined;
      unfinished = chunk.length;
      return rest.then(() => {
        unfinished = 0;
      }, writeFailed);
    } catch (error) {
      return writeFailed(error);
    }
  };
  // Only a reader that went away is the quiet SIGPIPE-like ending; a full
  // disk or an I/O error under stdout is an error to report.
  const writeFailed = (error: unknown): never => {
    if (errnoCode(error) === 'EPIPE') {
      stdoutGone();
      throw error;
    }
    throw stop.signal.aborted ? error : busError('write', 'standard output', error);
  };
  log(verbose, `consumer on ${options.filename} (${options.backPressure ? 'back-pressure' : 'multicast'})`);
  try {
    await consumeWith({ ...options, signal: stop.signal, reuseBuffers: true, log: logger(verbose), onMissed }, writeOut, { blockingWait: true });
  } catch (error) {
    if (!stop.signal.aborted) throw error;
  } finally {
    missed.flush();
  }
  process.exit(exitStatus);
}

/** `consumer --exec CMD`: src/ext/exec/. Exits 0 at the end of the stream, 128+n after a signal. */
async function runExec({ options, verbose }: Run): Promise<void> {
  const { openBus } = await import('../src/core/bus.js');
  const { CommandJobs } = await import('../src/ext/exec/command.js');
  const { consumeClaimed } = await import('../src/claimed.js');
  const stop = new AbortController();
  let exitStatus = 0;
  const writeWhole = (fd: number, data: Buffer) => {
    for (let at = 0; at < data.length; ) at += fs.writeSync(fd, data, at);
  };
  const jobs = new CommandJobs({
    command: options.exec!,
    output: (stdout, stderr) => {
      try {
        writeWhole(1, stdout);
      } catch (error) {
        if (errnoCode(error) !== 'EPIPE') throw busError('write', 'standard output', error);
        exitStatus = 141;
        stop.abort();
      }
      writeWhole(2, stderr);
    },
  });
  onSignals(
    (status) => {
      exitStatus = status;
      stop.abort();
    },
    () => {
      jobs.killAll();
      fs.writeSync(2, `filebus: stopped by a second signal: ${jobs.running} running jobs killed; their chunks go to the next consumer\n`);
    },
  );
  // A group's member writes the group's files, never F.
  const bus = openBus({ ...options, log: logger(verbose) }, { writes: options.backPressure === true, waitsFor: 'arrival' });
  log(verbose, `consumer on ${options.filename}, running: ${options.exec}`);
  try {
    const { MissedReporter } = await import('../src/cli/missed.js');
    const { refuseLink } = await import('../src/core/checks.js');
    // No role follows a link at F.history.
    refuseLink(bus.options.paths.history);
    const missed = new MissedReporter((line) => process.stderr.write(line));
    const member = { replay: bus.options.replay, sizeMayBeStale: bus.fileSystem.shared, log: bus.options.log, onMissed: (gap: MissedChunks) => missed.add(gap) };
    await consumeClaimed(bus, jobs.run, { jobs: options.jobs, retries: options.retries, signal: stop.signal, report: (line) => process.stderr.write(`filebus: ${line}\n`), group: options.group, member });
  } catch (error) {
    if (!stop.signal.aborted) throw error;
  } finally {
    bus.close();
  }
  process.exit(exitStatus);
}

function log(verbose: number, message: string): void {
  if (verbose > 0) process.stderr.write(`filebus: ${message}\n`);
}

/** The library's notices go to stderr with -v, and nowhere without. */
function logger(verbose: number): ((message: string) => void) | undefined {
  return verbose > 0 ? (message) => log(verbose, message) : undefined;
}

function fail(error: unknown): never {
  const verbose = process.argv.some((arg) => /^-v{2,}$/.test(arg)) || /^[2-9]/.test(process.env.FILEBUS_VERBOSE ?? '');
  const err = error instanceof Error ? error : new Error(String(error));
  const status = (err as { exitCode?: number }).exitCode ?? 1;
  const hint = err instanceof UsageError ? ' (see filebus --help)' : '';
  process.stderr.write(`filebus: ${err.message.split('\n')[0]}${hint}\n`);
  if (verbose && err.stack) process.stderr.write(`${err.stack}\n`);
  process.exit(status);
}
