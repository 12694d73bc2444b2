/**
 * The load test shared by load.test.ts (32 MiB) and soak.test.ts
 * (FILEBUS_SOAK_BYTES, 1 GiB by default): fixed-size numbered records go
 * through 2 back-pressure producers and 3 consumers while consumers are
 * killed with SIGKILL and restarted at random; afterwards every record must
 * have arrived, duplicates are bounded by what was in flight at the kills,
 * and no process grew past a memory cap. The kills follow the file's seed
 * (test/support/random.ts: FILEBUS_TEST_SEED repeats a run).
 */
import fs from 'node:fs';
import path from 'node:path';
import { expect } from 'vitest';
import { type Proc, filebus, memoryKiB, random, sleep, stop, tempDir, testSeed } from '../helpers.js';

/** Bytes in one record: 16 decimal digits of id, ':', 46 check letters, '\n'. */
export const RECORD = 64;

const DIGITS = 16;
const letterOf = (id: number) => 97 + (id % 26);

/** Writes record `id` at `offset`. */
export function writeRecord(buffer: Buffer, offset: number, id: number): void {
  buffer.write(String(id).padStart(DIGITS, '0'), offset, 'latin1');
  buffer[offset + DIGITS] = 58; // ':'
  buffer.fill(letterOf(id), offset + DIGITS + 1, offset + RECORD - 1);
  buffer[offset + RECORD - 1] = 10;
}

/** Records `firstId` .. `firstId + count - 1`, in order. */
export function records(firstId: number, count: number): Buffer {
  const buffer = Buffer.allocUnsafe(count * RECORD);
  for (let i = 0; i < count; i++) writeRecord(buffer, i * RECORD, firstId + i);
  return buffer;
}

/** Writes records `firstId` .. `firstId + count - 1` to `file`, a MiB at a time. */
export function writeRecordFile(file: string, firstId: number, count: number): void {
  const batch = (1 << 20) / RECORD;
  const fd = fs.openSync(file, 'w');
  try {
    for (let done = 0; done < count; done += batch) {
      fs.writeSync(fd, records(firstId + done, Math.min(batch, count - done)));
    }
  } finally {
    fs.closeSync(fd);
  }
}

/**
 * Counts the records seen in outputs. Each output must be a sequence of
 * whole, intact records; only its very end may hold part of one (the
 * output of a process killed in the middle of a write).
 */
export class RecordTally {
  readonly counts: Uint8Array;
  /** Records that were not intact, or not from the input (the first few are kept in `examples`). */
  garbage = 0;
  readonly examples: string[] = [];
  /** Bytes of part-records at the end of outputs. */
  partial = 0;

  constructor(readonly total: number) {
    this.counts = new Uint8Array(total);
  }

  /** One output, whole. */
  add(data: Buffer): void {
    const whole = data.length - (data.length % RECORD);
    this.partial += data.length - whole;
    for (let offset = 0; offset < whole; offset += RECORD) this.#record(data, offset);
  }

  /** One output file, read a few MiB at a time. */
  addFile(file: string): void {
    const fd = fs.openSync(file, 'r');
    const buffer = Buffer.allocUnsafe(4 << 20);
    try {
      let kept = 0;
      for (;;) {
        const n = fs.readSync(fd, buffer, kept, buffer.length - kept, null);
        const length = kept + n;
        const whole = length - (length % RECORD);
        for (let offset = 0; offset < whole; offset += RECORD) this.#record(buffer, offset);
        kept = length - whole;
        if (n === 0) {
          this.partial += kept;
          return;
        }
        buffer.copy(buffer, 0, whole, length);
      }
    } finally {
      fs.closeSync(fd);
    }
  }

