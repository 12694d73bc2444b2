/**
 * Consumers. Multicast mode lives here; back-pressure mode is in
 * backpressure.ts. `consume` drives either with a callback that hands each
 * chunk on; `createConsumer` wraps it as a Readable of Buffers.
 */
import { Readable, addAbortSignal } from 'node:stream';
import { type Deliver, consumeQueue } from './backpressure.js';
import { type Bus, openBus } from './bus/open.js';
import type { BusOptions } from './options.js';
import { ScratchBuffer, currentIdentity, readChunk } from './bus/read.js';
import { busError } from './errors.js';
import { ENOENT, RawStat, close, errno, errnoError, openForReading, readInto } from './sys/files.js';

export type { Deliver } from './backpressure.js';

export interface ConsumeOptions extends BusOptions {
  /**
   * Read every chunk into one reused buffer: the Buffer passed to `deliver`
   * is then valid only until its promise settles. Saves an allocation per
   * chunk (and the memory awaiting collection) for callers that write the
   * chunk out and let go of it.
   */
  reuseBuffers?: boolean;
}

/**
 * Reads the bus until the end-of-stream chunk (back-pressure mode) or until
 * `options.signal` aborts (it then rejects with the abort reason). Each
 * chunk is passed to `deliver`, and the next is not looked at until that
 * promise settles: a multicast consumer then skips to the newest chunk, so
 * a slow reader costs missed chunks, never memory.
 */
export async function consume(options: ConsumeOptions, deliver: Deliver): Promise<void> {
  const bus = openBus(options, { writes: options.backPressure === true, waitsFor: 'arrival' });
  const scratch = options.reuseBuffers ? new ScratchBuffer() : undefined;
  try {
    if (bus.options.backPressure) await consumeQueue(bus, deliver, options.signal, scratch);
    else await consumeMulticast(bus, deliver, options.signal, scratch);
  } finally {
    bus.close();
  }
}

async function consumeMulticast(bus: Bus, deliver: Deliver, signal?: AbortSignal, scratch?: ScratchBuffer): Promise<never> {
  const source = new LatestChunk(bus.options.paths.file, scratch);
  const next = () => source.next();
  for (;;) {
    signal?.throwIfAborted();
    // The hot path stays synchronous (wait, read, write) while it can; the
    // event loop gets a turn when the watcher says so.
    const chunk = bus.watcher.poll(next) ?? (await bus.watcher.until(next, signal));
    const delivered = deliver(chunk);
    if (delivered) await delivered;
  }
}

/**
 * Where a multicast consumer's chunks come from: on each wake-up, `next`
 * says synchronously what to deliver, or undefined for nothing new. Its
 * system calls go straight through koffi (src/sys/files.ts); whatever is
 * not routine is handed to the node:fs code in read.ts, which reports it.
 */
export class LatestChunk {
  readonly #file: string;
  readonly #scratch: ScratchBuffer | undefined;
  /** `F` as last looked at, as opened, and as last delivered. */
  readonly #seen = new RawStat();
  readonly #opened = new RawStat();
  readonly #last = new RawStat();

  constructor(file: string, scratch?: ScratchBuffer) {
    this.#file = file;
    this.#scratch = scratch;
  }

  next(): Buffer | undefined {
    const file = this.#file;
    if (!this.#seen.ofPath(file)) {
      if (errno() === ENOENT) return undefined;
      // Let node:fs find the same failure and word it.
      return this.#slowly();
    }
    if (!this.#seen.regular) return this.#slowly();
    if (this.#seen.sameFile(this.#last)) return undefined;
    // No lock: the rename guarantees a whole chunk, and not locking means a
    // multicast consumer never slows producers down.
    const fd = openForReading(file);
    if (fd < 0) return errno() === ENOENT ? undefined : this.#slowly();
    let data: Buffer;
    try {
      if (!this.#opened.ofFd(fd) || !this.#opened.regular) return this.#slowly();
      if (this.#opened.sameFile(this.#last)) return undefined;
      data = readAll(fd, this.#opened.size, file, this.#scratch);
    } finally {
      close(fd);
    }
    this.#last.copyFrom(this.#opened);
    // An empty chunk is a back-pressure end marker seen by an eavesdropper: nothing to pass on.
    return data.length > 0 ? data : undefined;
  }

  /** The node:fs path, for what is not routine: it throws the error to report, or reads the chunk. */
  #slowly(): Buffer | undefined {
    currentIdentity(this.#file);
    const chunk = readChunk(this.#file, this.#scratch);
    this.#last.ofPath(this.#file);
    return chunk && chunk.data.length > 0 ? chunk.data : undefined;
  }
}

/** Published files are never written again: the size from fstat is the size to read. */
function readAll(fd: number, size: number, file: string, scratch?: ScratchBuffer): Buffer {
  const buffer = scratch ? scratch.get(size) : Buffer.allocUnsafe(size);
  let length = 0;
  while (length < size) {
    const n = readInto(fd, buffer, length);
    if (n < 0) throw busError('read', file, errnoError(errno()));
    if (n === 0) break;
    length += n;
  }
  return length === size ? buffer : buffer.subarray(0, length);
}

/**
 * The bus as a Readable of Buffers, one per chunk (`for await` works). In
 * back-pressure mode a chunk is removed from the bus when the reader takes
 * it from the stream; the stream ends after the end-of-stream chunk.
 */
export function createConsumer(options: BusOptions): Readable {
  const stop = new AbortController();
  let taken: (() => void) | undefined;
  let refused: ((error: Error) => void) | undefined;
  let running = false;

  const deliver: Deliver = (chunk) =>
    new Promise<void>((resolve, reject) => {
      taken = resolve;
      refused = reject;
      stream.push(chunk);
    });

  const stream = new Readable({
    objectMode: true,
    // One chunk at a time: the next read is the reader's acknowledgement.
    highWaterMark: 1,
    read() {
      if (!running) {
        running = true;
        consume({ ...options, signal: stop.signal }, deliver).then(
          () => stream.push(null),
          (error: unknown) => {
            if (!stop.signal.aborted) stream.destroy(error as Error);
          },
        );
        return;
      }
      const resolve = taken;
      taken = refused = undefined;
      resolve?.();
    },
    destroy(error, callback) {
      stop.abort(error ?? undefined);
      refused?.(error ?? new Error('consumer stream destroyed'));
      taken = refused = undefined;
      callback(error);
    },
  });
  if (options.signal) addAbortSignal(options.signal, stream);
  return stream;
}
