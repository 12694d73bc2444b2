/**
 * One process's handle on a bus: its resolved options, lock and watcher,
 * with the start-up checks that turn a bad path into one clear error
 * before anything waits.
 */
import fs from 'node:fs';
import path from 'node:path';
import { busError, errnoCode } from '../errors.js';
import { checkRegular, refuseLink } from './checks.js';
import type { PublishHook } from './extension.js';
import { BusLock } from './lock.js';
import { type BusOptions, type ResolvedOptions, resolveOptions } from '../options.js';
import { type FileSystemKind, fileSystemOf } from '../sys/fstype.js';
import { type WaitsFor, type Watcher, createWatcher } from './wait.js';

/**
 * How a process runs, as opposed to what it does with the bus: settings
 * the filebus command chooses for itself and passes to the modes'
 * internal functions. Not part of BusOptions, and not exported by the
 * library: they change how the whole process behaves.
 */
export interface RunSettings {
  /**
   * Wait for the bus by blocking the thread in poll(2) on an inotify
   * descriptor, handing the thread back to the event loop every 100 ms
   * (and at once for a signal): a chunk then costs a fraction of the CPU
   * and latency of the event loop's watcher, but the process's other
   * callbacks wait. Also lets a consumer force a garbage collection after
   * a huge chunk (ScratchBuffer), which changes V8's flags. For a process
   * that does nothing but move chunks.
   */
  readonly blockingWait?: boolean;
}

export interface Bus {
  readonly options: ResolvedOptions;
  /** The process's RunSettings, defaults filled in. */
  readonly settings: Required<RunSettings>;
  readonly lock: BusLock;
  readonly watcher: Watcher;
  /**
   * The file system of the bus directory. When it is shared (NFS, FUSE...),
   * other hosts' chunks raise no notification here: the poll finds them.
   */
  readonly fileSystem: FileSystemKind;
  /** What extensions add to each publish (the history's numbering), run under the lock. */
  readonly publishHook: PublishHook | undefined;
  close(): void;
}

export interface BusRole {
  /** Producers and back-pressure consumers lock and write; multicast consumers only read. */
  readonly writes: boolean;
  /**
   * The change of `F` this role waits for: consumers wait for a chunk to
   * arrive, back-pressure producers for it to be taken, multicast
   * producers for nothing. Default: any change.
   */
  readonly waitsFor?: WaitsFor;
  /** A producer's extensions, run inside each publish (see PublishHook), made from the resolved options. */
  readonly publishHook?: ((options: ResolvedOptions) => PublishHook | undefined) | undefined;
}

export function openBus(busOptions: BusOptions, role: BusRole, runSettings: RunSettings = {}): Bus {
  const options = resolveOptions(busOptions);
  const settings: Required<RunSettings> = { blockingWait: runSettings.blockingWait ?? false };
  const { paths } = options;
  makeDirectory(paths.dir);
  // Nobody may aim us at a file elsewhere through a link planted in a shared
  // directory: refused at start for every role, and again at each use.
  checkRegular(paths.file);
  refuseLink(paths.lock);
  refuseLink(paths.staging);
  // In a work queue the lock changes hands at every chunk, and a waiter
  // learns of each release from the holder's close of F.lock.
  const lockReleases = settings.blockingWait && options.backPressure && role.writes;
  const lock = new BusLock(paths.lock, { closeOnRelease: lockReleases });
  if (role.writes) {
    try {
      fs.accessSync(paths.dir, fs.constants.W_OK);
    } catch (error) {
      throw busError('write to the directory', paths.dir, error);
    }
    lock.open();
  }
  const publishHook = role.publishHook?.(options);
  const fileSystem = detectFileSystem(paths.dir);
  // Notifications still wake us at once for writers on this host; the poll,
  // which runs in every case, is what sees everyone else.
  if (fileSystem.shared) options.log(`polling every ${options.sleepMs / 1000} s: ${paths.dir} is on ${fileSystem.name}`);
  const watcher = createWatcher(
    { dir: paths.dir, base: paths.base, lock: lockReleases ? paths.lock : undefined, intervalMs: options.sleepMs, monitoring: options.fileMonitoring, waitsFor: role.waitsFor ?? 'any', log: options.log },
    settings.blockingWait,
  );
  return {
    options,
    settings,
    lock,
    watcher,
    fileSystem,
    publishHook,
    close() {
      watcher.close();
      publishHook?.close();
      lock.close();
    },
  };
}

/** statfs failing on a directory we just made is odd but harmless: the poll runs anyway. */
function detectFileSystem(dir: string): FileSystemKind {
  try {
    return fileSystemOf(dir);
  } catch {
    return { name: 'unknown', shared: false };
  }
}

/**
 * mkdir -p, reporting the component that could not be made and why. Node's
 * recursive mkdir says ENOENT for the deepest directory when an ancestor
 * could not be made (a read-only file system: EROFS), so that component is
 * made again alone, for its own error.
 */
function makeDirectory(dir: string): void {
  try {
    fs.mkdirSync(dir, { recursive: true });
    return;
  } catch (error) {
    if (errnoCode(error) !== 'ENOENT') throw busError('create the directory', dir, notDirectory(dir, error));
    const missing = firstMissing(dir);
    if (missing !== undefined && missing !== dir) {
      try {
        fs.mkdirSync(missing);
      } catch (cause) {
        throw busError('create the directory', missing, cause);
      }
    }
    throw busError('create the directory', dir, error);
  }
}

/** The outermost component of `dir` that does not exist; undefined when all do (or cannot be told). */
function firstMissing(dir: string): string | undefined {
  let missing: string | undefined;
  for (let component = dir; component !== path.dirname(component); component = path.dirname(component)) {
    try {
      if (fs.lstatSync(component, { throwIfNoEntry: false }) !== undefined) return missing;
    } catch {
      return undefined;
    }
    missing = component;
  }
  return missing;
}

/**
 * mkdir -p reports EEXIST when a component is a file (or a dangling link);
 * name the component that is in the way and say what is wrong with it.
 */
function notDirectory(dir: string, error: unknown): unknown {
  if (errnoCode(error) !== 'EEXIST') return error;
  for (let component = dir; component !== path.dirname(component); component = path.dirname(component)) {
    const st = fs.statSync(component, { throwIfNoEntry: false });
    if (st?.isDirectory()) break;
    if (fs.lstatSync(component, { throwIfNoEntry: false })) {
      return Object.assign(new Error(`${component} is not a directory`), { code: 'ENOTDIR' });
    }
  }
  return error;
}
