/**
 * Issue 17, item 3: with --producers, an end marker counted twice. A
 * consumer killed between counting a marker in F.ends and removing it from
 * the bus left the marker there, and another counting consumer counted it
 * again: with two producers the stream ended early, that consumer exited 0
 * having delivered nothing, and the second producer's chunk stayed on the
 * bus for good. Counting and removing must be one step for any observer:
 * F.ends records which marker was counted, and a marker seen again is
 * removed, not counted.
 */
import fs from 'node:fs';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { expect, test } from 'vitest';
import { cli, filebus, run, tempDir, until, within } from '../../helpers.js';

const hasStrace = spawnSync('strace', ['-V']).status === 0;

/** True once `pid` holds its shared flock on `file` (/proc/locks), the last step of joining the count. */
function joined(pid: number, file: string): boolean {
  const ino = fs.statSync(file).ino;
  return new RegExp(`FLOCK\\s+ADVISORY\\s+READ\\s+${pid}\\s+\\S+:${ino}\\s`).test(fs.readFileSync('/proc/locks', 'latin1'));
}

test.skipIf(!hasStrace)('a consumer killed between counting an end marker and removing it: the marker is not counted again', async () => {
  const dir = tempDir();
  const bus = path.join(dir, 'bus');
  const args = ['--filename', bus, '--lossless'];
  // A counting consumer that has joined, then is stopped: the count is live
  // (not reset as a past run's), and the next marker is the doomed one's.
  const survivor = filebus([...args, 'consumer', '--producers', '2'], { stdin: 'ignore' });
  await until(() => fs.existsSync(`${bus}.ends`) && joined(survivor.child.pid!, `${bus}.ends`), 10_000, 'the first consumer to join');
  survivor.child.kill('SIGSTOP');
  // The first producer's stream is empty: one end marker.
  const first = filebus([...args, 'producer'], { stdin: 'ignore' });
  expect(await within(first.exited, 10_000, 'the first producer')).toBe(0);
  expect(fs.statSync(bus).size).toBe(0);
  // This consumer counts it and is killed at its first unlink(2), the removal of the marker.
  const doomed = run('strace', ['-f', '-o', '/dev/null', '-e', 'inject=unlink:signal=KILL:when=1', process.execPath, cli, ...args, 'consumer', '--producers', '2'], { stdin: 'ignore' });
  await within(doomed.exited, 10_000, 'the doomed consumer to be killed');
  console.log(`F.ends after the kill: ${JSON.stringify(fs.readFileSync(`${bus}.ends`, 'latin1'))}`);
  expect(fs.existsSync(bus), 'the counted marker is still on the bus').toBe(true);
  // The second producer's data, then its marker.
  const second = filebus([...args, 'producer']);
  second.child.stdin!.end('two\n');
  survivor.child.kill('SIGCONT');
  expect(await within(survivor.exited, 10_000, 'the surviving consumer')).toBe(0);
  expect(await within(second.exited, 10_000, 'the second producer')).toBe(0);
  expect(survivor.stdout().toString()).toBe('two\n');
  expect(survivor.stderr()).toBe('');
  expect(fs.existsSync(bus), 'nothing is left on the bus').toBe(false);
});
