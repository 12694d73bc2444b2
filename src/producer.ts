/**
 * Producers: bytes in, chunks of at most `blockSize` published on the bus.
 *
 * Input is published as it arrives: full blocks at once, and a partial
 * block at once too unless the previous chunk went out less than
 * `HOLD_MS` ago. Holding a fast trickle for that moment lets it share a
 * chunk, so multicast consumers get time to read each chunk before the
 * next replaces it (at 1000 lines/s, one line per chunk lost 5-8 % of
 * lines even to a single consumer), while input that arrives slower than
 * that never waits at all.
 */
import fs from 'node:fs';
import { Writable, addAbortSignal } from 'node:stream';
import { type Bus, openBus } from './core/bus.js';
import { busError, errnoCode } from './errors.js';
import { type BusOptions, defaults, parseBlockSize } from './options.js';
import { waitReadable } from './sys/libc.js';
import { publish } from './core/publish.js';
import { HistoryWriter } from './ext/history/history.js';
import { groupGate } from './ext/groups/groups.js';
import { fullChunk, recordTerminator, wholeRecords } from './records.js';

const END_OF_STREAM = Buffer.alloc(0);
/** Shortest spacing between multicast chunks that a partial block waits for (capped by --sleep-interval). */
const HOLD_MS = 2;

type Callback = (error?: Error | null) => void;

export class Producer extends Writable {
  readonly #bus: Bus;
  readonly #stop = new AbortController();
  readonly #endMarker = new AbortController();
  readonly #holdMs: number;
  /** The byte that ends a record (`--lines`, `--null`); undefined for plain bytes. */
  readonly #terminator: number | undefined;
  /** The hold for whole records followed by part of the next: more input is on its way, in either mode. */
  readonly #recordHoldMs: number;
  #splitNoticed = false;
  /**
   * A partial block waiting for `#holdTimer`, or for the rest of its last
   * record (then with no timer); always shorter than a block.
   */
  #held: Buffer | undefined;
  #holdTimer: NodeJS.Timeout | undefined;
  #lastPublish = -Infinity;
  #bytesPublished = 0;
  /** Publishes run one at a time: those of writes and those of the hold timer. */
  #queue: Promise<void> = Promise.resolve();

