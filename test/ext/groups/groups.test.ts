/**
 * Durable groups (docs/protocol.md, "Extension: groups"), with real
 * producers, members killed with SIGKILL, stopped with SIGSTOP, and the
 * files on disk: a group resumes where it stopped, members share its
 * chunks, groups are independent, --wait-for-groups holds the producer.
 */
import fs from 'node:fs';
import path from 'node:path';
import { expect, test } from 'vitest';
import { type Proc, filebus, hasStackTrace, sleep, tempDir, until, within } from '../../helpers.js';

/** Lines "00001\n" .. : 6 bytes each, so with --block-size 6 --lines each is one chunk. */
function numbered(first: number, count: number): string {
  return Array.from({ length: count }, (_, i) => `${String(first + i).padStart(5, '0')}\n`).join('');
}

function linesOf(file: string): number[] {
  const text = fs.existsSync(file) ? fs.readFileSync(file, 'latin1') : '';
  return text.split('\n').filter((line) => line !== '').map(Number);
}

/** A member writing to `file` (appended), started from the command line. */
function member(bus: string, group: string, file: string, extra: string[] = []): Proc {
  const fd = fs.openSync(file, 'a');
  const proc = filebus(['--filename', bus, 'consumer', '--group', group, ...extra], { stdin: 'ignore', stdout: fd });
  fs.closeSync(fd);
  return proc;
}

/** Resolves once the group has a member running (its member file is held). */
async function joined(bus: string, group: string, count = 1): Promise<void> {
  const dir = `${bus}.groups/${group}/members`;
  await until(() => fs.existsSync(`${bus}.groups/${group}/position`) && fs.existsSync(dir) && fs.readdirSync(dir).length >= count, 10_000, `${count} member(s) of ${group} to join`);
}

function producerFromFile(args: string[], input: string, producerArgs: string[] = []): Proc {
  const fd = fs.openSync(input, 'r');
  const producer = filebus([...args, 'producer', '--lines', ...producerArgs], { stdin: fd });
  fs.closeSync(fd);
  return producer;
}

test('one member SIGKILLed 30 times during a 20,000-line stream: every line at least once, duplicates at most the kills, each restart goes on where the group was', async () => {
  const dir = tempDir();
  const bus = path.join(dir, 'bus');
  const total = 20_000;
  const kills = 30;
  const outputs: string[] = [];
  const next = () => {
    const file = path.join(dir, `out-${outputs.length}`);
    outputs.push(file);
    return member(bus, 'g', file);
  };
  // Started before any producer: it waits for the history and takes every chunk from the first.
  let current = next();
  await joined(bus, 'g');
  const producer = filebus(['--filename', bus, '--history', '100000', '--block-size', '6', 'producer', '--lines'], { stdin: 'pipe' });
  const feeding = (async () => {
    // About 3,000 lines a second: the stream lasts the 30 kills.
    for (let first = 1; first <= total; first += 30) {
      producer.child.stdin!.write(numbered(first, Math.min(30, total - first + 1)));
      await sleep(10);
    }
    producer.child.stdin!.end();
  })();
  for (let kill = 0; kill < kills; kill++) {
    // Once it has joined (and taken over what its predecessor left), at a random moment of its work.
    const pid = current.child.pid!;
    await until(() => fs.readdirSync(`${bus}.groups/g/members`).some((name) => name.startsWith(`${pid}-`)), 10_000, 'the member to join');
    await sleep(Math.random() * 100);
    current.child.kill('SIGKILL');
    await current.exited;
    current = next();
  }
  await feeding;
  expect(await producer.exited, producer.stderr()).toBe(0);
  await until(() => new Set(outputs.flatMap(linesOf)).size === total, 30_000, 'every line to be delivered');
  const all = outputs.flatMap(linesOf);
  const seen = new Set(all);
  for (let line = 1; line <= total; line++) expect(seen.has(line), `line ${line}`).toBe(true);
  expect(all.length - total).toBeLessThanOrEqual(kills);
  // Each run: in order, and it starts at the first line the group had not delivered (or that one again, if its taker died before acknowledging it).
  let last = 0;
  let runsWithOutput = 0;
  for (const file of outputs) {
    const lines = linesOf(file);
    if (lines.length === 0) continue;
    runsWithOutput++;
    expect(lines[0], file).toBeGreaterThanOrEqual(last === 0 ? 1 : last);
    expect(lines[0], file).toBeLessThanOrEqual(last + 1);
    for (let i = 1; i < lines.length; i++) expect(lines[i]).toBe(lines[i - 1]! + 1);
    last = lines.at(-1)!;
  }
  expect(runsWithOutput).toBeGreaterThan(kills / 2);
  expect(current.stderr()).toBe('');
}, 120_000);

