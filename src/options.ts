import path from 'node:path';
import { UsageError } from './errors.js';

/** How a producer cuts its input into chunks (BusOptions.records). */
export type RecordMode = 'bytes' | 'lines' | 'null';

/** Options shared by producers and consumers; they mirror the CLI flags. */
export interface BusOptions {
  /** The bus path `F`; `F.lock` and `F.__new__` sit beside it. */
  filename: string;
  /** Lossless work-queue mode instead of multicast. Default false. */
  backPressure?: boolean;
  /** Largest chunk in bytes. Default 4096. */
  blockSize?: number;
  /** Longest wait between checks of the bus, in seconds. Default 0.1. */
  sleepInterval?: number;
  /** Wake on file-system notifications as well as polling. Default true. */
  fileMonitoring?: boolean;
  /** Producer input: read whole blocks with blocking reads. Default false. */
  blockingRead?: boolean;
  /**
   * Back-pressure consumers: the stream ends after this many end-of-stream
   * chunks, one per producer, counted by all the consumers of the bus
   * together in `F.ends` (docs/protocol.md, "Extension: several
   * producers"). Every back-pressure consumer of the bus must be given the
   * same number.
   * Default 1: the first end-of-stream chunk ends the consumer that takes
   * it, and nothing is counted.
   */
  producers?: number;
  /**
   * Producer: what a chunk holds. `'bytes'` (default): up to `blockSize`
   * bytes as they arrive, a boundary may fall inside a line. `'lines'`:
   * chunks end at a newline and hold whole lines; `'null'`: the same with
   * NUL-terminated records. A record longer than `blockSize` is split at
   * `blockSize` (reported once through `log`); a last record without its
   * terminator is published at end of input.
   */
  records?: RecordMode;
  /**
   * Producer, multicast only: keep the last `history` chunks, numbered, in
   * `F.history/` (docs/protocol.md, "Extension: history"), so that
   * consumers within that many chunks get every one. Default 0: off.
   */
  history?: number;
  /**
   * Consumer: start from the oldest chunk the history keeps instead of the
   * newest (like `tail -n +1 -f`). Default false.
   */
  replay?: boolean;
  /**
   * Producer with `history`: rather than let the window drop a chunk that a
   * durable group (a consumer's `group`) has not taken yet, wait for the
   * group (docs/protocol.md, "Extension: groups"). Default false.
   */
  waitForGroups?: boolean;
  /** Stops the producer or consumer. */
  signal?: AbortSignal;
  /**
   * Receives notices worth a line on stderr with `-v` (how the bus is
   * watched, a record split in two, ...). Default: none.
   */
  log?: (message: string) => void;
}

/** The three paths of one bus (PROTOCOL.md, "Files"). */
export interface BusPaths {
  /** `F`, the current chunk. */
  readonly file: string;
  /** `F.lock`, the flock(2) target; never deleted. */
  readonly lock: string;
  /** `F.__new__`, the staging file, written only under the lock. */
  readonly staging: string;
  /** `F.history`, the directory of numbered chunks of the history extension. */
  readonly history: string;
  /** The directory that holds them, watched for notifications. */
  readonly dir: string;
  /** The base name of `F`, to pick its events out of the directory's. */
  readonly base: string;
  /** `F.ends`: end-of-stream chunks counted by consumers given `producers` > 1. */
  readonly ends: string;
}

export interface ResolvedOptions {
  readonly paths: BusPaths;
  readonly backPressure: boolean;
  readonly blockSize: number;
  /** In milliseconds, the unit timers want. */
  readonly sleepMs: number;
  readonly fileMonitoring: boolean;
  readonly blockingRead: boolean;
  readonly producers: number;
  readonly records: RecordMode;
  /** Chunks a producer keeps in `F.history/`; 0 when it keeps none. */
  readonly history: number;
  readonly replay: boolean;
  readonly signal: AbortSignal | undefined;
  readonly log: (message: string) => void;
}

export const defaults = {
  blockSize: 4096,
  sleepInterval: 0.1,
} as const;

/**
 * Largest --block-size: a chunk is held whole in memory on both sides, and
 * 1 GiB keeps well inside what a Buffer can hold (4 GiB here).
 */
export const MAX_BLOCK_SIZE = 2 ** 30;
/**
 * Longest --sleep-interval, seconds: an hour between checks is already
 * only a safety net; timers cannot wait longer than 24.8 days at all.
 */
export const MAX_SLEEP_INTERVAL = 3600;
/** Largest --producers: far beyond any real queue, and a count no file can garble. */
const MAX_PRODUCERS = 1_000_000;

/**
 * The checks below take the name to put in their messages: the library's
 * field (`blockSize`) by default, the flag (`--block-size`) from the
 * command line. Library errors name the API's fields; the command's name
 * its flags.
 */

