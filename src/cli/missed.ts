/**
 * The command's report of missed chunks (history buses): one line on
 * stderr, whatever -v says, since losing data silently is the thing the
 * history is there to end; at most one line a second, the gaps of that
 * second added up, so a consumer that keeps falling behind cannot flood
 * the terminal.
 */
import type { MissedChunks } from '../ext/history/history.js';

const INTERVAL_MS = 1000;

export class MissedReporter {
  readonly #write: (line: string) => void;
  #pending: { first: number; last: number; count: number; gaps: number } | undefined;
  #lastLineAt = -Infinity;
  #timer: NodeJS.Timeout | undefined;

  constructor(write: (line: string) => void) {
    this.#write = write;
  }

  add(missed: MissedChunks): void {
    const pending = this.#pending;
    this.#pending = pending
      ? { first: pending.first, last: missed.last, count: pending.count + missed.count, gaps: pending.gaps + 1 }
      : { ...missed, gaps: 1 };
    const wait = this.#lastLineAt + INTERVAL_MS - performance.now();
    if (wait <= 0) this.flush();
    else this.#timer ??= setTimeout(() => this.flush(), wait).unref();
  }

  /** Writes what is pending now: on the second's turn, and before the process exits. */
  flush(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    const pending = this.#pending;
    if (!pending) return;
    this.#pending = undefined;
    this.#lastLineAt = performance.now();
    const chunks = pending.count === 1 ? '1 chunk' : `${pending.count} chunks`;
    const gaps = pending.gaps > 1 ? ` in ${pending.gaps} gaps` : '';
    const seqs = pending.first === pending.last ? `seq ${pending.first}` : `seq ${pending.first}-${pending.last}`;
    this.#write(`filebus: missed ${chunks}${gaps} (${seqs})\n`);
  }
}
