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
import type { Argv } from 'yargs';
import { UsageError } from '../src/errors.js';
import { defaults, parseBlockSize, parseSleepInterval, type BusOptions } from '../src/options.js';

const require = createRequire(import.meta.url);
const { version } = require('../../package.json') as { version: string };
const bashScript = fileURLToPath(new URL('../../compat/bash/filebus.bash', import.meta.url));

type Command = 'producer' | 'consumer';
const implementations = ['typescript', 'bash'] as const;

interface Invocation {
  command: Command;
  options: BusOptions;
  verbose: number;
}

const signalNumbers: Partial<Record<NodeJS.Signals, number>> = { SIGHUP: 1, SIGINT: 2, SIGTERM: 15 };

main().catch(fail);

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  if (chosenImplementation(args) === 'bash') return runBash(args);
  const invocation = parse(args);
  if (invocation === undefined) return; // --help or --version was printed
  if (invocation.command === 'producer') await runProducer(invocation);
  else await runConsumer(invocation);
}

/**
 * The bash implementation takes the same arguments, so it is found before
 * parsing and handed the command line untouched.
 */
function chosenImplementation(args: string[]): string {
  let impl = process.env.FILEBUS_IMPL ?? process.env.FILEBUS_IMPLEMENTATION ?? 'typescript';
  for (const [i, arg] of args.entries()) {
    if (arg === 'producer' || arg === 'consumer' || arg === '--') break;
    const match = /^--(?:impl|implementation)(?:=(.*))?$/.exec(arg);
    if (match) impl = match[1] ?? args[i + 1] ?? '';
  }
  return impl;
}

function runBash(args: string[]): void {
  const child = spawn('bash', [bashScript, ...args], { stdio: 'inherit' });
  // The child shares our terminal's process group, so a Ctrl-C reaches it
  // directly; signals sent to us alone (kill PID) are passed on.
  for (const signal of Object.keys(signalNumbers) as NodeJS.Signals[]) {
    process.on(signal, () => child.kill(signal));
  }
  child.on('error', (error) => fail(new Error(`cannot run ${bashScript}: ${error.message}`)));
  child.on('exit', (code, signal) => process.exit(code ?? 128 + (signal ? signalNumbers[signal] ?? 1 : 1)));
}

function parse(args: string[]): Invocation | undefined {
  const yargs = require('yargs/yargs') as (args: string[]) => Argv;
  let helpShown = false;
  const parser = yargs(args)
    .scriptName('filebus')
    .usage('Usage: $0 [options] <producer|consumer> [command options]\n\nTurn a file into a multicast named pipe, or a lossless work queue with --back-pressure.')
    .env('FILEBUS')
    .command('producer', 'publish standard input on the bus', (y) =>
      y.option('blocking-read', { type: 'boolean', default: false, describe: 'read whole blocks with blocking reads (keeps fixed-size records whole)' }),
    )
    .command('consumer', 'write chunks from the bus to standard output')
    .option('filename', { type: 'string', describe: 'the bus file F (F.lock and F.__new__ go beside it)', requiresArg: true })
    .option('back-pressure', { alias: 'lossless', type: 'boolean', default: false, describe: 'lossless work queue: each chunk to exactly one consumer' })
    .option('block-size', { type: 'string', default: String(defaults.blockSize), describe: 'largest chunk, in bytes', requiresArg: true })
    .option('sleep-interval', { type: 'string', default: String(defaults.sleepInterval), describe: 'longest wait between checks, in seconds', requiresArg: true })
    .option('file-monitoring', { type: 'boolean', default: true, describe: 'wake on file-system notifications (--no-file-monitoring: poll only)' })
    .option('impl', { alias: 'implementation', type: 'string', choices: implementations, default: 'typescript', describe: 'which implementation runs the command' })
    .option('verbose', { alias: 'v', type: 'count', describe: 'log to stderr; -vv adds stack traces' })
    .strictCommands()
    .strictOptions()
    .version(version)
    .help()
    .alias('help', 'h')
    .alias('version', 'V')
    .epilog('Every option can also be set in the environment: FILEBUS_FILENAME, FILEBUS_BLOCK_SIZE, ...')
    .wrap(Math.min(100, process.stdout.columns || 80))
    .exitProcess(false)
    .fail((message, error) => {
      throw error instanceof UsageError ? error : new UsageError(message ?? error?.message ?? 'invalid arguments');
    });
  const argv = parser.parseSync(args, {}, (_error, _argv, output) => {
    if (output) {
      helpShown = true;
      process.stdout.write(`${output}\n`);
    }
  }) as Record<string, unknown>;
  if (helpShown) return undefined;

  const [command, ...extra] = (argv._ as unknown[]).map(String);
  if (command === undefined) throw new UsageError('a command is required: producer or consumer');
  if (command !== 'producer' && command !== 'consumer') throw new UsageError(`unknown command '${command}': use producer or consumer`);
  if (extra.length > 0) throw new UsageError(`unexpected argument '${extra[0]}'`);
  const filename = argv.filename as string | undefined;
  if (!filename) throw new UsageError('a bus file is required: pass --filename FILE or set FILEBUS_FILENAME');
  return {
    command,
    verbose: argv.verbose as number,
    options: {
      filename,
      backPressure: argv.backPressure as boolean,
      blockSize: parseBlockSize(argv.blockSize),
      sleepInterval: parseSleepInterval(argv.sleepInterval),
      fileMonitoring: (argv.fileMonitoring as boolean) && !truthy(process.env.FILEBUS_NO_FILE_MONITORING),
      blockingRead: (argv.blockingRead as boolean | undefined) ?? false,
    },
  };
}

