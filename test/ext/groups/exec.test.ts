/**
 * `consumer --group NAME --exec CMD` (issue 19): a durable group's members
 * run a real shell command per chunk; a chunk leaves the group's claims
 * when the command exits 0, is retried otherwise, and ends in
 * F.groups/NAME/dead/ after --retries attempts. A member SIGKILLed
 * mid-job leaves its claim to the other member.
 */
import fs from 'node:fs';
import path from 'node:path';
import { expect, test } from 'vitest';
import { consume } from '../../../src/index.js';
import { type Proc, filebus, sleep, tempDir, until, within } from '../../helpers.js';

/** Lines "00001" .. : 6 bytes each, so with --block-size 6 --lines each is one chunk. */
const line = (i: number) => String(i).padStart(5, '0');

function setUp(count: number) {
  const dir = tempDir();
  const bus = path.join(dir, 'bus');
  const out = path.join(dir, 'out');
  fs.writeFileSync(out, '');
  const input = path.join(dir, 'input');
  fs.writeFileSync(input, Array.from({ length: count }, (_, i) => `${line(i + 1)}\n`).join(''));
  const group = `${bus}.groups/g`;
  const member = (command: string, ...more: string[]): Proc => filebus(['--filename', bus, 'consumer', '--group', 'g', '--exec', command, ...more], { stdin: 'ignore' });
  const produce = (): Proc => {
    const fd = fs.openSync(input, 'r');
    const producer = filebus(['--filename', bus, '--history', '100000', '--block-size', '6', 'producer', '--lines'], { stdin: fd });
    fs.closeSync(fd);
    return producer;
  };
  /** How many times each line was done, from the file the jobs append to. */
  const counts = (): Map<string, number> => {
    const seen = new Map<string, number>();
    for (const text of fs.readFileSync(out, 'latin1').split('\n')) if (text !== '') seen.set(text, (seen.get(text) ?? 0) + 1);
    return seen;
  };
  /** Resolves once `n` members run (their member files are there). */
  const joined = (n: number) => until(() => fs.existsSync(`${group}/members`) && fs.readdirSync(`${group}/members`).length >= n, 10_000, `${n} member(s) to join`);
  /** Nothing left in the group's claims: every chunk done or dead. */
  const settled = () => until(() => fs.existsSync(`${group}/claims`) && fs.readdirSync(`${group}/claims`).length === 0, 60_000, 'the claims to empty');
  return { dir, bus, out, group, member, produce, counts, joined, settled };
}

async function stopAll(members: Proc[]): Promise<void> {
  for (const m of members) m.child.kill('SIGTERM');
  for (const m of members) expect(await within(m.exited, 10_000, 'a member to stop'), m.stderr()).toBe(143);
}

test('500 chunks through a group of 2 members with --exec and --jobs 2: every chunk exactly once, both members work', async () => {
  const count = 500;
  const { out, member, produce, counts, joined, settled } = setUp(count);
  // Each job also says which member ran it ($PPID: the member's pid).
  const members = [0, 1].map(() => member(`x=$(cat); echo "$x" >> ${out}; echo $PPID >> ${out}.who`, '--jobs', '2'));
  // Joined before the first chunk: the group starts at seq 1 and gets every chunk.
  await joined(2);
  const producer = produce();
  expect(await within(producer.exited, 120_000, 'the producer'), producer.stderr()).toBe(0);
  await until(() => counts().size === count, 120_000, 'every chunk to be done');
  await settled();
  const seen = counts();
  for (let i = 1; i <= count; i++) expect(seen.get(line(i)), line(i)).toBe(1);
  expect(seen.size).toBe(count);
  const who = new Set(fs.readFileSync(`${out}.who`, 'latin1').split('\n').filter((pid) => pid !== ''));
  expect(who).toEqual(new Set(members.map((m) => String(m.child.pid))));
  await stopAll(members);
}, 180_000);

