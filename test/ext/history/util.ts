/** Small helpers shared by the history extension's tests. */
import fs from 'node:fs';
import path from 'node:path';
import { expect } from 'vitest';
import { type Impl, asleepInEventLoop, filebus, until } from '../../helpers.js';

/** `count` numbered lines, "0000001\n" .., 8 bytes each: with --block-size 8 and a file as input, one per chunk. */
export function numbered(first: number, count: number): string {
  return Array.from({ length: count }, (_, i) => `${String(first + i).padStart(7, '0')}\n`).join('');
}

export function lineFile(dir: string, name: string, first: number, count: number): string {
  const file = path.join(dir, name);
  fs.writeFileSync(file, numbered(first, count));
  return file;
}

/** Sequence numbers of the entries in `history`, ascending. */
export function entries(history: string): number[] {
  return fs
    .readdirSync(history)
    .filter((name) => /^\d+$/.test(name))
    .map(Number)
    .sort((a, b) => a - b);
}

/** Runs a producer (`args` end with its options after 'producer', or it is added) with `input` (a file) as stdin to its end. */
export async function produce(args: string[], input: string, impl: Impl = 'ts'): Promise<{ status: number; stderr: string }> {
  const fd = fs.openSync(input, 'r');
  const producer = filebus(args.includes('producer') ? args : [...args, 'producer'], { stdin: fd, impl });
  fs.closeSync(fd);
  const status = await producer.exited;
  return { status, stderr: producer.stderr() };
}

export async function produceQuietly(args: string[], input: string, impl: Impl = 'ts'): Promise<void> {
  const { status, stderr } = await produce(args, input, impl);
  expect(status, stderr).toBe(0);
  expect(stderr).toBe('');
}

/** Resolves once process `pid` holds an inotify descriptor and sleeps in its wait: a consumer that has looked at the bus and waits. */
export async function watching(pid: number): Promise<void> {
  await until(
    () => {
      if (!asleepInEventLoop(pid)) return false;
      try {
        return fs.readdirSync(`/proc/${pid}/fd`).some((fd) => {
          try {
            return fs.readlinkSync(`/proc/${pid}/fd/${fd}`) === 'anon_inode:inotify';
          } catch {
            return false;
          }
        });
      } catch {
        return false;
      }
    },
    10_000,
    `process ${pid} to watch the bus`,
  );
}