test('two groups of 3 members and a plain multicast consumer: each group gets every line exactly once, each member in order', async () => {
  const dir = tempDir();
  const bus = path.join(dir, 'bus');
  const total = 6000;
  const input = path.join(dir, 'input');
  fs.writeFileSync(input, numbered(1, total));
  const files: Record<string, string[]> = { a: [], b: [] };
  const members: Proc[] = [];
  for (const group of ['a', 'b']) {
    for (let i = 0; i < 3; i++) {
      const file = path.join(dir, `${group}-${i}`);
      files[group]!.push(file);
      members.push(member(bus, group, file));
    }
    await joined(bus, group, 3);
  }
  const plainFile = path.join(dir, 'plain');
  const plainFd = fs.openSync(plainFile, 'w');
  filebus(['--filename', bus, 'consumer'], { stdin: 'ignore', stdout: plainFd });
  fs.closeSync(plainFd);
  // Paced, so that the work really is shared out (a file is read at full speed).
  const producer = filebus(['--filename', bus, '--history', '100000', '--block-size', '6', 'producer', '--lines'], { stdin: 'pipe' });
  for (let first = 1; first <= total; first += 60) {
    producer.child.stdin!.write(numbered(first, 60));
    await sleep(5);
  }
  producer.child.stdin!.end();
  expect(await producer.exited, producer.stderr()).toBe(0);
  for (const group of ['a', 'b']) {
    await until(() => files[group]!.flatMap(linesOf).length >= total, 20_000, `group ${group} to deliver every line`);
    await sleep(200); // a duplicate would show up now
    const all = files[group]!.flatMap(linesOf).sort((x, y) => x - y);
    expect(all, `group ${group}`).toEqual(Array.from({ length: total }, (_, i) => i + 1));
    for (const file of files[group]!) {
      const lines = linesOf(file);
      for (let i = 1; i < lines.length; i++) expect(lines[i]!, file).toBeGreaterThan(lines[i - 1]!);
    }
  }
  const plain = linesOf(plainFile);
  expect(plain.length).toBeGreaterThan(0);
  for (let i = 1; i < plain.length; i++) expect(plain[i]!).toBeGreaterThan(plain[i - 1]!);
  for (const m of members) expect(m.stderr()).toBe('');
}, 60_000);

test('--wait-for-groups, window 100: a group SIGSTOPped for 3 s holds the producer, misses nothing, and the bus stays within the window', async () => {
  const dir = tempDir();
  const bus = path.join(dir, 'bus');
  const total = 5000;
  const input = path.join(dir, 'input');
  fs.writeFileSync(input, numbered(1, total));
  const out = path.join(dir, 'out');
  const m = member(bus, 'slow', out);
  await joined(bus, 'slow');
  m.child.kill('SIGSTOP');
  const producer = producerFromFile(['--filename', bus, '--history', '100', '--block-size', '6', '-v'], input, ['--wait-for-groups']);
  let most = 0;
  const sample = () => {
    const names = fs.existsSync(`${bus}.history`) ? fs.readdirSync(`${bus}.history`) : [];
    most = Math.max(most, names.filter((name) => /^\d{16}$/.test(name)).length);
  };
  const sampler = setInterval(sample, 5);
  try {
    await sleep(3000);
    // Held: it published at most the window (plus the newest chunk at F).
    expect(producer.child.exitCode).toBe(null);
    const published = Number(fs.readFileSync(`${bus}.history/head`, 'latin1'));
    expect(published).toBeLessThanOrEqual(101);
    expect(producer.stderr()).toMatch(/waiting for group slow/);
    m.child.kill('SIGCONT');
    expect(await producer.exited, producer.stderr()).toBe(0);
    await until(() => linesOf(out).length >= total, 20_000, 'the group to deliver every line');
  } finally {
    clearInterval(sampler);
    m.child.kill('SIGCONT');
  }
  expect(linesOf(out)).toEqual(Array.from({ length: total }, (_, i) => i + 1));
  expect(most).toBeLessThanOrEqual(100 + 2);
  expect(m.stderr()).toBe('');
}, 60_000);

