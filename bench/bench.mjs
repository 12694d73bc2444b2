#!/usr/bin/env node
/**
 * filebus benchmark: throughput, multicast latency and loss, the work queue,
 * and the cost of the CLI itself, measured in one run and side by side.
 *
 *   npm run bench                       full run on tmpfs (/dev/shm)
 *   npm run bench -- --dir /var/tmp     the same on another file system
 *   npm run bench -- --quick --json     CI smoke test: correctness only
 *   npm run bench -- --only latency     some parts only
 *   npm run bench -- --help             every knob
 *
 * Plain Node (ESM, node: built-ins only), no build step. Runs the compiled
 * CLI (dist/bin/filebus.js) and the bash implementation as real processes.
 * Exits 1 when a correctness check fails (sha256, exactly-once, delivery at
 * a low rate, ...); figures are reported, never asserted.
 */
import { spawn, spawnSync } from 'node:child_process';
import { createHash, randomFillSync } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const cli = path.join(root, 'dist/bin/filebus.js');
let bashCli = path.join(root, 'compat/bash/filebus.bash');
const parts = ['throughput', 'latency', 'queue', 'cost'];

/** Wall clock in ms with sub-ms resolution; one clock for send and arrival times. */
const now = () => performance.timeOrigin + performance.now();
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// ------------------------------------------------------------- options

const usage = `usage: node bench/bench.mjs [options]   (or: npm run bench -- [options])

  --json                 print JSON instead of tables
  --quick                small and fast: the CI smoke test (correctness only)
  --dir PATH             where the bus and input files go (default /dev/shm, else the OS temp dir)
  --only LIST            comma-separated parts: ${parts.join(',')}
  --skip-bash            leave out the bash implementation's rows
  --bash-script PATH     the bash implementation to run (default compat/bash/filebus.bash)

  throughput:  --size BYTES (TS input, default 64M)  --bash-size BYTES (default 1M)
               --blocks LIST (default 4K,64K,1M)
  latency:     --consumers LIST (default 1,10,50)  --rates LIST lines/s (default 100,1000)
               --duration SECONDS per case (default 3)
  queue:       --records N (default 4000)  --record-size BYTES (default 512)
               --batch K (records per chunk, default 1)  --queue-consumers LIST (default 1,4)
  cost:        --runs N (default 10)  --rss-size BYTES (default 1G)  --rss-block BYTES (default 1M)

Sizes take K, M, G suffixes (powers of 1024).`;

const optionSpec = {
  json: { type: 'boolean', default: false },
  quick: { type: 'boolean', default: false },
  dir: { type: 'string' },
  only: { type: 'string' },
  'skip-bash': { type: 'boolean', default: false },
  'bash-script': { type: 'string' },
  size: { type: 'string' },
  'bash-size': { type: 'string' },
  blocks: { type: 'string' },
  consumers: { type: 'string' },
  rates: { type: 'string' },
  duration: { type: 'string' },
  records: { type: 'string' },
  'record-size': { type: 'string' },
  batch: { type: 'string' },
  'queue-consumers': { type: 'string' },
  runs: { type: 'string' },
  'rss-size': { type: 'string' },
  'rss-block': { type: 'string' },
  help: { type: 'boolean', short: 'h', default: false },
};

function parseSize(text, name) {
  const match = /^\s*(\d+(?:\.\d+)?)\s*([kmg]?)i?b?\s*$/i.exec(String(text));
  if (!match) throw new Error(`${name}: not a size: '${text}'`);
  const factor = { '': 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3 }[match[2].toLowerCase()];
  const n = Math.round(Number(match[1]) * factor);
  if (!(n > 0)) throw new Error(`${name}: must be positive: '${text}'`);
  return n;
}
function parseNumber(text, name, { integer = false } = {}) {
  const n = Number(text);
  if (!Number.isFinite(n) || n <= 0 || (integer && !Number.isInteger(n))) throw new Error(`${name}: not a positive ${integer ? 'integer' : 'number'}: '${text}'`);
  return n;
}
const list = (text, parse) => String(text).split(',').filter(Boolean).map(parse);

function configure(argv) {
  const { values } = parseArgs({ args: argv, options: optionSpec, strict: true, allowPositionals: false });
  if (values.help) {
    process.stdout.write(`${usage}\n`);
    process.exit(0);
  }
  const q = values.quick;
  const pick = (name, full, quick) => values[name] ?? (q ? quick : full);
  const only = values.only ? list(values.only, (p) => p.trim()) : parts;
  for (const p of only) if (!parts.includes(p)) throw new Error(`--only: unknown part '${p}' (parts: ${parts.join(', ')})`);
  const config = {
    quick: q,
    json: values.json,
    only,
    bash: !values['skip-bash'],
    dir: values.dir,
    throughput: {
      size: parseSize(pick('size', '64M', '2M'), '--size'),
      bashSize: parseSize(pick('bash-size', '1M', '64K'), '--bash-size'),
      blocks: list(pick('blocks', '4K,64K,1M', '4K,64K,1M'), (s) => parseSize(s, '--blocks')),
    },
    latency: {
      consumers: list(pick('consumers', '1,10,50', '1,10'), (s) => parseNumber(s, '--consumers', { integer: true })),
      rates: list(pick('rates', '100,1000', '10,100'), (s) => parseNumber(s, '--rates')),
      duration: parseNumber(pick('duration', '3', '1.5'), '--duration'),
      /** At or below this rate every consumer must get every line (a correctness check). */
      lowRate: 20,
    },
    queue: {
      records: parseNumber(pick('records', '4000', '500'), '--records', { integer: true }),
      recordSize: parseSize(pick('record-size', '512', '512'), '--record-size'),
      batch: parseNumber(pick('batch', '1', '1'), '--batch', { integer: true }),
      consumers: list(pick('queue-consumers', '1,4', '1,4'), (s) => parseNumber(s, '--queue-consumers', { integer: true })),
    },
    cost: {
      runs: parseNumber(pick('runs', '10', '3'), '--runs', { integer: true }),
      ttfbRuns: q ? 2 : 5,
      rssSize: parseSize(pick('rss-size', '1G', '32M'), '--rss-size'),
      rssBlock: parseSize(pick('rss-block', '1M', '1M'), '--rss-block'),
    },
  };
  if (values['bash-script']) bashCli = path.resolve(values['bash-script']);
  if (config.queue.recordSize < 8) throw new Error('--record-size: at least 8 bytes (records carry their number)');
  return config;
}

