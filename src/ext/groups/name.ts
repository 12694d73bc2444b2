/**
 * A durable group's name, checked: a leaf module (no libc, no files), so
 * that the command line's parse, which `filebus --help` runs, loads nothing
 * else of the groups.
 */
import { UsageError } from '../../errors.js';

/** Letters, digits, '.', '_', '-'; not starting with '.' or '-' (no hidden or option-like names, no '/'). */
export const NAME = /^[A-Za-z0-9_][A-Za-z0-9._-]{0,63}$/;

/** A group name from a flag or the API, or a UsageError in one line. */
export function parseGroupName(value: unknown, option = '--group'): string {
  if (typeof value !== 'string' || !NAME.test(value)) {
    throw new UsageError(`${option} NAME must be 1 to 64 letters, digits, '.', '_' or '-', not starting with '.' or '-'; got '${String(value)}'`);
  }
  return value;
}

/** A consumer's `group` with the rest of its options: a name, and a multicast bus. */
export function checkGroupOptions(options: { group?: unknown; backPressure?: boolean | undefined }): void {
  parseGroupName(options.group);
  if (options.backPressure) throw new UsageError('--group is for multicast buses with history; a back-pressure bus already hands each chunk to one consumer');
}
