/**
 * The load test of load.test.ts at soak size: FILEBUS_SOAK_BYTES
 * bytes (default 1 GiB) through 2 back-pressure producers and 3 consumers
 * killed at random. Not part of `npm test`; run it with `npm run soak`.
 */
import { expect, test } from 'vitest';
import { runLoad } from './load.js';

const bytes = Number(process.env.FILEBUS_SOAK_BYTES ?? 1 << 30);

test(`soak: ${bytes} bytes through 2 back-pressure producers and 3 consumers under SIGKILL`, async () => {
  expect(Number.isSafeInteger(bytes) && bytes > 0, `FILEBUS_SOAK_BYTES must be a positive number of bytes, got '${process.env.FILEBUS_SOAK_BYTES}'`).toBe(true);
  const result = await runLoad({ bytes, stallMs: 60_000 });
  console.log(`soak: ${JSON.stringify(result)}`);
}, 6 * 60 * 60 * 1000);
