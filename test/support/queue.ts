/**
 * Fixed-size numbered records for the work-queue tests: each names its
 * producer and sequence number, so that output can be checked record by
 * record (none lost, none twice, each producer's in order).
 */
import fs from 'node:fs';
import path from 'node:path';

export const RECORD = 100;

/** `count` unique fixed-size records: producer id and sequence number, padded, newline-terminated. */
export function records(producer: number, count: number, first = 0): Buffer[] {
  return Array.from({ length: count }, (_, i) => {
    const text = `producer ${producer} record ${String(first + i).padStart(6, '0')} `;
    return Buffer.from(`${text.padEnd(RECORD - 1, '.')}\n`);
  });
}

/** Splits output into records, failing on a partial one. */
export function split(out: Buffer, what: string): string[] {
  if (out.length % RECORD !== 0) throw new Error(`${what}: ${out.length} bytes is not a whole number of records`);
  const result: string[] = [];
  for (let i = 0; i < out.length; i += RECORD) result.push(out.subarray(i, i + RECORD).toString('latin1'));
  return result;
}

/** Opens a file holding `data` for reading, to be a producer's stdin. */
export function inputFd(dir: string, name: string, data: Buffer): number {
  const file = path.join(dir, name);
  fs.writeFileSync(file, data);
  return fs.openSync(file, 'r');
}

export function busLeftovers(bus: string): string[] {
  return [bus, `${bus}.__new__`].filter((file) => fs.existsSync(file));
}
