import path from 'node:path';
import { UsageError } from './errors.js';

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
   * Wait for the bus by blocking the calling thread in poll(2) on an
   * inotify descriptor, handing control back to the event loop every few
   * milliseconds (and at once for a signal). For a process that does
   * nothing else, like the filebus command: a chunk then costs a fraction
   * of the CPU and latency of waiting in the event loop. Default false.
   */
  blockingWait?: boolean;
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
  /** The directory that holds them, watched for notifications. */
  readonly dir: string;
  /** The base name of `F`, to pick its events out of the directory's. */
  readonly base: string;
}

export interface ResolvedOptions {
  readonly paths: BusPaths;
  readonly backPressure: boolean;
  readonly blockSize: number;
  /** In milliseconds, the unit timers want. */
  readonly sleepMs: number;
  readonly fileMonitoring: boolean;
  readonly blockingRead: boolean;
  readonly blockingWait: boolean;
  readonly signal: AbortSignal | undefined;
  readonly log: (message: string) => void;
}

export const defaults = {
  blockSize: 4096,
  sleepInterval: 0.1,
} as const;

/** Checks a block size from a flag, the environment or the API. */
export function parseBlockSize(value: unknown): number {
  const n = typeof value === 'string' && /^\s*\d+\s*$/.test(value) ? Number(value) : value;
  if (typeof n !== 'number' || !Number.isSafeInteger(n) || n <= 0) {
    throw new UsageError(`--block-size must be a positive whole number of bytes, got '${String(value)}'`);
  }
  return n;
}

/** Checks a sleep interval (seconds, fractions allowed). */
export function parseSleepInterval(value: unknown): number {
  const n = typeof value === 'string' && value.trim() !== '' ? Number(value) : value;
  if (typeof n !== 'number' || !Number.isFinite(n) || n < 0) {
    throw new UsageError(`--sleep-interval must be a number of seconds >= 0, got '${String(value)}'`);
  }
  return n;
}

export function busPaths(filename: string): BusPaths {
  const file = path.resolve(filename);
  return {
    file,
    lock: `${file}.lock`,
    staging: `${file}.__new__`,
    dir: path.dirname(file),
    base: path.basename(file),
  };
}

export function resolveOptions(options: BusOptions): ResolvedOptions {
  if (typeof options.filename !== 'string' || options.filename === '') {
    throw new UsageError('a bus file is required: pass --filename FILE or set FILEBUS_FILENAME');
  }
  const sleepInterval = parseSleepInterval(options.sleepInterval ?? defaults.sleepInterval);
  return {
    paths: busPaths(options.filename),
    backPressure: options.backPressure ?? false,
    blockSize: parseBlockSize(options.blockSize ?? defaults.blockSize),
    // A zero interval would make the safety-net poll a busy loop; 1 ms is
    // the finest a timer gives anyway.
    sleepMs: Math.max(1, sleepInterval * 1000),
    fileMonitoring: options.fileMonitoring ?? true,
    blockingRead: options.blockingRead ?? false,
    blockingWait: options.blockingWait ?? false,
    signal: options.signal,
    log: options.log ?? (() => {}),
  };
}
