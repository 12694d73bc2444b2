/** Registered by vitest.config.ts (setupFiles) in every test file: after each test, stop what it started and remove its temporary directories. */
import { afterEach } from 'vitest';
import { cleanUpGently } from './support/processes.js';

afterEach(cleanUpGently);
