/**
 * Option parsing, pure logic: the ranges of the option checks, whose names
 * their messages use (the library's fields, or the command's flags), and
 * parseCommandLine's rules for repeated options and the environment. No
 * process is started: parseCommandLine takes the environment as a parameter.
 */
import path from 'node:path';
import { describe, expect, test } from 'vitest';
import { root } from '../helpers.js';

// The built modules, as the command and the package run them.
const options = (await import(path.join(root, 'dist/src/options.js'))) as typeof import('../../src/options.js');
const { parseCommandLine } = (await import(path.join(root, 'dist/src/cli/args.js'))) as typeof import('../../src/cli/args.js');
const { UsageError } = (await import(path.join(root, 'dist/src/errors.js'))) as typeof import('../../src/errors.js');
const { parseBlockSize, parseHistory, parseProducers, parseSleepInterval, resolveOptions } = options;

/** The UsageError `run` throws (it must throw one). */
function usageError(run: () => unknown): InstanceType<typeof UsageError> {
  try {
    run();
  } catch (error) {
    expect(error).toBeInstanceOf(UsageError);
    return error as InstanceType<typeof UsageError>;
  }
  throw new Error('no UsageError thrown');
}

describe('ranges', () => {
  test.each([
    ['parseBlockSize', parseBlockSize, [1, '1', ' 4096 ', 2 ** 30], [0, -1, 2 ** 30 + 1, 1.5, 'abc', '', '1e3', Number.NaN, undefined]],
    ['parseProducers', parseProducers, [1, '2', 1_000_000], [0, '0', 1_000_001, -3, 'x', 2.5]],
    ['parseHistory', parseHistory, [0, '0', 3000, 1_000_000], [-1, '-1', 1_000_001, 'lots', 0.5, false]],
    ['parseSleepInterval', parseSleepInterval, [0, '0', 0.1, '0.001', 3600, '3600'], [-1, '-0.1', 3600.5, 'soon', 'Infinity', Number.POSITIVE_INFINITY, '']],
  ] as const)('%s takes what is in range and refuses the rest', (_name, parse, good, bad) => {
    for (const value of good) expect(parse(value as never)).toBe(Number(value));
    for (const value of bad) expect(usageError(() => parse(value as never)).message).toContain(`got '${String(value)}'`);
  });
});

describe('library errors name the fields; the command line names its flags', () => {
  test.each([
    ['parseBlockSize', parseBlockSize, 0, 'blockSize', '--block-size'],
    ['parseBlockSize', parseBlockSize, 2 ** 31, 'blockSize', '--block-size'],
    ['parseProducers', parseProducers, 0, 'producers', '--producers'],
    ['parseHistory', parseHistory, -1, 'history', '--history'],
    ['parseSleepInterval', parseSleepInterval, 1e9, 'sleepInterval', '--sleep-interval'],
  ] as const)('%s(%s)', (_name, parse, value, field, flag) => {
    expect(usageError(() => parse(value)).message).toMatch(new RegExp(`^${field} must `));
    expect(usageError(() => parse(value, flag)).message).toMatch(new RegExp(`^${flag} must `));
  });

  test.each([
    [{ filename: '' }, /^filename is required/],
    [{ filename: 'bus', blockSize: 0 }, /^blockSize must/],
    [{ filename: 'bus', sleepInterval: -1 }, /^sleepInterval must/],
    [{ filename: 'bus', history: -1 }, /^history must/],
    [{ filename: 'bus', producers: 0, backPressure: true }, /^producers must/],
    [{ filename: 'bus', backPressure: true, history: 5 }, /^history is for multicast/],
    [{ filename: 'bus', backPressure: true, replay: true }, /^replay is for multicast/],
    [{ filename: 'bus', producers: 2 }, /^producers counts end-of-stream chunks, which only backPressure has/],
  ])('resolveOptions(%o)', (busOptions, message) => {
    const error = usageError(() => resolveOptions(busOptions));
    expect(error.message).toMatch(message);
    expect(error.message).not.toMatch(/--|FILEBUS_/);
  });

  test.each([
    [['--block-size', '0', 'producer'], /^--block-size must/],
    [['--sleep-interval', 'soon', 'consumer'], /^--sleep-interval must/],
    [['--history', 'lots', 'producer'], /^--history must/],
    [['--lossless', 'consumer', '--producers', '0'], /^--producers must/],
    [['--lossless', '--history', '5', 'producer'], /^--history is for multicast/],
  ])('parseCommandLine(%j)', (args, message) => {
    expect(usageError(() => parseCommandLine(['--filename', 'bus', ...args], {})).message).toMatch(message);
  });
});

