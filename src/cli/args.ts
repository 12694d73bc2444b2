/**
 * The command line and the FILEBUS_* environment, parsed by yargs into
 * what the command should do.
 *
 * `filebus --help` has Node's start-up + 40 ms (README, "Dependencies"):
 * yargs comes from a bundle with a code cache (./yargs.ts), runs with
 * locale detection off and without wrapping (the descriptions carry their
 * line breaks), and the command line is tokenized twice only when it
 * names an implementation.
 */
import { createRequire } from 'node:module';
import type { Argv, Options } from 'yargs';
import { UsageError } from '../errors.js';
import { type BusOptions, MAX_BLOCK_SIZE, MAX_SLEEP_INTERVAL, defaults, parseBlockSize, parseHistory, parseProducers, parseSleepInterval } from '../options.js';
import { closest } from './suggest.js';
import { DEFAULT_ATTEMPTS, parseJobs, parseRetries } from '../ext/exec/options.js';
import { loadYargs } from './yargs.js';

const require = createRequire(import.meta.url);

export type Command = 'producer' | 'consumer' | 'status';
/** `python` is the original filebus' name for its default implementation: scripts written for it run unchanged. */
export const implementations = ['typescript', 'python', 'bash'] as const;

export type Invocation =
  /** Help, the version, a completion script or completions: print and exit 0. */
  | { kind: 'print'; text: string }
  /** Hand the untouched command line to the bash implementation, which answers --help and --version itself too. */
  | { kind: 'bash' }
  | { kind: 'run'; command: 'producer' | 'consumer'; options: BusOptions & { blockSize: number } & ExecFlags; verbose: number }
  | { kind: 'status'; filename: string; json: boolean; verbose: number };

/** `consumer --exec CMD [--jobs N] [--retries N]` (src/ext/exec/). */
export interface ExecFlags { exec?: string; jobs?: number; retries?: number }

type OptionTable = Record<string, Options>;

// Descriptions carry their own line breaks: yargs' wrapping (wrap-ansi)
// costs more start-up time than the rest of the help (README, "Dependencies").
const globalOptions: OptionTable = {
  filename: { type: 'string', requiresArg: true, describe: 'FILE: the bus file F; F.lock and F.__new__\ngo beside it' },
  'back-pressure': {
    type: 'boolean',
    alias: 'lossless',
    describe: 'lossless work queue: each chunk to exactly\none consumer; the producer waits for each\nto be taken',
  },
  'block-size': {
    type: 'string',
    requiresArg: true,
    describe: `N: largest chunk in bytes (default ${defaults.blockSize},\nat most ${MAX_BLOCK_SIZE}: 1 GiB)`,
  },
  'sleep-interval': {
    type: 'string',
    requiresArg: true,
    describe: `SECONDS: longest wait between checks of the\nbus (default ${defaults.sleepInterval}, at most ${MAX_SLEEP_INTERVAL})`,
  },
  'file-monitoring': {
    type: 'boolean',
    describe: 'wake on inotify events as well as polling\n(default); --no-file-monitoring polls only,\nfor network file systems',
  },
  history: {
    type: 'string',
    requiresArg: true,
    describe: 'N: producer, multicast: keep the last N\nchunks, numbered, in F.history/, so that\nconsumers within N of the newest get every\none (default 0: none); a consumer finds\nthe history by itself and ignores N',
  },
  impl: {
    type: 'string',
    alias: 'implementation',
    requiresArg: true,
    describe: "NAME: typescript (default; 'python', the\noriginal filebus' name for it, is taken as\ntypescript) or bash",
  },
  verbose: { type: 'count', alias: 'v', describe: 'log to stderr; -vv adds stack traces to\nerrors' },
  help: { type: 'boolean', alias: 'h', describe: "this help; 'filebus producer --help' for a\ncommand's" },
  version: { type: 'boolean', alias: 'V', skipValidation: true, describe: 'print the version' },
};

