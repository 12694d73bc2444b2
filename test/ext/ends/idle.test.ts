/**
 * Issue 17, item 7: an idle `--lossless consumer --producers 2` woke itself.
 * Each look at F.ends took and released the bus lock, the release closed
 * F.lock, and that close (IN_CLOSE_WRITE, watched so that waiters learn of
 * a release) woke the same consumer at once: 47-90 % of a core doing
 * nothing. A role's own actions must not wake it.
 */
import path from 'node:path';
import { expect, test } from 'vitest';
import { cpuSeconds, filebus, sleep, tempDir, waitForFile } from '../../helpers.js';

test('an idle back-pressure consumer counting end markers uses almost no CPU', async () => {
  const dir = tempDir();
  const bus = path.join(dir, 'bus');
  const consumer = filebus(['--filename', bus, '--lossless', 'consumer', '--producers', '2'], { stdin: 'ignore' });
  // F.ends is made when the consumer joins the stream: from then on it only waits.
  await waitForFile(`${bus}.ends`);
  await sleep(300);
  const pid = consumer.child.pid!;
  const before = cpuSeconds(pid);
  const started = performance.now();
  await sleep(2000);
  const used = cpuSeconds(pid) - before;
  const share = used / ((performance.now() - started) / 1000);
  console.log(`idle --producers 2 consumer: ${used.toFixed(2)} s of CPU in 2 s (${(share * 100).toFixed(1)} % of a core)`);
  // Before the fix: 0.9-1.8 s in 2 s. Polling every 0.1 s costs well under 1 %.
  expect(share, 'share of a core used while idle').toBeLessThan(0.05);
  expect(consumer.child.exitCode).toBe(null);
  expect(consumer.stderr()).toBe('');
});
