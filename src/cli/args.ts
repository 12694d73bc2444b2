/**
 * The command line and the FILEBUS_* environment, made into what the
 * command should do. yargs tokenizes the command line and writes the help;
 * what is allowed where is checked here, from the option tables, so that
 * every message is filebus' own and none depends on yargs' wording.
 *
 * The rules: an option given twice takes the last value, as in most Unix
 * tools and the original filebus; a flag that does not apply to the role
 * (command and mode) is a usage error, while a FILEBUS_* variable that does
 * not apply is ignored, so that one exported environment serves producers,
 * consumers and `status` alike.
 *
 * `filebus --help` has Node's start-up + 50 ms (README, "Dependencies"):
 * yargs runs with locale detection off and without wrapping (the
 * descriptions carry their line breaks), and the command line is
 * tokenized twice only when it names an implementation.
 */
import { createRequire } from 'node:module';
import type { Argv, Options } from 'yargs';
import type yargsParser from 'yargs-parser';
import { UsageError } from '../errors.js';
import { type BusOptions, MAX_BLOCK_SIZE, MAX_SLEEP_INTERVAL, defaults, parseBlockSize, parseHistory, parseProducers, parseSleepInterval } from '../options.js';
import { DEFAULT_ATTEMPTS, parseJobs, parseRetries } from '../ext/exec/options.js';
import { parseGroupName } from '../ext/groups/name.js';
import { COMPLETIONS_FLAG, type CompletionSpec, complete, completionScript } from './completion.js';
import { closest } from './suggest.js';

// yargs 17's CommonJS entry, from node_modules: its ES module entry loads
// several times slower (README, "Dependencies").
const require = createRequire(import.meta.url);

export type Command = 'producer' | 'consumer' | 'status' | 'group';
/** `python` is the original filebus' name for its default implementation: scripts written for it run unchanged. */
export const implementations = ['typescript', 'python', 'bash'] as const;

export type Invocation =
  /** Help, the version, a completion script or completions: print and exit 0. */
  | { kind: 'print'; text: string }
  /** Hand the untouched command line to the bash implementation, which answers --help and --version itself too. */
  | { kind: 'bash' }
  | { kind: 'run'; command: 'producer' | 'consumer'; options: BusOptions & { blockSize: number; group?: string } & ExecFlags; verbose: number }
  | { kind: 'status'; filename: string; json: boolean; verbose: number }
  | { kind: 'group'; action: 'remove'; filename: string; name: string; verbose: number };

/** `consumer --exec CMD [--jobs N] [--retries N]` (src/ext/exec/). */
export interface ExecFlags {
  exec?: string;
  jobs?: number;
  retries?: number;
}

type Role = Command | 'completion';

type OptionTable = Record<string, Options>;