test('a command failing on a fixed set of chunks: those end in the group\'s dead letters with their status and attempts, the rest are done once; moved back after mending, they are done', async () => {
  const count = 200;
  const { dir, bus, out, group, member, produce, counts, joined, settled } = setUp(count);
  const failing = new Set(Array.from({ length: count }, (_, i) => i + 1).filter((i) => i % 25 === 7));
  const script = path.join(dir, 'job.sh');
  const tries = path.join(dir, 'tries');
  // Mended by replacing the script: the command line stays the same.
  fs.writeFileSync(script, `x=$(cat); echo "$x $FILEBUS_ATTEMPT" >> ${tries}; [ $(( 1$x % 25 )) -eq 7 ] && exit 7; echo "$x" >> ${out}\n`);
  const members = [0, 1].map(() => member(`sh ${script}`, '--jobs', '2', '--retries', '2'));
  await joined(2);
  const producer = produce();
  expect(await within(producer.exited, 60_000, 'the producer'), producer.stderr()).toBe(0);
  await until(() => fs.existsSync(`${group}/dead`) && fs.readdirSync(`${group}/dead`).length === failing.size, 60_000, 'the dead letters');
  await settled();
  const seen = counts();
  for (let i = 1; i <= count; i++) expect(seen.get(line(i)), line(i)).toBe(failing.has(i) ? undefined : 1);
  // Each failing chunk tried twice (attempts 1 and 2), the others once.
  const attempts = fs.readFileSync(tries, 'latin1').split('\n').filter((t) => t !== '');
  for (const i of failing) expect(attempts.filter((t) => t.startsWith(`${line(i)} `)).sort()).toEqual([`${line(i)} 1`, `${line(i)} 2`]);
  const dead = fs.readdirSync(`${group}/dead`).sort();
  for (const name of dead) expect(name).toMatch(/^\d+\.exit-7\.attempts-2$/);
  expect(new Set(dead.map((name) => fs.readFileSync(`${group}/dead/${name}`, 'latin1').trim()))).toEqual(new Set([...failing].map(line)));
  // The members said why, once per failed attempt.
  const reports = members.flatMap((m) => m.stderr().split('\n')).filter((l) => /^filebus: chunk \d+ failed: exit status 7 \(attempt [12] of 2\)/.test(l));
  expect(reports).toHaveLength(failing.size * 2);
  // status counts them.
  const status = filebus(['--filename', bus, 'status', '--json']);
  expect(await status.exited, status.stderr()).toBe(0);
  expect(JSON.parse(status.stdout().toString()).groups).toEqual([expect.objectContaining({ name: 'g', deadLetters: failing.size, claimedInFlight: 0, membersAlive: 2 })]);
  // Mended, and put back as documented: the members take them again, from attempt 1.
  fs.writeFileSync(script, `x=$(cat); echo "$x" >> ${out}\n`);
  for (const name of dead) fs.renameSync(`${group}/dead/${name}`, `${group}/claims/${name}`);
  await until(() => counts().size === count, 30_000, 'the dead letters moved back to be done');
  await settled();
  const after = counts();
  for (let i = 1; i <= count; i++) expect(after.get(line(i)), line(i)).toBe(1);
  expect(fs.readdirSync(`${group}/dead`)).toEqual([]);
  await stopAll(members);
}, 120_000);

test('a member SIGKILLed mid-job: the other member takes its claim over and does the chunk; every chunk at least once', async () => {
  const count = 100;
  const { dir, out, member, produce, counts, joined } = setUp(count);
  const held = path.join(dir, 'held');
  // The first attempt at chunk 00042 records who runs it (the member, the job's process group) and hangs.
  const command = `x=$(cat); if [ "$x" = 00042 ] && mkdir ${held}.d 2>/dev/null; then echo "$PPID $$" > ${held}.tmp; mv ${held}.tmp ${held}; sleep 60; fi; echo "$x" >> ${out}`;
  const members = [0, 1].map(() => member(command, '--jobs', '2'));
  await joined(2);
  const producer = produce();
  expect(await within(producer.exited, 60_000, 'the producer'), producer.stderr()).toBe(0);
  await until(() => fs.existsSync(held), 30_000, 'chunk 00042 to be taken');
  const [memberPid, jobGroup] = fs.readFileSync(held, 'latin1').trim().split(' ').map(Number);
  const victim = members.findIndex((m) => m.child.pid === memberPid);
  expect(victim, `member pid ${memberPid}`).toBeGreaterThanOrEqual(0);
  members[victim]!.child.kill('SIGKILL');
  await members[victim]!.exited;
  // Its job runs on in a process group of its own, as after any kill: ended here, so it adds nothing later.
  try {
    process.kill(-jobGroup!, 'SIGKILL');
  } catch {}
  const other = members[1 - victim]!;
  await until(() => counts().size === count, 30_000, 'every chunk to be done');
  const seen = counts();
  for (let i = 1; i <= count; i++) expect(seen.get(line(i)) ?? 0, line(i)).toBeGreaterThanOrEqual(1);
  expect(seen.get('00042')).toBe(1);
  expect(other.child.exitCode).toBe(null);
  await stopAll([other]);
}, 120_000);

