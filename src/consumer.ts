/**
 * Consumers. Multicast mode lives here; back-pressure mode is in
 * backpressure.ts. `consume` drives either with a callback that hands each
 * chunk on; `createConsumer` wraps it as a Readable of Buffers.
 */
import { Readable, addAbortSignal } from 'node:stream';
import { type Deliver, consumeQueue } from './backpressure.js';
import { type Bus, type RunSettings, openBus } from './core/bus.js';
import { FileCursor } from './core/cursor.js';
import { refuseLink } from './core/checks.js';
import { historyTakeOver, type MissedChunks } from './ext/history/history.js';
import { checkGroupOptions } from './ext/groups/name.js';
import { consumeGroup } from './ext/groups/member.js';
import type { BusOptions } from './options.js';
import { ScratchBuffer } from './core/read.js';
import { consumeClaimed } from './claimed.js';
import type { ClaimedChunk } from './core/extension.js';

export type { Deliver } from './backpressure.js';
export type { MissedChunks } from './ext/history/history.js';

export interface ConsumeOptions extends BusOptions {
  /**
   * Read every chunk into one reused buffer: the Buffer passed to `deliver`
   * is then valid only until its promise settles. Saves an allocation per
   * chunk (and the memory awaiting collection) for callers that write the
   * chunk out and let go of it.
   */
  reuseBuffers?: boolean;
  /**
   * Multicast on a bus with history: told of chunks that left the window
   * before this consumer read them, before the chunk that follows them.
   */
  onMissed?: (missed: MissedChunks) => void;
  /**
   * Multicast on a bus with history: be a member of this durable group
   * (docs/protocol.md, "Extension: groups"). The group's members share its
   * chunks, each to one of them, and it resumes where it stopped; a chunk
   * is delivered once `deliver`'s promise resolves.
   */
  group?: string;
  /**
   * Back pressure, or with `group`: claim each chunk and call `deliver` on
   * up to `jobs` chunks at once (docs/protocol.md, "Extension: claims",
   * "Extension: groups"). A chunk leaves the bus (the group) when its
   * `deliver` resolves; a rejection is a failed attempt. Setting `jobs` or
   * `retries` turns claims on. Default 1.
   */
  jobs?: number;
  /**
   * With claims: attempts in all per chunk before it moves to the dead
   * letters: `F.dead/`, or `F.groups/<group>/dead/` with `group`. Default 3.
   */
  retries?: number;
  /** With claims: one line per failed attempt (which chunk, why, where it went). Default: `log`. */
  onFailure?: (line: string) => void;
}

/**
 * Reads the bus until the end-of-stream chunk (back-pressure mode) or until
 * `options.signal` aborts (it then rejects with the abort reason). Each
 * chunk is passed to `deliver`, and the next is not looked at until that
 * promise settles: a multicast consumer then skips to the newest chunk, so
 * a slow reader costs missed chunks, never memory.
 */
export function consume(options: ConsumeOptions, deliver: Deliver): Promise<void> {
  return consumeWith(options, deliver, {});
}

/**
 * `consume` with the process's RunSettings: the command's entry point
 * (bin/filebus.ts). Not exported by the library.
 */
export async function consumeWith(options: ConsumeOptions, deliver: Deliver, settings: RunSettings): Promise<void> {
  if (options.group !== undefined) checkGroupOptions(options);
  const claimed = options.jobs !== undefined || options.retries !== undefined;
  // Jobs run on the event loop: a wait that blocks the thread would hold them up.
  const bus = openBus(options, { writes: options.backPressure === true, waitsFor: 'arrival' }, claimed ? { ...settings, blockingWait: false } : settings);
  // No role follows a link at F.history, history reader or not.
  refuseLink(bus.options.paths.history);
  const scratch = options.reuseBuffers ? new ScratchBuffer({ collect: bus.settings.blockingWait }) : undefined;
  try {
    if (claimed) {
      const run = async (chunk: ClaimedChunk) => {
        await deliver(chunk.data);
        return undefined;
      };
      const member = { replay: bus.options.replay, sizeMayBeStale: bus.fileSystem.shared, onMissed: options.onMissed, log: bus.options.log };
      await consumeClaimed(bus, run, { jobs: options.jobs, retries: options.retries, signal: options.signal, report: options.onFailure ?? bus.options.log, group: options.group, member });
    } else if (bus.options.backPressure) await consumeQueue(bus, deliver, options.signal, scratch);
    else if (options.group !== undefined) await consumeGroup(bus, options.group, deliver, { replay: bus.options.replay, scratch, sizeMayBeStale: bus.fileSystem.shared, onMissed: options.onMissed, log: bus.options.log, signal: options.signal });
    else await consumeMulticast(bus, deliver, options, scratch);
  } finally {
    bus.close();
  }
}

/**
 * No lock: the rename guarantees a whole chunk, and not locking means a
 * multicast consumer never slows producers down. The cursor reads the
 * bus's history when it has one, and `F` by its identity otherwise
 * (src/ext/history/); empty chunks (back-pressure end markers seen by an
 * eavesdropper) are not passed on.
 */
async function consumeMulticast(bus: Bus, deliver: Deliver, options: ConsumeOptions, scratch?: ScratchBuffer): Promise<never> {
  const sizeMayBeStale = bus.fileSystem.shared;
  // F alone until a chunk with history shows up; then the history's cursor reads on.
  // The takeover is made before the first look at F: where it begins depends on whether the history was there.
  const takeOver = historyTakeOver(bus.options.paths, { replay: bus.options.replay, scratch, sizeMayBeStale, onMissed: options.onMissed, log: bus.options.log });
  const cursor = new FileCursor(bus.options.paths.file, { scratch, sizeMayBeStale, takeOver });
  const next = () => cursor.next();
  try {
    for (let afterDelivery = false; ; afterDelivery = true) {
      options.signal?.throwIfAborted();
      // The hot path stays synchronous (wait, read, write) while it can; the
      // event loop gets a turn when the watcher says so. After a delivery,
      // any change since the read raised an event, so the loop waits before
      // it looks again, unless the cursor has older entries still to read.
      const waitFirst = afterDelivery && !cursor.behind;
      const chunk = bus.watcher.poll(next, { waitFirst }) ?? (await bus.watcher.until(next, options.signal));
      const delivered = deliver(chunk);
      if (delivered) await delivered;
    }
  } finally {
    // The history's cursor holds a descriptor of F.history: a library consumer that stops lets it go.
    cursor.close();
  }
}

/**
 * The bus as a Readable of Buffers, one per chunk (`for await` works). In
 * back-pressure mode a chunk is removed from the bus when the reader takes
 * it from the stream; the stream ends after the end-of-stream chunk. On a
 * multicast bus with history, the stream emits `'missed'` with a
 * `MissedChunks` for chunks that left the window before it read them.
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
        consume({ ...options, signal: stop.signal, onMissed: (missed) => stream.emit('missed', missed) }, deliver).then(
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
