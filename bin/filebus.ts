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
  else if (invocation.command === 'producer') await runProducer(invocation);
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
  const { status, formatStatus } = await import('../src/status.js');
  const found = status(filename);
  if (!found.exists) throw new BusError(`no bus at ${found.path}: neither it nor ${found.path}.lock exists`, found.path);
  process.stdout.write(json ? `${JSON.stringify(found)}\n` : formatStatus(found));
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
  const { createProducer, produceFrom } = await import('../src/producer.js');
  const producer = createProducer({ ...options, blockingWait: true, log: logger(verbose) });
  const finished = new Promise<void>((resolve, reject) => {
    producer.on('finish', resolve);
    producer.on('error', reject);
  });
  // A publish error rejects this before anyone awaits it (the write that
  // failed is still unwinding): mark it handled, so that it is reported
  // once, as one line, where it is awaited, and not as a crash.
  finished.catch(() => {});
  const stopped = new AbortController();
  const progress = { bytesRead: 0 };
  let signalStatus: number | undefined;
  let inputDone = false;
  onSignals(
    (status) => {
      signalStatus = status;
      // Stop reading: what was read is still published (produceFrom sees
      // to it), what was not stays in the input for someone else.
      stopped.abort();
      // Input already ended: the end-of-stream chunk may be waiting for the
      // bus. Drop it and exit 128+n; status 0 would say it went out.
      if (inputDone) producer.interrupt();
    },
    () => {
      // Synchronous: the process is about to go.
      const unpublished = progress.bytesRead - producer.bytesPublished;
      fs.writeSync(2, `filebus: stopped by a second signal: ${unpublished} bytes read from standard input were not published\n`);
    },
  );
  log(verbose, `producer on ${options.filename} (${options.backPressure ? 'back-pressure' : 'multicast'})`);
  // A publish error reaches both produceFrom and 'error'; it is reported once, from here.
  await produceFrom(0, producer, stopped.signal, progress);
  inputDone = true;
  // Stopped by a signal: publish what was written, without the end-of-stream chunk.
  if (stopped.signal.aborted) producer.interrupt();
  else producer.end();
  await finished;
  process.exit(signalStatus ?? 0);
}

async function runConsumer({ options, verbose }: Run): Promise<void> {
  const { consume } = await import('../src/consumer.js');
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
  onSignals((status) => {
    exitStatus = status;
    stop.abort();
  });
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
      const rest = writeAll(1, chunk, stop.signal);
      return rest?.catch(writeFailed);
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
    await consume({ ...options, signal: stop.signal, reuseBuffers: true, blockingWait: true, log: logger(verbose), onMissed }, writeOut);
  } catch (error) {
    if (!stop.signal.aborted) throw error;
  } finally {
    missed.flush();
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
