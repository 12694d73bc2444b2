#!/usr/bin/env node
/**
 * The `filebus` command: parse arguments, then pipe stdin into a producer
 * or a consumer into stdout. The library modules are imported only once a
 * command runs, so `--help` and usage errors stay cheap.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { type Invocation, parseCommandLine } from '../src/cli/args.js';
import { UsageError, busError, errnoCode } from '../src/errors.js';

type Run = Extract<Invocation, { kind: 'run' }>;

const signalNumbers: Partial<Record<NodeJS.Signals, number>> = { SIGHUP: 1, SIGINT: 2, SIGTERM: 15 };

main().catch(fail);

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const invocation = parseCommandLine(args, process.env);
  if (invocation.kind === 'help') process.stdout.write(invocation.text);
  else if (invocation.kind === 'version') process.stdout.write(`filebus ${packageVersion()}\n`);
  else if (invocation.kind === 'bash') runBash(args);
  else if (invocation.command === 'producer') await runProducer(invocation);
  else await runConsumer(invocation);
}

function packageVersion(): string {
  const require = createRequire(import.meta.url);
  return (require('../../package.json') as { version: string }).version;
}

/** The bash implementation takes the same command line, handed over untouched. */
function runBash(args: string[]): void {
  const script = fileURLToPath(new URL('../../compat/bash/filebus.bash', import.meta.url));
  const child = spawn('bash', [script, ...args], { stdio: 'inherit' });
  // The child shares our process group, so a Ctrl-C reaches it directly;
  // signals sent to us alone (kill PID) are passed on.
  for (const signal of Object.keys(signalNumbers) as NodeJS.Signals[]) {
    process.on(signal, () => child.kill(signal));
  }
  child.on('error', (error) => fail(new Error(`cannot run ${script}: ${error.message}`)));
  child.on('exit', (code, signal) => process.exit(code ?? 128 + (signal ? (signalNumbers[signal] ?? 1) : 1)));
}

/**
 * First SIGINT/SIGTERM: `onFirst` winds down gracefully and the process
 * exits with 128 + the signal number. A second one exits at once.
 */
function onSignals(onFirst: (status: number) => void): void {
  let status: number | undefined;
  for (const [signal, number] of Object.entries(signalNumbers)) {
    process.on(signal, () => {
      if (status !== undefined) process.exit(status);
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
  const stopped = new AbortController();
  onSignals((status) => {
    stopped.abort();
    // Publish what was already read, without the end-of-stream marker (the
    // input did not end), then go: a read may still be waiting on stdin.
    producer.interrupt();
    finished.then(() => process.exit(status), fail);
  });
  log(verbose, `producer on ${options.filename} (${options.backPressure ? 'back-pressure' : 'multicast'})`);
  try {
    await produceFrom(0, producer, stopped.signal);
  } catch (error) {
    if (stopped.signal.aborted) return;
    // A publish error reaches both produceFrom and 'error'; report it once.
    finished.catch(() => {});
    throw error;
  }
  producer.end();
  await finished;
  process.exit(0);
}

async function runConsumer({ options, verbose }: Run): Promise<void> {
  const { consume } = await import('../src/consumer.js');
  const { growPipe, peerClosed, setNonBlocking } = await import('../src/sys/libc.js');
  const { writeAll } = await import('../src/sys/output.js');
  const stop = new AbortController();
  let exitStatus = 0;
  onSignals((status) => {
    exitStatus = status;
    stop.abort();
  });
  // A closed stdout ends the consumer like SIGPIPE would end a C program,
  // quietly and with the same status, even while there is nothing to write.
  const stdoutGone = () => {
    exitStatus = 141;
    stop.abort();
  };
  const stdoutStat = fs.fstatSync(1);
  if (stdoutStat.isFIFO() || stdoutStat.isSocket()) {
    setInterval(() => peerClosed(1) && stdoutGone(), 200).unref();
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
    await consume({ ...options, signal: stop.signal, reuseBuffers: true, blockingWait: true, log: logger(verbose) }, writeOut);
  } catch (error) {
    if (!stop.signal.aborted) throw error;
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