// ------------------------------------------------- processes and cleanup

/** Every child still running; each leads its own process group, so that its helpers (bash's inotifywait, flock, cat) go with it. */
const children = new Set();
let tempDir;

/** Children get a clean environment: FILEBUS_* variables of the caller would change what is measured. */
const childEnv = Object.fromEntries(Object.entries(process.env).filter(([key]) => !key.startsWith('FILEBUS_')));

function killGroup(child, signal) {
  if (child.exitCode !== null || child.signalCode !== null || child.pid === undefined) return;
  try {
    process.kill(-child.pid, signal);
  } catch {
    try {
      child.kill(signal);
    } catch {}
  }
}

/**
 * Starts a process. `stdin`: 'pipe', 'ignore' or an fd. Returns the child
 * with `done`, a promise of { code, signal, error } once it exited and its
 * output closed, and `stderrText()`.
 */
function start(command, args, { stdin = 'ignore', stdout = 'pipe' } = {}) {
  const child = spawn(command, args, { stdio: [stdin, stdout, 'pipe'], env: childEnv, detached: true });
  children.add(child);
  let stderr = '';
  child.stderr.on('data', (data) => {
    if (stderr.length < 4000) stderr += data.toString();
  });
  child.stdin?.on('error', () => {}); // EPIPE when a child dies early is reported through its exit status
  child.once('exit', () => children.delete(child));
  child.done = new Promise((resolve) => {
    child.once('error', (error) => {
      children.delete(child);
      resolve({ code: -1, signal: null, error });
    });
    child.once('close', (code, signal) => resolve({ code, signal, error: undefined }));
  });
  child.stderrText = () => stderr.trim();
  return child;
}

const filebus = (args, options) => start(process.execPath, [cli, ...args], options);
const bashFilebus = (args, options) => start('bash', [bashCli, ...args], options);

/** Stops a child (its whole process group): SIGTERM, then SIGKILL after `graceMs`. */
async function stop(child, graceMs = 3000) {
  killGroup(child, 'SIGTERM');
  const timer = setTimeout(() => killGroup(child, 'SIGKILL'), graceMs);
  const result = await child.done;
  clearTimeout(timer);
  return result;
}

function killAll() {
  for (const child of children) killGroup(child, 'SIGKILL');
  children.clear();
}

function removeTemp() {
  if (tempDir) fs.rmSync(tempDir, { recursive: true, force: true });
  tempDir = undefined;
}

for (const [signal, number] of [['SIGINT', 2], ['SIGTERM', 15], ['SIGHUP', 1]]) {
  process.on(signal, () => {
    killAll();
    removeTemp();
    process.stderr.write(`\nbench: interrupted by ${signal}; children killed, temporary files removed\n`);
    process.exit(128 + number);
  });
}
process.on('exit', () => {
  killAll();
  removeTemp();
});

