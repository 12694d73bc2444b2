/**
 * Back-pressure mode, the consumer's side (PROTOCOL.md, "Back-pressure
 * mode"): a lossless work queue with one slot, `F`. A consumer takes `F`
 * under the lock, hands it on, and only then removes it, so a consumer that
 * dies or whose output breaks leaves the chunk for the next one. The
 * producer's side is `publish` with `backPressure` set, plus the empty
 * end-of-stream chunk (see producer.ts).
 */
import fs from 'node:fs';
import { type Bus } from './core/bus.js';
import { chunkPresent } from './core/checks.js';
import { busError, errnoCode } from './errors.js';
import { type Chunk, type ScratchBuffer, readChunk } from './core/read.js';
import { StreamEnds } from './ext/ends/stream-ends.js';
import { BUSY, untilFree } from './core/wait.js';

/**
 * What a consumer does with a chunk; resolves once the chunk is safely
 * handed on. A deliver that finishes synchronously may return nothing.
 */
export type Deliver = (chunk: Buffer) => Promise<void> | void;

/**
 * Takes chunks one at a time until the end-of-stream chunk, or with
 * `producers` > 1 until the stream's last one (see bus/ends.ts).
 */
export async function consumeQueue(bus: Bus, deliver: Deliver, signal?: AbortSignal, scratch?: ScratchBuffer): Promise<void> {
  const { file } = bus.options.paths;
  const ends = bus.options.producers > 1 ? await joinStream(bus, signal) : undefined;
  try {
    for (;;) {
      const chunk = await take(bus, signal, scratch, ends);
      // Ended by the last end marker, which another consumer took.
      if (chunk === undefined) return;
      const { data } = chunk;
      let last = data.length === 0;
      try {
        // An empty chunk marks the end of a stream; removing it tells the
        // producer (and any other consumer) it was seen.
        if (data.length > 0) {
          const delivered = deliver(data);
          if (delivered) await delivered;
        }
        else if (ends) last = ends.count(chunk.identity);
        remove(file);
      } finally {
        bus.lock.release();
      }
      if (last) return;
    }
  } finally {
    ends?.close();
  }
}

async function joinStream(bus: Bus, signal?: AbortSignal): Promise<StreamEnds> {
  await bus.lock.acquire(bus.watcher, signal);
  try {
    return new StreamEnds(bus.options.paths.ends, bus.options.producers);
  } finally {
    bus.lock.release();
  }
}

/**
 * Waits for `F` and returns its bytes with the lock held; undefined (lock
 * not held) when `ends` says the stream has ended.
 */
async function take(bus: Bus, signal?: AbortSignal, scratch?: ScratchBuffer, ends?: StreamEnds): Promise<Chunk | undefined> {
  const look = () => tryTake(bus, scratch, ends);
  // BUSY: another consumer is taking this chunk, or the producer is
  // between its rename and its unlock; queueing on the lock would only
  // crowd out the producer, so untilFree looks again after a back-off.
  const found = await untilFree(bus.watcher, look, signal);
  return found === ENDED ? undefined : found;
}

const ENDED = Symbol('stream ended');

/**
 * One look at the bus, synchronous (the hot loop's probe): the chunk's
 * bytes with the lock held, BUSY when another process holds the lock,
 * ENDED when `ends` says the stream has ended, undefined when there is no
 * chunk yet.
 */
function tryTake(bus: Bus, scratch?: ScratchBuffer, ends?: StreamEnds): Chunk | typeof BUSY | typeof ENDED | undefined {
  const { file } = bus.options.paths;
  if (!chunkPresent(file)) {
    // With a shared count, the end may come from another consumer while no chunk does.
    return ends !== undefined && bus.lock.tryAcquire() && endedLocked(bus, ends) ? ENDED : undefined;
  }
  if (!bus.lock.tryAcquire()) return BUSY;
  let chunk;
  try {
    // A chunk published after our stream ended belongs to the next run's consumers.
    if (ends?.ended()) {
      bus.lock.release();
      return ENDED;
    }
    chunk = readChunk(file, scratch, bus.fileSystem.shared);
  } catch (error) {
    bus.lock.release();
    throw error;
  }
  try {
    // An end marker counted by a consumer that died before removing it:
    // counted once, so now only removed (its count may have ended the
    // stream: then the next look says so).
    if (chunk !== undefined && chunk.data.length === 0 && ends?.counted(chunk.identity)) {
      remove(file);
      chunk = undefined;
    }
  } catch (error) {
    bus.lock.release();
    throw error;
  }
  // Another consumer took it between our check and the lock.
  if (chunk !== undefined) return chunk;
  bus.lock.release();
  return undefined;
}

/** With the lock just taken: whether the stream has ended; releases the lock. */
function endedLocked(bus: Bus, ends: StreamEnds): boolean {
  try {
    return ends.ended();
  } finally {
    bus.lock.release();
  }
}

function remove(file: string): void {
  try {
    fs.unlinkSync(file);
  } catch (error) {
    if (errnoCode(error) !== 'ENOENT') throw busError('remove', file, error);
  }
}