test('a group that falls out of a window of 50 reports what it missed and goes on; status --json shows its position and lag', async () => {
  const dir = tempDir();
  const bus = path.join(dir, 'bus');
  const args = ['--filename', bus, '--history', '50', '--block-size', '6'];
  const first = path.join(dir, 'first');
  fs.writeFileSync(first, numbered(1, 1));
  expect(await producerFromFile(args, first).exited).toBe(0);
  const out = path.join(dir, 'out');
  const m = member(bus, 'late', out);
  await until(() => linesOf(out).length === 1, 10_000, 'the newest chunk');
  m.child.kill('SIGSTOP');
  const more = path.join(dir, 'more');
  fs.writeFileSync(more, numbered(2, 499));
  expect(await producerFromFile(args, more).exited).toBe(0);

  const status = filebus(['--filename', bus, 'status', '--json']);
  expect(await status.exited, status.stderr()).toBe(0);
  const groups = JSON.parse(status.stdout().toString()).groups as Array<{ name: string; position: number; lag: number; membersAlive: number }>;
  expect(groups).toEqual([expect.objectContaining({ name: 'late', position: 2, lag: 499, membersAlive: 1 })]);

  m.child.kill('SIGCONT');
  // Chunks 2-450 left the window of 50 (451-500 are kept).
  await until(() => m.stderr().includes('missed'), 10_000, 'the missed report');
  expect(m.stderr()).toBe('filebus: missed 449 chunks (seq 2-450)\n');
  await until(() => linesOf(out).length === 51, 10_000, 'the kept chunks');
  expect(linesOf(out)).toEqual([1, ...Array.from({ length: 50 }, (_, i) => 451 + i)]);
  // And on: the next chunk comes through.
  const last = path.join(dir, 'last');
  fs.writeFileSync(last, numbered(501, 1));
  expect(await producerFromFile(args, last).exited).toBe(0);
  await until(() => linesOf(out).at(-1) === 501, 10_000, 'chunk 501');

  const after = filebus(['--filename', bus, 'status', '--json']);
  expect(await after.exited).toBe(0);
  expect(JSON.parse(after.stdout().toString()).groups[0]).toEqual(expect.objectContaining({ position: 502, lag: 0, claimedInFlight: 0 }));
}, 60_000);

test('a group resumes after its members stop, at the first chunk it has not delivered; a new group starts at the newest, or with --replay at the oldest kept', async () => {
  const dir = tempDir();
  const bus = path.join(dir, 'bus');
  const args = ['--filename', bus, '--history', '1000', '--block-size', '6'];
  const input = (name: string, from: number, count: number) => {
    const file = path.join(dir, name);
    fs.writeFileSync(file, numbered(from, count));
    return file;
  };
  expect(await producerFromFile(args, input('i1', 1, 10)).exited).toBe(0);
  const out1 = path.join(dir, 'out1');
  let m = member(bus, 'g', out1);
  await until(() => linesOf(out1).length === 1, 10_000, 'the newest chunk');
  expect(linesOf(out1)).toEqual([10]);
  m.child.kill('SIGTERM');
  expect(await m.exited).toBe(143);
  expect(await producerFromFile(args, input('i2', 11, 20)).exited).toBe(0);
  m = member(bus, 'g', out1);
  await until(() => linesOf(out1).length === 21, 10_000, 'the chunks published while no member ran');
  expect(linesOf(out1)).toEqual(Array.from({ length: 21 }, (_, i) => 10 + i));
  const out2 = path.join(dir, 'out2');
  member(bus, 'fresh', out2, ['--replay']);
  await until(() => linesOf(out2).length === 30, 10_000, 'the replayed chunks');
  expect(linesOf(out2)).toEqual(Array.from({ length: 30 }, (_, i) => 1 + i));
}, 60_000);

