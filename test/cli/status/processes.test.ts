/**
 * `filebus status` names the processes that have the bus open: filebus's
 * own waiters, which poll the lock with LOCK_NB and so never show in
 * /proc/locks as waiting, and a lock holder that was stopped (SIGSTOP),
 * for which the whole bus waits. Real processes, real signals.
 */
import fs from 'node:fs';
import path from 'node:path';
import { expect, test } from 'vitest';
import { type Proc, cli, filebus, run, sleep, tempDir, until } from '../../helpers.js';

interface BusProcess {
  pid: number;
  command: string;
  state: string;
  stateCode: string;
  activity: 'holds-lock' | 'blocked-on-lock' | 'waiting';
  seenBy: string[];
  guess: boolean;
}

interface Status {
  path: string;
  lock: { exists: boolean; holders: number[]; waiting: number[] };
  processes: BusProcess[];
  stoppedHolders: number[];
  unreadable: number;
}

async function status(bus: string): Promise<Status> {
  const proc = filebus(['--filename', bus, 'status', '--json'], { stdin: 'ignore' });
  expect(await proc.exited, proc.stderr()).toBe(0);
  return JSON.parse(proc.stdout().toString()) as Status;
}

async function statusText(bus: string): Promise<string> {
  const proc = filebus(['--filename', bus, 'status'], { stdin: 'ignore' });
  expect(await proc.exited, proc.stderr()).toBe(0);
  return proc.stdout().toString();
}

/** Asks status again until `done` holds for its answer (each look is a new process: an event, not a timer, ends the wait). */
async function statusUntil(bus: string, done: (s: Status) => boolean, what: string): Promise<Status> {
  const deadline = Date.now() + 15_000;
  for (;;) {
    const s = await status(bus);
    if (done(s)) return s;
    if (Date.now() > deadline) throw new Error(`status never showed ${what}: ${JSON.stringify(s)}`);
    await sleep(50);
  }
}

const entry = (s: Status, proc: Proc) => s.processes.find((p) => p.pid === proc.child.pid);

/** The one-letter state of a process, from /proc/PID/stat. */
function stateOf(pid: number): string {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
}

test('a back-pressure producer waiting for the slot is listed as waiting, with its PID, command and state', async () => {
  const dir = tempDir();
  const bus = path.join(dir, 'bus');
  const producer = filebus(['--filename', bus, '--lossless', 'producer']);
  producer.child.stdin!.write('one');
  await until(() => fs.existsSync(bus), 10_000, 'the first chunk');
  // The slot is full: the second chunk waits for a consumer to take the first.
  producer.child.stdin!.write('two');
  const s = await statusUntil(bus, (s) => entry(s, producer) !== undefined, 'the producer');
  const p = entry(s, producer)!;
  expect(p.activity).toBe('waiting');
  expect(p.command).toMatch(/^filebus .*producer/);
  expect(p.state).toMatch(/^(sleeping|running)$/);
  expect(s.lock.holders).toEqual([]);
  expect(s.stoppedHolders).toEqual([]);
  // status itself is no user of the bus.
  expect(s.processes.map((q) => q.pid)).toEqual([producer.child.pid]);
  const text = await statusText(bus);
  expect(text).toMatch(new RegExp(`PID ${producer.child.pid} \\(filebus [^)]*producer[^)]*\\).*waiting`));
});

test('a lossless consumer and a multicast consumer waiting for a chunk are listed; a consumer of another bus in the same directory is not', async () => {
  const dir = tempDir();
  const queue = path.join(dir, 'queue');
  const news = path.join(dir, 'news');
  const other = path.join(dir, 'other');
  const lossless = filebus(['--filename', queue, '--lossless', 'consumer']);
  const multicast = filebus(['--filename', news, 'consumer']);
  const elsewhere = filebus(['--filename', other, 'consumer']);
  // A multicast consumer creates no file; its bus exists once published on.
  const producer = filebus(['--filename', news, 'producer']);
  producer.child.stdin!.end('x');
  expect(await producer.exited).toBe(0);
  await multicast.waitForBytes(1);
  fs.writeFileSync(`${other}.lock`, '');

  const q = await statusUntil(queue, (s) => entry(s, lossless) !== undefined, 'the lossless consumer');
  expect(entry(q, lossless)).toMatchObject({ activity: 'waiting', command: expect.stringMatching(/^filebus .*consumer/) });
  expect(q.processes.map((p) => p.pid)).toEqual([lossless.child.pid]);

  const n = await statusUntil(news, (s) => entry(s, multicast) !== undefined, 'the multicast consumer');
  const m = entry(n, multicast)!;
  expect(m.activity).toBe('waiting');
  expect(m.state).toMatch(/^(sleeping|running)$/);
  // It holds no descriptor on the bus between chunks: found by its command line, and said to be a guess.
  expect(m.guess).toBe(true);
  expect(m.seenBy).toContain('command-line');
  expect(n.processes.map((p) => p.pid)).toEqual([multicast.child.pid]);
  expect(await statusText(news)).toMatch(new RegExp(`PID ${multicast.child.pid} .*guess`));
  expect(elsewhere.child.exitCode).toBeNull();
});

