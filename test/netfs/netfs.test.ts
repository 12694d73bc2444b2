/**
 * A bus on a file system other writers reach behind the kernel's back, as on
 * NFS. The second "host" is a bindfs (FUSE) view of a directory: what a
 * process writes through the source directory reaches the view's readers
 * without any inotify event on the view, the way another machine's writes
 * reach an NFS client. Notifications then wake nobody, and the
 * `--sleep-interval` poll must carry every chunk.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { type TestContext, afterEach, describe, expect, test } from 'vitest';
import { openBus } from '../../src/core/bus.js';
import { readChunk } from '../../src/core/read.js';
import { fileSystemOf } from '../../src/sys/fstype.js';
import { type Proc, asleepInEventLoop, filebus, inotifyFds, lockHeld,  run, sha256, stop, tempDir, until, writeLinesAtRate } from '../helpers.js';

/**
 * attr_timeout=0,entry_timeout=0: every stat and open asks the daemon, so a
 * reader on the view sees the file now at the path, with its size now, as
 * an NFS client does on open (close-to-open). --enable-lock-forwarding
 * (which bindfs allows only with --multithreaded) passes flock(2) through to
 * the source, as NFSv4 passes it to the server: without it a flock taken
 * through the view excludes only other users of the view (see the test
 * below).
 */
const coherent = ['--multithreaded', '--enable-lock-forwarding', '-o', 'attr_timeout=0,entry_timeout=0'];

/** Mounts `view` as a bindfs view of `src`; throws with bindfs' own message on failure. */
function mountView(src: string, view: string, options: string[]): void {
  const result = spawnSync('bindfs', [...options, src, view], { encoding: 'utf8' });
  if (result.error) throw result.error;
  if (result.status !== 0) throw new Error(`bindfs exited ${result.status}: ${result.stderr.trim()}`);
  mounted.add(view);
}

const mounted = new Set<string>();
function unmount(view: string): void {
  try {
    execFileSync('fusermount3', ['-u', view], { stdio: 'pipe' });
  } catch {
    // Still busy (a process we did not stop?): detach it now, the kernel finishes when it is free.
    spawnSync('fusermount3', ['-u', '-z', view]);
  }
  mounted.delete(view);
}
// A test that timed out never reached its own `finally`.
afterEach(() => {
  for (const view of mounted) unmount(view);
});