function truthy(value: string | undefined): boolean {
  return value !== undefined && !/^(|0|false|no|off)$/i.test(value);
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

async function runProducer({ options, verbose }: Invocation): Promise<void> {
  const { createProducer, produceBlocks } = await import('../src/producer.js');
  const producer = createProducer(options);
  const stopped = new AbortController();
  let exitStatus = 0;
  onSignals((status) => {
    exitStatus = status;
    stopped.abort();
    process.stdin.unpipe(producer);
    process.stdin.pause();
    // Publish what was already read, without the end-of-stream marker: the input did not end.
    producer.interrupt();
  });
  log(verbose, `producer on ${options.filename} (${options.backPressure ? 'back-pressure' : 'multicast'})`);
  const finished = new Promise<void>((resolve, reject) => {
    producer.on('finish', resolve);
    producer.on('error', reject);
  });
  const stdinIsFile = fs.fstatSync(0).isFile();
  if (options.blockingRead || stdinIsFile) {
    await produceBlocks(0, producer, options.blockSize ?? defaults.blockSize, stopped.signal).then(
      () => producer.end(),
      (error: unknown) => {
        if (!stopped.signal.aborted) throw error;
      },
    );
  } else {
    process.stdin.on('error', (error) => producer.destroy(error));
    process.stdin.pipe(producer);
  }
  await finished;
  process.exit(exitStatus);
}

async function runConsumer({ options, verbose }: Invocation): Promise<void> {
  const { consume } = await import('../src/consumer.js');
  const { peerClosed } = await import('../src/libc.js');
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
  process.stdout.on('error', stdoutGone);
  const stdoutStat = fs.fstatSync(1);
  if (stdoutStat.isFIFO() || stdoutStat.isSocket()) {
    setInterval(() => peerClosed(1) && stdoutGone(), 200).unref();
  }
  const writeOut = (chunk: Buffer): Promise<void> =>
    new Promise((resolve, reject) => {
      const onAbort = () => reject(stop.signal.reason);
      stop.signal.addEventListener('abort', onAbort, { once: true });
      process.stdout.write(chunk, (error) => {
        stop.signal.removeEventListener('abort', onAbort);
        if (error) {
          stdoutGone();
          reject(error);
        } else resolve();
      });
    });
  log(verbose, `consumer on ${options.filename} (${options.backPressure ? 'back-pressure' : 'multicast'})`);
  try {
    await consume({ ...options, signal: stop.signal }, writeOut);
  } catch (error) {
    if (!stop.signal.aborted) throw error;
  }
  process.exit(exitStatus);
}

function log(verbose: number, message: string): void {
  if (verbose > 0) process.stderr.write(`filebus: ${message}\n`);
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
