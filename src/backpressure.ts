/**
 * Back-pressure mode, the consumer's side (PROTOCOL.md, "Back-pressure
 * mode"): a lossless work queue with one slot, `F`. A consumer takes `F`
 * under the lock, hands it on, and only then removes it, so a consumer that
 * dies or whose output breaks leaves the chunk for the next one. The
 * producer's side is `publish` with `backPressure` set, plus the empty
 * end-of-stream chunk (see producer.ts).
 */
import fs from 'node:fs';
import type { Bus } from './bus/open.js';
import { busError, errnoCode } from './errors.js';
import { type ScratchBuffer, readChunk } from './bus/read.js';

/** First retry after finding the lock busy; doubles up to the poll interval. */
const FIRST_BACKOFF_MS = 0.5;

/**
 * What a consumer does with a chunk; resolves once the chunk is safely
 * handed on. A deliver that finishes synchronously may return nothing.
 */
export type Deliver = (chunk: Buffer) => Promise<void> | void;

/** Takes chunks one at a time until the end-of-stream chunk. */
export async function consumeQueue(bus: Bus, deliver: Deliver, signal?: AbortSignal, scratch?: ScratchBuffer): Promise<void> {
  const { file } = bus.options.paths;
  for (;;) {
    const data = await take(bus, signal, scratch);
    try {
      // An empty chunk marks the end of the stream; removing it tells the
      // producer (and any other consumer) it was seen.
      if (data.length > 0) {
        const delivered = deliver(data);
        if (delivered) await delivered;
      }
      remove(file);
    } finally {
      bus.lock.release();
    }
    if (data.length === 0) return;
  }
}

/** Waits for `F` and returns its bytes with the lock held. */
async function take(bus: Bus, signal?: AbortSignal, scratch?: ScratchBuffer): Promise<Buffer> {
  const look = () => tryTake(bus, scratch);
  for (let backoff = FIRST_BACKOFF_MS; ; backoff *= 2) {
    signal?.throwIfAborted();
    const found = bus.watcher.poll(look) ?? (await bus.watcher.until(look, signal));
    if (found !== BUSY) return found;
    // The lock is busy: another consumer is taking this chunk, or the
    // producer is between its rename and its unlock. Queueing on the lock
    // would only crowd out the producer; no notification marks the lock's
    // release (the chunk's removal does, for watchers that wait for it),
    // so look again soon, then less and less often.
    await bus.watcher.nextHint(signal, backoff);
  }
}

const BUSY = Symbol('lock busy');

/**
 * One look at the bus: the chunk's bytes with the lock held, BUSY when
 * another process holds the lock, undefined when there is no chunk.
 */
function tryTake(bus: Bus, scratch?: ScratchBuffer): Buffer | typeof BUSY | undefined {
  const { file } = bus.options.paths;
  if (!fs.existsSync(file)) return undefined;
  if (!bus.lock.tryAcquire()) return BUSY;
  let chunk;
  try {
    chunk = readChunk(file, scratch, bus.fileSystem.shared);
  } catch (error) {
    bus.lock.release();
    throw error;
  }
  // Another consumer took it between our check and the lock.
  if (chunk !== undefined) return chunk.data;
  bus.lock.release();
  return undefined;
}

function remove(file: string): void {
  try {
    fs.unlinkSync(file);
  } catch (error) {
    if (errnoCode(error) !== 'ENOENT') throw busError('remove', file, error);
  }
}
