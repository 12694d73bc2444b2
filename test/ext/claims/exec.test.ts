/**
 * consumer --exec: every chunk runs a real shell command; a chunk leaves
 * the bus when the command exits 0, is retried otherwise, and ends in
 * F.dead/ after --retries attempts. Claims held by a consumer's flock go
 * to another consumer when it dies.
 */
import fs from 'node:fs';
import path from 'node:path';
import { expect, test } from 'vitest';
import { type Proc, filebus, sleep, tempDir, until, within } from '../../helpers.js';

/** Record i: fixed width, one line, so a chunk of --lines --block-size WIDTH holds exactly one. */
const WIDTH = 11;
const record = (i: number) => `job-${String(i).padStart(6, '0')}\n`;

function setUp(count: number) {
  const dir = tempDir();
  const bus = path.join(dir, 'bus');
  const input = path.join(dir, 'input');
  fs.writeFileSync(input, Array.from({ length: count }, (_, i) => record(i)).join(''));
  const out = path.join(dir, 'out');
  fs.writeFileSync(out, '');
  const args = ['--filename', bus, '--lossless'];
  const produce = () => {
    const fd = fs.openSync(input, 'r');
    const producer = filebus([...args, 'producer', '--lines', '--block-size', String(WIDTH)], { stdin: fd });
    fs.closeSync(fd);
    return producer;
  };
  const consume = (command: string, ...more: string[]) => filebus([...args, 'consumer', '--exec', command, ...more], { stdin: 'ignore' });
  /** How many times each record was done, from the file the jobs append to. */
  const counts = () => {
    const seen = new Map<string, number>();
    for (const line of fs.readFileSync(out, 'latin1').split('\n')) if (line !== '') seen.set(line, (seen.get(line) ?? 0) + 1);
    return seen;
  };
  return { dir, bus, out, produce, consume, counts };
}

/** Every record from 0 to count-1 done at least once; returns how many were done more than once, in all. */
function allDone(counts: Map<string, number>, count: number, except = new Set<number>()): number {
  let extra = 0;
  for (let i = 0; i < count; i++) {
    const n = counts.get(record(i).trimEnd()) ?? 0;
    if (except.has(i)) expect(n, `${record(i).trimEnd()} must not be done`).toBe(0);
    else expect(n, `${record(i).trimEnd()} done`).toBeGreaterThanOrEqual(1);
    extra += Math.max(0, n - 1);
  }
  expect([...counts.keys()].filter((line) => !/^job-\d{6}$/.test(line)), 'garbled lines').toEqual([]);
  return extra;
}

test('2,000 jobs through 3 consumers with --jobs 2: every job exactly once, and the consumer that takes the end exits 0 when all are done', async () => {
  const count = 2000;
  const { bus, out, produce, consume, counts } = setUp(count);
  const consumers = [0, 1, 2].map(() => consume(`cat >> ${out}`, '--jobs', '2'));
  const producer = produce();
  // Slow only on a machine under load: each chunk is a round trip between the producer and a consumer.
  expect(await within(producer.exited, 420_000, 'the producer')).toBe(0);
  const first = await within(Promise.race(consumers.map((c, i) => c.exited.then((status) => ({ i, status })))), 60_000, 'a consumer to exit');
  expect(first.status, consumers[first.i]!.stderr()).toBe(0);
  // Checked before the others are stopped: its exit 0 says every job of the stream is done.
  const extra = allDone(counts(), count);
  expect(extra).toBe(0);
  expect(fs.readdirSync(`${bus}.claims`)).toEqual([]);
  expect(fs.existsSync(bus)).toBe(false);
  // The others wait for the next stream, as plain back-pressure consumers do.
  for (const [i, c] of consumers.entries()) if (i !== first.i) expect(c.child.exitCode).toBe(null);
}, 500_000);

test('consumers SIGKILLed at random (25 kills) and restarted: every job done at least once, duplicates at most kills x jobs', async () => {
  const count = 1000;
  const jobs = 2;
  const { out, produce, consume, counts } = setUp(count);
  const command = `x=$(cat); sleep 0.01; echo "$x" >> ${out}`;
  const consumers: Proc[] = [0, 1, 2].map(() => consume(command, '--jobs', String(jobs)));
  const producer = produce();
  let producerDone = false;
  void producer.exited.then(() => (producerDone = true));
  let kills = 0;
  // Kills go on while the producer still has chunks to hand out: after that
  // the consumer that takes the end-of-stream chunk must live to say so.
  while (kills < 25 && !producerDone) {
    await sleep(150 + Math.random() * 150);
    if (producerDone) break;
    const victim = Math.floor(Math.random() * consumers.length);
    consumers[victim]!.child.kill('SIGKILL');
    await consumers[victim]!.exited;
    kills++;
    consumers[victim] = consume(command, '--jobs', String(jobs));
  }
  expect(kills, 'the producer ended before 25 kills: make the run longer').toBeGreaterThanOrEqual(25);
  expect(await producer.exited).toBe(0);
  const first = await within(Promise.race(consumers.map((c, i) => c.exited.then((status) => ({ i, status })))), 60_000, 'a consumer to exit');
  expect(first.status, consumers[first.i]!.stderr()).toBe(0);
  // Jobs of killed consumers run on, detached; give the stragglers a moment so duplicates are all counted.
  await sleep(200);
  const extra = allDone(counts(), count);
  expect(extra).toBeLessThanOrEqual(kills * jobs);
}, 240_000);

