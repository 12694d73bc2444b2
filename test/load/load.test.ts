/**
 * The load test at 32 MiB (load.ts; `npm run soak` runs it at 1 GiB):
 * back-pressure producers and consumers under SIGKILL.
 */
import { describe, test } from 'vitest';
import { runLoad } from './load.js';

describe('6. load', () => {
  test('32 MiB through 2 back-pressure producers and 3 consumers under SIGKILL: nothing lost, few duplicates, flat memory', async () => {
    const result = await runLoad({ bytes: 32 << 20 });
    console.log(`load: ${JSON.stringify(result)}`);
  }, 180_000);
});
