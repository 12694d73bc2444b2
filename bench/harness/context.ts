/** What every part gets: where to work, how hard to try, and what this machine and build offer. */
import type { AnchorsOrReason } from './commands.js';

export interface Context {
  /** The bench's temporary directory (tmpfs by default); removed at exit. */
  dir: string;
  quick: boolean;
  /** Rounds of each side-by-side pair; undefined: each part's own default. */
  rounds: number | undefined;
  anchors: AnchorsOrReason;
  /** Optional filebus flags, and why one is unusable. */
  features: { lines: FeatureSupport; history: FeatureSupport };
  /** Progress and per-run figures on stderr (with --verbose). */
  log(message: string): void;
  options: PartOptions;
}

export type FeatureSupport = { ok: true } | { ok: false; reason: string };

export interface PartOptions {
  /** Seconds of each timed multicast case. */
  seconds: number;
  /** Records through the work queue. */
  records: number;
  /** Bytes through the memory stream. */
  memoryBytes: number;
}

export const roundsOf = (ctx: Context, full: number, quick = 1): number => ctx.rounds ?? (ctx.quick ? quick : full);
