#!/usr/bin/env node
// Latency of a multicast bus whose consumers read through a bindfs (FUSE)
// view of the producer's directory: the second "host" of
// docs/network-filesystems.md. Nothing wakes such a consumer but its
// --sleep-interval poll. Root (or a user allowed to mount FUSE) and bindfs
// are needed.
//
//   node bench/netfs-latency.mjs [--lines N] [--rate PER_S] [--consumers N] [--cli dist/bin/filebus.js]
//
// Rows: "local" (producer and consumers on one directory: inotify), then the
// view at each sleep interval, then the view with bindfs' default attribute
// cache (attr_timeout=1, entry_timeout=1), which the bus cannot run on.
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const { values } = parseArgs({
  options: {
    lines: { type: 'string', default: '100' },
    rate: { type: 'string', default: '5' },
    consumers: { type: 'string', default: '3' },
    cli: { type: 'string', default: path.join(root, 'dist/bin/filebus.js') },
  },
});
const lineCount = Number(values.lines);
const rate = Number(values.rate);
const consumerCount = Number(values.consumers);

const coherent = ['--multithreaded', '--enable-lock-forwarding', '-o', 'attr_timeout=0,entry_timeout=0'];
const cached = [];
const rows = [
  { name: 'local, inotify', view: undefined, sleep: 0.1 },
  { name: 'view, --sleep-interval 0.1', view: coherent, sleep: 0.1 },
  { name: 'view, --sleep-interval 0.05', view: coherent, sleep: 0.05 },
  { name: 'view, --sleep-interval 0.01', view: coherent, sleep: 0.01 },
  { name: 'view, default attr cache, 0.1', view: cached, sleep: 0.1 },
];

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const quantile = (sorted, q) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];

/** A line that says its own length, so that a cut one shows. */
function line(i) {
  const body = `line ${String(i).padStart(4, '0')} ${'.'.repeat((i * 37) % 300)}`;
  return `${body} ${String(body.length).padStart(4, '0')}`;
}
const whole = (text) => {
  const m = / (\d{4})$/.exec(text);
  return m !== null && text.length === Number(m[1]) + 5;
};

async function measure(row) {
  const dir = fs.mkdtempSync('/dev/shm/filebus-netfs-');
  const src = path.join(dir, 'src');
  const view = path.join(dir, 'view');
  fs.mkdirSync(src);
  fs.mkdirSync(view);
  const procs = [];
  try {
    if (row.view) {
      const mounted = spawnSync('bindfs', [...row.view, src, view], { encoding: 'utf8' });
      if (mounted.status !== 0) throw new Error(`bindfs: ${mounted.stderr.trim()}`);
    }
    const readFrom = path.join(row.view ? view : src, 'bus');
    const args = (bus) => ['--filename', bus, '--sleep-interval', String(row.sleep)];
    const arrivals = [];
    const torn = [];
    for (let c = 0; c < consumerCount; c++) {
      const consumer = spawn(process.execPath, [values.cli, ...args(readFrom), 'consumer'], { stdio: ['ignore', 'pipe', 'inherit'] });
      procs.push(consumer);
      const seen = new Map();
      arrivals.push(seen);
      let pending = '';
      consumer.stdout.on('data', (data) => {
        const now = performance.now();
        pending += data.toString('latin1');
        let newline;
        while ((newline = pending.indexOf('\n')) >= 0) {
          const text = pending.slice(0, newline);
          pending = pending.slice(newline + 1);
          if (text === 'warm-up') seen.set('warm-up', now);
          else if (!whole(text)) torn.push(text.slice(0, 20));
          else if (!seen.has(text)) seen.set(text, now);
        }
      });
    }
    const producer = spawn(process.execPath, [values.cli, ...args(path.join(src, 'bus')), 'producer'], { stdio: ['pipe', 'ignore', 'inherit'] });
    procs.push(producer);
    // Warm-up: every consumer up and waiting (a cached view may take a second or more).
    const warmUntil = performance.now() + 10_000;
    while (!arrivals.every((seen) => seen.has('warm-up'))) {
      if (performance.now() > warmUntil) throw new Error('consumers never saw the warm-up line');
      producer.stdin.write('warm-up\n');
      await sleep(500);
    }
    await sleep(300);
    const sent = [];
    const start = performance.now();
    for (let i = 0; i < lineCount; i++) {
      // Even spacing on average, at a random phase against the consumers' polls.
      const due = start + (i + Math.random() * 0.5) * (1000 / rate);
      await sleep(Math.max(0, due - performance.now()));
      sent.push(performance.now());
      producer.stdin.write(`${line(i)}\n`);
    }
    await sleep(Math.max(1500, row.sleep * 3000));
    const latencies = [];
    let missed = 0;
    for (const seen of arrivals) {
      for (let i = 0; i < lineCount; i++) {
        const at = seen.get(line(i));
        if (at === undefined) missed++;
        else latencies.push(at - sent[i]);
      }
    }
    latencies.sort((a, b) => a - b);
    const caught = arrivals.map((seen) => [...seen.keys()].filter((key) => key !== 'warm-up').length);
    return { latencies, missed, caught, torn };
  } finally {
    for (const proc of procs) proc.kill('SIGTERM');
    await Promise.all(procs.map((proc) => (proc.exitCode === null && proc.signalCode === null ? new Promise((resolve) => proc.on('close', resolve)) : undefined)));
    if (row.view) spawnSync('fusermount3', ['-u', view]);
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

const ms = (value) => (value === undefined ? '-' : value.toFixed(1));
console.log(`${lineCount} lines at ${rate}/s, ${consumerCount} consumers; latency from the producer's stdin to a consumer's stdout, ms`);
console.log('| bus | min | median | p90 | p99 | max | lines caught per consumer | cut lines |');
console.log('| --- | --- | --- | --- | --- | --- | --- | --- |');
for (const row of rows) {
  const { latencies, caught, torn } = await measure(row);
  const q = (x) => ms(quantile(latencies, x));
  console.log(
    `| ${row.name} | ${ms(latencies[0])} | ${q(0.5)} | ${q(0.9)} | ${q(0.99)} | ${ms(latencies.at(-1))} | ${caught.join(', ')} of ${lineCount} | ${torn.length}${torn.length ? ` (${torn.slice(0, 2).map((t) => JSON.stringify(t)).join(', ')})` : ''} |`,
  );
}
