/**
 * The library's side of the history: a consumer that stops lets go of the
 * descriptor of F.history its cursor holds (a long-lived program that
 * starts and stops consumers must not collect them).
 */
import fs from 'node:fs';
import { once } from 'node:events';
import path from 'node:path';
import { expect, test } from 'vitest';
import { createConsumer } from '../../../src/index.js';
import { filebus, tempDir, within } from '../../helpers.js';

/** What this process has open under `prefix`, from /proc/self/fd. */
function openUnder(prefix: string): string[] {
  return fs.readdirSync('/proc/self/fd').flatMap((fd) => {
    try {
      const target = fs.readlinkSync(`/proc/self/fd/${fd}`);
      return target.startsWith(prefix) ? [target] : [];
    } catch {
      return []; // closed meanwhile (the listing's own descriptor)
    }
  });
}

test('a library consumer that is destroyed closes its descriptor of F.history', async () => {
  const bus = path.join(tempDir(), 'bus');
  const producer = filebus(['--filename', bus, '--history', '10', 'producer'], { stdin: 'pipe' });
  producer.child.stdin!.write('one\n');
  const consumer = createConsumer({ filename: bus });
  const [chunk] = (await within(once(consumer, 'data'), 10_000, 'the first chunk')) as [Buffer];
  expect(String(chunk)).toBe('one\n');
  // The history's cursor took over: it holds the directory open.
  expect(openUnder(`${bus}.history`)).not.toEqual([]);
  consumer.destroy();
  await once(consumer, 'close');
  // The loop ends on its next turn (the abort reaches it there).
  await within(
    (async () => {
      while (openUnder(`${bus}.history`).length > 0) await new Promise((resolve) => setTimeout(resolve, 20));
    })(),
    5000,
    'the descriptor of F.history to be closed',
  );
  expect(openUnder(`${bus}.history`)).toEqual([]);
  producer.child.stdin!.end();
  expect(await producer.exited).toBe(0);
});