const commandOptions: Record<Command, OptionTable> = {
  producer: {
    lines: {
      type: 'boolean',
      describe: 'chunks end at a newline and hold whole\nlines; a longer line is split at\n--block-size',
    },
    null: { type: 'boolean', alias: '0', describe: 'the same with NUL-terminated records\n(find -print0, xargs -0)' },
    'blocking-read': {
      type: 'boolean',
      describe: 'read whole --block-size blocks with\nblocking reads, so fixed-size records stay\none per chunk (regular files always are)',
    },
  },
  consumer: {
    replay: { type: 'boolean', describe: 'start from the oldest chunk the history\nkeeps, not the newest' },
    producers: {
      type: 'string',
      requiresArg: true,
      describe: 'N: back pressure: the stream ends after N\nend-of-stream chunks (one per producer),\ncounted by all consumers together\n(default 1, at most 1000000)',
    },
    exec: { type: 'string', requiresArg: true, describe: "CMD: back pressure: run '/bin/sh -c CMD' per\nchunk, the chunk on its stdin; the chunk\nleaves the bus when CMD exits 0" },
    jobs: { type: 'string', requiresArg: true, describe: 'N: with --exec, up to N jobs at once\n(default 1)' },
    retries: { type: 'string', requiresArg: true, describe: 'N: with --exec, attempts in all before a\nchunk goes to F.dead/ (default 3)' },
  },
  status: {
    json: { type: 'boolean', describe: 'print the status as one JSON object' },
  },
};

const commandDescriptions: Record<Command | 'completion', string> = {
  producer: 'publish standard input on the bus',
  consumer: 'write chunks from the bus to standard output',
  status: 'show the bus at --filename: its file, lock\nholders and the mode it looks like',
  completion: 'print a bash completion script (zsh when\nrun from zsh)',
};

const commandHelp: Record<Command, string> = {
  producer: `Publish standard input on the bus in chunks of at most --block-size bytes,
as soon as it arrives. At end of input the producer exits 0 (with
--back-pressure, after publishing the empty end-of-stream chunk).`,
  consumer: `Write chunks from the bus to standard output. In multicast mode (default)
every consumer gets every chunk it catches and runs until interrupted; with
--back-pressure each chunk goes to exactly one consumer, and the consumer
that takes the end-of-stream chunk exits 0.

On a bus whose producers keep a history (--history N), a multicast consumer
gets every chunk in order while it stays within N chunks of the newest; one
that falls further behind skips ahead and says on stderr how many it missed.`,
  status: `Show whether the bus file exists, its size and age, the PID of any process
holding its lock, a leftover staging file, and the mode the bus looks like it
is in. Exits 0 when there is a bus at --filename, 1 when there is none.`,
};

const usage = `Usage: $0 [options] <command> [command options]

Turn an ordinary file into a multicast named pipe, or with --back-pressure
into a lossless work queue, between any number of processes.`;

const epilogue = `Every option can also come from the environment, FILEBUS_ and its name:
FILEBUS_FILENAME, FILEBUS_BACK_PRESSURE=1, FILEBUS_BLOCK_SIZE,
FILEBUS_SLEEP_INTERVAL, FILEBUS_FILE_MONITORING=0, FILEBUS_HISTORY,
FILEBUS_IMPL, FILEBUS_VERBOSE=N, and for the commands FILEBUS_LINES=1,
FILEBUS_NULL=1, FILEBUS_BLOCKING_READ=1, FILEBUS_REPLAY=1, FILEBUS_PRODUCERS.

Examples:
  strings /dev/urandom | filebus --filename /tmp/rand.filebus producer
  filebus --filename /tmp/rand.filebus consumer
  filebus --filename /tmp/jobs --lossless producer --lines < jobs.txt
  filebus --filename /tmp/jobs --lossless consumer | xargs -n1 echo job
  filebus --filename /tmp/jobs status`;

const commands = Object.keys(commandOptions) as Command[];
const ENV_PREFIX = 'FILEBUS';

