/** The window a bus's history holds, for `filebus status`. */
import type { BusPaths } from '../../options.js';
import { HistoryDir } from './files.js';

/** The sequence numbers a history holds now, oldest and newest. */
export interface HistoryWindow {
  readonly first: number;
  readonly last: number;
}

/** Undefined when the bus keeps no history (or has not published into it yet). A link at `F.history` is refused. */
export function historyWindow(paths: Pick<BusPaths, 'history'>): HistoryWindow | undefined {
  const dir = HistoryDir.open(paths.history);
  if (dir === undefined) return undefined;
  try {
    const seqs = dir.list();
    return seqs.length === 0 ? undefined : { first: seqs[0]!, last: seqs.at(-1)! };
  } finally {
    dir.close();
  }
}
