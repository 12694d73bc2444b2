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

/** What a consumer does with a chunk; resolves once the chunk is safely handed on. */
export type Deliver = (chunk: Buffer) => Promise<void>;

/** Takes chunks one at a time until the end-of-stream chunk. */
export async function consumeQueue(bus: Bus, deliver: Deliver, signal?: AbortSignal, scratch?: ScratchBuffer): Promise<void> {
  const { file } = bus.options.paths;
  for (;;) {
    const data = await take(bus, signal, scratch);
    try {
      // An empty chunk marks the end of the stream; removing it tells the
      // producer (and any other consumer) it was seen.
      if (data.length > 0) await deliver(data);
      remove(file);
    } finally {
      bus.lock.release();
    }
    if (data.length === 0) return;
  }
}

/** Waits for `F` and returns its bytes with the lock held. */
async function take(bus: Bus, signal?: AbortSignal, scratch?: ScratchBuffer): Promise<Buffer> {
  const { file } = bus.options.paths;
  for (let backoff = FIRST_BACKOFF_MS; ; backoff *= 2) {
    await bus.watcher.until(() => (fs.existsSync(file) ? true : undefined), signal);
    // The lock is busy: another consumer is taking this chunk, or the
    // producer is between its rename and its unlock. Queueing on the lock
    // would only crowd out the producer; no notification marks the lock's
    // release, so look again soon, then less and less often.
    if (!bus.lock.tryAcquire()) {
      await bus.watcher.nextHint(signal, backoff);
      continue;
    }
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
  }
}

function remove(file: string): void {
  try {
    fs.unlinkSync(file);
  } catch (error) {
    if (errnoCode(error) !== 'ENOENT') throw busError('remove', file, error);
  }
}