function withTimeout(promise, ms, what) {
  let timer;
  return Promise.race([
    promise.finally(() => clearTimeout(timer)),
    new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what}: timed out after ${(ms / 1000).toFixed(0)} s`)), ms);
    }),
  ]);
}

const exitText = ({ code, signal, error }) => (error ? `failed to start: ${error.message}` : signal ? `killed by ${signal}` : `exit ${code}`);
const stderrNote = (child) => (child.stderrText() ? `; stderr: ${child.stderrText().split('\n').slice(-3).join(' | ')}` : '');

// ------------------------------------------------------------ reporting

const checks = [];
function check(name, ok, detail = '') {
  checks.push({ name, ok: Boolean(ok), detail });
  return Boolean(ok);
}

const fmt = {
  n: (x, digits = 0) => (x === undefined || x === null || Number.isNaN(x) ? '-' : x.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits })),
  ms: (x) => (x === undefined || x === null || Number.isNaN(x) ? '-' : x < 10 ? x.toFixed(2) : x < 100 ? x.toFixed(1) : x.toFixed(0)),
  size: (bytes) => {
    for (const [unit, f] of [['GiB', 1024 ** 3], ['MiB', 1024 ** 2], ['KiB', 1024]]) if (bytes >= f && bytes % (f / 16) === 0) return `${bytes / f} ${unit}`;
    return `${bytes} B`;
  },
  mb: (kib) => (kib === undefined ? '-' : (kib / 1024).toFixed(1)),
  pct: (x) => (x === undefined || Number.isNaN(x) ? '-' : `${(x * 100).toFixed(x === 1 ? 0 : 1)} %`),
};

function table(headers, rows) {
  const cells = rows.map((row) => row.map((c) => String(c ?? '-')));
  const widths = headers.map((h, i) => Math.max(h.length, ...cells.map((r) => r[i].length)));
  const line = (r) => r.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join('  ');
  return [line(headers), widths.map((w) => '-'.repeat(w)).join('  '), ...cells.map(line)].join('\n');
}

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  if (s.length === 0) return NaN;
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};
const percentile = (sorted, p) => (sorted.length === 0 ? NaN : sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]);

// --------------------------------------------------------- environment

function machineInfo() {
  const cpus = os.cpus();
  return {
    cpu: cpus[0]?.model?.trim() ?? 'unknown',
    cores: cpus.length,
    node: process.version,
    kernel: `${os.type()} ${os.release()} ${os.arch()}`,
    memoryGiB: +(os.totalmem() / 1024 ** 3).toFixed(1),
    loadavg: os.loadavg().map((x) => +x.toFixed(2)),
    hostname: os.hostname(),
  };
}

/** The mount that holds `dir`, from /proc/self/mounts (longest matching mount point). */
function fileSystemOf(dir) {
  const real = fs.realpathSync(dir);
  let best = { mount: '/', type: 'unknown', device: 'unknown' };
  try {
    for (const line of fs.readFileSync('/proc/self/mounts', 'utf8').split('\n')) {
      const [device, mount, type] = line.split(' ').map((f) => f?.replace(/\\(\d{3})/g, (_, o) => String.fromCharCode(parseInt(o, 8))));
      if (!mount) continue;
      const inside = real === mount || real.startsWith(mount.endsWith('/') ? mount : `${mount}/`);
      if (inside && mount.length >= best.mount.length) best = { mount, type, device };
    }
  } catch {}
  return { path: real, ...best };
}

function defaultBase() {
  try {
    if (fs.statSync('/dev/shm').isDirectory()) {
      fs.accessSync('/dev/shm', fs.constants.W_OK);
      return '/dev/shm';
    }
  } catch {}
  return os.tmpdir();
}

/** Writes `size` random bytes to `file`, returning its sha256. */
function randomFile(file, size) {
  const hash = createHash('sha256');
  const fd = fs.openSync(file, 'w');
  try {
    const block = Buffer.allocUnsafe(1024 * 1024);
    for (let done = 0; done < size; ) {
      const n = Math.min(block.length, size - done);
      const piece = block.subarray(0, n);
      randomFillSync(piece);
      hash.update(piece);
      fs.writeSync(fd, piece);
      done += n;
    }
  } finally {
    fs.closeSync(fd);
  }
  return hash.digest('hex');
}

/** About `size` bytes of text lines (base64 of random bytes, 76 characters and a newline), for the line-based bash implementation. */
function textFile(file, size, lineLength = 76) {
  const hash = createHash('sha256');
  const fd = fs.openSync(file, 'w');
  const lineBytes = lineLength + 1;
  const lines = Math.max(1, Math.round(size / lineBytes));
  const raw = Buffer.allocUnsafe((lineLength / 4) * 3);
  let bytes = 0;
  try {
    const batch = [];
    for (let i = 0; i < lines; i++) {
      randomFillSync(raw);
      batch.push(raw.toString('base64'), '\n');
      if (batch.length >= 2048 || i === lines - 1) {
        const text = Buffer.from(batch.join(''));
        hash.update(text);
        fs.writeSync(fd, text);
        bytes += text.length;
        batch.length = 0;
      }
    }
  } finally {
    fs.closeSync(fd);
  }
  return { hash: hash.digest('hex'), bytes, lines, lineBytes };
}

/** Consumes a child's stdout: bytes, sha256, and the times of the first and last data events. */
function sink(stream, { keep = false } = {}) {
  const hash = createHash('sha256');
  const state = { bytes: 0, firstAt: undefined, firstBytes: 0, lastAt: undefined, chunks: keep ? [] : undefined, hash: undefined, onData: undefined };
  stream.on('data', (data) => {
    const t = now();
    if (state.firstAt === undefined) {
      state.firstAt = t;
      state.firstBytes = data.length;
    }
    state.lastAt = t;
    state.bytes += data.length;
    hash.update(data);
    state.chunks?.push(data);
    state.onData?.();
  });
  stream.on('end', () => {
    state.hash = hash.digest('hex');
  });
  return state;
}

// ------------------------------------------------------------- 1. throughput

/**
 * One transfer: a consumer (or a whole pipeline) whose stdout the bench
 * reads and hashes, and optionally a producer reading `input` as stdin.
 * Timed from the consumer's first output byte to its last; the bytes of the
 * first read are not counted, since they arrived at the start of the clock.
 */
async function transfer({ label, impl, block, consumer, producer, input, expected, chunks, timeoutMs, stallMs = 30_000 }) {
  const row = { label, impl, block, bytes: expected.bytes, ok: false };
  const startedAt = now();
  const cons = consumer();
  const out = sink(cons.stdout);
  let prod;
  try {
    if (producer) {
      const fd = fs.openSync(input, 'r');
      try {
        prod = producer(fd);
      } finally {
        fs.closeSync(fd);
      }
    }
    // A hang shows as output that stops coming: give up after `stallMs` without a byte.
    let stallTimer;
    const stalled = new Promise((_, reject) => {
      stallTimer = setInterval(() => {
        if (now() - (out.lastAt ?? startedAt) > stallMs) reject(new Error(`${label}: no output for ${stallMs / 1000} s`));
      }, 500);
    });
    const [c, p] = await withTimeout(Promise.race([Promise.all([cons.done, prod?.done]), stalled]), timeoutMs, label).finally(() => clearInterval(stallTimer));
    row.seconds = out.firstAt === undefined ? undefined : (out.lastAt - out.firstAt) / 1000;
    row.startupMs = out.firstAt === undefined ? undefined : out.firstAt - startedAt;
    const timedBytes = out.bytes - out.firstBytes;
    if (row.seconds > 0) {
      row.MBps = timedBytes / 1e6 / row.seconds;
      if (chunks) row.chunksPerSec = (chunks * timedBytes) / out.bytes / row.seconds;
    }
    row.chunks = chunks;
    const problems = [];
    if (p && p.code !== 0) problems.push(`producer ${exitText(p)}${stderrNote(prod)}`);
    if (c.code !== 0) problems.push(`consumer ${exitText(c)}${stderrNote(cons)}`);
    if (out.bytes !== expected.bytes) problems.push(`got ${out.bytes} bytes, sent ${expected.bytes}`);
    else if (out.hash !== expected.hash) problems.push('sha256 of output differs from input');
    row.ok = problems.length === 0;
    row.error = problems.join('; ') || undefined;
  } catch (error) {
    row.error = `${error.message}${stderrNote(cons)}${prod ? stderrNote(prod) : ''}; ${out.bytes} of ${expected.bytes} bytes arrived`;
  } finally {
    await Promise.all([stop(cons), prod && stop(prod)]);
  }
  check(`throughput ${label}: sha256 of output = input`, row.ok, row.error);
  return row;
}

async function benchThroughput(config, dir) {
  const { size, bashSize, blocks } = config.throughput;
  const rows = [];
  const input = path.join(dir, 'throughput.bin');
  const expected = { bytes: size, hash: randomFile(input, size) };
  // Generous: 3x the time at a rate well below any seen on a loaded 2-core machine, at least a minute.
  const timeoutFor = (bytes, bytesPerSec) => Math.max(60_000, (bytes / bytesPerSec) * 3000);

  rows.push(
    await transfer({
      label: 'cat FILE | cat',
      impl: 'plain pipe',
      consumer: () => start('sh', ['-c', 'cat "$1" | cat', 'sh', input]),
      input,
      expected,
      timeoutMs: timeoutFor(size, 10e6),
    }),
  );
  for (const block of blocks) {
    const bus = path.join(dir, `throughput-${block}`);
    const args = ['--filename', bus, '--back-pressure', '--block-size', String(block)];
    rows.push(
      await transfer({
        label: `typescript ${fmt.size(block)}`,
        impl: 'typescript',
        block,
        consumer: () => filebus([...args, 'consumer']),
        producer: (fd) => filebus([...args, 'producer'], { stdin: fd, stdout: 'ignore' }),
        input,
        expected,
        chunks: Math.ceil(size / block),
        timeoutMs: timeoutFor(size, 2e6),
      }),
    );
  }
  if (config.bash) {
    const block = 4096;
    const text = path.join(dir, 'throughput.txt');
    const t = textFile(text, bashSize);
    const bus = path.join(dir, 'throughput-bash');
    const args = ['--filename', bus, '--back-pressure', '--block-size', String(block)];
    const linesPerChunk = Math.max(1, Math.floor(block / t.lineBytes));
    const row = await transfer({
      label: `bash ${fmt.size(block)} (text)`,
      impl: 'bash',
      block,
      consumer: () => bashFilebus([...args, 'consumer']),
      producer: (fd) => bashFilebus([...args, 'producer'], { stdin: fd, stdout: 'ignore' }),
      input: text,
      expected: { bytes: t.bytes, hash: t.hash },
      chunks: Math.ceil(t.lines / linesPerChunk),
      timeoutMs: timeoutFor(t.bytes, 50e3),
    });
    row.note = `text input: ${t.lines} lines of ${t.lineBytes} bytes, ${linesPerChunk} whole lines per chunk`;
    rows.push(row);
  }
  return { inputBytes: size, bashInputBytes: config.bash ? bashSize : undefined, timing: 'from the consumer\'s first output byte to its last (process start-up excluded; the first read\'s bytes are not counted)', rows };
}

// -------------------------------------------------------- 2. multicast latency

/**
 * N multicast consumers and one producer on a fresh bus. The bench writes
 * `<seq> <send time>\n` into the producer's stdin at `rate` lines/s and
 * timestamps each line when a consumer's data event brings it in.
 */
async function latencyCase(dir, n, rate, duration, lowRate) {
  const label = `${n} consumer${n === 1 ? '' : 's'} @ ${rate}/s`;
  const bus = path.join(dir, `latency-${n}-${rate}`);
  const total = Math.max(1, Math.round(rate * duration));
  const row = { consumers: n, rate, lines: total, ok: false };
  const consumers = [];
  let producer;
  try {
    for (let i = 0; i < n; i++) {
      const child = filebus(['--filename', bus, 'consumer']);
      const state = { child, partial: '', ready: false, got: new Uint8Array(total), received: 0, duplicates: 0, garbled: 0, latencies: [], exited: undefined };
      child.done.then((result) => {
        state.exited = result;
      });
      child.stdout.setEncoding('latin1');
      child.stdout.on('data', (data) => {
        const t = now();
        const lines = (state.partial + data).split('\n');
        state.partial = lines.pop();
        for (const line of lines) {
          if (line.startsWith('w ')) {
            state.ready = true;
            continue;
          }
          const match = /^(\d+) (\d+(?:\.\d+)?)$/.exec(line);
          const seq = match ? Number(match[1]) : -1;
          if (!match || seq >= total) {
            state.garbled++;
            continue;
          }
          if (state.got[seq]) {
            state.duplicates++;
            continue;
          }
          state.got[seq] = 1;
          state.received++;
          state.latencies.push(t - Number(match[2]));
        }
      });
      consumers.push(state);
    }
    producer = filebus(['--filename', bus, 'producer'], { stdin: 'pipe', stdout: 'ignore' });
    const write = (text) => producer.stdin.write(text);

    // Warm-up: until every consumer has printed a line, all are running and watching.
    const warmDeadline = now() + 60_000 + n * 2000;
    for (let k = 0; !consumers.every((c) => c.ready); k++) {
      const dead = consumers.find((c) => c.exited) ?? (producer.exitCode !== null ? { child: producer, exited: { code: producer.exitCode } } : undefined);
      if (dead) throw new Error(`a ${dead.child === producer ? 'producer' : 'consumer'} ended during warm-up: ${exitText(dead.exited)}${stderrNote(dead.child)}`);
      if (now() > warmDeadline) throw new Error(`warm-up: only ${consumers.filter((c) => c.ready).length} of ${n} consumers answered`);
      write(`w ${k} ${now().toFixed(3)}\n`);
      await sleep(50);
    }
    await sleep(300);

    // The timed case: line i is due at start + i/rate. A late timer sends
    // the lines that fell due together, each stamped when it is written.
    const interval = 1000 / rate;
    const begin = now();
    let lastSend = begin;
    const sentAt = new Float64Array(total);
    // At low rates (the all-delivered check) every line stays on the bus a
    // full interval: a late line pushes the next one back instead of being
    // followed by it at once.
    const due = (i) => (rate <= lowRate && i > 0 ? Math.max(begin + i * interval, sentAt[i - 1] + interval) : begin + i * interval);
    for (let i = 0; i < total; ) {
      const t = now();
      if (t >= due(i)) {
        write(`${i} ${t.toFixed(3)}\n`);
        sentAt[i] = t;
        lastSend = t;
        i++;
        continue;
      }
      await sleep(Math.max(0, due(i) - t - 0.5));
    }
    row.sendSeconds = (lastSend - begin) / 1000;
    row.achievedRate = total > 1 ? (total - 1) / row.sendSeconds : rate;
    // At most once: a consumer that missed the last line never gets it; wait a while for stragglers.
    const graceEnd = now() + 2000;
    while (now() < graceEnd && !consumers.every((c) => c.got[total - 1])) await sleep(20);

    const all = consumers.flatMap((c) => c.latencies).sort((a, b) => a - b);
    const fractions = consumers.map((c) => c.received / total);
    Object.assign(row, {
      p50: percentile(all, 50),
      p99: percentile(all, 99),
      max: all.at(-1),
      worstDelivered: Math.min(...fractions),
      meanDelivered: fractions.reduce((a, b) => a + b, 0) / n,
      duplicates: consumers.reduce((a, c) => a + c.duplicates, 0),
      garbled: consumers.reduce((a, c) => a + c.garbled, 0),
    });
    const dead = consumers.filter((c) => c.exited);
    const problems = [];
    if (row.duplicates) problems.push(`${row.duplicates} lines delivered twice to the same consumer`);
    if (row.garbled) problems.push(`${row.garbled} garbled lines`);
    if (dead.length) problems.push(`${dead.length} consumers died: ${exitText(dead[0].exited)}${stderrNote(dead[0].child)}`);
    if (producer.exitCode !== null) problems.push(`producer ended early: exit ${producer.exitCode}${stderrNote(producer)}`);
    row.ok = problems.length === 0;
    row.error = problems.join('; ') || undefined;
    check(`latency ${label}: no duplicated or garbled lines, no crash`, row.ok, row.error);
    if (rate <= lowRate) {
      // For each lost line: how many consumers missed it, and how long before the next line it was sent
      // (a chunk replaced within a few ms is missed by design; one that stayed ~1/rate is a real loss).
      const lostLines = [];
      for (let seq = 0; seq < total && lostLines.length < 10; seq++) {
        const missedBy = consumers.filter((c) => !c.got[seq]).length;
        if (missedBy) lostLines.push({ seq, missedBy, msToNextSend: seq + 1 < total ? +(sentAt[seq + 1] - sentAt[seq]).toFixed(2) : undefined });
      }
      row.lostLines = lostLines;
      const detail = lostLines.map((x) => `line ${x.seq} missed by ${x.missedBy}/${n}, next line sent ${x.msToNextSend ?? '-'} ms later`).join('; ');
      check(`latency ${label}: every consumer got every line (low rate)`, row.worstDelivered === 1, detail);
    }
  } catch (error) {
    row.error = error.message;
    check(`latency ${label}: ran`, false, error.message);
  } finally {
    producer?.stdin.end();
    await Promise.all([...consumers.map((c) => stop(c.child)), producer && stop(producer)]);
  }
  return row;
}

async function benchLatency(config, dir) {
  const { consumers, rates, duration, lowRate } = config.latency;
  const rows = [];
  for (const n of consumers) for (const rate of rates) rows.push(await latencyCase(dir, n, rate, duration, lowRate));
  return {
    seconds: duration,
    timing: 'send: the bench writes the line into the producer\'s stdin; arrival: the bench\'s data event on the consumer\'s stdout (same clock)',
    rows,
  };
}

// ------------------------------------------------------------ 3. work queue

async function benchQueue(config, dir) {
  const { records, recordSize, batch, consumers } = config.queue;
  const block = recordSize * batch;
  const inputFile = path.join(dir, 'queue.bin');
  // Record i: its number (8 bytes, big-endian) and random filler.
  const input = Buffer.allocUnsafe(records * recordSize);
  randomFillSync(input);
  for (let i = 0; i < records; i++) input.writeBigUInt64BE(BigInt(i), i * recordSize);
  fs.writeFileSync(inputFile, input);
  const rows = [];
  for (const n of consumers) rows.push(await queueCase(config, dir, { input, inputFile, n, block }));
  return { records, recordSize, block, timing: 'from the first record out of any consumer to the last', rows };
}

async function queueCase(config, dir, { input, inputFile, n, block }) {
  const { records, recordSize } = config.queue;
  const bus = path.join(dir, `queue-${n}`);
  const total = input.length;
  const result = { consumers: n, ok: false };
  const args = ['--filename', bus, '--back-pressure', '--block-size', String(block)];
  const cons = [];
  let producer;
  try {
    let arrived = 0;
    let allArrived;
    const everything = new Promise((resolve) => {
      allArrived = resolve;
    });
    for (let i = 0; i < n; i++) {
      const child = filebus([...args, 'consumer']);
      const out = sink(child.stdout, { keep: true });
      out.onData = () => {
        arrived = cons.reduce((a, c) => a + c.out.bytes, 0);
        if (arrived >= total) allArrived();
      };
      const c = { child, out, exited: undefined };
      child.done.then((r) => {
        c.exited = r;
      });
      cons.push(c);
    }
    await sleep(config.quick ? 500 : 1000); // let every consumer start and wait on the bus
    const fd = fs.openSync(inputFile, 'r');
    try {
      producer = filebus([...args, 'producer'], { stdin: fd, stdout: 'ignore' });
    } finally {
      fs.closeSync(fd);
    }
    const failed = Promise.race([
      producer.done.then((r) => (r.code === 0 ? new Promise(() => {}) : Promise.reject(new Error(`producer ${exitText(r)}${stderrNote(producer)}`)))),
      ...cons.map((c) => c.child.done.then((r) => (r.code === 0 ? new Promise(() => {}) : Promise.reject(new Error(`consumer ${exitText(r)}${stderrNote(c.child)}`))))),
    ]);
    failed.catch(() => {}); // it settles only on a failure, possibly after the queue finished
    await withTimeout(Promise.race([everything, failed]), Math.max(60_000, records * 50), 'queue');
    // The producer ends with one empty end-of-stream chunk; the consumer that takes it exits 0.
    const p = await withTimeout(producer.done, 10_000, 'queue producer exit');
    const firstExit = await withTimeout(Promise.race(cons.map((c) => c.child.done.then((r) => ({ c, r })))), 10_000, 'queue: no consumer took the end-of-stream chunk');
    await sleep(200);
    const selfExited = cons.filter((c) => c.exited);

    const firstAt = Math.min(...cons.map((c) => c.out.firstAt ?? Infinity));
    const lastAt = Math.max(...cons.map((c) => c.out.lastAt ?? -Infinity));
    const firstBytes = cons.find((c) => c.out.firstAt === firstAt)?.out.firstBytes ?? 0;
    result.seconds = (lastAt - firstAt) / 1000;
    result.recordsPerSec = (total - firstBytes) / recordSize / result.seconds;
    result.MBps = (total - firstBytes) / 1e6 / result.seconds;
    result.perConsumer = cons.map((c) => c.out.bytes / recordSize);

    // Exactly once: every record, whole and unchanged, in exactly one consumer's output.
    const seen = new Uint8Array(records);
    let duplicates = 0;
    let corrupt = 0;
    let misaligned = 0;
    for (const c of cons) {
      const out = Buffer.concat(c.out.chunks);
      c.out.chunks = undefined;
      if (out.length % recordSize !== 0) misaligned++;
      for (let off = 0; off + recordSize <= out.length; off += recordSize) {
        const seq = Number(out.readBigUInt64BE(off));
        if (seq >= records || !out.subarray(off, off + recordSize).equals(input.subarray(seq * recordSize, (seq + 1) * recordSize))) corrupt++;
        else if (seen[seq]++) duplicates++;
      }
    }
    const missing = seen.reduce((a, s) => a + (s === 0 ? 1 : 0), 0);
    const problems = [];
    if (missing) problems.push(`${missing} records missing`);
    if (duplicates) problems.push(`${duplicates} records delivered more than once`);
    if (corrupt) problems.push(`${corrupt} corrupt records`);
    if (misaligned) problems.push(`${misaligned} consumers' output not a whole number of records`);
    if (p.code !== 0) problems.push(`producer ${exitText(p)}`);
    if (firstExit.r.code !== 0) problems.push(`end-of-stream consumer ${exitText(firstExit.r)}${stderrNote(firstExit.c.child)}`);
    if (selfExited.length !== 1) problems.push(`${selfExited.length} consumers exited on their own (expected exactly 1, the one that took the end-of-stream chunk)`);
    result.ok = problems.length === 0;
    result.error = problems.join('; ') || undefined;
  } catch (error) {
    const got = cons.reduce((a, c) => a + c.out.bytes, 0);
    result.error = `${error.message}; ${Math.floor(got / recordSize)} of ${records} records arrived`;
  } finally {
    await Promise.all([...cons.map((c) => stop(c.child)), producer && stop(producer)]);
  }
  check(`queue: ${n} consumers got every record exactly once`, result.ok, result.error);
  return result;
}