  #record(data: Buffer, offset: number): void {
    let id = 0;
    let ok = true;
    for (let i = 0; i < DIGITS; i++) {
      const digit = data[offset + i]! - 48;
      if (digit < 0 || digit > 9) ok = false;
      id = id * 10 + digit;
    }
    const letter = letterOf(id);
    ok &&= id < this.total && data[offset + DIGITS] === 58 && data[offset + DIGITS + 1] === letter && data[offset + RECORD - 2] === letter && data[offset + RECORD - 1] === 10;
    if (!ok) {
      this.garbage++;
      if (this.examples.length < 5) this.examples.push(JSON.stringify(data.toString('latin1', offset, offset + RECORD)));
      return;
    }
    if (this.counts[id]! < 255) this.counts[id]!++;
  }

  /** Ids never seen (the first few), how many, and how many extra copies arrived. */
  summary(): { missing: number; firstMissing: number[]; duplicates: number } {
    let missing = 0;
    let duplicates = 0;
    const firstMissing: number[] = [];
    for (let id = 0; id < this.total; id++) {
      const count = this.counts[id]!;
      if (count === 0) {
        missing++;
        if (firstMissing.length < 10) firstMissing.push(id);
      } else duplicates += count - 1;
    }
    return { missing, firstMissing, duplicates };
  }
}

export interface LoadOptions {
  /** Bytes to send, split between the producers (rounded down to whole records). */
  bytes: number;
  producers?: number;
  consumers?: number;
  blockSize?: number;
  /** A consumer is killed every killEveryMs[0] .. killEveryMs[1] ms while producers run. */
  killEveryMs?: [number, number];
  /** Largest resident memory any producer or consumer may reach, MiB. */
  memoryCapMiB?: number;
  /** Fail if no consumer output grows for this long. */
  stallMs?: number;
  seed?: number;
  /** Where the input and output files go (default: tempDir()). */
  dir?: string;
}

export interface LoadResult {
  seed: number;
  bytes: number;
  records: number;
  seconds: number;
  kills: number;
  consumersStarted: number;
  duplicates: number;
  /** Largest VmHWM seen, KiB. */
  peakKiB: { producer: number; consumer: number };
}

/**
 * Runs the load and checks its promises with expect(); returns the numbers
 * for the caller to log.
 */
