/**
 * yargs, loaded from the one-file bundle `npm run build` makes of it
 * (dist/vendor/yargs.cjs, scripts/bundle-yargs.mjs), with the V8 code
 * cache made at build time. Both are for start-up time: fifteen small
 * CommonJS files cost more to find and read than one, and the code cache
 * spares compiling what `--help` and a parse run. A cache made by another
 * Node version is rejected by V8 and the bundle is compiled as usual.
 */
import fs from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import vm from 'node:vm';
import type { Argv } from 'yargs';
import type yargsParser from 'yargs-parser';

export interface Yargs {
  /** yargs/yargs: a yargs instance, not bound to process.argv. */
  yargs: (args?: readonly string[]) => Argv;
  /** yargs-parser: the tokenizer alone. */
  parse: typeof yargsParser;
}

const bundle = fileURLToPath(new URL('../../vendor/yargs.cjs', import.meta.url));
const codeCache = `${bundle}.v8cache`;

let loaded: { exports: Yargs; script: vm.Script } | undefined;

export function loadYargs(): Yargs {
  if (loaded) return loaded.exports;
  const source = fs.readFileSync(bundle, 'utf8');
  let cachedData: Buffer | undefined;
  try {
    cachedData = fs.readFileSync(codeCache);
  } catch {} // no cache: compiled as usual
  // The wrapper Node's CommonJS loader puts around a module.
  const script = new vm.Script(`(function (exports, require, module, __filename, __dirname) {${source}\n})`, { filename: bundle, cachedData });
  const module = { exports: {} as Yargs };
  script.runInThisContext()(module.exports, createRequire(bundle), module, bundle, path.dirname(bundle));
  loaded = { exports: module.exports, script };
  return module.exports;
}

/** Writes the code cache of the bundle as compiled so far: run at build time, after the paths worth caching ran. */
export function saveCodeCache(): void {
  if (!loaded) throw new Error('saveCodeCache: yargs was not loaded');
  fs.writeFileSync(codeCache, loaded.script.createCachedData());
}
