/**
 * Producers: bytes in, chunks of at most `blockSize` published on the bus.
 *
 * One loop, `produce`, serves the command and the library alike, as
 * `consume` does on the other side: it pulls bytes from an input source
 * into one block-sized buffer, cuts chunks (whole records with `--lines`
 * and `--null`, src/records.ts), publishes them, and at the end of input
 * publishes the back-pressure end-of-stream chunk. The command's source is
 * a file descriptor (`FdSource`); the library's Writable feeds a queue
 * (`QueueSource`). Nothing else queues: a read waits for input or for the
 * hold's deadline, whichever comes first.
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
import { type Bus, type RunSettings, openBus } from './core/bus.js';
import { busError, errnoCode } from './errors.js';
import { type BusOptions, defaults, parseBlockSize } from './options.js';
import { POLLIN, pollEntry, pollMs, waitReadable } from './sys/libc.js';
import { publish } from './core/publish.js';
import { HistoryWriter } from './ext/history/history.js';
import { groupGate } from './ext/groups/groups.js';
import { fullChunk, recordTerminator, wholeRecords } from './records.js';

export type { RunSettings } from './core/bus.js';

const END_OF_STREAM = Buffer.alloc(0);
/** Shortest spacing between multicast chunks that a partial block waits for (capped by --sleep-interval). */
const HOLD_MS = 2;

/** What `InputSource.read` returns besides a count of bytes. */
export const END = -1;
export const TIMEOUT = -2;

/**
 * Where `produce` takes its bytes from. `read` puts bytes into
 * `buffer[offset, buffer.length)` and returns how many (at least one), END
 * at the end of input (or once the input is stopped: no more is taken), or
 * TIMEOUT when `deadline` (a performance.now() time; Infinity for none)
 * passed with nothing read.
 */
export interface InputSource {
  read(buffer: Buffer, offset: number, deadline: number): Promise<number> | number;
}

/** How far a producer has got, for the command's last word on a second signal. */
export interface Progress {
  /** Bytes taken from the input. */
  bytesRead: number;
  /** Bytes of the chunks published. */
  bytesPublished: number;
}

export interface ProduceControl {
  /**
   * Aborted: publish the end-of-stream chunk no more (an input stopped by a
   * signal did not end), and drop it if it is already waiting for the bus.
   */
  readonly noEndMarker?: AbortSignal | undefined;
  /** Aborted: give up at once, even a publish waiting for the bus (the producer is destroyed). */
  readonly abort?: AbortSignal | undefined;
  readonly progress?: Progress | undefined;
}

/**
 * The producer loop: reads `source` to its end and publishes it on `bus`
 * in chunks, then (back pressure) the end-of-stream chunk. Every byte read
 * is published, a partial block and a last record without its terminator
 * included, also when the source was stopped.
 */
export async function produce(bus: Bus, source: InputSource, control: ProduceControl = {}): Promise<void> {
  const { blockSize, backPressure, sleepMs, records, log } = bus.options;
  const terminator = recordTerminator(records);
  const holdMs = backPressure ? 0 : Math.min(HOLD_MS, sleepMs);
  // Whole records followed by part of the next: more input is on its way, in either mode.
  const recordHoldMs = Math.min(HOLD_MS, sleepMs);
  const progress = control.progress ?? { bytesRead: 0, bytesPublished: 0 };
  // One buffer for the whole stream: a chunk is written out before publish
  // returns, so the bytes after it move to the front and reading goes on
  // behind them. No garbage per chunk: fresh buffers cost page faults and,
  // at 1 MiB blocks, tens of MiB of memory waiting for the collector.
  const buffer = Buffer.allocUnsafe(blockSize);
  let length = 0;
  let lastPublish = -Infinity;
  let splitNoticed = false;

  const publishFront = async (count: number): Promise<void> => {
    await publish(bus, buffer.subarray(0, count), control.abort);
    lastPublish = performance.now();
    progress.bytesPublished += count;
    buffer.copyWithin(0, count, length);
    length -= count;
  };

  for (let ended = false; ; ) {
    while (length === blockSize) {
      const cut = fullChunk(buffer, blockSize, terminator);
      if (cut.split && !splitNoticed) {
        splitNoticed = true;
        const what = terminator === 0 ? 'a NUL-terminated record' : 'a line';
        log(`${what} longer than --block-size (${blockSize} bytes) was split across chunks; later ones are split without notice`);
      }
      await publishFront(cut.length);
    }
    if (ended) break;
    // With whole records, the last one may still lack its terminator: it
    // waits for the rest of it (or the end of input), never on its own deadline.
    let deadline = Infinity;
    const whole = length === 0 ? 0 : wholeRecords(buffer.subarray(0, length), terminator);
    if (whole > 0) {
      deadline = lastPublish + (whole < length ? recordHoldMs : holdMs);
      if (performance.now() >= deadline) {
        // Input already there goes into this chunk first (coalesced into
        // full blocks): the hold only decides how long to wait for more,
        // so how busy the machine is does not change where chunks end.
        const n = await source.read(buffer, length, -Infinity);
        if (n === END) ended = true;
        else if (n > 0) {
          length += n;
          progress.bytesRead += n;
        } else await publishFront(whole);
        continue;
      }
    }
    const n = await source.read(buffer, length, deadline);
    if (n === END) ended = true;
    else if (n > 0) {
      length += n;
      progress.bytesRead += n;
    }
  }
  // The end of input (or of reading): the rest, a partial record included.
  // An empty rest must not publish: in back-pressure mode that would end the stream.
  if (length > 0) await publishFront(length);
  if (!backPressure || control.noEndMarker?.aborted) return;
  // Back pressure: the empty chunk tells one consumer the stream is over.
  const stops = [control.noEndMarker, control.abort].filter((s): s is AbortSignal => s !== undefined);
  await publish(bus, END_OF_STREAM, stops.length > 0 ? AbortSignal.any(stops) : undefined).catch((error: unknown) => {
    if (!control.noEndMarker?.aborted) throw error;
  });
}