test('a command failing on a fixed 5 % of the jobs: those end in F.dead/ with their status, the rest are done once; moved back after mending, they are done', async () => {
  const count = 200;
  const { dir, bus, out, produce, consume, counts } = setUp(count);
  const failing = new Set(Array.from({ length: count }, (_, i) => i).filter((i) => i % 20 === 7));
  const script = path.join(dir, 'job.sh');
  // Mended by replacing the script: the command line stays the same.
  fs.writeFileSync(script, `x=$(cat); case "$x" in *7|*7\\n) n=\${x#job-}; [ $(( 1\${n} % 20 )) -eq 7 ] && exit 7;; esac; echo "$x" >> ${out}\n`);
  const consumers = [consume(`sh ${script}`, '--jobs', '3', '--retries', '2'), consume(`sh ${script}`, '--jobs', '3', '--retries', '2')];
  const producer = produce();
  expect(await producer.exited).toBe(0);
  const first = await within(Promise.race(consumers.map((c, i) => c.exited.then((status) => ({ i, status })))), 60_000, 'a consumer to exit');
  expect(first.status).toBe(0);
  for (const c of consumers) c.child.kill('SIGTERM');
  await Promise.all(consumers.map((c) => c.exited));
  const extra = allDone(counts(), count, failing);
  expect(extra).toBe(0);
  const dead = fs.readdirSync(`${bus}.dead`).sort();
  expect(dead).toHaveLength(failing.size);
  for (const name of dead) expect(name).toMatch(/\.exit-7\.attempts-2$/);
  expect(new Set(dead.map((name) => fs.readFileSync(path.join(`${bus}.dead`, name), 'latin1')))).toEqual(new Set([...failing].map(record)));
  const stderr = consumers.map((c) => c.stderr()).join('');
  expect(stderr).toMatch(/chunk \S+ failed: exit status 7 \(attempt 1 of 2\); to be retried/);
  expect(stderr).toMatch(/chunk \S+ failed: exit status 7 \(attempt 2 of 2\); moved to \S+\.dead\/\S+\.exit-7\.attempts-2/);

  // Mend the command, put the dead letters back with mv, and run again.
  fs.writeFileSync(script, `cat >> ${out}\n`);
  for (const name of dead) fs.renameSync(path.join(`${bus}.dead`, name), path.join(`${bus}.claims`, name));
  const again = consume(`sh ${script}`);
  const endOnly = filebus(['--filename', bus, '--lossless', 'producer'], { stdin: 'ignore' });
  expect(await endOnly.exited).toBe(0);
  expect(await within(again.exited, 30_000, 'the mended consumer')).toBe(0);
  expect(allDone(counts(), count)).toBe(0);
  expect(fs.readdirSync(`${bus}.dead`)).toEqual([]);
  expect(fs.readdirSync(`${bus}.claims`)).toEqual([]);
}, 120_000);

/** A command that says it started (its process group's id in a file named by its chunk), then waits for `gate` before it does its work. */
function gated(dir: string, out: string, gate: string): string {
  return `x=$(cat); echo $$ > ${dir}/started.$FILEBUS_CHUNK_ID; while [ ! -e ${gate} ]; do sleep 0.01; done; echo "$x" >> ${out}`;
}
const started = (dir: string) => fs.readdirSync(dir).filter((name) => name.startsWith('started.'));

test('SIGTERM: no new chunk is taken, the running jobs finish and are acknowledged, exit 143', async () => {
  const count = 10;
  const { dir, bus, out, produce, consume, counts } = setUp(count);
  const gate = path.join(dir, 'gate');
  const consumer = consume(gated(dir, out, gate), '--jobs', '2');
  const producer = produce();
  await until(() => started(dir).length === 2 && fs.existsSync(bus), 30_000, 'two jobs running and a third chunk waiting');
  consumer.child.kill('SIGTERM');
  // Still running: it waits for its jobs, and takes nothing more meanwhile.
  await sleep(300);
  expect(consumer.child.exitCode).toBe(null);
  fs.writeFileSync(gate, '');
  expect(await within(consumer.exited, 10_000, 'the consumer')).toBe(143);
  expect(started(dir)).toHaveLength(2);
  expect([...counts().values()]).toEqual([1, 1]);
  expect(fs.readdirSync(`${bus}.claims`)).toEqual([]);
  // The rest is still on the bus for another consumer.
  const rest = consume(`cat >> ${out}`);
  expect(await within(rest.exited, 30_000, 'a second consumer')).toBe(0);
  expect(await producer.exited).toBe(0);
  expect(allDone(counts(), count)).toBe(0);
}, 60_000);

