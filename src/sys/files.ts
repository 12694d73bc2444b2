/**
 * write(2) straight through koffi, for a consumer's standard output.
 * node:fs wraps each call in argument checks and turns a full pipe
 * (EAGAIN) into a thrown Error; in a process that wakes cold for every
 * chunk that layer is measurable (docs/benchmarks.md, issue 12: the same
 * minimal consumer loop cost 220-240 us of CPU per chunk with node:fs and
 * 150 us with koffi calls).
 */
import koffi from 'koffi';

const libc = koffi.load('libc.so.6');
const writeFn = libc.func('long write(int fd, void *buf, unsigned long count)');

export const EAGAIN = 11;
export const EINTR = 4;

export function errno(): number {
  return koffi.errno();
}

/** write(2) of `data` from `offset`; -1 with errno on failure. */
export function writeFrom(fd: number, data: Uint8Array, offset: number): number {
  return Number(writeFn(fd, offset === 0 ? data : data.subarray(offset), data.length - offset));
}