/** Opens the bus for a producer: the history writer, if asked for, runs in each publish. */
export function openProducerBus(options: BusOptions, settings: RunSettings = {}): Bus {
  return openBus(
    options,
    {
      writes: true,
      waitsFor: options.backPressure ? 'removal' : 'nothing',
      // Opened lazily, under the lock, by the first publish.
      publishHook: ({ paths, history, log }) => groupGate(paths, history, options.waitForGroups, history > 0 ? new HistoryWriter(paths, history) : undefined, log),
    },
    settings,
  );
}

// --- The command's source: a file descriptor ----------------------------------------

/** Longest a wait for input lasts before looking at the stop signal again. */
const READ_POLL_MS = 100;

/**
 * Reads a file descriptor (the command's stdin). A regular file, and any
 * input with `wholeBlocks` (`--blocking-read`), is read until the buffer
 * is full, so fixed-size records stay one per chunk; otherwise each read
 * takes what the input has. A pipe or terminal is read only once poll(2)
 * says it has data (at once when it already has, on a worker thread when
 * it has not), so no read blocks the event loop and signals are handled
 * while input is silent. Once `stop` aborts, it reads nothing more: what
 * is still in the input stays there for another reader.
 */
export class FdSource implements InputSource {
  readonly #fd: number;
  readonly #regular: boolean;
  readonly #wholeBlocks: boolean;
  readonly #stop: AbortSignal | undefined;
  readonly #ready: Buffer;

  constructor(fd: number, { wholeBlocks = false, stop }: { wholeBlocks?: boolean; stop?: AbortSignal } = {}) {
    this.#fd = fd;
    this.#regular = fs.fstatSync(fd).isFile();
    this.#wholeBlocks = wholeBlocks || this.#regular;
    this.#stop = stop;
    this.#ready = pollEntry(fd, POLLIN);
  }