test('a second signal ends the running jobs with their process groups and exits; another consumer does their chunks', async () => {
  const count = 6;
  const { dir, bus, out, produce, consume, counts } = setUp(count);
  const gate = path.join(dir, 'gate');
  const consumer = consume(gated(dir, out, gate), '--jobs', '2');
  const producer = produce();
  await until(() => started(dir).length === 2, 30_000, 'two jobs running');
  const groups = started(dir).map((name) => Number(fs.readFileSync(path.join(dir, name), 'latin1')));
  consumer.child.kill('SIGTERM');
  await sleep(200);
  consumer.child.kill('SIGTERM');
  expect(await within(consumer.exited, 10_000, 'the consumer')).toBe(143);
  expect(consumer.stderr()).toMatch(/stopped by a second signal: 2 running jobs killed/);
  // The jobs and their children are gone, and did not do their work.
  for (const group of groups) await until(() => !alive(group), 5000, `job ${group} to end`);
  fs.writeFileSync(gate, '');
  expect(counts().size).toBe(0);
  expect(fs.readdirSync(`${bus}.claims`)).toHaveLength(2);
  const next = consume(`cat >> ${out}`);
  expect(await within(next.exited, 30_000, 'the next consumer')).toBe(0);
  expect(await producer.exited).toBe(0);
  expect(allDone(counts(), count)).toBe(0);
}, 60_000);

test('a consumer SIGKILLed after the producer ended: the consumer that took the end does its claims, then exits 0', async () => {
  const count = 10;
  const { dir, bus, out, produce, consume, counts } = setUp(count);
  const gate = path.join(dir, 'never');
  // A slow consumer holds two chunks; a fast one takes the rest and the end.
  const slow = consume(gated(dir, out, gate), '--jobs', '2');
  const producer = produce();
  await until(() => started(dir).length === 2, 30_000, 'two slow jobs running');
  const fast = consume(`cat >> ${out}`);
  expect(await within(producer.exited, 30_000, 'the producer')).toBe(0);
  // The stream has ended; the fast consumer waits for the slow one's claims, which a live consumer keeps.
  await until(() => counts().size === count - 2, 20_000, 'the fast consumer to do the rest');
  await sleep(300);
  expect(fast.child.exitCode).toBe(null);
  slow.child.kill('SIGKILL');
  await slow.exited;
  // Its jobs run on detached: end them, as a reboot would.
  for (const name of started(dir)) process.kill(-Number(fs.readFileSync(path.join(dir, name), 'latin1')), 'SIGKILL');
  expect(await within(fast.exited, 10_000, 'the fast consumer')).toBe(0);
  expect(allDone(counts(), count)).toBe(0);
  expect(fs.readdirSync(`${bus}.claims`)).toEqual([]);
}, 60_000);

function alive(pid: number): boolean {
  try {
    process.kill(-pid, 0);
    return true;
  } catch {
    return false;
  }
}

test('the bash consumer keeps taking F beside a claiming consumer: every job exactly once between them', async () => {
  const count = 150;
  const { bus, out, produce, consume, counts } = setUp(count);
  const claiming = consume(`cat >> ${out}`, '--jobs', '2');
  const plain = filebus(['--filename', bus, '--lossless', 'consumer'], { impl: 'bash', stdin: 'ignore' });
  const producer = produce();
  expect(await within(producer.exited, 60_000, 'the producer')).toBe(0);
  // One of the two took the end; the other waits for the next stream. SIGTERM lets the claiming one finish its jobs.
  await within(Promise.race([claiming.exited, plain.exited]), 30_000, 'a consumer to take the end');
  claiming.child.kill('SIGTERM');
  plain.child.kill('SIGTERM');
  await Promise.all([claiming.exited, plain.exited]);
  const seen = counts();
  for (const line of plain.stdout().toString('latin1').split('\n')) if (line !== '') seen.set(line, (seen.get(line) ?? 0) + 1);
  expect(allDone(seen, count)).toBe(0);
  expect(counts().size, 'the claiming consumer did some').toBeGreaterThan(0);
  expect(seen.size - counts().size, 'the bash consumer did some').toBeGreaterThan(0);
}, 90_000);
