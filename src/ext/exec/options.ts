/**
 * The numbers `--jobs` and `--retries` take, checked where the command
 * line and the library both read them. A leaf: `filebus --help` loads it.
 */
import { UsageError } from '../../errors.js';

/**
 * Attempts in all by default: a second attempt covers a passing fault (a
 * network blip, a job killed for memory), a third tells a fluke from a
 * chunk that fails every time, which then costs only three runs before it
 * goes to the dead letters.
 */
export const DEFAULT_ATTEMPTS = 3;

const MAX_JOBS = 1024;
const MAX_ATTEMPTS = 1_000_000;

function count(option: string, max: number, value: unknown): number {
  const n = typeof value === 'string' && /^\s*\d+\s*$/.test(value) ? Number(value) : value;
  if (typeof n !== 'number' || !Number.isSafeInteger(n) || n <= 0) throw new UsageError(`${option} must be a positive whole number, got '${String(value)}'`);
  if (n > max) throw new UsageError(`${option} must be at most ${max}, got '${String(value)}'`);
  return n;
}

export const parseJobs = (value: unknown): number => count('--jobs', MAX_JOBS, value);
export const parseRetries = (value: unknown): number => count('--retries', MAX_ATTEMPTS, value);