test('a lock holder stopped by SIGSTOP is flagged, in text and JSON, until SIGCONT', async () => {
  const dir = tempDir();
  const bus = path.join(dir, 'bus');
  fs.writeFileSync(`${bus}.lock`, '');
  // flock(1) takes the lock and keeps it while its command runs; --close keeps the descriptor out of the command.
  const holder = run('flock', ['--close', `${bus}.lock`, 'sleep', '100'], { stdin: 'ignore' });
  const pid = holder.child.pid!;
  const sleeper = () => Number(fs.readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/)[0]);
  await until(() => fs.existsSync(`/proc/${pid}/task/${pid}/children`) && sleeper() > 0, 10_000, 'flock to start sleep');
  const child = sleeper();
  try {
    let s = await statusUntil(bus, (s) => s.lock.holders.includes(pid), 'the holder');
    expect(s.stoppedHolders).toEqual([]);
    expect(s.processes.find((p) => p.pid === pid)).toMatchObject({ activity: 'holds-lock', command: 'flock' });
    expect(await statusText(bus)).not.toMatch(/STOPPED/);

    process.kill(pid, 'SIGSTOP');
    await until(() => stateOf(pid) === 'T', 10_000, 'flock to stop');
    s = await status(bus);
    expect(s.stoppedHolders).toEqual([pid]);
    expect(s.processes.find((p) => p.pid === pid)).toMatchObject({ activity: 'holds-lock', state: 'stopped', stateCode: 'T' });
    const text = await statusText(bus);
    const flagged = text.split('\n').filter((line) => /STOPPED/.test(line));
    expect(flagged).toHaveLength(1);
    expect(flagged[0]).toMatch(new RegExp(`lock held by PID ${pid} \\(flock\\), STOPPED: the bus waits until it is continued`));

    process.kill(pid, 'SIGCONT');
    await until(() => stateOf(pid) !== 'T', 10_000, 'flock to continue');
    s = await status(bus);
    expect(s.stoppedHolders).toEqual([]);
    expect(s.processes.find((p) => p.pid === pid)?.state).not.toBe('stopped');
    expect(await statusText(bus)).not.toMatch(/STOPPED/);
  } finally {
    try {
      process.kill(pid, 'SIGCONT');
      process.kill(child, 'SIGKILL');
    } catch {
      // gone already
    }
  }
});

test('a lock kept by a shell after its flock(1) child took it, as the bash implementation does: the shell is the holder, not the gone flock', async () => {
  const dir = tempDir();
  const bus = path.join(dir, 'bus');
  // flock(1) locks the shell's descriptor 9 and exits; /proc/locks keeps naming it.
  const shell = run('bash', ['-c', 'exec 9>>"$0"; flock 9; echo locked; exec sleep 100', `${bus}.lock`], { stdin: 'ignore' });
  await shell.waitFor((out) => out.toString() === 'locked\n');
  const ino = fs.statSync(`${bus}.lock`).ino;
  const named = fs
    .readFileSync('/proc/locks', 'utf8')
    .split('\n')
    .filter((line) => line.includes(`:${ino} `) && !line.includes('->'))
    .map((line) => Number(line.trim().split(/\s+/)[4]));
  expect(named).toHaveLength(1);
  expect(named[0]).not.toBe(shell.child.pid);
  const s = await status(bus);
  expect(s.lock.holders).toEqual([shell.child.pid]);
  expect(s.processes).toEqual([expect.objectContaining({ pid: shell.child.pid, command: 'sleep', activity: 'holds-lock', seenBy: ['lock'], guess: false })]);
});

test('run by another user: the processes it may not look at are counted, and a stopped holder is still flagged', async () => {
  const dir = tempDir();
  fs.chmodSync(dir, 0o755);
  const bus = path.join(dir, 'bus');
  fs.writeFileSync(`${bus}.lock`, '');
  const waiter = filebus(['--filename', bus, '--lossless', 'consumer']);
  const holder = run('flock', ['--close', `${bus}.lock`, 'sleep', '100'], { stdin: 'ignore' });
  const pid = holder.child.pid!;
  await statusUntil(bus, (s) => s.lock.holders.includes(pid) && entry(s, waiter) !== undefined, 'the holder and the waiter');
  const child = Number(fs.readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim());
  try {
    process.kill(pid, 'SIGSTOP');
    await until(() => stateOf(pid) === 'T', 10_000, 'flock to stop');
    const asNobody = run('setpriv', ['--reuid=nobody', '--regid=nogroup', '--clear-groups', process.execPath, cli, '--filename', bus, 'status', '--json'], { stdin: 'ignore' });
    expect(await asNobody.exited, asNobody.stderr()).toBe(0);
    const s = JSON.parse(asNobody.stdout().toString()) as Status;
    expect(s.unreadable).toBeGreaterThanOrEqual(2);
    // Another user's waiter is not looked at: no guess at it either.
    expect(entry(s, waiter)).toBeUndefined();
    expect(s.stoppedHolders).toEqual([pid]);
    expect(s.processes).toEqual([expect.objectContaining({ pid, command: 'flock', state: 'stopped', activity: 'holds-lock', seenBy: ['lock-table'] })]);
  } finally {
    try {
      process.kill(pid, 'SIGCONT');
      process.kill(child, 'SIGKILL');
    } catch {
      // gone already
    }
  }
});

test('a consumer of the bash implementation waiting for a chunk is listed too', async () => {
  const bus = path.join(tempDir(), 'bus');
  const consumer = filebus(['--filename', bus, '--lossless', 'consumer'], { impl: 'bash' });
  const s = await statusUntil(bus, (s) => entry(s, consumer) !== undefined, 'the bash consumer');
  expect(entry(s, consumer)).toMatchObject({ activity: 'waiting', command: expect.stringMatching(/^filebus consumer .*--impl bash$/) });
  // Its inotifywait, which watches only the directory, is no user of the bus on its own.
  expect(s.processes.filter((p) => p.command === 'inotifywait')).toEqual([]);
});
