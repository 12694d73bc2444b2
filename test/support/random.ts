/**
 * One seeded source of randomness for the tests, so that a failing run can
 * be repeated: the seed comes from FILEBUS_TEST_SEED when it is set, and is
 * printed once per test file (each file runs in its own module context) the
 * first time anything random is drawn.
 */
import { createCipheriv } from 'node:crypto';

/** A small seeded generator (mulberry32): numbers in [0, 1). */
export function random(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** The seed of this test file's run: FILEBUS_TEST_SEED, or a new one. */
function seedFromEnvironment(): number {
  const given = process.env.FILEBUS_TEST_SEED;
  if (given === undefined || given === '') return (Date.now() ^ (process.pid << 16)) & 0x7fffffff;
  const seed = Number(given);
  if (!Number.isSafeInteger(seed) || seed < 0) throw new Error(`FILEBUS_TEST_SEED must be a whole number >= 0, not ${JSON.stringify(given)}`);
  return seed;
}

let seed: number | undefined;
let next: (() => number) | undefined;

/** This file's seed, printed the first time it is asked for. */
export function testSeed(): number {
  if (seed === undefined) {
    seed = seedFromEnvironment();
    console.log(`random seed ${seed} (FILEBUS_TEST_SEED=${seed} repeats this run)`);
  }
  return seed;
}

/** The next number in [0, 1) from this file's seeded generator. */
export function rand(): number {
  next ??= random(testSeed());
  return next();
}

/** A whole number in [0, n). */
export const randInt = (n: number): number => Math.floor(rand() * n);

/**
 * `size` random bytes from this file's seed: an AES-CTR key stream keyed by
 * the generator, so that even 64 MiB are quick to make and the same seed
 * makes the same bytes.
 */
export function randomBytes(size: number): Buffer {
  const key = Buffer.alloc(16);
  for (let i = 0; i < 16; i += 4) key.writeUInt32LE(randInt(2 ** 32), i);
  const cipher = createCipheriv('aes-128-ctr', key, Buffer.alloc(16));
  return Buffer.concat([cipher.update(Buffer.alloc(size)), cipher.final()]);
}
