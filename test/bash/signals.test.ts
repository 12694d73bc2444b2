/**
 * A consumer stopped by a signal while its output is full (issue "Reliability
 * and security, round 3", item 1). Real processes; the consumer's standard
 * output is a FIFO this test reads only when it chooses to.
 *
 * The first SIGHUP/SIGINT/SIGTERM lets a chunk whose write has begun finish
 * (and, on a back-pressure bus, leave the bus) before the consumer exits: its
 * output ends at a record boundary and no chunk goes to two consumers. A
 * second signal cuts the chunk: one line on stderr says how many of its bytes
 * were not written, and on a back-pressure bus the chunk stays for the next
 * consumer (at least once).
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, test } from 'vitest';
import { type Impl, type Proc, drainFifo, filebus, sleep, tempDir, until, within } from '../helpers.js';

// The TypeScript consumer is tested the same way in test/signals/backpressure-output.test.ts (it waits in poll(2), not in a blocking write).
const impls: Impl[] = ['bash'];

/** A FIFO held open for reading and writing by this process: its writer never sees EPIPE, its reader never sees end of file. */
function fifo(dir: string, name: string): { fd: number; drain(): Buffer } {
  const file = path.join(dir, name);
  execFileSync('mkfifo', [file]);
  const fd = fs.openSync(file, 'r+');
  return {
    fd,
    /** Everything in the pipe now, without blocking. */
    drain: () => drainFifo(file),
  };
}

/** `pid` and all its descendants, from /proc. */
function processTree(pid: number): number[] {
  const parent = new Map<number, number>();
  for (const entry of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = fs.readFileSync(`/proc/${entry}/stat`, 'utf8');
      parent.set(Number(entry), Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]));
    } catch {} // gone meanwhile
  }
  const tree = [pid];
  for (let i = 0; i < tree.length; i++) for (const [child, ppid] of parent) if (ppid === tree[i]) tree.push(child);
  return tree;
}

/** True while `pid` or one of its descendants sleeps in a write to a full pipe (/proc/PID/wchan). */
function blockedOnFullPipe(pid: number): boolean {
  return processTree(pid).some((each) => {
    try {
      // pipe_write, or anon_pipe_write on newer kernels (FIFOs included).
      return /pipe_write$/.test(fs.readFileSync(`/proc/${each}/wchan`, 'utf8'));
    } catch {
      return false;
    }
  });
}

/** Reads `out` until `proc` has exited, and once more after. */
async function drainUntilExit(proc: Proc, out: { drain(): Buffer }): Promise<{ status: number; output: Buffer }> {
  const parts: Buffer[] = [];
  let status: number | undefined;
  void proc.exited.then((code) => (status = code));
  const deadline = Date.now() + 20_000;
  while (status === undefined) {
    if (Date.now() > deadline) throw new Error(`the consumer did not exit; stderr: ${proc.stderr()}`);
    parts.push(out.drain());
    await sleep(10);
  }
  parts.push(out.drain());
  return { status, output: Buffer.concat(parts) };
}

const numbers = (count: number) => Array.from({ length: count }, (_, i) => `${i + 1}\n`).join('');