describe('an option given twice takes the last value', () => {
  test.each([
    [['--filename', '/a', '--filename', '/b', 'producer'], { filename: '/b' }],
    [['--block-size', '10', '--block-size', '20', 'producer'], { blockSize: 20 }],
    [['--sleep-interval', '5', 'consumer', '--sleep-interval', '0.5'], { sleepInterval: 0.5 }],
    [['--history', '5', '--history', '7', 'producer'], { history: 7 }],
    [['--lossless', 'consumer', '--producers', '3', '--producers', '2'], { producers: 2 }],
    [['--no-file-monitoring', '--file-monitoring', 'consumer'], { fileMonitoring: true }],
  ])('%j', (args, expected) => {
    const invocation = parseCommandLine(['--filename', '/bus', ...args], {});
    expect(invocation).toMatchObject({ kind: 'run', options: expected });
  });

  test('status, and the implementation', () => {
    expect(parseCommandLine(['--filename', '/a', '--filename', '/b', 'status'], {})).toEqual({ kind: 'status', filename: '/b', json: false, verbose: 0 });
    expect(parseCommandLine(['--impl', 'typescript', '--impl', 'bash', '--filename', 'x', 'producer'], {})).toEqual({ kind: 'bash' });
    expect(parseCommandLine(['--impl', 'bash', '--impl', 'typescript', '--filename', 'x', 'producer'], {})).toMatchObject({ kind: 'run' });
    // -v still counts.
    expect(parseCommandLine(['-v', '-v', '--filename', 'x', 'producer'], {})).toMatchObject({ verbose: 2 });
  });
});

