/**
 * One process's handle on a bus: its resolved options, lock and watcher,
 * with the start-up checks that turn a bad path into one clear error
 * before anything waits.
 */
import fs from 'node:fs';
import { BusError, busError } from './errors.js';
import { BusLock } from './lock.js';
import { type BusOptions, type ResolvedOptions, resolveOptions } from './options.js';
import { BusWatcher } from './watch.js';

export interface Bus {
  readonly options: ResolvedOptions;
  readonly lock: BusLock;
  readonly watcher: BusWatcher;
  close(): void;
}

export interface BusRole {
  /** Producers and back-pressure consumers lock and write; multicast consumers only read. */
  readonly writes: boolean;
}

export function openBus(busOptions: BusOptions, role: BusRole): Bus {
  const options = resolveOptions(busOptions);
  const { paths } = options;
  try {
    fs.mkdirSync(paths.dir, { recursive: true });
  } catch (error) {
    throw busError('create the directory', paths.dir, error);
  }
  checkRegular(paths.file);
  const lock = new BusLock(paths.lock);
  if (role.writes) {
    try {
      fs.accessSync(paths.dir, fs.constants.W_OK);
    } catch (error) {
      throw busError('write to the directory', paths.dir, error);
    }
    lock.open();
  }
  const watcher = new BusWatcher(paths.dir, paths.base, options.sleepMs, options.fileMonitoring);
  return {
    options,
    lock,
    watcher,
    close() {
      watcher.close();
      lock.close();
    },
  };
}

/**
 * `F` must be a regular file when it exists: a FIFO would block a reader
 * forever, and a directory can never be replaced by rename.
 */
export function checkRegular(file: string, stats?: fs.Stats | fs.BigIntStats): void {
  const st = stats ?? fs.statSync(file, { throwIfNoEntry: false });
  if (st === undefined || st.isFile()) return;
  const kind = st.isDirectory() ? 'a directory' : st.isFIFO() ? 'a FIFO' : 'not a regular file';
  throw new BusError(`${file} is ${kind}; the bus file must be a regular file`, file, { code: 'EFTYPE' });
}
