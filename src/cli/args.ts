/**
 * The command line and the FILEBUS_* environment, parsed into options.
 *
 * Built on node:util's parseArgs rather than yargs: Node itself takes most
 * of the 100 ms start-up budget here, and loading yargs alone cost 30 ms
 * (v17) to 90 ms (v18) on top (README, "Dependencies").
 */
import { parseArgs } from 'node:util';
import { UsageError, errnoCode } from '../errors.js';
import { type BusOptions, MAX_BLOCK_SIZE, MAX_SLEEP_INTERVAL, defaults, parseBlockSize, parseHistory, parseProducers, parseSleepInterval } from '../options.js';

export type Command = 'producer' | 'consumer';
export const implementations = ['typescript', 'bash'] as const;

export type Invocation =
  | { kind: 'help'; text: string }
  | { kind: 'version' }
  /** Hand the whole command line to the bash implementation, which answers --help and --version itself too. */
  | { kind: 'bash' }
  | { kind: 'run'; command: Command; options: BusOptions & { blockSize: number }; verbose: number };

const spec = {
  filename: { type: 'string' },
  'back-pressure': { type: 'boolean' },
  lossless: { type: 'boolean' },
  'block-size': { type: 'string' },
  'sleep-interval': { type: 'string' },
  'file-monitoring': { type: 'boolean' },
  'no-file-monitoring': { type: 'boolean' },
  impl: { type: 'string' },
  implementation: { type: 'string' },
  verbose: { type: 'boolean', short: 'v', multiple: true },
  help: { type: 'boolean', short: 'h' },
  version: { type: 'boolean', short: 'V' },
  'blocking-read': { type: 'boolean' },
  producers: { type: 'string' },
  history: { type: 'string' },
  replay: { type: 'boolean' },
} as const;

const globalHelp = `Usage: filebus [options] <producer|consumer> [command options]

Turn an ordinary file into a multicast named pipe, or with --back-pressure
into a lossless work queue, between any number of processes.

Commands:
  producer   publish standard input on the bus
  consumer   write chunks from the bus to standard output

Options:
  --filename FILE           the bus file F (F.lock and F.__new__ go beside it)
  --back-pressure, --lossless
                            lossless work queue: each chunk to exactly one
                            consumer; the producer waits for each to be taken
  --block-size N            largest chunk in bytes (default ${defaults.blockSize},
                            at most ${MAX_BLOCK_SIZE}: 1 GiB)
  --sleep-interval SECONDS  longest wait between checks of the bus (default
                            ${defaults.sleepInterval}, at most ${MAX_SLEEP_INTERVAL})
  --no-file-monitoring      poll only; no file-system notifications
  --history N               producer: keep the last N chunks, numbered, in
                            F.history/, so consumers get every chunk while
                            they stay within N of the newest (multicast)
  --impl, --implementation NAME
                            typescript (default) or bash
  -v, --verbose             log to stderr; -vv adds stack traces to errors
  -h, --help                this help; 'filebus producer --help' for a command's
  -V, --version             print the version

Every option can also come from the environment: FILEBUS_FILENAME,
FILEBUS_BACK_PRESSURE=1, FILEBUS_BLOCK_SIZE, FILEBUS_SLEEP_INTERVAL,
FILEBUS_FILE_MONITORING=0, FILEBUS_HISTORY, FILEBUS_IMPL, FILEBUS_VERBOSE;
and for the commands FILEBUS_BLOCKING_READ=1, FILEBUS_REPLAY=1 and
FILEBUS_PRODUCERS.

Examples:
  strings /dev/urandom | filebus --filename /tmp/rand.filebus producer
  filebus --filename /tmp/rand.filebus consumer
  filebus --filename /tmp/jobs --lossless consumer | xargs -n1 echo job
`;

const commandHelp: Record<Command, string> = {
  producer: `Usage: filebus [options] producer [--blocking-read]

Publish standard input on the bus in chunks of at most --block-size bytes.
Input is published as soon as it arrives; at end of input the producer
exits 0 (with --back-pressure, after publishing the empty end-of-stream
chunk).

Command options:
  --blocking-read   read whole --block-size blocks with blocking reads, so
                    fixed-size records stay one per chunk (regular files
                    are always read this way)

Global options: see 'filebus --help'.
`,
  consumer: `Usage: filebus [options] consumer [--replay] [--producers N]

Write chunks from the bus to standard output. In multicast mode (default)
every consumer gets every chunk it catches and runs until interrupted; with
--back-pressure each chunk goes to exactly one consumer, and the consumer
that takes the end-of-stream chunk exits 0.

On a bus whose producers keep a history (--history N), a multicast consumer
gets every chunk in order while it stays within N chunks of the newest; one
that falls further behind skips ahead and says on stderr how many it missed.

Command options:
  --replay          start from the oldest chunk the history keeps, not the
                    newest
  --producers N     with --back-pressure: the stream ends after N
                    end-of-stream chunks (one per producer), counted by all
                    consumers of the bus together; then every consumer
                    given the same N exits 0

Global options: see 'filebus --help'.
`,
};

