/**
 * A ClaimSource over a back-pressure bus: takes orphaned claims first (a
 * dead consumer's work, a failed attempt given back, a dead letter moved
 * back), then chunks from `F`. Plain consumers (older filebus, the bash
 * tools) keep taking `F` as always; they simply do not claim.
 *
 * End of stream: the consumer that takes the end-of-stream chunk stops
 * taking from `F`, and keeps taking orphans until none of the claims that
 * existed at that moment is left, other than its own: its `undefined`
 * then means that every chunk of the stream has been done (or went to the
 * dead letters), by someone.
 */
import fs from 'node:fs';
import type { Bus } from '../../core/bus.js';
import { chunkPresent } from '../../core/checks.js';
import { BUSY, untilFree } from '../../core/wait.js';
import { busError, errnoCode } from '../../errors.js';
import { StreamEnds } from '../ends/stream-ends.js';
import { type ClaimPaths, HeldClaim, claimFromBus, claimNames, claimPaths, ensureDirectory, parseClaimName, takeOrphan } from './claims.js';
import type { ClaimSource, ClaimedChunk } from '../../core/extension.js';

const END = Symbol('end of stream');

export class BusClaims implements ClaimSource {
  readonly #bus: Bus;
  readonly #paths: ClaimPaths;
  readonly #ends: StreamEnds | undefined;
  /** Ids of the claims this process holds now. */
  readonly #held = new Set<string>();
  readonly #onSettle = (claim: HeldClaim) => this.#held.delete(claim.id);
  /** When the next look for orphans is due (performance.now()). */
  #nextScan = 0;
  /** Set once this consumer's stream has ended: taken here (the ids to wait for), or by another consumer (null). */
  #ended: Set<string> | null | undefined;

  /** `ends`: the shared count of end markers, for `producers` > 1. */
  constructor(bus: Bus, ends?: StreamEnds) {
    this.#bus = bus;
    this.#paths = claimPaths(bus.options.paths.file);
    this.#ends = ends;
    ensureDirectory(this.#paths.claims);
  }

  /** Joins the bus (and its count of end markers, with `producers` > 1). */
  static async open(bus: Bus, signal?: AbortSignal): Promise<BusClaims> {
    if (bus.options.producers <= 1) return new BusClaims(bus);
    await bus.lock.acquire(bus.watcher, signal);
    try {
      return new BusClaims(bus, new StreamEnds(bus.options.paths.ends, bus.options.producers));
    } finally {
      bus.lock.release();
    }
  }

  async take(signal?: AbortSignal): Promise<ClaimedChunk | undefined> {
    const found = await untilFree(this.#bus.watcher, () => this.#look(), signal);
    return found === END ? undefined : found;
  }

  close(): void {
    this.#ends?.close();
  }

  /** One synchronous look: a claim, END, BUSY (the bus lock is held elsewhere) or undefined (nothing yet). */
  #look(): HeldClaim | typeof END | typeof BUSY | undefined {
    const { lock } = this.#bus;
    const now = performance.now();
    const scanDue = now >= this.#nextScan || this.#ended !== undefined;
    const present = this.#ended === undefined && chunkPresent(this.#paths.file);
    if (!scanDue && !present && this.#ends === undefined) return undefined;
    if (!lock.tryAcquire()) return BUSY;
    try {
      if (scanDue) {
        this.#nextScan = now + this.#bus.options.sleepMs;
        const orphan = takeOrphan(this.#paths, this.#onSettle);
        if (orphan) return this.#hold(orphan);
      }
      if (this.#ended === undefined && this.#ends?.ended()) this.#ended = null;
      if (this.#ended !== undefined) return this.#done() ? END : undefined;
      if (!present) return undefined;
      const taken = claimFromBus(this.#paths, this.#onSettle);
      if (taken === undefined || taken instanceof HeldClaim) return taken && this.#hold(taken);
      // The end-of-stream chunk: removed, as a plain consumer removes it;
      // counted once, even when a consumer killed before its removal counted it already.
      const { endOfStream } = taken;
      const last = this.#ends ? !this.#ends.counted(endOfStream) && this.#ends.count(endOfStream) : true;
      remove(this.#paths.file);
      if (!last) return undefined;
      this.#ended = new Set(claimNames(this.#paths).map((name) => parseClaimName(name).id));
      return this.#done() ? END : undefined;
    } finally {
      lock.release();
    }
  }

  #hold(claim: HeldClaim): HeldClaim {
    this.#held.add(claim.id);
    return claim;
  }

  /** After the end: true once no claim from before it is left but our own. */
  #done(): boolean {
    const waitFor = this.#ended;
    if (!waitFor) return true;
    for (const name of claimNames(this.#paths)) {
      const { id } = parseClaimName(name);
      if (waitFor.has(id) && !this.#held.has(id)) return false;
    }
    return true;
  }
}

function remove(file: string): void {
  try {
    fs.unlinkSync(file);
  } catch (error) {
    if (errnoCode(error) !== 'ENOENT') throw busError('remove', file, error);
  }
}