// Descriptions carry their own line breaks: yargs' wrapping (wrap-ansi)
// costs more start-up time than the rest of the help (README, "Dependencies").
const globalOptions: OptionTable = {
  filename: { type: 'string',
    describe: 'FILE: the bus file F; beside it go F.lock,\nF.__new__, F.ends (--producers) and\nF.history/ (--history)' },
  'back-pressure': {
    type: 'boolean',
    alias: 'lossless',
    describe: 'lossless work queue: each chunk to exactly\none consumer; the producer waits for each\nto be taken',
  },
  'block-size': {
    type: 'string',
    describe: `N: largest chunk in bytes (default ${defaults.blockSize},\nat most ${MAX_BLOCK_SIZE}: 1 GiB)`,
  },
  'sleep-interval': {
    type: 'string',
    describe: `SECONDS: longest wait between checks of the\nbus (default ${defaults.sleepInterval}, at most ${MAX_SLEEP_INTERVAL})`,
  },
  'file-monitoring': {
    type: 'boolean',
    describe: 'wake on inotify events as well as polling\n(default); --no-file-monitoring polls only,\nfor network file systems',
  },
  history: {
    type: 'string',
    describe: 'N: producer, multicast: keep the last N\nchunks, numbered, in F.history/, so that\nconsumers within N of the newest get every\none (default 0: none; --no-history is 0);\na consumer finds the history by itself\nand ignores N',
  },
  impl: {
    type: 'string',
    alias: 'implementation',
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
    'wait-for-groups': { type: 'boolean', describe: 'with --history N: wait rather than drop a\nchunk a durable group has not delivered' },
    'blocking-read': {
      type: 'boolean',
      describe: 'read whole --block-size blocks with\nblocking reads, so fixed-size records stay\none per chunk (regular files always are)',
    },
  },
  consumer: {
    replay: { type: 'boolean', describe: 'start from the oldest chunk the history\nkeeps, not the newest' },
    group: { type: 'string', describe: 'NAME: be a member of durable group NAME:\nits members share its chunks, and it\nresumes where it stopped (needs --history)' },
    producers: {
      type: 'string',
        describe: 'N: back pressure: the stream ends after N\nend-of-stream chunks (one per producer),\ncounted by all consumers together\n(default 1, at most 1000000)',
    },
    exec: { type: 'string', describe: "CMD: back pressure or --group: run\n'/bin/sh -c CMD' per chunk, the chunk on its\nstdin; the chunk is done when CMD exits 0" },
    jobs: { type: 'string', describe: 'N: with --exec, up to N jobs at once\n(default 1)' },
    retries: { type: 'string', describe: 'N: with --exec, attempts in all before a\nchunk goes to F.dead/ (F.groups/NAME/dead/\nwith --group; default 3)' },
  },
  status: {
    json: { type: 'boolean', describe: 'print the status as one JSON object' },
  },
  group: {},
};

const commandDescriptions: Record<Command | 'completion', string> = {
  producer: 'publish standard input on the bus',
  consumer: 'write chunks from the bus to standard output',
  status: 'show the bus at --filename: its file, lock\nholders and the mode it looks like',
  group: 'remove NAME: forget a durable group (its\nposition and claims); its members must be\nstopped',
  completion: 'print a bash completion script (zsh when\n$SHELL is zsh)',
};