test('consume({ group, jobs, retries }): a rejected deliver is retried, then its chunk is in the group\'s dead letters; the rest once', async () => {
  const count = 60;
  const { bus, group, produce, joined } = setUp(count);
  const stop = new AbortController();
  const done = new Map<string, number>();
  const tries = new Map<string, number>();
  let inFlight = 0;
  let most = 0;
  const consuming = consume({ filename: bus, group: 'g', jobs: 3, retries: 2, signal: stop.signal, onFailure: () => {} }, async (chunk) => {
    const text = chunk.toString('latin1').trim();
    tries.set(text, (tries.get(text) ?? 0) + 1);
    inFlight++;
    most = Math.max(most, inFlight);
    await sleep(5);
    inFlight--;
    if (text.endsWith('3')) throw new Error(`no ${text}`);
    done.set(text, (done.get(text) ?? 0) + 1);
  });
  const failed = consuming.catch((error: unknown) => error);
  await joined(1);
  const producer = produce();
  expect(await within(producer.exited, 60_000, 'the producer'), producer.stderr()).toBe(0);
  const failing = Array.from({ length: count }, (_, i) => line(i + 1)).filter((l) => l.endsWith('3'));
  await until(() => done.size === count - failing.length && fs.existsSync(`${group}/dead`) && fs.readdirSync(`${group}/dead`).length === failing.length, 30_000, 'the chunks to be done');
  stop.abort();
  expect(await failed).toBe(stop.signal.reason);
  expect(most).toBe(3);
  for (let i = 1; i <= count; i++) {
    const l = line(i);
    if (failing.includes(l)) expect(tries.get(l), l).toBe(2);
    else expect(done.get(l), l).toBe(1);
  }
  for (const name of fs.readdirSync(`${group}/dead`)) expect(name).toMatch(/^\d+\.error\.attempts-2$/);
}, 90_000);

test('a chunk without history (one link at F) failing every attempt: retried from memory, then dropped with one line; it has no claim to keep it', async () => {
  const { dir, bus, group, member, joined } = setUp(0);
  const tries = path.join(dir, 'tries');
  const m = member(`cat >> ${tries}; exit 3`, '--retries', '2');
  await joined(1);
  const input = path.join(dir, 'plain');
  fs.writeFileSync(input, '00001\n');
  const fd = fs.openSync(input, 'r');
  const producer = filebus(['--filename', bus, '--no-history', 'producer'], { stdin: fd });
  fs.closeSync(fd);
  expect(await producer.exited, producer.stderr()).toBe(0);
  await until(() => m.stderr().includes('attempt 2 of 2'), 10_000, 'the second failure');
  expect(fs.readFileSync(tries, 'latin1')).toBe('00001\n00001\n');
  const reports = m.stderr().split('\n').filter((l) => l !== '');
  expect(reports).toEqual([
    expect.stringMatching(/^filebus: chunk plain \S+ failed: exit status 3 \(attempt 1 of 2\); to be retried$/),
    expect.stringMatching(/^filebus: chunk plain \S+ failed: exit status 3 \(attempt 2 of 2\); moved to nowhere \(a chunk without history has no claim to keep it\)$/),
  ]);
  expect(fs.existsSync(`${group}/dead`)).toBe(false);
  await stopAll([m]);
}, 30_000);
