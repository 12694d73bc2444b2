/**
 * Producers: bytes in, chunks of at most `blockSize` published on the bus.
 *
 * Nothing is held back waiting for more input: every write is published at
 * once, so latency is the cost of one publish, not a timer. Chunks grow to
 * full blocks on their own when input arrives faster than it is published,
 * because the stream then hands over its queued writes together (`_writev`).
 */
import fs from 'node:fs';
import { Writable, addAbortSignal } from 'node:stream';
import { type Bus, openBus } from './bus.js';
import { busError } from './errors.js';
import type { BusOptions } from './options.js';
import { publish } from './publish.js';

const END_OF_STREAM = Buffer.alloc(0);

export class Producer extends Writable {
  readonly #bus: Bus;
  readonly #stop = new AbortController();
  #endOfStream = true;
  readonly #endMarker = new AbortController();

  constructor(options: BusOptions) {
    super({ highWaterMark: options.blockSize ?? undefined });
    this.#bus = openBus(options, { writes: true });
    if (options.signal) addAbortSignal(options.signal, this);
  }

  /** Largest chunk this producer publishes, in bytes. */
  get blockSize(): number {
    return this.#bus.options.blockSize;
  }

  /**
   * Publishes everything written so far and finishes without the
   * back-pressure end-of-stream chunk: for a producer stopped by a signal,
   * whose input did not end.
   */
  interrupt(): this {
    this.#endOfStream = false;
    // Already finishing: the end marker may be waiting for the bus; drop it.
    this.#endMarker.abort();
    return this.writableEnded ? this : this.end();
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    this.#publishBlocks(chunk).then(() => callback(), callback);
  }

  override _writev(chunks: Array<{ chunk: Buffer }>, callback: (error?: Error | null) => void): void {
    const data = chunks.length === 1 ? chunks[0]!.chunk : Buffer.concat(chunks.map(({ chunk }) => chunk));
    this.#publishBlocks(data).then(() => callback(), callback);
  }

  override _final(callback: (error?: Error | null) => void): void {
    // Back pressure: the empty chunk tells one consumer the stream is over.
    if (!this.#bus.options.backPressure || !this.#endOfStream) return callback();
    publish(this.#bus, END_OF_STREAM, AbortSignal.any([this.#stop.signal, this.#endMarker.signal])).then(
      () => callback(),
      (error: unknown) => callback(this.#endMarker.signal.aborted ? null : (error as Error)),
    );
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    this.#stop.abort(error ?? undefined);
    this.#bus.close();
    callback(error);
  }

  async #publishBlocks(data: Buffer): Promise<void> {
    const { blockSize } = this.#bus.options;
    // An empty write must not publish: in back-pressure mode that would end the stream.
    for (let offset = 0; offset < data.length; offset += blockSize) {
      await publish(this.#bus, data.subarray(offset, offset + blockSize), this.#stop.signal);
    }
  }
}

/** A Writable that publishes what is written to it on the bus. */
export function createProducer(options: BusOptions): Producer {
  return new Producer(options);
}

/**
 * Feeds a file descriptor to a producer in whole blocks: each read(2) asks
 * for `blockSize` bytes and waits for all of them (or end of input), so
 * fixed-size records stay whole, one per chunk. Regular files are read
 * synchronously (they never block for long); anything else, on a worker
 * thread, so signals are still handled while a read waits.
 */
export async function produceBlocks(fd: number, producer: Producer, signal?: AbortSignal): Promise<void> {
  const { blockSize } = producer;
  const regular = fs.fstatSync(fd).isFile();
  // Two buffers in turn: one is being published while the next is read.
  // Reusing them matters for large blocks, where a fresh buffer per block
  // costs a page fault per 4 KiB.
  const buffers = [Buffer.allocUnsafe(blockSize), Buffer.allocUnsafe(blockSize)];
  let published: Promise<void> = Promise.resolve();
  for (let turn = 0; ; turn ^= 1) {
    const block = buffers[turn]!;
    let length = 0;
    while (length < blockSize) {
      signal?.throwIfAborted();
      let n: number;
      try {
        n = regular ? fs.readSync(fd, block, length, blockSize - length, null) : await readAsync(fd, block, length, blockSize - length);
      } catch (error) {
        throw busError('read', 'standard input', error);
      }
      if (n === 0) break;
      length += n;
    }
    // The other buffer is free again once its block is published.
    await published;
    if (length > 0) published = written(producer, block.subarray(0, length));
    if (length < blockSize) return published;
  }
}

function written(producer: Producer, data: Buffer): Promise<void> {
  return new Promise((resolve, reject) => producer.write(data, (error) => (error ? reject(error) : resolve())));
}

function readAsync(fd: number, buffer: Buffer, offset: number, length: number): Promise<number> {
  return new Promise((resolve, reject) => {
    fs.read(fd, buffer, offset, length, null, (error, n) => (error ? reject(error) : resolve(n)));
  });
}