test('group remove: refused while a member runs, then the group is gone and a waiting producer goes on', async () => {
  const dir = tempDir();
  const bus = path.join(dir, 'bus');
  const out = path.join(dir, 'out');
  const m = member(bus, 'g', out);
  await joined(bus, 'g');
  const refused = filebus(['--filename', bus, 'group', 'remove', 'g']);
  expect(await refused.exited).toBe(1);
  expect(refused.stderr()).toMatch(/^filebus: group g has 1 member\(s\) running \(PID \d+\); stop them first\n$/);
  m.child.kill('SIGKILL');
  await m.exited;
  const input = path.join(dir, 'input');
  fs.writeFileSync(input, numbered(1, 300));
  const producer = producerFromFile(['--filename', bus, '--history', '100', '--block-size', '6'], input, ['--wait-for-groups']);
  await until(() => fs.existsSync(`${bus}.history/head`) && Number(fs.readFileSync(`${bus}.history/head`, 'latin1')) >= 100, 10_000, 'the window to fill').catch((error: Error) => {
    throw new Error(`${error.message}; producer: ${producer.stderr()}, exit ${producer.child.exitCode}, head ${fs.existsSync(`${bus}.history/head`) ? fs.readFileSync(`${bus}.history/head`, 'latin1') : 'none'}`);
  });
  await sleep(300);
  expect(producer.child.exitCode).toBe(null);
  const removed = filebus(['--filename', bus, 'group', 'remove', 'g']);
  expect(await removed.exited, removed.stderr()).toBe(0);
  expect(fs.existsSync(`${bus}.groups/g`)).toBe(false);
  expect(await producer.exited, producer.stderr()).toBe(0);
});

test('bad group names and options are one usage line', async () => {
  const dir = tempDir();
  const bus = path.join(dir, 'bus');
  for (const args of [
    ['consumer', '--group', '../x'],
    ['consumer', '--group', '-x'],
    ['--back-pressure', 'consumer', '--group', 'g'],
    ['producer', '--wait-for-groups'],
    ['group', 'remove'],
    ['group', 'remove', '.hidden'],
  ]) {
    const p = filebus(['--filename', bus, ...args], { stdin: 'ignore' });
    expect(await p.exited, args.join(' ')).toBe(2);
    expect(p.stderr().trim().split('\n'), args.join(' ')).toHaveLength(1);
    expect(hasStackTrace(p.stderr())).toBe(false);
  }
});

test('chunks published without history reach a group of 2 at most once, outside its position; history chunks before and after come exactly once', async () => {
  const dir = tempDir();
  const bus = path.join(dir, 'bus');
  const outs = [path.join(dir, 'a'), path.join(dir, 'b')];
  const members = outs.map((out) => member(bus, 'g', out));
  await joined(bus, 'g', 2);
  const all = () => outs.flatMap(linesOf);
  const historyArgs = ['--filename', bus, '--history', '1000', '--block-size', '6'];
  const before = path.join(dir, 'before');
  fs.writeFileSync(before, numbered(1, 100));
  expect(await producerFromFile(historyArgs, before).exited).toBe(0);
  await until(() => all().length >= 100, 10_000, 'the first history chunks');
  const positionBefore = Number(fs.readFileSync(`${bus}.groups/g/position`, 'latin1'));

  // The original filebus's way: no history, each chunk has one link at F.
  // Each waits at F until the next publish; the next is written once the group has it, so none is missed under load.
  const plain = filebus(['--filename', bus, '--block-size', '6', 'producer', '--lines'], { stdin: 'pipe' });
  for (let line = 1001; line <= 1020; line++) {
    plain.child.stdin!.write(numbered(line, 1));
    await until(() => all().includes(line), 10_000, `plain chunk ${line}`);
  }
  plain.child.stdin!.end();
  expect(await plain.exited, plain.stderr()).toBe(0);
  await sleep(300); // a second delivery would show up now
  // Outside the group's position: it still points at the next history chunk.
  expect(Number(fs.readFileSync(`${bus}.groups/g/position`, 'latin1'))).toBe(positionBefore);

  const after = path.join(dir, 'after');
  fs.writeFileSync(after, numbered(101, 100));
  expect(await producerFromFile(historyArgs, after).exited).toBe(0);
  await until(() => all().filter((line) => line <= 200).length >= 200, 10_000, 'the later history chunks');
  await sleep(300);

  const lines = all();
  const history = lines.filter((line) => line <= 200).sort((x, y) => x - y);
  expect(history).toEqual(Array.from({ length: 200 }, (_, i) => i + 1));
  // At most once for the group, though both members were waiting for each.
  expect(lines.filter((line) => line > 1000).sort((x, y) => x - y)).toEqual(Array.from({ length: 20 }, (_, i) => 1001 + i));
  for (const m of members) expect(m.stderr()).toBe('');
}, 60_000);

