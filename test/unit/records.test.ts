/**
 * Record boundaries (src/records.ts): where a producer may cut its input so
 * that chunks hold whole lines or NUL-terminated records. Pure functions,
 * so every edge is checked directly: the terminator at the last byte of a
 * block, just past it, absent, and plain bytes.
 */
import { describe, expect, test } from 'vitest';
import { fullChunk, recordTerminator, wholeRecords } from '../../src/records.js';

const bytes = (text: string) => Buffer.from(text, 'latin1');

describe('recordTerminator', () => {
  test('newline for lines, NUL for null, none for plain bytes', () => {
    expect(recordTerminator('lines')).toBe(0x0a);
    expect(recordTerminator('null')).toBe(0x00);
    expect(recordTerminator('bytes')).toBeUndefined();
  });
});

describe('fullChunk: the first chunk of data holding at least a block', () => {
  const NL = 0x0a;

  test('plain bytes: exactly one block, never a split record', () => {
    expect(fullChunk(bytes('abcdefghij'), 4, undefined)).toEqual({ length: 4, split: false });
  });

  test('whole records that fit: cut after the last terminator within the block', () => {
    // Block of 8: "ab\ncd\nef" holds two whole lines; the third runs past the block.
    expect(fullChunk(bytes('ab\ncd\nefgh\n'), 8, NL)).toEqual({ length: 6, split: false });
  });

  test('a terminator at the last byte of the block: the whole block', () => {
    expect(fullChunk(bytes('abc\nefg\nxyz'), 8, NL)).toEqual({ length: 8, split: false });
  });

  test('a terminator just past the block does not count: the record does not fit', () => {
    // "abcdefgh\n": the newline is byte 9, outside a block of 8.
    expect(fullChunk(bytes('abcdefgh\nxy'), 8, NL)).toEqual({ length: 8, split: true });
  });

  test('no terminator at all in the block: one block of the overlong record, marked split', () => {
    expect(fullChunk(bytes('x'.repeat(20)), 8, NL)).toEqual({ length: 8, split: true });
  });

  test('a terminator as the first byte: a chunk of one byte, the empty record', () => {
    expect(fullChunk(bytes('\nabcdefghij'), 8, NL)).toEqual({ length: 1, split: false });
  });

  test('NUL-terminated records; a newline inside one is data', () => {
    expect(fullChunk(bytes('a\nb\0c d\0eeee'), 9, 0x00)).toEqual({ length: 8, split: false });
    expect(fullChunk(bytes('a\nb\nc\nd\ne'), 4, 0x00)).toEqual({ length: 4, split: true });
  });

  test('a block of 1: a terminator byte goes alone, any other byte is split off', () => {
    expect(fullChunk(bytes('\nab'), 1, NL)).toEqual({ length: 1, split: false });
    expect(fullChunk(bytes('ab\n'), 1, NL)).toEqual({ length: 1, split: true });
  });

  test('looks only at the data it is given (a view into a larger buffer)', () => {
    const whole = bytes('\n\n\nabcd\nef');
    const view = whole.subarray(3); // "abcd\nef"
    expect(fullChunk(view, 6, NL)).toEqual({ length: 5, split: false });
    expect(fullChunk(view, 4, NL)).toEqual({ length: 4, split: true });
  });
});

describe('wholeRecords: the length of whole records at the start of data shorter than a block', () => {
  test('plain bytes: all of it', () => {
    expect(wholeRecords(bytes('abc'), undefined)).toBe(3);
    expect(wholeRecords(bytes(''), undefined)).toBe(0);
  });

  test('up to and including the last terminator; the rest waits for its end', () => {
    expect(wholeRecords(bytes('ab\ncd\nef'), 0x0a)).toBe(6);
    expect(wholeRecords(bytes('ab\ncd\n'), 0x0a)).toBe(6);
  });

  test('no terminator: nothing yet', () => {
    expect(wholeRecords(bytes('partial'), 0x0a)).toBe(0);
    expect(wholeRecords(bytes(''), 0x0a)).toBe(0);
  });

  test('NUL records: newlines are data', () => {
    expect(wholeRecords(bytes('a\nb\0c\n'), 0x00)).toBe(4);
    expect(wholeRecords(bytes('a\nb\nc\n'), 0x00)).toBe(0);
  });

  test('together with fullChunk, cuts a stream into chunks of whole lines only, none past the block', () => {
    const stream = bytes(Array.from({ length: 200 }, (_, i) => `${'r'.repeat(i % 13)}${i}\n`).join(''));
    const blockSize = 16;
    const chunks: Buffer[] = [];
    let rest = stream;
    while (rest.length >= blockSize) {
      const { length, split } = fullChunk(rest, blockSize, 0x0a);
      expect(split).toBe(false); // no line here is longer than the block
      chunks.push(rest.subarray(0, length));
      rest = rest.subarray(length);
    }
    const tail = wholeRecords(rest, 0x0a);
    chunks.push(rest.subarray(0, tail));
    expect(tail).toBe(rest.length); // the stream ends with a newline
    expect(Buffer.concat(chunks).equals(stream)).toBe(true);
    for (const chunk of chunks) {
      expect(chunk.length).toBeLessThanOrEqual(blockSize);
      expect(chunk.at(-1)).toBe(0x0a);
    }
  });
});