describe.each(impls)('%s back-pressure consumer stopped while its output is full', (impl) => {
  /** A TypeScript producer of `seq 1 200000` in chunks of at most 10,000 bytes, and a consumer of `impl` blocked on its full output. */
  async function blockedConsumer() {
    const dir = tempDir();
    const args = ['--filename', path.join(dir, 'bus'), '--lossless', '--block-size', '10000'];
    const input = numbers(200_000);
    const producer = filebus([...args, 'producer', '--lines']);
    // Torn down before it read everything when a test fails.
    producer.child.stdin!.on('error', () => {});
    producer.child.stdin!.end(input);
    const out = fifo(dir, 'out');
    const consumer = filebus([...args, 'consumer'], { impl, stdin: 'ignore', stdout: out.fd });
    await until(() => blockedOnFullPipe(consumer.child.pid!), 20_000, 'the consumer to block on its full output');
    return { args, input, producer, out, consumer };
  }

  test('first SIGTERM: the chunk it began is written whole and leaves the bus; output + the next consumer = the input, once', async () => {
    const { args, input, producer, out, consumer } = await blockedConsumer();
    consumer.child.kill('SIGTERM');
    // It owes the rest of its chunk: still there, until the reader reads.
    await sleep(300);
    expect(consumer.child.exitCode).toBe(null);
    const first = await drainUntilExit(consumer, out);
    expect(first.status).toBe(143);
    expect(consumer.stderr()).toBe('');
    expect(first.output.length).toBeGreaterThan(0);
    expect(first.output.at(-1)).toBe(0x0a);

    // The rest through a TypeScript consumer: a bash one takes a loaded machine minutes for 130 chunks.
    const next = filebus([...args, 'consumer'], { stdin: 'ignore' });
    expect(await within(next.exited, 60_000, 'the next consumer to take the end of stream')).toBe(0);
    expect(await within(producer.exited, 10_000, 'the producer to exit')).toBe(0);
    // In order, every byte once: whole chunks only, no chunk twice.
    expect(first.output.toString() + next.stdout().toString()).toBe(input);
  }, 120_000);

  test('a second SIGTERM cuts the chunk, says how many bytes were not written, and the chunk stays for the next consumer', async () => {
    const { args, input, producer, out, consumer } = await blockedConsumer();
    consumer.child.kill('SIGTERM');
    await sleep(300);
    expect(consumer.child.exitCode).toBe(null);
    consumer.child.kill('SIGTERM');
    expect(await within(consumer.exited, 5000, 'the second signal to end the consumer')).toBe(143);
    const lines = consumer.stderr().split('\n').filter((line) => line !== '');
    expect(lines).toHaveLength(1);
    const match = /(\d+) of the (\d+) bytes of the chunk being written were not written; the chunk stays on the bus for the next consumer/.exec(lines[0]!);
    expect(match, lines[0]).not.toBe(null);
    const [unwritten, size] = [Number(match![1]), Number(match![2])];
    expect(unwritten).toBeGreaterThan(0);
    expect(size).toBeLessThanOrEqual(10_000);
    const written = size - unwritten;
    const first = out.drain().toString();

    // The rest through a TypeScript consumer: a bash one takes a loaded machine minutes for 130 chunks.
    const next = filebus([...args, 'consumer'], { stdin: 'ignore' });
    expect(await within(next.exited, 60_000, 'the next consumer to take the end of stream')).toBe(0);
    expect(await within(producer.exited, 10_000, 'the producer to exit')).toBe(0);
    const rest = next.stdout().toString();
    // The cut piece is the start of the chunk the next consumer takes whole: at least once, nothing lost.
    const piece = first.slice(first.length - written);
    expect(rest.startsWith(piece)).toBe(true);
    expect(first.slice(0, first.length - written) + rest).toBe(input);
  }, 120_000);
});

describe.each(impls)('%s multicast consumer stopped while its output is full', (impl) => {
  test('first SIGTERM: the chunk it began is written whole, so its output ends with a whole record', async () => {
    const dir = tempDir();
    const args = ['--filename', path.join(dir, 'bus'), '--block-size', '10000'];
    const out = fifo(dir, 'out');
    const consumer = filebus([...args, 'consumer'], { impl, stdin: 'ignore', stdout: out.fd });
    // One record a chunk, each 10,000 bytes: a torn record shows as a short line.
    const record = (i: number) => `${String(i).padStart(6, '0')}${'x'.repeat(9993)}\n`;
    const producer = filebus([...args, 'producer', '--lines']);
    producer.child.stdin!.on('error', () => {});
    let i = 0;
    const feed = setInterval(() => producer.child.stdin!.write(record(i++)), 5);
    try {
      await until(() => blockedOnFullPipe(consumer.child.pid!), 20_000, 'the consumer to block on its full output');
    } finally {
      clearInterval(feed);
      producer.child.stdin!.end();
    }
    consumer.child.kill('SIGTERM');
    const { status, output } = await drainUntilExit(consumer, out);
    expect(status).toBe(143);
    expect(consumer.stderr()).toBe('');
    const lines = output.toString().split('\n');
    expect(lines.pop()).toBe('');
    expect(lines.length).toBeGreaterThan(6);
    for (const line of lines) expect(line).toMatch(/^\d{6}x{9993}$/);
  });
});
