/**
 * The history extension (docs/protocol.md, "Extension: history"): besides
 * `F`, producers that opt in keep the last N chunks as numbered hard links
 * in `F.history/`, so a multicast consumer that is a moment late reads what
 * it missed in order instead of losing it, and one that is too late knows
 * how much it lost.
 *
 * - ./files.ts: the directory, through one descriptor; entry names; the head's format.
 * - ./writer.ts: `HistoryWriter`, the producer's PublishHook, under the lock.
 * - ./cursor.ts: `HistoryCursor` and `historyTakeOver`, the consumer's side.
 * - ./decisions.ts: the consumer's decisions, pure.
 * - ./window.ts: `historyWindow`, for `filebus status`.
 */
export { entryName } from './files.js';
export { HistoryWriter } from './writer.js';
export { HistoryCursor, historyTakeOver, type CursorOptions, type MissedChunks } from './cursor.js';
export { historyWindow, type HistoryWindow } from './window.js';