const commandHelp: Record<Role, string> = {
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
is in. Exits 0 when there is a bus at --filename, 1 when there is none.
It runs in TypeScript whatever --impl or FILEBUS_IMPL says.`,
  group: `filebus --filename F group remove NAME: remove durable group NAME, its
position and its claims. A producer with --wait-for-groups no longer waits
for it. Refused while a member of the group is running.`,
  completion: `Print a script that completes filebus' commands, options and the values of
--impl, for bash, or for zsh when $SHELL is zsh. It asks the filebus on
your PATH, in TypeScript whatever --impl or FILEBUS_IMPL says.

  filebus completion >> ~/.bashrc     (zsh: >> ~/.zshrc)`,
};

const usage = `Usage: $0 [options] <command> [command options]

Turn an ordinary file into a multicast named pipe, or with --back-pressure
into a lossless work queue, between any number of processes.`;

const epilogue = `Every option can also come from the environment, FILEBUS_ and its name:
FILEBUS_FILENAME, FILEBUS_BACK_PRESSURE=1, FILEBUS_BLOCK_SIZE,
FILEBUS_SLEEP_INTERVAL, FILEBUS_FILE_MONITORING=0, FILEBUS_HISTORY,
FILEBUS_IMPL, FILEBUS_VERBOSE=N, and for the commands FILEBUS_LINES=1,
FILEBUS_NULL=1, FILEBUS_BLOCKING_READ=1, FILEBUS_REPLAY=1, FILEBUS_PRODUCERS.
A variable that does not apply to the command or mode is ignored (a flag
that does not apply is an error). An option given twice takes the last value.

Examples:
  strings /dev/urandom | filebus --filename /tmp/rand.filebus producer
  filebus --filename /tmp/rand.filebus consumer
  filebus --filename /tmp/jobs --lossless producer --lines < jobs.txt
  filebus --filename /tmp/jobs --lossless consumer | xargs -n1 echo job
  filebus --filename /tmp/jobs status`;


const commands = Object.keys(commandOptions) as Command[];
const roles: readonly Role[] = [...commands, 'completion'];
const ENV_PREFIX = 'FILEBUS';
const allOptions: OptionTable = Object.assign({}, globalOptions, ...Object.values(commandOptions));

/**
 * The global options each role takes (the command's own come on top).
 * The bus's settings mean nothing to `status`, which reads the files as
 * they are, nor to `completion`; --impl and -v are taken everywhere.
 */
const globalsOf: Record<Role, readonly string[]> = {
  producer: Object.keys(globalOptions),
  consumer: Object.keys(globalOptions),
  status: ['filename', 'impl', 'verbose', 'help', 'version'],
  group: ['filename', 'impl', 'verbose', 'help', 'version'],
  completion: ['impl', 'verbose', 'help', 'version'],
};

/** Parses `args` (without node and the script) with `env` as fallback. It reads nothing else, process.env included. */
export function parseCommandLine(args: string[], env: NodeJS.ProcessEnv): Invocation {
  // Completions run here whatever the implementation, and never fail.
  if (args[0] === COMPLETIONS_FLAG) return { kind: 'print', text: complete(args.slice(1), completionSpec()).map((word) => `${word}\n`).join('') };
  // The implementation is read first, by yargs' own tokenizer: bash gets the
  // command line untouched, --help and mistakes included.
  if (implementationOf(args, env) === 'bash') return { kind: 'bash' };

  let parsed: { error: Error | undefined; argv: Record<string, unknown>; output: string } | undefined;
  parser().parse(args, {}, (error, argv, output) => {
    parsed = { error: error ?? undefined, argv: argv as Record<string, unknown>, output };
  });
  const { error, argv, output } = parsed!;
  // No validation of yargs' own is on: this would be a bug of ours, said in one line.
  if (error) throw new UsageError(error.message.split('\n')[0] ?? error.message);
  if (argv.version) return { kind: 'print', text: `filebus ${packageVersion()}\n` };
  // Help: what yargs printed.
  if (output !== '') return { kind: 'print', text: `${output}\n` };

  const positionals = (argv._ as unknown[]).map(String);
  const role = roles.find((name) => name === positionals[0]);
  if (role === undefined && positionals.length > 0) {
    const suggestion = closest(positionals[0]!, roles);
    throw new UsageError(`unknown command '${positionals[0]}': ${suggestion ? `did you mean ${suggestion}?` : `use ${roles.join(', ')}`}`);
  }
  checkOptionsKnown(argv, args, role);
  if (role === undefined) throw new UsageError('a command is required: producer, consumer, status or completion');
  const extra = role === 'group' ? undefined : positionals[1];
  // -0 after consumer: yargs took it for a number, as it is no option there.
  if (extra?.startsWith('-')) checkOptionsKnown({ [extra.replace(/^-+/, '')]: true }, args, role);
  if (extra !== undefined) throw new UsageError(`unexpected argument '${extra}'`);
  checkValuesGiven(argv, args);
  if (role === 'completion') return { kind: 'print', text: completionScript(/zsh$/.test(env.SHELL ?? '') ? 'zsh' : 'bash') };

  /** The option's value: from the command line, else from its FILEBUS_* variable when `fromEnv`. */
  const value = (name: string, fromEnv = true): unknown => (argv[name] !== undefined ? argv[name] : fromEnv ? environmentValue(name, env) : undefined);
  const verbose = (argv.verbose as number) || verbosity(env);
  const filename = value('filename') as string | undefined;
  if (!filename) throw new UsageError('a bus file is required: pass --filename FILE or set FILEBUS_FILENAME');
  if (role === 'status') return { kind: 'status', filename, json: value('json') === true, verbose };
  if (role === 'group') return groupInvocation(positionals, filename, verbose);

  const backPressure = value('back-pressure') === true;
  const options: BusOptions & { blockSize: number; group?: string } & ExecFlags = {
    filename,
    backPressure,
    blockSize: parseBlockSize(value('block-size') ?? defaults.blockSize, '--block-size'),
    sleepInterval: parseSleepInterval(value('sleep-interval') ?? defaults.sleepInterval, '--sleep-interval'),
    fileMonitoring: value('file-monitoring') !== false,
  };
  // --history is a setting of a multicast bus: its producers keep the
  // window, its consumers find it by themselves and take the flag only so
  // that one command line serves both. --history 0 (--no-history) asks for
  // nothing, anywhere. FILEBUS_HISTORY counts for multicast producers only.
  const history = historyOf(argv.history) ?? (role === 'producer' && !backPressure ? historyOf(environmentValue('history', env)) : undefined);
  if (backPressure && history) throw new UsageError('--history is for multicast buses; a back-pressure bus already delivers every chunk');
  if (role === 'producer') {
    // Flags first: FILEBUS_LINES=1 does not clash with --null.
    const fromEnv = argv.lines === undefined && argv.null === undefined;
    const lines = value('lines', fromEnv) === true;
    const nul = value('null', fromEnv) === true;
    if (lines && nul) throw new UsageError('--lines and --null exclude each other: records end at a newline or at a NUL');
    options.blockingRead = value('blocking-read') === true;
    options.records = lines ? 'lines' : nul ? 'null' : 'bytes';
    if (history !== undefined) options.history = history;
    if (backPressure && argv['wait-for-groups'] !== undefined) throw new UsageError('--wait-for-groups is for multicast producers with --history; a back-pressure bus has no groups');
    if (!backPressure && value('wait-for-groups') === true) options.waitForGroups = true;
  } else {
    if (backPressure && argv.replay !== undefined) throw new UsageError('--replay is for multicast consumers; a back-pressure bus keeps no history');
    if (!backPressure && argv.producers !== undefined) throw new UsageError('--producers counts end-of-stream chunks, which only --back-pressure has');
    const replay = value('replay', !backPressure);
    if (replay !== undefined) options.replay = replay === true;
    const producers = value('producers', backPressure);
    if (producers !== undefined) options.producers = parseProducers(producers, '--producers');
    if (backPressure && argv.group !== undefined) throw new UsageError('--group is for multicast consumers of a bus with history; a back-pressure bus already shares its chunks');
    const group = value('group', !backPressure);
    if (group !== undefined) options.group = parseGroupName(group);
    // FILEBUS_EXEC, _JOBS and _RETRIES count where --exec could: on a work queue or in a group.
    const claims = backPressure || options.group !== undefined;
    const exec = value('exec', claims);
    if (exec !== undefined) Object.assign(options, execFlags({ exec, jobs: value('jobs', claims), retries: value('retries', claims) }, backPressure, options.group));
    else if (argv.jobs !== undefined || argv.retries !== undefined) throw new UsageError('--jobs and --retries go with --exec CMD');
  }
  return { kind: 'run', command: role, options, verbose };
}

function execFlags(argv: Record<string, unknown>, backPressure: boolean, group: string | undefined): ExecFlags {
  if (!backPressure && group === undefined) throw new UsageError('--exec needs a --back-pressure bus or a --group NAME: each chunk must go to one consumer');
  if (typeof argv.exec !== 'string' || argv.exec.trim() === '') throw new UsageError('--exec needs a command');
  return { exec: argv.exec, jobs: parseJobs(argv.jobs ?? 1), retries: parseRetries(argv.retries ?? DEFAULT_ATTEMPTS) };
}

function groupInvocation(positionals: string[], filename: string, verbose: number): Invocation {
  if (positionals[1] !== 'remove') throw new UsageError(`group: expected 'remove NAME', got '${positionals.slice(1).join(' ')}'`);
  if (positionals.length !== 3) throw new UsageError('group remove takes one NAME');
  return { kind: 'group', action: 'remove', filename, name: parseGroupName(positionals[2], 'group remove'), verbose };
}

function historyOf(value: unknown): number | undefined {
  if (value === undefined) return undefined;
  // --no-history: no history, as --history 0.
  return value === false ? 0 : parseHistory(value, '--history');
}

let yargsFactory: ((args?: readonly string[]) => Argv) | undefined;

function parser(): Argv {
  yargsFactory ??= require('yargs/yargs') as (args?: readonly string[]) => Argv;
  // usageConfiguration is in yargs 17.7 but not in its type definitions.
  let y = (yargsFactory() as Argv & { usageConfiguration(config: Record<string, boolean>): Argv })
    .usageConfiguration({ 'hide-types': true })
    .parserConfiguration(parserConfiguration)
    .scriptName('filebus')
    .usage(usage)
    .detectLocale(false)
    .version(false)
    .help('help')
    .options(globalOptions)
    .group(Object.keys(globalOptions), 'Global options:')
    .showHelpOnFail(false)
    .epilogue(epilogue)
    .wrap(null);
  for (const command of commands) {
    // `group remove NAME`: its words stay positionals (in `_`), as yargs runs without `strict`.
    y = y.command(command, commandDescriptions[command], (sub: Argv) =>
      sub
        .usage(`Usage: $0 [options] ${command} [command options]\n\n${commandHelp[command]}`)
        .options(commandOptions[command])
        .group(Object.keys(commandOptions[command]), 'Command options:')
        .epilogue(''),
    );
  }
  return y.command('completion', commandDescriptions.completion, (sub: Argv) => sub.usage(`Usage: $0 completion\n\n${commandHelp.completion}`).epilogue(''));
}

/**
 * How yargs and yargs-parser tokenize: an option given twice takes the
 * last value (not an array of both), option names stay as written,
 * which is how checkOptionsKnown finds the unknown ones, and `-0` after a
 * command that has no such option stays `-0`.
 */
const parserConfiguration = { 'duplicate-arguments-array': false, 'camel-case-expansion': false, 'parse-positional-numbers': false } as const;

/**
 * The implementation asked for: the last --impl on the command line (read
 * with yargs' tokenizer, every option known, before anything is
 * validated), else FILEBUS_IMPL. `status` and completion run in
 * TypeScript whatever either says.
 */
function implementationOf(args: string[], env: NodeJS.ProcessEnv): 'typescript' | 'bash' {
  const fromEnv = env.FILEBUS_IMPL || env.FILEBUS_IMPLEMENTATION || undefined;
  // Most command lines name no implementation: no need to tokenize them twice.
  if (fromEnv === undefined && !args.some((arg) => arg.startsWith('--impl'))) return 'typescript';
  const parse = require('yargs-parser') as typeof yargsParser;
  const ofType = (type: string) => Object.keys(allOptions).filter((name) => allOptions[name]!.type === type);
  const alias = Object.fromEntries(Object.entries(allOptions).flatMap(([name, spec]) => (spec.alias ? [[name, spec.alias as string]] : [])));
  const argv = parse(args, { boolean: ofType('boolean'), string: ofType('string'), count: ofType('count'), alias, configuration: parserConfiguration });
  const typescriptOnly = ['status', 'completion'].includes(String(argv._[0]));
  const flag = argv.impl as string | false | undefined;
  if (flag === '' || flag === false) throw new UsageError(flag === '' ? "option '--impl' needs a value" : '--no-impl is not an option: --impl takes a value');
  // FILEBUS_IMPL does not apply to status and completion: ignored there, even when wrong.
  const [name, source] = flag !== undefined ? [flag, '--impl'] : typescriptOnly ? ['typescript', ''] : [fromEnv!, 'FILEBUS_IMPL'];
  if (!(implementations as readonly string[]).includes(name)) throw new UsageError(`${source} must be one of ${implementations.join(', ')}, got '${name}'`);
  return name === 'bash' && !typescriptOnly ? 'bash' : 'typescript';
}

/**
 * Every option on the command line is one the role takes: a global one it
 * applies to, or one of the command's own. yargs ran without `strict`, so
 * unknown options are simply the names it set that no table has.
 */
function checkOptionsKnown(argv: Record<string, unknown>, args: string[], role: Role | undefined): void {
  const names = (table: OptionTable, only?: readonly string[]) =>
    Object.entries(table).flatMap(([name, spec]) => (only && !only.includes(name) ? [] : [name, ...[spec.alias ?? []].flat()]));
  const own = role === undefined || role === 'completion' ? {} : commandOptions[role];
  const known = new Set(['_', '$0', ...names(globalOptions, role && globalsOf[role]), ...names(own)]);
  for (const name of Object.keys(argv)) {
    if (known.has(name)) continue;
    const flag = spelled(name, args, argv[name] === false);
    if (names(globalOptions).includes(name)) throw new UsageError(`${flag} does not apply to ${role}`);
    const owner = commands.find((other) => names(commandOptions[other]).includes(name));
    if (owner) throw new UsageError(`${flag} is an option of ${owner}${role ? `, not of ${role}` : `: put it after '${owner}'`}`);
    const suggestion = closest(name, [...known].filter((option) => option.length > 1));
    throw new UsageError(`unknown option '${flag}'${suggestion ? `: did you mean --${suggestion}?` : ''}`);
  }
}

/** Options that take a value got one: not `--block-size` last, or before another option, nor `--no-block-size`. */
function checkValuesGiven(argv: Record<string, unknown>, args: string[]): void {
  for (const [name, spec] of Object.entries(allOptions)) {
    if (spec.type !== 'string' || name === 'history') continue;
    if (argv[name] === '') throw new UsageError(`option '--${name}' needs a value`);
    if (argv[name] === false) throw new UsageError(`${spelled(name, args, true)} is not an option: --${name} takes a value`);
  }
}

/** The option `name` as the command line spelled it (`--no-x` first when `negated`, `-x`), for messages. */
function spelled(name: string, args: string[], negated = false): string {
  const escaped = name.replace(/[^\w-]/g, '\\$&');
  const spelling = (pattern: string) => args.find((arg) => new RegExp(`^--${pattern}${escaped}(=|$)`).test(arg));
  const long = (negated ? spelling('no-') : undefined) ?? spelling('(no-)?');
  if (long) return long.split('=')[0]!;
  return name.length === 1 ? `-${name}` : `--${name}`;
}

/** What the shell completion offers (./completion.ts). */
function completionSpec(): CompletionSpec {
  // Long names only, the negation that means something included; -h, -v, -V and -0 are not worth a Tab.
  const long = (table: OptionTable, only?: readonly string[]) =>
    Object.entries(table).flatMap(([name, spec]) => {
      if (only && !only.includes(name)) return [];
      const aliases = [spec.alias ?? []].flat().filter((alias) => alias.length > 1);
      return name === 'file-monitoring' ? [`no-${name}`] : [name, ...aliases];
    });
  const valued = Object.entries(allOptions).flatMap(([name, spec]) => (spec.type === 'string' ? [name, ...[spec.alias ?? []].flat()] : []));
  return {
    commands: roles,
    global: long(globalOptions),
    perCommand: Object.fromEntries(roles.map((role) => [role, [...long(globalOptions, globalsOf[role]), ...(role === 'completion' ? [] : long(commandOptions[role]))]])),
    // --impl's values: the two implementations ('python' is an old name, not worth offering).
    values: Object.fromEntries(valued.map((name) => [name, name === 'impl' || name === 'implementation' ? ['typescript', 'bash'] : undefined])),
  };
}

/**
 * The value the FILEBUS_* variable of option `name` (or of its alias)
 * gives it, booleans read as 1/true/yes/on or 0/false/no/off; undefined
 * when unset or empty.
 */
function environmentValue(name: string, env: NodeJS.ProcessEnv): string | boolean | undefined {
  const spec = allOptions[name]!;
  for (const key of [name, ...[spec.alias ?? []].flat()]) {
    if (key.length === 1) continue;
    const variable = envName(key);
    const value = env[variable];
    if (value === undefined || value === '') continue;
    return spec.type === 'boolean' ? envFlag(variable, value) : value;
  }
  // FILEBUS_NO_FILE_MONITORING=1, as the bash implementation reads it.
  const noMonitoring = env.FILEBUS_NO_FILE_MONITORING;
  if (name === 'file-monitoring' && noMonitoring) return !envFlag('FILEBUS_NO_FILE_MONITORING', noMonitoring);
  return undefined;
}

/** FILEBUS_VERBOSE, a count, or a boolean. */
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

function packageVersion(): string {
  return (require('../../../package.json') as { version: string }).version;
}