/** Parses `args` (without node and the script) with `env` as fallback. */
export function parseCommandLine(args: string[], env: NodeJS.ProcessEnv): Invocation {
  // The implementation is read first, by yargs' own tokenizer: bash gets the
  // command line untouched, --help and mistakes included.
  const implementation = implementationOf(args, env);
  if (!(implementations as readonly string[]).includes(implementation)) {
    throw new UsageError(`--impl must be one of ${implementations.join(', ')}, got '${implementation}'`);
  }
  if (implementation === 'bash') return { kind: 'bash' };

  let parsed: { error: Error | undefined; argv: Record<string, unknown>; output: string } | undefined;
  parser(env).parse(args, {}, (error, argv, output) => {
    parsed = { error: error ?? undefined, argv: argv as Record<string, unknown>, output };
  });
  const { error, argv, output } = parsed!;
  const positionals = (argv._ as unknown[]).map(String);
  const command = commands.find((name) => name === positionals[0]);
  if (error) throw new UsageError(describeError(error, output, positionals, command));
  if (argv.version) return { kind: 'print', text: `filebus ${packageVersion()}\n` };
  // Help, a completion script, completions: what yargs printed.
  if (output !== '') return { kind: 'print', text: `${output}\n` };

  const verbose = (argv.verbose as number) || verbosity(env);
  const filename = argv.filename as string | undefined;
  if (!filename) throw new UsageError('a bus file is required: pass --filename FILE or set FILEBUS_FILENAME');
  if (positionals.length > 1) throw new UsageError(`unexpected argument '${positionals[1]}'`);
  const history = argv.history === undefined ? undefined : parseHistory(argv.history);
  if (command === 'status') return { kind: 'status', filename, json: argv.json === true, verbose };
  if (command === undefined) throw new UsageError(`unknown command '${positionals[0]}'`);

  const options: BusOptions & { blockSize: number } & ExecFlags = {
    filename,
    backPressure: argv['back-pressure'] === true,
    blockSize: parseBlockSize(argv['block-size'] ?? defaults.blockSize),
    sleepInterval: parseSleepInterval(argv['sleep-interval'] ?? defaults.sleepInterval),
    fileMonitoring: argv['file-monitoring'] !== false,
    ...(history === undefined ? {} : { history }),
  };
  if (command === 'producer') {
    if (argv.lines && argv.null) throw new UsageError('--lines and --null exclude each other: records end at a newline or at a NUL');
    options.blockingRead = argv['blocking-read'] === true;
    options.records = argv.lines ? 'lines' : argv.null ? 'null' : 'bytes';
  } else {
    if (argv.replay !== undefined) options.replay = argv.replay === true;
    if (argv.producers !== undefined) options.producers = parseProducers(argv.producers);
    if (argv.exec !== undefined) Object.assign(options, execFlags(argv));
    else if (argv.jobs !== undefined || argv.retries !== undefined) throw new UsageError('--jobs and --retries go with --exec CMD');
  }
  return { kind: 'run', command, options, verbose };
}

function execFlags(argv: Record<string, unknown>): ExecFlags {
  if (argv['back-pressure'] !== true) throw new UsageError('--exec needs a --back-pressure bus: each chunk must go to one consumer');
  if (typeof argv.exec !== 'string' || argv.exec.trim() === '') throw new UsageError('--exec needs a command');
  return { exec: argv.exec, jobs: parseJobs(argv.jobs ?? 1), retries: parseRetries(argv.retries ?? DEFAULT_ATTEMPTS) };
}

function parser(env: NodeJS.ProcessEnv): Argv {
  const { yargs } = loadYargs();
  // usageConfiguration is in yargs 17.7 but not in its type definitions.
  let y = (yargs() as Argv & { usageConfiguration(config: Record<string, boolean>): Argv })
    .usageConfiguration({ 'hide-types': true })
    .scriptName('filebus')
    .usage(usage)
    // FILEBUS_* from `env`, never from process.env: a config object ranks
    // below the command line and above defaults, as environment variables do.
    .config(environmentFor(globalOptions, env))
    .detectLocale(false)
    .version(false)
    .help('help')
    .options(globalOptions)
    .group(Object.keys(globalOptions), 'Global options:')
    .strict()
    .recommendCommands()
    .demandCommand(1, 'a command is required: producer, consumer, status or completion')
    .showHelpOnFail(false)
    .epilogue(epilogue)
    .wrap(null);
  for (const command of commands) {
    y = y.command(command, commandDescriptions[command], (sub: Argv) => {
      // The command's own variables, for its own parse only: FILEBUS_LINES is no error for a consumer.
      return sub
        .config(environmentFor(commandOptions[command], env))
        .usage(`Usage: $0 [options] ${command} [command options]\n\n${commandHelp[command]}`)
        .options(commandOptions[command])
        .group(Object.keys(commandOptions[command]), 'Command options:')
        .epilogue('');
    });
  }
  // yargs' own completions, less the one-letter aliases it offers as '--h'.
  return y.completion('completion', commandDescriptions.completion, ((_current: string, _argv: unknown, completionFilter: (onCompleted: (error: Error | null, completions: string[]) => void) => void, done: (completions: string[]) => void) => {
    completionFilter((_error, completions) => done(completions.filter((word) => !/^--.$/.test(word))));
  }) as never);
}

/**
 * The implementation asked for, by --impl (read with yargs' tokenizer over
 * the whole command line, every option known, before anything is
 * validated) or FILEBUS_IMPL.
 */