/** A whole number in [1, max], or a UsageError in filebus's words. */
function parseCount(option: string, what: string, max: number, maxText: string, value: unknown): number {
  const n = typeof value === 'string' && /^\s*\d+\s*$/.test(value) ? Number(value) : value;
  if (typeof n !== 'number' || !Number.isSafeInteger(n) || n <= 0) {
    throw new UsageError(`${option} must be a positive whole number${what}, got '${String(value)}'`);
  }
  if (n > max) throw new UsageError(`${option} must be at most ${maxText}, got '${String(value)}'`);
  return n;
}

/** Checks a block size from a flag, the environment or the API. */
export function parseBlockSize(value: unknown, name = 'blockSize'): number {
  return parseCount(name, ' of bytes', MAX_BLOCK_SIZE, `${MAX_BLOCK_SIZE} (1 GiB)`, value);
}

/** Checks a count of producers (`--producers`, see BusOptions.producers). */
export function parseProducers(value: unknown, name = 'producers'): number {
  return parseCount(name, '', MAX_PRODUCERS, String(MAX_PRODUCERS), value);
}

/** Checks a sleep interval (seconds, fractions allowed). */
export function parseSleepInterval(value: unknown, name = 'sleepInterval'): number {
  const n = typeof value === 'string' && value.trim() !== '' ? Number(value) : value;
  if (typeof n !== 'number' || !Number.isFinite(n) || n < 0) {
    throw new UsageError(`${name} must be a number of seconds >= 0, got '${String(value)}'`);
  }
  if (n > MAX_SLEEP_INTERVAL) throw new UsageError(`${name} must be at most ${MAX_SLEEP_INTERVAL} seconds, got '${String(value)}'`);
  return n;
}

/** Largest --history: each kept chunk is a file in F.history/. */
const MAX_HISTORY = 1_000_000;

/** Checks a history window (a count of chunks; 0 turns the history off). */
export function parseHistory(value: unknown, name = 'history'): number {
  const n = typeof value === 'string' && /^\s*\d+\s*$/.test(value) ? Number(value) : value;
  if (typeof n !== 'number' || !Number.isSafeInteger(n) || n < 0) {
    throw new UsageError(`${name} must be a whole number of chunks >= 0, got '${String(value)}'`);
  }
  if (n > MAX_HISTORY) throw new UsageError(`${name} must be at most ${MAX_HISTORY} chunks, got '${String(value)}'`);
  return n;
}

const recordModes: readonly RecordMode[] = ['bytes', 'lines', 'null'];

function parseRecordMode(value: unknown): RecordMode {
  if (!recordModes.includes(value as RecordMode)) {
    throw new UsageError(`records must be one of ${recordModes.join(', ')}, got '${String(value)}'`);
  }
  return value as RecordMode;
}

export function busPaths(filename: string): BusPaths {
  const file = path.resolve(filename);
  return {
    file,
    lock: `${file}.lock`,
    staging: `${file}.__new__`,
    ends: `${file}.ends`,
    history: `${file}.history`,
    dir: path.dirname(file),
    base: path.basename(file),
  };
}

export function resolveOptions(options: BusOptions): ResolvedOptions {
  if (typeof options.filename !== 'string' || options.filename === '') {
    throw new UsageError('filename is required: the path of the bus file');
  }
  const sleepInterval = parseSleepInterval(options.sleepInterval ?? defaults.sleepInterval);
  const backPressure = options.backPressure ?? false;
  const history = parseHistory(options.history ?? 0);
  const replay = options.replay ?? false;
  // A work queue already hands every chunk to one consumer and removes it;
  // a window of old chunks beside it would only be read by nobody.
  if (backPressure && history > 0) throw new UsageError('history is for multicast buses; with backPressure every chunk is already delivered');
  if (backPressure && replay) throw new UsageError('replay is for multicast consumers; with backPressure the bus keeps no history');
  const producers = parseProducers(options.producers ?? 1);
  if (!backPressure && producers > 1) throw new UsageError('producers counts end-of-stream chunks, which only backPressure has');
  return {
    paths: busPaths(options.filename),
    backPressure,
    blockSize: parseBlockSize(options.blockSize ?? defaults.blockSize),
    // A zero interval would make the safety-net poll a busy loop; 1 ms is
    // the finest a timer gives anyway.
    sleepMs: Math.max(1, sleepInterval * 1000),
    fileMonitoring: options.fileMonitoring ?? true,
    blockingRead: options.blockingRead ?? false,
    producers,
    records: parseRecordMode(options.records ?? 'bytes'),
    history,
    replay,
    signal: options.signal,
    log: options.log ?? (() => {}),
  };
}