/** Why FUSE cannot be used here, or undefined when it can: found once, by mounting. */
const fuseUnavailable = ((): string | undefined => {
  const dir = fs.mkdtempSync('/tmp/filebus-fuse-probe-');
  const [src, view] = [path.join(dir, 'src'), path.join(dir, 'view')];
  fs.mkdirSync(src);
  fs.mkdirSync(view);
  try {
    mountView(src, view, coherent);
    unmount(view);
    return undefined;
  } catch (error) {
    return `cannot mount a bindfs (FUSE) view here: ${(error as Error).message.split('\n')[0]}`;
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
})();
if (fuseUnavailable) console.warn(`netfs: skipped: ${fuseUnavailable}`);

interface Views {
  /** The directory the "other host" writes to. */
  src: string;
  /** A bindfs view of `src`, this "host". */
  view: string;
  /** Processes to stop before the view is unmounted. */
  procs: Proc[];
}

/** Runs `body` with a fresh view, then stops its processes and unmounts, pass or fail. */
async function withViews(context: TestContext, options: string[], body: (views: Views) => Promise<void>): Promise<void> {
  if (fuseUnavailable) context.skip(fuseUnavailable);
  const dir = tempDir();
  const views: Views = { src: path.join(dir, 'src'), view: path.join(dir, 'view'), procs: [] };
  fs.mkdirSync(views.src);
  fs.mkdirSync(views.view);
  mountView(views.src, views.view, options);
  try {
    await body(views);
  } finally {
    await Promise.all(views.procs.map((proc) => stop(proc.child)));
    unmount(views.view);
  }
}

function started(views: Views, proc: Proc): Proc {
  views.procs.push(proc);
  return proc;
}

describe('detection', () => {
  test('a bindfs view is fuse, a shared file system; /dev/shm is tmpfs, local', async (context) => {
    expect(fileSystemOf('/dev/shm')).toEqual({ name: 'tmpfs', shared: false });
    await withViews(context, coherent, async ({ view }) => {
      expect(fileSystemOf(view)).toEqual({ name: 'fuse', shared: true });
    });
  });

  test('openBus says it polls, once, on a shared file system and nothing on a local one', async (context) => {
    const local: string[] = [];
    openBus({ filename: path.join(tempDir(), 'bus'), log: (message) => local.push(message) }, { writes: false }).close();
    expect(local).toEqual([]);
    await withViews(context, coherent, async ({ view }) => {
      const notices: string[] = [];
      const bus = openBus({ filename: path.join(view, 'bus'), sleepInterval: 0.25, log: (message) => notices.push(message) }, { writes: true });
      bus.close();
      expect(bus.fileSystem).toEqual({ name: 'fuse', shared: true });
      expect(notices).toEqual([`polling every 0.25 s: ${view} is on fuse`]);
    });
  });
});

describe('the view behaves like an NFS client', () => {
  test('writes through the source wake no watcher on the view; the view\'s own writes do', async (context) => {
    await withViews(context, coherent, async (views) => {
      // A 60 s poll: anything delivered within the few seconds below came by notification.
      const args = (dir: string) => ['--filename', path.join(dir, 'bus'), '--sleep-interval', '60'];
      const fromSrc = started(views, filebus([...args(views.src), 'producer']));
      // A first chunk, there before the consumers start.
      fromSrc.child.stdin!.write('already there\n');
      await until(() => fs.existsSync(path.join(views.src, 'bus')), 10_000, 'the first chunk');
      const onView = started(views, filebus([...args(views.view), 'consumer'], { stdin: 'ignore' }));
      const onSrc = started(views, filebus([...args(views.src), 'consumer'], { stdin: 'ignore' }));
      await Promise.all([onView, onSrc].map((consumer) => consumer.waitFor((out) => out.toString() === 'already there\n')));
      // Printed is not yet waiting: right after a chunk a consumer looks at the
      // bus once more without waiting, and a chunk published before that look
      // is seen by it, not by a notification (under load that look came tens of
      // ms after the print, after the next chunk). Asleep after the print, each
      // has made that look and waits for a hint or its 60 s poll.
      for (const consumer of [onView, onSrc]) {
        await until(() => asleepInEventLoop(consumer.child.pid!), 10_000, 'the consumer to wait');
      }

      fromSrc.child.stdin!.write('from the source\n');
      await onSrc.waitFor((out) => out.toString().endsWith('from the source\n'), 5000);
      // The control consumer got it at once; give the view's one a full second more to show it is blind.
      await new Promise((resolve) => setTimeout(resolve, 1000));
      expect(onView.stdout().toString()).toBe('already there\n');

      // A producer on this "host" (through the view) wakes the view's consumer at once:
      // notifications are kept for local writers.
      const fromView = started(views, filebus([...args(views.view), 'producer']));
      fromView.child.stdin!.write('from the view\n');
      await onView.waitFor((out) => out.toString().endsWith('from the view\n'), 5000);
    });
  });

  test('--no-file-monitoring and --file-monitoring still decide the watch on a shared file system', async (context) => {
    await withViews(context, coherent, async (views) => {
      const bus = path.join(views.view, 'bus');
      const consumer = (flag: string) => started(views, filebus(['-v', '--filename', bus, flag, 'consumer'], { stdin: 'ignore' }));
      const [unwatched, watched] = [consumer('--no-file-monitoring'), consumer('--file-monitoring')];
      for (const proc of [unwatched, watched]) {
        await until(() => proc.stderr().includes(`polling every 0.1 s: ${views.view} is on fuse`), 10_000, 'the polling notice');
      }
      // The notice comes before the watch is set up: wait for the watch, then check the other has none.
      await until(() => inotifyFds(watched.child.pid!) > 0, 10_000, 'the watched consumer to watch');
      expect(inotifyFds(unwatched.child.pid!)).toBe(0);
    });
  });

  test('flock on F.lock excludes across the views with lock forwarding, and not without', async (context) => {
    for (const [options, excludes] of [
      [coherent, true],
      [['-o', 'attr_timeout=0,entry_timeout=0'], false],
    ] as const) {
      await withViews(context, [...options], async (views) => {
        fs.writeFileSync(path.join(views.src, 'bus.lock'), '');
        // The shell becomes the sleep (exec), so the process stopped after the test is the one holding the lock.
        const hold = 'exec 9>>"$1"; flock 9; echo locked; exec sleep 60';
        const holder = started(views, run('bash', ['-c', hold, 'bash', path.join(views.src, 'bus.lock')], { stdin: 'ignore' }));
        await holder.waitFor((out) => out.toString() === 'locked\n');
        expect(await lockHeld(path.join(views.view, 'bus.lock')), `bindfs ${options.join(' ')}`).toBe(excludes);
      });
    }
  });
});

describe('a producer on one "host", consumers on the other', () => {
  test('multicast: 40 lines at 5 lines/s through the source reach 3 consumers on the view, every line whole, by polling', async (context) => {
    await withViews(context, coherent, async (views) => {
      const consumers = [0, 1, 2].map(() =>
        started(views, filebus(['-v', '--filename', path.join(views.view, 'bus'), '--sleep-interval', '0.1', 'consumer'], { stdin: 'ignore' })),
      );
      const producer = started(views, filebus(['--filename', path.join(views.src, 'bus'), '--sleep-interval', '0.1', 'producer']));
      const stdin = producer.child.stdin!;
      // Warm-up: once every consumer printed it, all are up and polling.
      stdin.write('warm-up\n');
      await Promise.all(consumers.map((consumer) => consumer.waitFor((out) => out.includes('warm-up\n'))));

      // Lines of different lengths, so that one read at a stale size would show as a cut line.
      const lines = Array.from({ length: 40 }, (_, i) => `line ${String(i).padStart(2, '0')} ${'.'.repeat((i * 37) % 300)}|`);
      await writeLinesAtRate(stdin, lines.map((line) => `${line}\n`), 5);
      const expected = ['warm-up', ...lines].map((line) => `${line}\n`).join('');
      for (const consumer of consumers) {
        await consumer.waitFor((out) => out.toString().endsWith(`${lines.at(-1)}\n`), 2000).catch(() => undefined);
        // Every line, once, whole, in order.
        expect(consumer.stdout().toString()).toBe(expected);
        expect(consumer.stderr()).toContain(`filebus: polling every 0.1 s: ${views.view} is on fuse\n`);
      }
      stdin.end();
      expect(await producer.exited).toBe(0);
    });
  });

  // 20,000 records of 100 bytes, 40 to a chunk: 500 hand-offs. The consumer on the view learns of
  // each chunk only by its poll (nothing wakes it), so a hand-off costs about half a sleep interval
  // on average; at --sleep-interval 0.01 that is ~5 ms, a few seconds in all. One record per chunk
  // would be 20,000 polls: minutes, for nothing more proved.
  test('lossless: 20,000 fixed-size records from the source to a consumer on the view, exact and in order', async (context) => {
    await withViews(context, coherent, async (views) => {
      const record = 100;
      const count = 20_000;
      const data = Buffer.from(
        Array.from({ length: count }, (_, i) => `record ${String(i).padStart(5, '0')} `.padEnd(record - 1, String.fromCharCode(97 + (i % 26))) + '\n').join(''),
      );
      const input = path.join(tempDir(), 'records');
      fs.writeFileSync(input, data);
      const common = ['--lossless', '--block-size', String(record * 40), '--sleep-interval', '0.01'];
      const consumer = started(views, filebus(['-v', '--filename', path.join(views.view, 'bus'), ...common, 'consumer'], { stdin: 'ignore' }));
      const fd = fs.openSync(input, 'r');
      const producer = started(views, filebus(['--filename', path.join(views.src, 'bus'), ...common, 'producer'], { stdin: fd }));
      fs.closeSync(fd);
      expect(await producer.exited).toBe(0);
      expect(await consumer.exited).toBe(0);
      const out = consumer.stdout();
      expect(out.length).toBe(data.length);
      expect(sha256(out)).toBe(sha256(data));
      expect(consumer.stderr()).toContain(`polling every 0.01 s: ${views.view} is on fuse`);
    });
  });
});

describe('a view that caches attributes (bindfs defaults: attr_timeout=1, entry_timeout=1)', () => {
  // The kernel keeps the size of the file that was at F before; a read stops there, so the new,
  // longer chunk came out cut (issue 13: "the new file read at the old, cached size").
  test('readChunk gets the whole new chunk, not the old cached size of it', async (context) => {
    await withViews(context, [], async ({ src, view }) => {
      const publish = (data: string) => {
        fs.writeFileSync(path.join(src, 'bus.__new__'), data);
        fs.renameSync(path.join(src, 'bus.__new__'), path.join(src, 'bus'));
      };
      publish('a'.repeat(10));
      expect(fs.statSync(path.join(view, 'bus')).size).toBe(10); // now cached on the view
      publish('b'.repeat(5000));
      const data = readChunk(path.join(view, 'bus'), undefined, true)?.data;
      expect(data?.length).toBe(5000);
      expect(data?.equals(Buffer.alloc(5000, 'b'))).toBe(true);
    });
  });
});

describe('chunks removed by another "host"', () => {
  // bindfs answers fstat by path: once the other side removed F, the fstat of the file just opened
  // fails with ENOENT (an NFS server would say ESTALE). That is a chunk gone, not an error.
  test('readChunk on the view while the source publishes and removes chunks: never an error', async (context) => {
    await withViews(context, coherent, async (views) => {
      const churn = 'cd "$1"; while :; do echo chunk > bus.__new__; mv bus.__new__ bus; rm -f bus; done';
      started(views, run('bash', ['-c', churn, 'bash', views.src], { stdin: 'ignore' }));
      const file = path.join(views.view, 'bus');
      let reads = 0;
      let found = 0;
      for (const end = Date.now() + 1500; Date.now() < end; reads++) {
        const chunk = readChunk(file, undefined, true);
        if (chunk !== undefined) {
          found++;
          expect(chunk.data.toString()).toBe('chunk\n');
        }
      }
      expect(found, `${found} chunks found in ${reads} reads`).toBeGreaterThan(0);
    });
  });
});