describe('a variable that does not apply to the role is ignored; a flag that does not apply is a usage error', () => {
  const env = { FILEBUS_FILENAME: '/bus' };
  test.each([
    ['FILEBUS_HISTORY for a back-pressure consumer', ['--lossless', 'consumer'], { FILEBUS_HISTORY: '3000' }],
    ['FILEBUS_HISTORY for a multicast consumer, even a wrong one', ['consumer'], { FILEBUS_HISTORY: 'lots' }],
    ['FILEBUS_HISTORY for a back-pressure producer', ['--lossless', 'producer'], { FILEBUS_HISTORY: '3000' }],
    ['FILEBUS_PRODUCERS for a multicast consumer', ['consumer'], { FILEBUS_PRODUCERS: '2' }],
    ['FILEBUS_PRODUCERS for a producer', ['--lossless', 'producer'], { FILEBUS_PRODUCERS: 'x' }],
    ['FILEBUS_REPLAY for a back-pressure consumer', ['--lossless', 'consumer'], { FILEBUS_REPLAY: '1' }],
    ['FILEBUS_LINES for a consumer', ['consumer'], { FILEBUS_LINES: 'maybe' }],
  ])('%s', (_name, args, vars) => {
    const invocation = parseCommandLine(args, { ...env, ...vars });
    expect(invocation).toMatchObject({ kind: 'run' });
    const { options: busOptions } = invocation as Extract<typeof invocation, { kind: 'run' }>;
    expect(busOptions).not.toHaveProperty('history');
    expect(busOptions).not.toHaveProperty('producers');
    expect(busOptions).not.toHaveProperty('replay');
    // What the library makes of them is no error either.
    expect(() => resolveOptions(busOptions)).not.toThrow();
  });

  test('where they apply, the variables count', () => {
    expect(parseCommandLine(['producer'], { ...env, FILEBUS_HISTORY: '30' })).toMatchObject({ options: { history: 30 } });
    expect(parseCommandLine(['--lossless', 'consumer'], { ...env, FILEBUS_PRODUCERS: '2' })).toMatchObject({ options: { producers: 2 } });
    expect(parseCommandLine(['consumer'], { ...env, FILEBUS_REPLAY: 'yes' })).toMatchObject({ options: { replay: true } });
    expect(parseCommandLine(['producer'], { ...env, FILEBUS_LINES: 'on' })).toMatchObject({ options: { records: 'lines' } });
    // The command line beats the environment.
    expect(parseCommandLine(['--block-size', '9', 'producer'], { ...env, FILEBUS_BLOCK_SIZE: '5' })).toMatchObject({ options: { blockSize: 9 } });
    expect(parseCommandLine(['producer', '--null'], { ...env, FILEBUS_LINES: '1' })).toMatchObject({ options: { records: 'null' } });
    expect(usageError(() => parseCommandLine(['producer'], { ...env, FILEBUS_HISTORY: 'lots' })).message).toMatch(/history.*'lots'/);
  });

  test('status and completion run in TypeScript whatever FILEBUS_IMPL says, and ignore the bus settings', () => {
    const vars = { ...env, FILEBUS_IMPL: 'bash', FILEBUS_BACK_PRESSURE: 'maybe', FILEBUS_BLOCK_SIZE: '0', FILEBUS_HISTORY: 'x' };
    expect(parseCommandLine(['status'], vars)).toEqual({ kind: 'status', filename: '/bus', json: false, verbose: 0 });
    expect(parseCommandLine(['--impl', 'bash', 'status', '--json'], vars)).toEqual({ kind: 'status', filename: '/bus', json: true, verbose: 0 });
    expect(parseCommandLine(['completion'], { ...vars, SHELL: '/bin/bash' })).toMatchObject({ kind: 'print', text: expect.stringContaining('complete ') });
    expect(parseCommandLine(['completion', '--help'], vars)).toMatchObject({ kind: 'print', text: expect.stringMatching(/^Usage: filebus completion/) });
    expect(parseCommandLine(['--get-yargs-completions', 'filebus', 'sta'], vars)).toEqual({ kind: 'print', text: 'status\n' });
    // Even a wrong FILEBUS_IMPL: it does not apply to them.
    expect(parseCommandLine(['status'], { ...env, FILEBUS_IMPL: 'perl' })).toMatchObject({ kind: 'status' });
    // The other commands go to bash.
    expect(parseCommandLine(['consumer'], vars)).toEqual({ kind: 'bash' });
  });

  test.each([
    [['--lossless', '--history', '5', 'consumer'], /^--history is for multicast/],
    [['--lossless', 'consumer', '--replay'], /^--replay is for multicast consumers/],
    [['consumer', '--producers', '2'], /^--producers counts end-of-stream chunks, which only --back-pressure has/],
    [['consumer', '--producers', '1'], /^--producers counts/],
    [['status', '--block-size', '5'], /^--block-size does not apply to status/],
    [['status', '--no-file-monitoring'], /^--no-file-monitoring does not apply to status/],
    [['--lossless', 'status'], /^--lossless does not apply to status/],
    [['consumer', '--lines'], /^--lines is an option of producer, not of consumer/],
  ])('%j', (args, message) => {
    expect(usageError(() => parseCommandLine(['--filename', '/bus', ...args], {})).message).toMatch(message);
  });

  test('--history 0 asks for nothing: taken everywhere', () => {
    expect(parseCommandLine(['--filename', '/bus', '--lossless', '--history', '0', 'producer'], {})).toMatchObject({ options: { history: 0 } });
  });
});

describe('--no-<option> of an option that takes a value', () => {
  test('--no-history is --history 0', () => {
    expect(parseCommandLine(['--filename', '/bus', '--history', '5', '--no-history', 'producer'], {})).toMatchObject({ options: { history: 0 } });
    expect(parseCommandLine(['--filename', '/bus', '--lossless', '--no-history', 'producer'], {})).toMatchObject({ kind: 'run' });
  });

  test.each(['--no-block-size', '--no-filename', '--no-sleep-interval', '--no-impl'])('%s is a usage error', (flag) => {
    const name = flag.slice('--no-'.length);
    expect(usageError(() => parseCommandLine(['--filename', '/bus', flag, 'producer'], {})).message).toMatch(new RegExp(`^${flag} is not an option: --${name} takes a value`));
  });
});
