/**
 * Issue "Reliability and security, round 3", item 2: a member of the bus
 * directory's group swaps `F.history` with a symbolic link to a directory of
 * root's, in a loop (renameat2 RENAME_EXCHANGE), while root runs a history
 * producer or consumer. Nothing outside the bus directory may be created,
 * removed, overwritten or read. The attacker really is unprivileged (uid and
 * gid 65534 through setpriv); the swaps are real renames.
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { expect, test } from 'vitest';
import { type Impl, type Proc, filebus, isRoot, root, run, stop, tempDir } from '../../helpers.js';
import { lineFile, produceQuietly } from './util.js';

const NOBODY = 65534;
const ATTACK_SECONDS = 6;
const DECOY_FILES = 2000;
/** The link stays at F.history a moment in every 10 us: most checks pass, and the uses after them are raced. */
const PAUSE_US = 10;
const entryName = (seq: number) => String(seq).padStart(16, '0');

interface Scene {
  dir: string;
  bus: string;
  decoy: string;
  attacker: string;
}

/** A setgid group directory (2770, group 65534) for the bus, and a mode-700 directory of root's shaped like a history. */
function scene(): Scene {
  const dir = tempDir();
  fs.chmodSync(dir, 0o711);
  const busDir = path.join(dir, 'group');
  fs.mkdirSync(busDir);
  fs.chownSync(busDir, 0, NOBODY);
  fs.chmodSync(busDir, 0o2770);
  const decoy = path.join(dir, 'decoy');
  fs.mkdirSync(decoy, { mode: 0o700 });
  for (let seq = 1; seq <= DECOY_FILES; seq++) fs.writeFileSync(path.join(decoy, entryName(seq)), `decoy ${seq}\n`);
  fs.writeFileSync(path.join(decoy, 'head'), 'decoy head\n');
  const attacker = path.join(dir, 'swap-history');
  execFileSync('gcc', ['-O2', '-o', attacker, path.join(root, 'test/fixtures/swap-history.c')]);
  return { dir, bus: path.join(busDir, 'bus'), decoy, attacker };
}

function attack(s: Scene, pauseUs: number): Proc {
  return run('setpriv', [`--reuid=${NOBODY}`, `--regid=${NOBODY}`, '--clear-groups', s.attacker, `${s.bus}.history`, path.join(path.dirname(s.bus), 'link'), s.decoy, String(ATTACK_SECONDS), String(pauseUs)]);
}

/** The decoy holds exactly what it held, and nothing was made beside it. */
function expectUntouched(s: Scene, extra: string[]): void {
  const names = fs.readdirSync(s.decoy).sort();
  expect(names.length, 'files in the decoy directory').toBe(DECOY_FILES + 1);
  for (let seq = 1; seq <= DECOY_FILES; seq++) expect(fs.readFileSync(path.join(s.decoy, entryName(seq)), 'latin1')).toBe(`decoy ${seq}\n`);
  expect(fs.readFileSync(path.join(s.decoy, 'head'), 'latin1')).toBe('decoy head\n');
  for (const name of names) expect(fs.statSync(path.join(s.decoy, name)).nlink, `${name}'s links`).toBe(1);
  expect(fs.readdirSync(s.dir).sort()).toEqual(['decoy', 'group', 'swap-history', ...extra].sort());
}

/** A refusal is fine (one line, exit 1); anything else is not. */
function expectCleanEnd(status: number, stderr: string, bus: string): void {
  if (status === 1) expect(stderr).toMatch(new RegExp(`^filebus: [^\\n]*${bus}.history[^\\n]*\\n$`));
  else expect([0, 143], stderr).toContain(status);
}

for (const impl of ['ts', 'bash'] as Impl[]) {
  test.skipIf(!isRoot)(`${impl}: a root history producer while a group member swaps F.history with a link: nothing outside the bus touched (needs root)`, async () => {
    const s = scene();
    const args = ['--filename', s.bus, '--history', '10', '--block-size', '8'];
    await produceQuietly(args, lineFile(s.dir, 'first', 1, 1), impl);
    // Runs short enough to end by themselves (bash publishes a few dozen chunks a second on a
    // busy machine), each to its end: a producer stopped by a signal still publishes what it has read.
    const input = lineFile(s.dir, 'in', 1, impl === 'bash' ? 30 : 3000);
    const attacker = attack(s, PAUSE_US);
    const deadline = Date.now() + (ATTACK_SECONDS - 0.5) * 1000;
    let runs = 0;
    while (Date.now() < deadline) {
      const fd = fs.openSync(input, 'r');
      const producer = filebus([...args, 'producer'], { stdin: fd, impl });
      fs.closeSync(fd);
      expectCleanEnd(await producer.exited, producer.stderr(), s.bus);
      runs++;
    }
    expect(await attacker.exited, attacker.stderr()).toBe(0);
    expect(Number(attacker.stdout().toString()), 'swaps made').toBeGreaterThan(100);
    expect(runs).toBeGreaterThan(0);
    expectUntouched(s, ['first', 'in']);
  });
}

test.skipIf(!isRoot)('ts: a root history consumer while a group member swaps F.history with a link: reads nothing from outside (needs root)', async () => {
  const s = scene();
  await produceQuietly(['--filename', s.bus, '--history', '2000', '--block-size', '8'], lineFile(s.dir, 'in', 1, 2000));
  const attacker = attack(s, PAUSE_US);
  const deadline = Date.now() + (ATTACK_SECONDS - 0.5) * 1000;
  while (Date.now() < deadline) {
    const consumer = filebus(['--filename', s.bus, 'consumer', '--replay'], { stdin: 'ignore' });
    // Until it has read the 2,000 entries (or stopped), then a fresh one.
    await consumer.waitFor((out) => out.length >= 2000 * 8, Math.max(1, deadline - Date.now())).catch(() => undefined);
    await stop(consumer.child);
    expect(consumer.stdout().toString()).not.toMatch(/decoy/);
    expectCleanEnd(await consumer.exited, consumer.stderr(), s.bus);
  }
  expect(await attacker.exited, attacker.stderr()).toBe(0);
  expectUntouched(s, ['in']);
});