test('--wait-for-groups: a held producer behaves as a back-pressure one on SIGTERM: it keeps waiting to publish what it read; a second SIGTERM ends it and says how many bytes were not published', async () => {
  const dir = tempDir();
  const bus = path.join(dir, 'bus');
  const out = path.join(dir, 'out');
  const m = member(bus, 'slow', out);
  await joined(bus, 'slow');
  m.child.kill('SIGSTOP');
  try {
    const producer = filebus(['--filename', bus, '--history', '10', '--block-size', '6', '-v', 'producer', '--lines', '--wait-for-groups'], { stdin: 'pipe' });
    producer.child.stdin!.write(numbered(1, 20));
    await until(() => producer.stderr().includes('waiting for group slow'), 10_000, 'the producer to wait for the group');
    producer.child.kill('SIGTERM');
    await sleep(500);
    // Still waiting to publish what it read.
    expect(producer.child.exitCode).toBe(null);
    expect(Number(fs.readFileSync(`${bus}.history/head`, 'latin1'))).toBeLessThanOrEqual(11);
    producer.child.kill('SIGTERM');
    expect(await producer.exited).toBe(143);
    expect(producer.stderr()).toMatch(/filebus: stopped by a second signal: \d+ bytes read from standard input were not published\n$/);
    const unpublished = Number(/: (\d+) bytes read/.exec(producer.stderr())![1]);
    expect(unpublished).toBeGreaterThan(0);
    expect(unpublished % 6).toBe(0);
  } finally {
    m.child.kill('SIGCONT');
  }
}, 60_000);

test('F.history swapped for a link to a directory outside the bus while a member runs: the member refuses it in one line and delivers nothing from there', async () => {
  const dir = tempDir();
  const bus = path.join(dir, 'bus');
  const args = ['--filename', bus, '--history', '100', '--block-size', '6'];
  const out = path.join(dir, 'out');
  const m = member(bus, 'g', out, ['--sleep-interval', '0.05']);
  await joined(bus, 'g');
  const first = path.join(dir, 'first');
  fs.writeFileSync(first, numbered(1, 3));
  expect(await producerFromFile(args, first).exited).toBe(0);
  await until(() => linesOf(out).length === 3, 10_000, 'the first 3 chunks');
  // Outside the bus: a look-alike history whose next entry is not the bus's.
  const outside = path.join(dir, 'outside');
  fs.mkdirSync(outside);
  fs.writeFileSync(path.join(outside, '0000000000000004'), '99999\n');
  fs.writeFileSync(path.join(outside, 'head'), '0000000000000004\n');
  fs.renameSync(`${bus}.history`, `${bus}.history.moved`);
  fs.symlinkSync(outside, `${bus}.history`);
  expect(await within(m.exited, 10_000, 'the member to stop')).toBe(1);
  const lines = m.stderr().split('\n').filter((l) => l !== '');
  expect(lines).toHaveLength(1);
  expect(lines[0]).toMatch(/^filebus: .*bus\.history.*link/);
  expect(linesOf(out)).toEqual([1, 2, 3]);
  expect(fs.readdirSync(`${bus}.groups/g/claims`)).toEqual([]);
}, 30_000);
