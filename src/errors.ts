/**
 * Errors that the CLI turns into one line on stderr and an exit status,
 * instead of a stack trace.
 */

/** Bad arguments or options: the caller's mistake, exit status 2. */
export class UsageError extends Error {
  override name = 'UsageError';
  readonly exitCode = 2;
}

/**
 * A problem with the bus at run time (a path that cannot be used, a full
 * disk): exit status 1. `path` names the file involved and `code` keeps the
 * errno code (`ENOSPC`, `EACCES`, ...) so callers can tell causes apart.
 */
export class BusError extends Error {
  override name = 'BusError';
  readonly exitCode = 1;
  readonly path: string;
  readonly code: string | undefined;

  constructor(message: string, path: string, options?: { cause?: unknown; code?: string }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.path = path;
    this.code = options?.code ?? errnoCode(options?.cause);
  }
}

/** The errno code (`ENOENT`, ...) of a Node system error, if it is one. */
export function errnoCode(error: unknown): string | undefined {
  if (typeof error === 'object' && error !== null && 'code' in error) {
    const { code } = error as { code: unknown };
    return typeof code === 'string' ? code : undefined;
  }
  return undefined;
}

const causes: Record<string, string> = {
  EACCES: 'permission denied',
  EPERM: 'operation not permitted',
  ENOSPC: 'no space left on device',
  EDQUOT: 'disk quota exceeded',
  EIO: 'input/output error',
  EISDIR: 'is a directory',
  ENOTDIR: 'a component of the path is not a directory',
  ENOENT: 'no such file or directory',
  EROFS: 'read-only file system',
  EEXIST: 'file exists',
  ELOOP: 'too many symbolic links',
  ENAMETOOLONG: 'file name too long',
};

/**
 * Wraps a system error from an operation on `path` into a BusError whose
 * message names the operation, the file and the cause, e.g.
 * "cannot write /tmp/bus.__new__: no space left on device (ENOSPC)".
 */
export function busError(operation: string, path: string, error: unknown): BusError {
  if (error instanceof BusError) return error;
  const code = errnoCode(error);
  const cause = code === undefined ? String((error as Error)?.message ?? error) : `${causes[code] ?? code.toLowerCase()} (${code})`;
  return new BusError(`cannot ${operation} ${path}: ${cause}`, path, { cause: error, code });
}