  constructor(options: BusOptions) {
    // Checked before the stream sees it, so a bad size is our UsageError, not Node's.
    super({ highWaterMark: parseBlockSize(options.blockSize ?? defaults.blockSize) });
    this.#bus = openBus(options, {
      writes: true,
      waitsFor: options.backPressure ? 'removal' : 'nothing',
      // Opened lazily, under the lock, by the first publish.
      publishHook: ({ paths, history, log }) => groupGate(paths, history, options.waitForGroups, history > 0 ? new HistoryWriter(paths, history) : undefined, log),
    });
    this.#holdMs = this.#bus.options.backPressure ? 0 : Math.min(HOLD_MS, this.#bus.options.sleepMs);
    this.#recordHoldMs = Math.min(HOLD_MS, this.#bus.options.sleepMs);
    this.#terminator = recordTerminator(this.#bus.options.records);
    if (options.signal) addAbortSignal(options.signal, this);
  }

  /** Largest chunk this producer publishes, in bytes. */
  get blockSize(): number {
    return this.#bus.options.blockSize;
  }

  /** Bytes of all the chunks this producer has published so far. */
  get bytesPublished(): number {
    return this.#bytesPublished;
  }

  get blockingRead(): boolean {
    return this.#bus.options.blockingRead;
  }

  /**
   * Publishes everything written so far and finishes without the
   * back-pressure end-of-stream chunk: for a producer stopped by a signal,
   * whose input did not end.
   */
  interrupt(): this {
    // No end marker: aborted, it is never published, or dropped if already
    // waiting for the bus (we may be finishing).
    this.#endMarker.abort();
    return this.writableEnded ? this : this.end();
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: Callback): void {
    this.#serially(() => this.#accept([chunk])).then(() => callback(), callback);
  }

  override _writev(chunks: Array<{ chunk: Buffer }>, callback: Callback): void {
    this.#serially(() => this.#accept(chunks.map(({ chunk }) => chunk))).then(() => callback(), callback);
  }

  override _final(callback: Callback): void {
    this.#serially(async () => {
      await this.#publishHeld();
      // Back pressure: the empty chunk tells one consumer the stream is over.
      if (this.#bus.options.backPressure && !this.#endMarker.signal.aborted) {
        await publish(this.#bus, END_OF_STREAM, AbortSignal.any([this.#stop.signal, this.#endMarker.signal])).catch((error: unknown) => {
          if (!this.#endMarker.signal.aborted) throw error;
        });
      }
    }).then(() => callback(), callback);
  }

  override _destroy(error: Error | null, callback: Callback): void {
    clearTimeout(this.#holdTimer);
    this.#stop.abort(error ?? undefined);
    this.#bus.close();
    callback(error);
  }

  #serially(task: () => Promise<void>): Promise<void> {
    const run = this.#queue.then(task);
    this.#queue = run.catch(() => {});
    return run;
  }

  async #accept(chunks: Buffer[]): Promise<void> {
    const { blockSize } = this.#bus.options;
    const parts = this.#held ? [this.#held, ...chunks] : chunks;
    this.#clearHeld();
    const data = parts.length === 1 ? parts[0]! : Buffer.concat(parts);
    let offset = 0;
    while (data.length - offset >= blockSize) {
      const cut = fullChunk(data.subarray(offset), blockSize, this.#terminator);
      if (cut.split) this.#noticeSplit();
      await this.#publish(data.subarray(offset, offset + cut.length));
      offset += cut.length;
    }
    // An empty rest must not publish: in back-pressure mode that would end the stream.
    if (offset === data.length) return;
    const rest = data.subarray(offset);
    // With whole records, the last one may still lack its terminator: it
    // waits for the rest of it (or the end of input), never on its own timer.
    const whole = wholeRecords(rest, this.#terminator);
    const wait = this.#lastPublish + (whole < rest.length ? this.#recordHoldMs : this.#holdMs) - performance.now();
    let kept = rest;
    if (whole > 0 && wait <= 0) {
      await this.#publish(rest.subarray(0, whole));
      kept = rest.subarray(whole);
      if (kept.length === 0) return;
    }
    // A copy: the writer may reuse its buffer once this write is done.
    this.#held = Buffer.from(kept);
    if (whole === 0 || wait <= 0) return;
    this.#holdTimer = setTimeout(() => {
      this.#serially(() => this.#publishHeld(false)).catch((error: unknown) => this.destroy(error as Error));
    }, wait);
  }

  /** Publishes what is held: all of it, or only its whole records (the rest stays held). */
  async #publishHeld(partialRecordToo = true): Promise<void> {
    const held = this.#held;
    this.#clearHeld();
    if (!held) return;
    const length = partialRecordToo ? held.length : wholeRecords(held, this.#terminator);
    if (length > 0) await this.#publish(held.subarray(0, length));
    if (length < held.length) this.#held = held.subarray(length);
  }

  #noticeSplit(): void {
    if (this.#splitNoticed) return;
    this.#splitNoticed = true;
    const what = this.#terminator === 0 ? 'a NUL-terminated record' : 'a line';
    this.#bus.options.log(`${what} longer than --block-size (${this.#bus.options.blockSize} bytes) was split across chunks; later ones are split without notice`);
  }

  #clearHeld(): void {
    clearTimeout(this.#holdTimer);
    this.#holdTimer = undefined;
    this.#held = undefined;
  }

  async #publish(chunk: Buffer): Promise<void> {
    await publish(this.#bus, chunk, this.#stop.signal);
    this.#lastPublish = performance.now();
    this.#bytesPublished += chunk.length;
  }
}

/** A Writable that publishes what is written to it on the bus. */
export function createProducer(options: BusOptions): Producer {
  return new Producer(options);
}