// ---------------------------------------------------------------- 4. cost

function timeCommand(command, args, runs) {
  const times = [];
  let failure;
  for (let i = 0; i <= runs; i++) {
    const t = performance.now();
    const r = spawnSync(command, args, { stdio: ['ignore', 'ignore', 'pipe'], env: childEnv, timeout: 30_000 });
    const ms = performance.now() - t;
    if (r.error || r.status !== 0) {
      failure = r.error?.message ?? `exit ${r.status ?? r.signal}: ${String(r.stderr).trim().split('\n')[0]}`;
      break;
    }
    if (i > 0) times.push(ms); // the first run warms the page cache
  }
  if (failure) return { runs: 0, ok: false, error: failure };
  return { medianMs: median(times), minMs: Math.min(...times), runs, ok: true };
}

/** Consumer started and settled first; then a producer with one line on stdin: time from spawning it to the line coming out of the consumer. */
async function firstByte(dir, impl, run) {
  const bus = path.join(dir, `ttfb-${impl}-${run}`);
  const cmd = impl === 'bash' ? bashFilebus : filebus;
  const consumer = cmd(['--filename', bus, 'consumer']);
  let producer;
  try {
    let text = '';
    let arrivedAt;
    let arrived;
    const got = new Promise((resolve) => {
      arrived = resolve;
    });
    consumer.stdout.setEncoding('latin1');
    consumer.stdout.on('data', (d) => {
      text += d;
      if (arrivedAt === undefined && text.includes('ping\n')) {
        arrivedAt = now();
        arrived();
      }
    });
    await sleep(700);
    if (consumer.exitCode !== null) throw new Error(`consumer exit ${consumer.exitCode}${stderrNote(consumer)}`);
    const t0 = now();
    producer = cmd(['--filename', bus, 'producer'], { stdin: 'pipe', stdout: 'ignore' });
    producer.stdin.end('ping\n');
    const dead = consumer.done.then((r) => Promise.reject(new Error(`consumer ${exitText(r)}${stderrNote(consumer)}`)));
    dead.catch(() => {}); // rejects when the consumer is stopped at the end, too
    await withTimeout(Promise.race([got, dead]), 15_000, `${impl} first byte`);
    const p = await withTimeout(producer.done, 10_000, `${impl} producer exit`);
    if (p.code !== 0) throw new Error(`producer ${exitText(p)}${stderrNote(producer)}`);
    return arrivedAt - t0;
  } finally {
    await Promise.all([stop(consumer), producer && stop(producer)]);
  }
}