/** Parses `args` (without node and the script) with `env` as fallback. */
export function parseCommandLine(args: string[], env: NodeJS.ProcessEnv): Invocation {
  let parsed;
  try {
    parsed = parseArgs({ args: joinNegativeValues(args), options: spec, allowPositionals: true, strict: true });
  } catch (error) {
    throw new UsageError(describeParseError(error));
  }
  const { values, positionals } = parsed;
  const implementation = values.impl ?? values.implementation ?? env.FILEBUS_IMPL ?? env.FILEBUS_IMPLEMENTATION ?? 'typescript';
  if (!(implementations as readonly string[]).includes(implementation)) {
    throw new UsageError(`--impl must be one of ${implementations.join(', ')}, got '${implementation}'`);
  }
  if (implementation === 'bash') return { kind: 'bash' };
  const [command, ...extra] = positionals;
  if (values.help) return { kind: 'help', text: command === 'producer' || command === 'consumer' ? commandHelp[command] : globalHelp };
  if (values.version) return { kind: 'version' };

  if (command === undefined) throw new UsageError('a command is required: producer or consumer');
  if (command !== 'producer' && command !== 'consumer') throw new UsageError(`unknown command '${command}': use producer or consumer`);
  if (extra.length > 0) throw new UsageError(`unexpected argument '${extra[0]}'`);
  if (values['blocking-read'] && command !== 'producer') throw new UsageError('--blocking-read is an option of the producer');
  if (values.producers !== undefined && command !== 'consumer') throw new UsageError('--producers is an option of the consumer');
  if (values.replay && command !== 'consumer') throw new UsageError('--replay is an option of the consumer');

  const filename = values.filename ?? env.FILEBUS_FILENAME;
  if (!filename) throw new UsageError('a bus file is required: pass --filename FILE or set FILEBUS_FILENAME');

  const backPressure = values['back-pressure'] ?? values.lossless ?? flag(env, 'FILEBUS_BACK_PRESSURE') ?? flag(env, 'FILEBUS_LOSSLESS') ?? false;
  const producersValue = values.producers ?? (command === 'consumer' ? env.FILEBUS_PRODUCERS || undefined : undefined);
  const producers = producersValue === undefined ? undefined : parseProducers(producersValue);
  if (producers !== undefined && !backPressure) throw new UsageError('--producers counts end-of-stream chunks, which only --back-pressure has');

  const fileMonitoring = values['no-file-monitoring']
    ? false
    : (values['file-monitoring'] ?? (flag(env, 'FILEBUS_NO_FILE_MONITORING') === true ? false : (flag(env, 'FILEBUS_FILE_MONITORING') ?? true)));
  return {
    kind: 'run',
    command,
    verbose: values.verbose?.length ?? (Number.parseInt(env.FILEBUS_VERBOSE ?? '0', 10) || 0),
    options: {
      filename,
      backPressure,
      blockSize: parseBlockSize(values['block-size'] ?? env.FILEBUS_BLOCK_SIZE ?? defaults.blockSize),
      sleepInterval: parseSleepInterval(values['sleep-interval'] ?? env.FILEBUS_SLEEP_INTERVAL ?? defaults.sleepInterval),
      fileMonitoring,
      blockingRead: values['blocking-read'] ?? flag(env, 'FILEBUS_BLOCKING_READ') ?? false,
      ...(producers === undefined ? {} : { producers }),
      history: parseHistory(values.history ?? (env.FILEBUS_HISTORY || 0)),
      // From the environment only for consumers: one FILEBUS_REPLAY may serve a producer and its consumers.
      replay: values.replay ?? (command === 'consumer' ? flag(env, 'FILEBUS_REPLAY') : undefined) ?? false,
    },
  };
}

/**
 * parseArgs refuses `--sleep-interval -1` as ambiguous; read it as the
 * value it plainly is, so the range check can say what is wrong with it.
 */
function joinNegativeValues(args: string[]): string[] {
  const joined: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!;
    const next = args[i + 1];
    const name = arg.startsWith('--') ? arg.slice(2) : undefined;
    if (name !== undefined && spec[name as keyof typeof spec]?.type === 'string' && next !== undefined && /^-\d/.test(next)) {
      joined.push(`${arg}=${next}`);
      i++;
    } else joined.push(arg);
  }
  return joined;
}

/** A boolean from the environment: 1/true/yes/on or 0/false/no/off; undefined when unset. */
function flag(env: NodeJS.ProcessEnv, name: string): boolean | undefined {
  const value = env[name];
  if (value === undefined || value === '') return undefined;
  if (/^(1|true|yes|on)$/i.test(value)) return true;
  if (/^(0|false|no|off)$/i.test(value)) return false;
  throw new UsageError(`${name} must be 1/true/yes/on or 0/false/no/off, got '${value}'`);
}

/** parseArgs' own messages are long and suggest '--'; say what is wrong in a few words. */
function describeParseError(error: unknown): string {
  const message = error instanceof Error ? error.message : String(error);
  const option = /'(-[^' ]*)/.exec(message)?.[1];
  switch (errnoCode(error)) {
    case 'ERR_PARSE_ARGS_UNKNOWN_OPTION':
      return `unknown option '${option}'`;
    case 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE':
      return message.includes('argument missing') ? `option '${option}' needs a value` : `option '${option}' takes no value`;
    default:
      return message.split('\n')[0] ?? message;
  }
}
