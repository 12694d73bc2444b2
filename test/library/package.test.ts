/**
 * The package as a user gets it: `import ... from 'filebus'` resolves
 * through package.json "exports" (Node resolves a package's own name from
 * inside it), and exports exactly the public surface README "Library" lists.
 */
import fs from 'node:fs';
import path from 'node:path';
import { expect, test } from 'vitest';
import { root, run } from '../helpers.js';

/** Runs an ES module script from the package directory, where Node resolves 'filebus' to this package. */
function fromPackageDir(script: string) {
  return run('bash', ['-c', 'cd "$1" && exec "$0" --input-type=module -e "$2"', process.execPath, root, script], { stdin: 'ignore' });
}

const values = ['BusError', 'UsageError', 'consume', 'createConsumer', 'createProducer', 'status'];
const types = ['BusOptions', 'BusStatus', 'ConsumeOptions', 'Deliver', 'FileStatus', 'MissedChunks', 'Producer', 'RecordMode'];

test("import * from 'filebus' gives exactly the public functions and error classes", async () => {
  const script = `
    import * as filebus from 'filebus';
    console.log(JSON.stringify(Object.fromEntries(Object.entries(filebus).map(([name, value]) => [name, typeof value]))));
  `;
  const proc = fromPackageDir(script);
  expect(await proc.exited, proc.stderr()).toBe(0);
  const exported = JSON.parse(proc.stdout().toString()) as Record<string, string>;
  expect(Object.keys(exported).sort()).toEqual(values);
  for (const name of values) expect(exported[name]).toBe('function');
});

test('the type declarations export exactly the public types besides those values', () => {
  const declarations = fs.readFileSync(path.join(root, 'dist/src/index.d.ts'), 'utf8');
  const names = [...declarations.matchAll(/export (?:type )?\{([^}]*)\}/g)].flatMap((match) =>
    match[1]!
      .split(',')
      .map((name) => name.trim().replace(/^type\s+/, ''))
      .filter(Boolean),
  );
  expect(names.sort()).toEqual([...values, ...types].sort());
});

test('the library API works through the package name', async () => {
  const script = `
    import fs from 'node:fs';
    import os from 'node:os';
    import path from 'node:path';
    import { createProducer, status, UsageError } from 'filebus';
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'filebus-package-'));
    const bus = path.join(dir, 'bus');
    try {
      const producer = createProducer({ filename: bus, records: 'lines' });
      producer.end('one\\ntwo\\n');
      await new Promise((resolve) => producer.on('finish', resolve));
      const s = status(bus);
      let usage = '';
      try { createProducer({ filename: bus, blockSize: 0 }); } catch (error) { usage = error instanceof UsageError ? 'UsageError' : String(error); }
      console.log(JSON.stringify({ file: fs.readFileSync(bus, 'utf8'), exists: s.exists, size: s.file.size, usage }));
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  `;
  const proc = fromPackageDir(script);
  expect(await proc.exited, proc.stderr()).toBe(0);
  expect(JSON.parse(proc.stdout().toString())).toEqual({ file: 'one\ntwo\n', exists: true, size: 8, usage: 'UsageError' });
});