function implementationOf(args: string[], env: NodeJS.ProcessEnv): string {
  const fromEnv = env.FILEBUS_IMPL || env.FILEBUS_IMPLEMENTATION || undefined;
  // Most command lines name no implementation: no need to tokenize them twice.
  if (!args.some((arg) => arg.startsWith('--impl'))) return fromEnv ?? 'typescript';
  const { parse } = loadYargs();
  const all: OptionTable = Object.assign({}, globalOptions, ...Object.values(commandOptions));
  const ofType = (type: string) => Object.keys(all).filter((name) => all[name]!.type === type);
  const alias = Object.fromEntries(Object.entries(all).flatMap(([name, spec]) => (spec.alias ? [[name, spec.alias as string]] : [])));
  const argv = parse(args, { boolean: ofType('boolean'), string: ofType('string'), count: ofType('count'), alias });
  return (argv.impl as string | undefined) || fromEnv || 'typescript';
}

/**
 * The values the FILEBUS_* variables in `env` give these options, by option
 * name, booleans spelled as yargs reads them. Variables that name no option
 * (FILEBUS_SOAK_BYTES of the soak test) are left out.
 */
function environmentFor(table: OptionTable, env: NodeJS.ProcessEnv): Record<string, string> {
  const vars: Record<string, string> = {};
  for (const [name, spec] of Object.entries(table)) {
    if (spec.type === 'count' || name === 'help' || name === 'version') continue;
    for (const key of [name, ...[spec.alias ?? []].flat()]) {
      if (key.length === 1) continue;
      const variable = envName(key);
      let value = env[variable];
      if (value === undefined || value === '') continue;
      if (spec.type === 'boolean') value = String(envFlag(variable, value));
      vars[key] = value;
    }
  }
  // FILEBUS_NO_FILE_MONITORING=1, as the bash implementation reads it.
  const noMonitoring = env.FILEBUS_NO_FILE_MONITORING;
  if ('file-monitoring' in table && noMonitoring && vars['file-monitoring'] === undefined) {
    vars['file-monitoring'] = String(!envFlag('FILEBUS_NO_FILE_MONITORING', noMonitoring));
  }
  return vars;
}

/** FILEBUS_VERBOSE, a count (yargs would read FILEBUS_VERBOSE=2 as one -v), or a boolean. */
function verbosity(env: NodeJS.ProcessEnv): number {
  const value = env.FILEBUS_VERBOSE ?? '';
  if (value === '') return 0;
  return /^\d+$/.test(value) ? Number(value) : Number(envFlag('FILEBUS_VERBOSE', value));
}

function envName(option: string): string {
  return `${ENV_PREFIX}_${option.toUpperCase().replace(/-/g, '_')}`;
}

/** A boolean from the environment: 1/true/yes/on or 0/false/no/off. */
function envFlag(name: string, value: string): boolean {
  if (/^(1|true|yes|on)$/i.test(value)) return true;
  if (/^(0|false|no|off)$/i.test(value)) return false;
  throw new UsageError(`${name} must be 1/true/yes/on or 0/false/no/off, got '${value}'`);
}

/** yargs' messages, made one line that says what is wrong and what would be right. */
function describeError(error: Error, output: string, positionals: string[], command: Command | undefined): string {
  const message = error.message;
  const unknown = /^Unknown arguments?: (.*)$/m.exec(message);
  if (unknown) {
    const name = unknown[1]!.split(', ')[0]!;
    if (positionals.includes(name)) {
      if (name !== positionals[0]) return `unexpected argument '${name}'`;
      const suggestion = /Did you mean (.*)\?/.exec(output)?.[1];
      return `unknown command '${name}': ${suggestion ? `did you mean ${suggestion}?` : `use ${commands.join(', ')} or completion`}`;
    }
    const flag = name.length === 1 ? `-${name}` : `--${name}`;
    const owner = commands.find((other) => Object.hasOwn(commandOptions[other], name));
    if (owner) return `${flag} is an option of ${owner}${command ? `, not of ${command}` : `: put it after '${owner}'`}`;
    const known = Object.entries({ ...globalOptions, ...(command ? commandOptions[command] : {}) }).flatMap(([option, spec]) => [
      option,
      ...[spec.alias ?? []].flat(),
    ]);
    const suggestion = closest(name, known.filter((option) => option.length > 1));
    return `unknown option '${flag}'${suggestion ? `: did you mean --${suggestion}?` : ''}`;
  }
  const missing = /^Not enough arguments following: (.*)$/.exec(message);
  if (missing) return `option '--${missing[1]}' needs a value`;
  return message.split('\n')[0] ?? message;
}

function packageVersion(): string {
  return (require('../../../package.json') as { version: string }).version;
}
