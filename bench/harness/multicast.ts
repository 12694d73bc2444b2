/**
 * One multicast run: N consumers (filebus, or the C anchor `mcast`) and one
 * filebus producer on a fresh bus. The bench writes `<seq> <send time>` lines
 * into the producer's stdin at a steady rate and stamps each line when it
 * comes out of a consumer's stdout: latency, lines delivered per consumer,
 * and optionally each consumer's CPU time per chunk.
 *
 * Phases, each ended by an event rather than a fixed sleep:
 *   warm-up  `w` lines every 50 ms until every consumer has printed one;
 *   settle   until every process is idle (no start-up work left over);
 *   timed    the measured lines, line i due at start + i / rate;
 *   drain    `e` lines every 20 ms until every consumer has printed one: by
 *            then each timed line has either arrived or been replaced.
 */
import path from 'node:path';
import { type Child, cpuNs, describeExit, sleep, stopAll } from '../../test/support/processes.js';
import { filebus, start } from './commands.js';
import { now, percentile, waitIdle } from './measure.js';

export interface MulticastCase {
  dir: string;
  /** Names the bus file: unique per run. */
  name: string;
  consumers: number;
  /** 'filebus', or the path of the C `mcast` anchor. */
  consumer: 'filebus' | { mcast: string };
  /** Extra flags for the producer (e.g. --history 3000; consumers find the history by themselves). */
  producerFlags?: string[];
  rate: number;
  seconds: number;
  /** Measure each consumer's CPU time over the timed phase and the drain. */
  cpu?: boolean;
}

export interface MulticastRun {
  lines: number;
  achievedRate: number;
  p50: number;
  p99: number;
  max: number;
  /** Fraction of the timed lines each consumer got. */
  delivered: number[];
  worst: number;
  /** CPU per chunk of each consumer, us (one line per chunk at rates where lines are further apart than the producer's hold). */
  cpuPerChunkUs: number[];
  /** Duplicated or garbled lines, dead processes: correctness failures. */
  problems: string[];
}

interface Reader {
  child: Child;
  partial: string;
  got: Uint8Array;
  received: number;
  /** Every line seen (timed, `w` and `e`): chunks, for the CPU figure. */
  linesSeen: number;
  sawWarmUp: boolean;
  sawDrain: boolean;
  duplicates: number;
  garbled: number;
  latencies: number[];
}

export async function runMulticast(c: MulticastCase): Promise<MulticastRun> {
  const bus = path.join(c.dir, c.name);
  const total = Math.max(1, Math.round(c.rate * c.seconds));
  const readers: Reader[] = [];
  let producer: Child | undefined;
  try {
    for (let i = 0; i < c.consumers; i++) {
      const args = ['--filename', bus, 'consumer'];
      const child = c.consumer === 'filebus' ? filebus(args) : start(c.consumer.mcast, args);
      readers.push(reader(child, total));
    }
    producer = filebus(['--filename', bus, 'producer', ...(c.producerFlags ?? [])], { stdin: 'pipe', stdout: 'ignore' });
    const prod = producer;
    const write = (text: string): void => void prod.stdin!.write(text);
    const alive = (): void => {
      const dead = [prod, ...readers.map((r) => r.child)].find((ch) => ch.exit);
      if (dead) throw new Error(`${dead === prod ? 'producer' : 'a consumer'} ended: ${describeExit(dead)}`);
    };

    const warmDeadline = now() + 60_000 + c.consumers * 2000;
    for (let k = 0; !readers.every((r) => r.sawWarmUp); k++) {
      alive();
      if (now() > warmDeadline) throw new Error(`warm-up: ${readers.filter((r) => r.sawWarmUp).length} of ${c.consumers} consumers answered`);
      write(`w ${k}\n`);
      await sleep(50);
    }
    await waitIdle([prod.pid, ...readers.map((r) => r.child.pid)]);
    const cpuBefore = readers.map((r) => (c.cpu ? cpuNs(r.child.pid) : undefined));
    const seenBefore = readers.map((r) => r.linesSeen);

    const interval = 1000 / c.rate;
    const begin = now();
    let lastSend = begin;
    for (let i = 0; i < total; ) {
      const t = now();
      if (t >= begin + i * interval) {
        write(`${i} ${t.toFixed(3)}\n`);
        lastSend = t;
        i++;
      } else {
        await sleep(Math.max(0, begin + i * interval - t - 0.5));
      }
    }
    const drainDeadline = now() + 10_000;
    for (let k = 0; !readers.every((r) => r.sawDrain) && now() < drainDeadline; k++) {
      alive();
      write(`e ${k}\n`);
      await sleep(20);
    }
    const cpuAfter = readers.map((r) => (c.cpu ? cpuNs(r.child.pid) : undefined));
    alive();

    const all = readers.flatMap((r) => r.latencies).sort((a, b) => a - b);
    const delivered = readers.map((r) => r.received / total);
    const problems: string[] = [];
    const duplicates = readers.reduce((a, r) => a + r.duplicates, 0);
    const garbled = readers.reduce((a, r) => a + r.garbled, 0);
    if (duplicates) problems.push(`${duplicates} lines delivered twice to one consumer`);
    if (garbled) problems.push(`${garbled} garbled lines`);
    return {
      lines: total,
      achievedRate: total > 1 ? ((total - 1) * 1000) / (lastSend - begin) : c.rate,
      p50: percentile(all, 50),
      p99: percentile(all, 99),
      max: all.at(-1) ?? NaN,
      delivered,
      worst: Math.min(...delivered),
      cpuPerChunkUs: readers.map((r, i) => {
        const chunks = r.linesSeen - seenBefore[i]!;
        const before = cpuBefore[i];
        const after = cpuAfter[i];
        return before === undefined || after === undefined || chunks === 0 ? NaN : (after - before) / 1000 / chunks;
      }),
      problems,
    };
  } finally {
    producer?.stdin?.end();
    await stopAll([...readers.map((r) => r.child), producer]);
  }
}

function reader(child: Child, total: number): Reader {
  const r: Reader = { child, partial: '', got: new Uint8Array(total), received: 0, linesSeen: 0, sawWarmUp: false, sawDrain: false, duplicates: 0, garbled: 0, latencies: [] };
  child.stdout!.setEncoding('latin1');
  child.stdout!.on('data', (data: string) => {
    const t = now();
    const lines = (r.partial + data).split('\n');
    r.partial = lines.pop()!;
    for (const line of lines) {
      r.linesSeen++;
      if (line.startsWith('w ')) r.sawWarmUp = true;
      else if (line.startsWith('e ')) r.sawDrain = true;
      else {
        const match = /^(\d+) (\d+\.\d+)$/.exec(line);
        const seq = match ? Number(match[1]) : -1;
        if (!match || seq >= total) r.garbled++;
        else if (r.got[seq]) r.duplicates++;
        else {
          r.got[seq] = 1;
          r.received++;
          r.latencies.push(t - Number(match[2]));
        }
      }
    }
  });
  return r;
}