function readStatus(pid) {
  try {
    const text = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
    const kb = (key) => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(text)?.[1]);
    const rss = kb('VmRSS');
    // A process that has exited but not been reaped (a zombie) has no memory lines.
    return Number.isFinite(rss) ? { rss, hwm: kb('VmHWM') } : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Peak memory over a long back-pressure stream: the bench feeds the
 * producer's stdin from a generator of pseudo-random bytes, reads the
 * consumer's stdout, hashes both ends and samples /proc/PID/status every 100 ms.
 */
async function rssStream(dir, size, block) {
  const bus = path.join(dir, 'rss');
  const args = ['--filename', bus, '--back-pressure', '--block-size', String(block)];
  const result = { bytes: size, block, ok: false };
  const consumer = filebus([...args, 'consumer']);
  const out = sink(consumer.stdout);
  const producer = filebus([...args, 'producer'], { stdin: 'pipe', stdout: 'ignore' });
  const samples = [];
  const sampler = setInterval(() => {
    const p = readStatus(producer.pid);
    const c = readStatus(consumer.pid);
    if (p || c) samples.push({ progress: out.bytes / size, producer: p, consumer: c });
  }, 100);
  try {
    const sent = createHash('sha256');
    const t0 = now();
    const feed = (async () => {
      const piece = 256 * 1024;
      for (let done = 0; done < size; ) {
        const buf = Buffer.allocUnsafe(Math.min(piece, size - done));
        randomFillSync(buf);
        sent.update(buf);
        done += buf.length;
        if (!producer.stdin.write(buf)) {
          await new Promise((resolve, reject) => {
            const onClose = () => reject(new Error(`producer closed its input: ${exitText({ code: producer.exitCode, signal: producer.signalCode })}${stderrNote(producer)}`));
            producer.stdin.once('drain', () => {
              producer.stdin.off('close', onClose);
              resolve();
            });
            producer.stdin.once('close', onClose);
          });
        }
      }
      producer.stdin.end();
    })();
    const [, p, c] = await withTimeout(Promise.all([feed, producer.done, consumer.done]), Math.max(120_000, size / 1e6 * 1000), 'RSS stream');
    result.seconds = (now() - t0) / 1000;
    result.MBps = size / 1e6 / result.seconds;
    const problems = [];
    if (p.code !== 0) problems.push(`producer ${exitText(p)}${stderrNote(producer)}`);
    if (c.code !== 0) problems.push(`consumer ${exitText(c)}${stderrNote(consumer)}`);
    if (out.bytes !== size) problems.push(`got ${out.bytes} bytes, sent ${size}`);
    else if (out.hash !== sent.digest('hex')) problems.push('sha256 of output differs from input');
    result.ok = problems.length === 0;
    result.error = problems.join('; ') || undefined;
  } catch (error) {
    result.error = `${error.message}; ${out.bytes} of ${size} bytes arrived`;
  } finally {
    clearInterval(sampler);
    await Promise.all([stop(consumer), stop(producer)]);
  }
  for (const who of ['producer', 'consumer']) {
    const mine = samples.filter((s) => s[who]);
    // The sample nearest to a point of the stream (by bytes out of the consumer).
    const at = (fraction) => mine.reduce((best, s) => (best === undefined || Math.abs(s.progress - fraction) < Math.abs(best.progress - fraction) ? s : best), undefined);
    const s10 = at(0.1);
    const s90 = at(0.9);
    result[who] = {
      peakKiB: mine.length ? Math.max(...mine.map((s) => s[who].hwm || s[who].rss)) : undefined,
      at10KiB: s10?.[who].rss,
      at10Progress: s10?.progress,
      at90KiB: s90?.[who].rss,
      at90Progress: s90?.progress,
      samples: mine.length,
    };
  }
  result.samples = samples.length;
  check(`cost: ${fmt.size(size)} back-pressure stream, sha256 of output = input`, result.ok, result.error);
  return result;
}

async function benchCost(config, dir) {
  const { runs, ttfbRuns, rssSize, rssBlock } = config.cost;
  const startup = [
    { label: 'node -e 0 (floor)', ...timeCommand(process.execPath, ['-e', '0'], runs) },
    { label: 'filebus --help (typescript)', ...timeCommand(process.execPath, [cli, '--help'], runs) },
  ];
  if (config.bash) startup.push({ label: 'filebus --help (bash)', ...timeCommand('bash', [bashCli, '--help'], runs) });
  for (const s of startup) check(`cost: ${s.label} runs`, s.ok, s.error);

  const ttfb = [];
  for (const impl of config.bash ? ['typescript', 'bash'] : ['typescript']) {
    const times = [];
    let error;
    for (let i = 0; i < ttfbRuns; i++) {
      try {
        times.push(await firstByte(dir, impl, i));
      } catch (e) {
        error = e.message;
        break;
      }
    }
    const stats = times.length ? { medianMs: median(times), minMs: Math.min(...times), maxMs: Math.max(...times) } : {};
    ttfb.push({ impl, ...stats, runs: times.length, ok: !error, error });
    check(`cost: first byte through a fresh ${impl} producer and consumer`, !error, error);
  }
  const rss = await rssStream(dir, rssSize, rssBlock);
  return { startup, ttfb, rss };
}

// ----------------------------------------------------------------- output

function render(report) {
  const out = [];
  const { machine: m, dir } = report;
  out.push(`filebus benchmark${report.config.quick ? ' (--quick: correctness smoke test, figures not meaningful)' : ''}`);
  out.push(`machine: ${m.cpu}, ${m.cores} cores, ${m.memoryGiB} GiB; ${m.kernel}; node ${m.node}; load average ${m.loadavg.join(' ')}`);
  out.push(`directory: ${dir.path} (file system ${dir.type}, mounted on ${dir.mount} from ${dir.device})`);
  const t = report.throughput;
  if (t) {
    out.push('', `1. Lossless throughput, one producer -> one consumer (--back-pressure); typescript input ${fmt.size(t.inputBytes)} random bytes${t.bashInputBytes ? `, bash input ~${fmt.size(t.bashInputBytes)} text lines` : ''}`);
    out.push(`   timed ${t.timing}; MB = 10^6 bytes`);
    out.push(
      table(
        ['row', 'block', 'chunks/s', 'MB/s', 'seconds', 'first byte ms', 'sha256'],
        t.rows.map((r) => [r.label, r.block ? fmt.size(r.block) : '-', r.chunksPerSec ? fmt.n(r.chunksPerSec) : '-', r.MBps ? fmt.n(r.MBps, 1) : '-', r.seconds ? r.seconds.toFixed(2) : '-', fmt.ms(r.startupMs), r.ok ? 'ok' : 'FAILED']),
      ),
    );
    for (const r of t.rows) {
      if (r.note) out.push(`   ${r.label}: ${r.note}`);
      if (!r.ok) out.push(`   ${r.label} FAILED: ${r.error}`);
    }
    out.push('   ("first byte ms": from starting the consumer to its first output, start-up included; not part of the rate)');
  }
  const l = report.latency;
  if (l) {
    out.push('', `2. Multicast latency and loss: ${l.seconds} s per case; ${l.timing}`);
    out.push(
      table(
        ['consumers', 'rate/s', 'sent', 'achieved/s', 'p50 ms', 'p99 ms', 'max ms', 'worst consumer got', 'mean got', 'status'],
        l.rows.map((r) => [String(r.consumers), fmt.n(r.rate), fmt.n(r.lines), fmt.n(r.achievedRate), fmt.ms(r.p50), fmt.ms(r.p99), fmt.ms(r.max), fmt.pct(r.worstDelivered), fmt.pct(r.meanDelivered), r.ok ? 'ok' : 'FAILED']),
      ),
    );
    for (const r of l.rows) if (!r.ok) out.push(`   ${r.consumers} @ ${r.rate}/s FAILED: ${r.error}`);
    out.push('   (multicast is at-most-once by design: a consumer misses chunks replaced before it reads them)');
  }
  const q = report.queue;
  if (q) {
    out.push('', `3. Work queue: 1 producer, N consumers (--back-pressure), ${fmt.n(q.records)} records of ${q.recordSize} B from a regular file, --block-size ${q.block}`);
    out.push(`   timed ${q.timing}; the consumers left after the one that took the end-of-stream chunk are killed once all records arrived`);
    out.push(
      table(
        ['consumers', 'records/s', 'MB/s', 'seconds', 'records per consumer', 'exactly once'],
        q.rows.map((r) => [String(r.consumers), r.recordsPerSec ? fmt.n(r.recordsPerSec) : '-', r.MBps ? fmt.n(r.MBps, 2) : '-', r.seconds ? r.seconds.toFixed(2) : '-', r.perConsumer ? r.perConsumer.join(' / ') : '-', r.ok ? 'ok' : 'FAILED']),
      ),
    );
    for (const r of q.rows) if (!r.ok) out.push(`   ${r.consumers} consumers FAILED: ${r.error}`);
  }
  const c = report.cost;
  if (c) {
    out.push('', '4. Cost');
    out.push(table(['command', 'median ms', 'min ms', 'runs', 'status'], c.startup.map((s) => [s.label, fmt.ms(s.medianMs), fmt.ms(s.minMs), String(s.runs), s.ok ? 'ok' : 'FAILED'])));
    for (const s of c.startup) if (!s.ok) out.push(`   ${s.label} FAILED: ${s.error}`);
    out.push('');
    out.push(table(['first byte, fresh producer (multicast)', 'median ms', 'min ms', 'max ms', 'runs', 'status'], c.ttfb.map((s) => [s.impl, fmt.ms(s.medianMs), fmt.ms(s.minMs), fmt.ms(s.maxMs), String(s.runs), s.ok ? 'ok' : 'FAILED'])));
    out.push('   (consumer started and idle first; timed from spawning the producer, its stdin holding one line, to that line leaving the consumer)');
    for (const s of c.ttfb) if (!s.ok) out.push(`   ${s.impl} FAILED: ${s.error}`);
    const r = c.rss;
    out.push('');
    out.push(`   memory over a ${fmt.size(r.bytes)} back-pressure stream, --block-size ${fmt.size(r.block)}, stdin fed by the bench from a random generator (${r.MBps ? `${fmt.n(r.MBps, 1)} MB/s, ${r.seconds.toFixed(1)} s` : 'no rate'}; ${r.samples} samples of /proc/PID/status):`);
    const where = (x) => (x === undefined ? '' : ` (${Math.round(x * 100)} %)`);
    out.push(
      table(
        ['process', 'peak (VmHWM) MiB', 'RSS near 10 % MiB', 'RSS near 90 % MiB', 'sha256'],
        ['producer', 'consumer'].map((who) => [who, fmt.mb(r[who]?.peakKiB), `${fmt.mb(r[who]?.at10KiB)}${where(r[who]?.at10Progress)}`, `${fmt.mb(r[who]?.at90KiB)}${where(r[who]?.at90Progress)}`, r.ok ? 'ok' : 'FAILED']),
      ),
    );
    if (!r.ok) out.push(`   FAILED: ${r.error}`);
  }
  const failed = report.checks.filter((x) => !x.ok);
  out.push('', `correctness: ${report.checks.length - failed.length} of ${report.checks.length} checks passed${failed.length ? '' : ' (no timing assertions)'}`);
  for (const f of failed) out.push(`  FAILED ${f.name}: ${f.detail}`);
  out.push(`total bench time: ${report.totalSeconds.toFixed(1)} s`);
  return out.join('\n');
}

// ------------------------------------------------------------------- main

async function main() {
  const startedAt = performance.now();
  let config;
  try {
    config = configure(process.argv.slice(2));
  } catch (error) {
    process.stderr.write(`bench: ${error.message}\n\n${usage}\n`);
    process.exit(2);
  }
  if (!fs.existsSync(cli)) {
    process.stderr.write(`bench: ${path.relative(process.cwd(), cli)} is missing: build first (npm run build, or npm run bench)\n`);
    process.exit(2);
  }
  const base = config.dir ?? defaultBase();
  fs.mkdirSync(base, { recursive: true });
  tempDir = fs.mkdtempSync(path.join(base, 'filebus-bench-'));
  const report = { config, machine: machineInfo(), dir: fileSystemOf(tempDir), checks };
  const log = (message) => {
    if (!config.json) process.stderr.write(`bench: ${message}\n`);
  };
  if (config.bash && !fs.existsSync(bashCli)) {
    check('bash implementation present', false, `${bashCli} is missing`);
    config.bash = false;
  }
  const sections = { throughput: benchThroughput, latency: benchLatency, queue: benchQueue, cost: benchCost };
  try {
    for (const part of parts.filter((p) => config.only.includes(p))) {
      log(`${part}...`);
      const t = performance.now();
      try {
        report[part] = await sections[part](config, tempDir);
      } catch (error) {
        check(`${part}: ran to the end`, false, error.stack ?? String(error));
      }
      log(`${part} took ${((performance.now() - t) / 1000).toFixed(1)} s`);
    }
  } finally {
    killAll();
    removeTemp();
  }
  report.totalSeconds = (performance.now() - startedAt) / 1000;
  report.ok = checks.every((c) => c.ok);
  if (config.json) process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
  else process.stdout.write(`${render(report)}\n`);
  process.exitCode = report.ok ? 0 : 1;
}

await main();
