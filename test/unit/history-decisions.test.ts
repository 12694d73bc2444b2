/**
 * The history consumer's decisions (src/ext/history/decisions.ts), as pure
 * functions: where to begin, and what a missing entry means.
 */
import { expect, test } from 'vitest';
import { afterGap, afterStartOver, headFrom, startAt, type StartFacts } from '../../src/ext/history/decisions.js';
import { parseHead } from '../../src/ext/history/files.js';

const facts = (over: Partial<StartFacts>): StartFacts => ({
  replay: false,
  existedAtStart: true,
  newestAtStart: 40,
  fromTheStart: false,
  deliveredBefore: false,
  oldestNow: 11,
  ...over,
});

test('start: the newest chunk at our start, as a plain consumer begins with F', () => {
  expect(startAt(facts({}))).toBe(40);
});

test('start: --replay begins with the oldest entry kept, or 1 when none is', () => {
  expect(startAt(facts({ replay: true }))).toBe(11);
  expect(startAt(facts({ replay: true, oldestNow: undefined }))).toBe(1);
});

test('start: a history that did not exist at our start is read from 1, whatever F showed', () => {
  expect(startAt(facts({ existedAtStart: false, newestAtStart: 0 }))).toBe(1);
  expect(startAt(facts({ existedAtStart: false, newestAtStart: 0, deliveredBefore: true }))).toBe(1);
  expect(startAt(facts({ existedAtStart: false, newestAtStart: 0, fromTheStart: true }))).toBe(1);
});

test('start: after the newest at our start when that chunk came before us or behind what we delivered', () => {
  expect(startAt(facts({ fromTheStart: true }))).toBe(41);
  expect(startAt(facts({ deliveredBefore: true }))).toBe(41);
  // An empty history at our start: its first chunk.
  expect(startAt(facts({ newestAtStart: 0 }))).toBe(1);
  expect(startAt(facts({ newestAtStart: 0, fromTheStart: true }))).toBe(1);
});

test('gap: an entry above next means next left the window unread: missed, go on at the oldest kept', () => {
  expect(afterGap(5, [20, 21, 22])).toEqual({ kind: 'missed', first: 5, last: 19, next: 20 });
  expect(afterGap(5, [1, 2, 3, 4, 7])).toEqual({ kind: 'missed', first: 5, last: 6, next: 7 });
});

test('gap: next itself is there (linked a moment ago): read it', () => {
  expect(afterGap(5, [3, 4, 5, 6])).toEqual({ kind: 'read' });
});

test('gap: nothing at or after next (not linked yet, or F holds an older entry): wait, nothing missed', () => {
  expect(afterGap(5, [1, 2, 3, 4])).toEqual({ kind: 'wait' });
  expect(afterGap(5, [])).toEqual({ kind: 'wait' });
});

test('a history started over is read from its first number', () => {
  expect(afterStartOver()).toBe(1);
});

test('a producer takes the larger of the head and the newest entry', () => {
  expect(headFrom(30, 31)).toBe(31);
  expect(headFrom(30, undefined)).toBe(30);
  expect(headFrom(30, 25)).toBe(30);
});

test('the head: 16 digits and a newline; bytes after it, or a number past 2^53, cannot be right', () => {
  const head = (text: string) => parseHead(Buffer.from(text, 'latin1'));
  expect(head('0000000000000003\n')).toEqual({ kind: 'ok', seq: 3 });
  expect(head('')).toEqual({ kind: 'empty' });
  expect(head('0000000000000003\n9999\n')).toEqual({ kind: 'corrupt' });
  expect(head('9999999999999999\n')).toEqual({ kind: 'corrupt' });
  expect(head('00000000000000003\n')).toEqual({ kind: 'corrupt' });
  expect(head('x\n')).toEqual({ kind: 'corrupt' });
  expect(head(`${Number.MAX_SAFE_INTEGER}\n`)).toEqual({ kind: 'ok', seq: Number.MAX_SAFE_INTEGER });
});
