#!/usr/bin/env node
/**
 * Build step (after tsc): bundle yargs and yargs-parser into one CommonJS
 * file, dist/vendor/yargs.cjs, with their licenses beside it, then make the
 * V8 code cache of it by running the command line's help, a parse and a
 * usage error through it (src/cli/yargs.ts explains why).
 *
 * Three things are left out, for start-up time. wrap-ansi: the help text
 * carries its own line breaks and yargs runs with wrap(null), so cliui
 * never calls it, and loading it (with ansi-styles and its colour tables)
 * was a tenth of yargs' start-up. string-width, which measures every cell
 * of the help with a regular expression of all emoji: filebus' help is
 * ASCII, so its width is its length once colour codes are stripped.
 * node:assert, which yargs uses for two internal sanity checks: loading
 * it pulls in some twenty of Node's internal modules; two small functions
 * stand in for it.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const vendor = path.join(root, 'dist/vendor');
const outfile = path.join(vendor, 'yargs.cjs');
fs.mkdirSync(vendor, { recursive: true });
fs.rmSync(`${outfile}.v8cache`, { force: true });

const standIns = {
  'string-width': "module.exports = (text) => (typeof text === 'string' ? text.replace(/\\u001b\\[[0-9;]*m/g, '').length : 0);",
  'wrap-ansi': "module.exports = () => { throw new Error('wrap-ansi is left out of this bundle: use yargs with wrap(null)'); };",
  assert: `
    const fail = (message) => { throw Object.assign(new Error(message ?? 'yargs: internal assertion failed'), { code: 'ERR_ASSERTION' }); };
    module.exports = {
      strictEqual: (actual, expected, message) => { if (!Object.is(actual, expected)) fail(message); },
      notStrictEqual: (actual, expected, message) => { if (Object.is(actual, expected)) fail(message); },
    };`,
};
const unused = {
  name: 'stand-ins',
  setup(b) {
    b.onResolve({ filter: /^(wrap-ansi|string-width|assert)$/ }, (args) => ({ path: args.path, namespace: 'stand-in' }));
    b.onLoad({ filter: /.*/, namespace: 'stand-in' }, (args) => ({ contents: standIns[args.path], loader: 'js' }));
  },
};

const result = await build({
  stdin: {
    contents: "module.exports = { yargs: require('yargs/yargs'), parse: require('yargs-parser') };",
    resolveDir: root,
    sourcefile: 'yargs-entry.cjs',
    loader: 'js',
  },
  bundle: true,
  platform: 'node',
  format: 'cjs',
  target: 'node20',
  minify: true,
  legalComments: 'none',
  metafile: true,
  plugins: [unused],
  outfile,
  logLevel: 'warning',
});

// The licenses of every package in the bundle, as their MIT/ISC terms ask.
const packages = new Set();
for (const input of Object.keys(result.metafile.inputs)) {
  const match = /^(.*node_modules\/(?:@[^/]+\/)?[^/]+)\//.exec(input);
  if (match) packages.add(path.resolve(root, match[1]));
}
const notices = [...packages].sort().map((dir) => {
  const { name, version, license } = JSON.parse(fs.readFileSync(path.join(dir, 'package.json'), 'utf8'));
  const file = fs.readdirSync(dir).find((entry) => /^licen[cs]e/i.test(entry));
  const text = file ? fs.readFileSync(path.join(dir, file), 'utf8').trim() : `${license} (no license file in the package)`;
  return `${name} ${version} (${license})\n\n${text}\n`;
});
fs.writeFileSync(path.join(vendor, 'yargs.LICENSES.txt'), `Packages bundled in yargs.cjs\n\n${notices.join('\n---\n\n')}`);

// Run what start-up runs, in a fresh process, and keep V8's code for it.
const warm = `
  import { parseCommandLine } from ${JSON.stringify(path.join(root, 'dist/src/cli/args.js'))};
  import { saveCodeCache } from ${JSON.stringify(path.join(root, 'dist/src/cli/yargs.js'))};
  const env = {};
  for (const args of [['--help'], ['producer', '--help'], ['--filename', 'x', 'producer', '--lines'], ['--filename', 'x', 'consumr'], ['--impl', 'python', '--filename', 'x', 'consumer']]) {
    try { parseCommandLine(args, env); } catch {}
  }
  saveCodeCache();
`;
const made = spawnSync(process.execPath, ['--input-type=module', '-e', warm], { stdio: 'inherit' });
if (made.status !== 0) process.exit(made.status ?? 1);