export async function runLoad(options: LoadOptions): Promise<LoadResult> {
  const producerCount = options.producers ?? 2;
  const consumerCount = options.consumers ?? 3;
  const blockSize = options.blockSize ?? 4096;
  const [killMin, killMax] = options.killEveryMs ?? [100, 500];
  const capKiB = (options.memoryCapMiB ?? 80) * 1024;
  const stallMs = options.stallMs ?? 20_000;
  const seed = options.seed ?? testSeed();
  const rng = random(seed);
  const context = `(seed ${seed})`;
  expect(blockSize % RECORD, 'chunks must hold whole records').toBe(0);

  const dir = options.dir ?? tempDir();
  const bus = path.join(dir, 'bus');
  const perProducer = Math.floor(options.bytes / RECORD / producerCount);
  const total = perProducer * producerCount;
  const common = ['--filename', bus, '--back-pressure', '--block-size', String(blockSize)];

  // Producers read regular files, in whole blocks, so every chunk holds whole records.
  const producers: Proc[] = [];
  for (let p = 0; p < producerCount; p++) {
    const input = path.join(dir, `in-${p}`);
    writeRecordFile(input, p * perProducer, perProducer);
    const fd = fs.openSync(input, 'r');
    producers.push(filebus([...common, 'producer'], { stdin: fd }));
    fs.closeSync(fd);
  }
  const started = performance.now();

  // Each consumer process writes to a file of its own, read back at the end.
  const outputs: string[] = [];
  const consumers: Proc[] = [];
  const startConsumer = (): Proc => {
    const file = path.join(dir, `out-${outputs.length}`);
    outputs.push(file);
    const fd = fs.openSync(file, 'w');
    const consumer = filebus([...common, 'consumer'], { stdin: 'ignore', stdout: fd });
    fs.closeSync(fd);
    consumers.push(consumer);
    return consumer;
  };
  const alive = (proc: Proc) => proc.child.exitCode === null && proc.child.signalCode === null;
  const slots = Array.from({ length: consumerCount }, startConsumer);

  const peakKiB = { producer: 0, consumer: 0 };
  const sample = () => {
    for (const [role, procs] of [['producer', producers], ['consumer', slots]] as const) {
      for (const proc of procs) {
        const memory = proc.child.pid === undefined ? undefined : memoryKiB(proc.child.pid);
        if (memory) peakKiB[role] = Math.max(peakKiB[role], memory.peak);
      }
    }
  };
  const sampler = setInterval(sample, 50);

  // Stall watchdog: consumer output must keep growing while producers run.
  let outputBytes = 0;
  let lastGrowth = performance.now();
  const checkProgress = () => {
    let bytes = 0;
    for (const file of outputs) bytes += fs.statSync(file).size;
    if (bytes > outputBytes) {
      outputBytes = bytes;
      lastGrowth = performance.now();
    } else if (performance.now() - lastGrowth > stallMs) {
      const busState = fs.existsSync(bus) ? `${bus} holds ${fs.statSync(bus).size} bytes` : `${bus} is absent`;
      throw new Error(`no consumer output for ${stallMs} ms ${context}: ${outputBytes} bytes so far, ${busState}, producers alive: ${producers.map(alive)}, consumers alive: ${slots.map(alive)}; stderr: ${[...producers, ...consumers].map((p) => p.stderr()).join('')}`);
    }
  };

  let kills = 0;
  let producersDone = false;
  const allProduced = Promise.all(producers.map((p) => p.exited)).then(() => {
    producersDone = true;
  });
  try {
    // Chaos: while producers run, kill one random consumer every 100-500 ms
    // and start another in its place. A consumer that took an end marker
    // and exited is replaced too: the other producer may still have data.
    while (!producersDone) {
      await Promise.race([sleep(killMin + rng() * (killMax - killMin)), allProduced]);
      sample();
      checkProgress();
      if (producersDone) break;
      const slot = Math.floor(rng() * consumerCount);
      const victim = slots[slot]!;
      if (alive(victim)) {
        victim.child.kill('SIGKILL');
        await victim.exited;
        kills++;
      }
      for (let i = 0; i < consumerCount; i++) if (!alive(slots[i]!)) slots[i] = startConsumer();
    }

    // Drain: both producers have published everything and their end
    // markers, so the bus holds at most the last end marker. Keep a consumer
    // running until it is gone; then nothing is in flight.
    while (fs.existsSync(bus)) {
      if (!slots.some(alive)) slots[0] = startConsumer();
      await sleep(20);
      checkProgress();
    }
  } finally {
    clearInterval(sampler);
  }
  await Promise.all(slots.map((proc) => stop(proc.child)));
  const seconds = (performance.now() - started) / 1000;

  for (const [i, producer] of producers.entries()) {
    expect(producer.stderr(), `producer ${i} stderr ${context}`).toBe('');
    expect(await producer.exited, `producer ${i} status ${context}`).toBe(0);
  }
  // Consumers not killed ended by an end marker (0) or, idle at the end, by SIGTERM (143), quietly.
  for (const consumer of consumers) {
    if (consumer.child.signalCode === 'SIGKILL') continue;
    expect(consumer.stderr(), `consumer stderr ${context}`).toBe('');
    expect([0, 143], `consumer status ${context}`).toContain(await consumer.exited);
  }

  const tally = new RecordTally(total);
  for (const file of outputs) {
    tally.addFile(file);
    fs.rmSync(file);
  }
  const { missing, firstMissing, duplicates } = tally.summary();
  expect(tally.garbage, `records not intact ${context}: ${tally.examples.join(', ')}`).toBe(0);
  expect(missing, `records lost ${context}, first ids: ${firstMissing.join(', ')}`).toBe(0);
  // Only a chunk in flight at a kill can arrive twice.
  expect(duplicates, `duplicate records ${context}, ${kills} kills`).toBeLessThanOrEqual(kills * (blockSize / RECORD));
  expect(peakKiB.producer, `producer peak VmHWM KiB ${context}`).toBeLessThanOrEqual(capKiB);
  expect(peakKiB.consumer, `consumer peak VmHWM KiB ${context}`).toBeLessThanOrEqual(capKiB);

  return { seed, bytes: total * RECORD, records: total, seconds, kills, consumersStarted: consumers.length, duplicates, peakKiB };
}