  async read(buffer: Buffer, offset: number, deadline: number): Promise<number> {
    let length = offset;
    for (;;) {
      if (this.#stop?.aborted) return length > offset ? length - offset : END;
      const n = this.#regular ? this.#readNow(buffer, length) : await this.#readWhenReady(buffer, length, this.#wholeBlocks ? Infinity : deadline);
      if (n === TIMEOUT) return TIMEOUT;
      if (n === 0 || n === END) return length > offset ? length - offset : END;
      length += n;
      if (!this.#wholeBlocks || length === buffer.length) return length - offset;
    }
  }

  #readNow(buffer: Buffer, offset: number): number {
    try {
      return fs.readSync(this.#fd, buffer, offset, buffer.length - offset, null);
    } catch (error) {
      throw busError('read', 'standard input', error);
    }
  }

  /** Bytes read (0 at end of input), END once stopped, TIMEOUT at the deadline. */
  async #readWhenReady(buffer: Buffer, offset: number, deadline: number): Promise<number> {
    for (;;) {
      // Data waiting is the usual case of a busy pipe: read it without a trip to a worker thread.
      this.#ready.writeInt16LE(0, 6);
      let ready = pollMs(this.#ready, 1, 0) > 0;
      if (!ready) {
        const wait = Math.min(READ_POLL_MS, deadline - performance.now());
        if (wait <= 0) return TIMEOUT;
        ready = await waitReadable(this.#fd, Math.max(1, Math.ceil(wait)));
      }
      if (this.#stop?.aborted) return END;
      if (!ready) continue;
      try {
        return fs.readSync(this.#fd, buffer, offset, buffer.length - offset, null);
      } catch (error) {
        // stdin shared in non-blocking mode with another reader that got there first.
        if (errnoCode(error) !== 'EAGAIN') throw busError('read', 'standard input', error);
      }
    }
  }
}

/**
 * The command's producer: reads `fd` until its end, or until `stop`
 * aborts (then publishes what it read and no end-of-stream chunk).
 * `settings` are the command's own (RunSettings); not for the library.
 */
export async function produceFromFd(options: BusOptions, fd: number, settings: RunSettings, stop: AbortSignal, progress: Progress): Promise<void> {
  const bus = openProducerBus(options, settings);
  try {
    await produce(bus, new FdSource(fd, { wholeBlocks: bus.options.blockingRead, stop }), { noEndMarker: stop, progress });
  } finally {
    bus.close();
  }
}

// --- The library's source: a Writable -------------------------------------------------

type Callback = (error?: Error | null) => void;

/**
 * What the Writable hands the loop: its chunks in order, each one's
 * callback called once the loop has copied it (the writer may then reuse
 * its buffer), and the end.
 */
class QueueSource implements InputSource {
  readonly #chunks: Array<{ data: Buffer; done: Callback }> = [];
  /** Bytes of the first chunk already taken. */
  #taken = 0;
  #ended = false;
  #wake: (() => void) | undefined;

  push(data: Buffer, done: Callback): void {
    if (data.length === 0) return done();
    this.#chunks.push({ data, done });
    this.#wake?.();
  }

  end(): void {
    this.#ended = true;
    this.#wake?.();
  }

  /** The loop has stopped: writes still queued fail with `error`. */
  fail(error: Error): void {
    for (const { done } of this.#chunks.splice(0)) done(error);
    this.end();
  }

  async read(buffer: Buffer, offset: number, deadline: number): Promise<number> {
    for (;;) {
      const first = this.#chunks[0];
      if (first) {
        const n = first.data.copy(buffer, offset, this.#taken);
        this.#taken += n;
        if (this.#taken === first.data.length) {
          this.#chunks.shift();
          this.#taken = 0;
          first.done();
        }
        return n;
      }
      if (this.#ended) return END;
      const wait = deadline - performance.now();
      if (wait <= 0) return TIMEOUT;
      await new Promise<void>((resolve) => {
        const timer = Number.isFinite(wait) ? setTimeout(done, wait) : undefined;
        function done() {
          clearTimeout(timer);
          resolve();
        }
        this.#wake = done;
      });
      this.#wake = undefined;
    }
  }
}

export class Producer extends Writable {
  readonly #bus: Bus;
  readonly #source = new QueueSource();
  readonly #abort = new AbortController();
  readonly #noEndMarker = new AbortController();
  readonly #progress: Progress = { bytesRead: 0, bytesPublished: 0 };
  readonly #loop: Promise<void>;

  constructor(options: BusOptions, settings: RunSettings = {}) {
    // Checked before the stream sees it, so a bad size is our UsageError, not Node's.
    super({ highWaterMark: parseBlockSize(options.blockSize ?? defaults.blockSize) });
    this.#bus = openProducerBus(options, settings);
    this.#loop = produce(this.#bus, this.#source, { noEndMarker: this.#noEndMarker.signal, abort: this.#abort.signal, progress: this.#progress });
    // A failed publish ends the stream with its error, whether or not a write is waiting.
    this.#loop.catch((error: unknown) => {
      this.#source.fail(error as Error);
      if (!this.#abort.signal.aborted) this.destroy(error as Error);
    });
    if (options.signal) addAbortSignal(options.signal, this);
  }

  /** Largest chunk this producer publishes, in bytes. */
  get blockSize(): number {
    return this.#bus.options.blockSize;
  }

  /** Bytes of all the chunks this producer has published so far. */
  get bytesPublished(): number {
    return this.#progress.bytesPublished;
  }

  /**
   * Publishes everything written so far and finishes without the
   * back-pressure end-of-stream chunk: for a producer whose input did not end.
   */
  interrupt(): this {
    this.#noEndMarker.abort();
    return this.writableEnded ? this : this.end();
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: Callback): void {
    this.#source.push(chunk, callback);
  }

  override _writev(chunks: Array<{ chunk: Buffer }>, callback: Callback): void {
    const last = chunks.length - 1;
    chunks.forEach(({ chunk }, i) => this.#source.push(chunk, i === last ? callback : () => {}));
  }

  override _final(callback: Callback): void {
    this.#source.end();
    this.#loop.then(() => callback(), callback);
  }

  override _destroy(error: Error | null, callback: Callback): void {
    this.#abort.abort(error ?? undefined);
    this.#source.fail(error ?? new Error('producer destroyed'));
    this.#bus.close();
    callback(error);
  }
}

/** A Writable that publishes what is written to it on the bus. */
export function createProducer(options: BusOptions): Producer {
  return new Producer(options);
}
