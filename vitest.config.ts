import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // The 1 GiB soak runs only from `npm run soak`, which sets the size.
    exclude: process.env.FILEBUS_SOAK_BYTES ? [] : ['test/load/soak.test.ts'],
    // Every process and temporary directory a test made is cleaned up after it.
    setupFiles: ['test/setup.ts'],
    // Tests run real processes; two files at a time keeps a 2-core machine honest about timing.
    maxWorkers: 2,
    testTimeout: 60_000,
    hookTimeout: 30_000,
  },
});