/** How far `produceFrom` has got: bytes taken from its input so far. */
export interface InputProgress {
  bytesRead: number;
}

/**
 * Feeds a file descriptor (the CLI's stdin) to a producer until end of
 * input. Reads go into two buffers in turn, one being published while the
 * next is read, so a long stream makes no garbage: fresh buffers per chunk
 * cost page faults and, at 1 MiB blocks, tens of MiB of memory waiting for
 * the collector.
 *
 * Each read takes what the input has, up to a block, and is published at
 * once; regular files and `blockingRead` wait for whole blocks instead, so
 * fixed-size records stay one per chunk. A pipe or terminal is read only
 * once poll(2) says it has data, so no read ever blocks the event loop and
 * signals are handled while input is silent.
 *
 * When `signal` aborts, it reads nothing more (the rest stays in the input
 * for another reader), and resolves once every byte it did read, a partial
 * block included, has been written to the producer and published: input
 * taken from a pipe is never dropped. The caller then ends the producer
 * (`interrupt()`, as the input did not end).
 */
export async function produceFrom(fd: number, producer: Producer, signal?: AbortSignal, progress: InputProgress = { bytesRead: 0 }): Promise<void> {
  const { blockSize } = producer;
  const regular = fs.fstatSync(fd).isFile();
  const wholeBlocks = regular || producer.blockingRead;
  const buffers = [Buffer.allocUnsafe(blockSize), Buffer.allocUnsafe(blockSize)];
  // Reading stops on the caller's abort, and on a failed publish or a
  // producer destroyed otherwise (a held block's publish fails on a timer,
  // after its write has succeeded), which must not wait for more input.
  const stop = new AbortController();
  const onAbort = () => stop.abort();
  if (signal?.aborted) stop.abort();
  signal?.addEventListener('abort', onAbort, { once: true });
  producer.once('close', onAbort);
  let published: Promise<void> = Promise.resolve();
  try {
    for (let turn = 0, ended = false; !ended; turn ^= 1) {
      const block = buffers[turn]!;
      let length = 0;
      try {
        do {
          if (stop.signal.aborted) {
            ended = true;
            break;
          }
          const n = regular ? readSync(fd, block, length) : await readWhenReady(fd, block, length, stop.signal);
          if (n === 0) ended = true;
          length += n;
          progress.bytesRead += n;
        } while (!ended && wholeBlocks && length < blockSize);
      } catch (error) {
        // Stopped while waiting for input: what is in `block` was read all the same.
        if (!stop.signal.aborted) throw error;
        ended = true;
      }
      // The other buffer is free again once its block is published (this
      // throws if it failed).
      await published;
      if (producer.errored) throw producer.errored;
      if (producer.destroyed) return;
      if (length > 0) {
        published = written(producer, block.subarray(0, length));
        published.catch(onAbort);
      }
    }
    await published;
  } finally {
    signal?.removeEventListener('abort', onAbort);
    producer.off('close', onAbort);
  }
}

function written(producer: Producer, data: Buffer): Promise<void> {
  return new Promise((resolve, reject) => producer.write(data, (error) => (error ? reject(error) : resolve())));
}

function readSync(fd: number, buffer: Buffer, offset: number): number {
  try {
    return fs.readSync(fd, buffer, offset, buffer.length - offset, null);
  } catch (error) {
    throw busError('read', 'standard input', error);
  }
}

/** Longest a wait for input lasts before looking at the abort signal again. */
const READ_POLL_MS = 100;

async function readWhenReady(fd: number, buffer: Buffer, offset: number, signal?: AbortSignal): Promise<number> {
  for (;;) {
    signal?.throwIfAborted();
    if (!(await waitReadable(fd, READ_POLL_MS))) continue;
    try {
      return fs.readSync(fd, buffer, offset, buffer.length - offset, null);
    } catch (error) {
      // stdin shared in non-blocking mode with another reader that got there first.
      if (errnoCode(error) !== 'EAGAIN') throw busError('read', 'standard input', error);
    }
  }
}
