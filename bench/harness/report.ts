/**
 * What a part hands back: figures (a value against a yardstick measured in
 * the same run, their ratio and the target) and correctness checks (a
 * failed check makes the bench exit 1; a missed target never does). Printed
 * as one table, as markdown for docs/benchmarks.md, or as JSON.
 */
import type { Sampled } from './measure.js';

export type Unit = 'chunks/s' | 'MB/s' | 'records/s' | 'ms' | 'us' | 'MiB' | '%';

export interface Target {
  /** As printed, e.g. ">= 0.8 x". */
  text: string;
  /** Undefined when it cannot be told (a value or yardstick missing). */
  met(value: number, yardstick: number | undefined): boolean | undefined;
}

const ratioOf = (value: number, yardstick: number | undefined): number | undefined => (yardstick && Number.isFinite(yardstick) && Number.isFinite(value) ? value / yardstick : undefined);

export const target = {
  ratioAtLeast: (x: number): Target => ({ text: `>= ${x} x`, met: (v, y) => mapDefined(ratioOf(v, y), (r) => r >= x) }),
  ratioAtMost: (x: number): Target => ({ text: `<= ${x} x`, met: (v, y) => mapDefined(ratioOf(v, y), (r) => r <= x) }),
  atLeast: (x: number, unit: Unit): Target => ({ text: `>= ${formatValue(x, unit)} ${unit}`, met: (v) => v >= x }),
  atMost: (x: number, unit: Unit): Target => ({ text: `<= ${formatValue(x, unit)} ${unit}`, met: (v) => v <= x }),
  /** Within `extra` of the yardstick, in the figure's own unit. */
  plusAtMost: (extra: number, unit: Unit, yardstickName: string): Target => ({ text: `<= ${yardstickName} + ${extra} ${unit}`, met: (v, y) => mapDefined(y, (yy) => v <= yy + extra) }),
  none: (): Target => ({ text: '-', met: () => undefined }),
};

function mapDefined<T, U>(x: T | undefined, f: (x: T) => U): U | undefined {
  return x === undefined ? undefined : f(x);
}

export interface Figure {
  /** What is measured, in a reader's words. */
  name: string;
  unit: Unit;
  /** Median over the runs (with their spread), or a single measurement. */
  value: Sampled | undefined;
  yardstick?: { name: string; value: Sampled | undefined };
  target: Target;
  /** The issue that set the target (none: an earlier round's target). */
  issue?: number;
  /** Why a value or a yardstick is missing ("not supported by this build", "no C compiler: ..."). */
  note?: string;
}

export interface Check {
  name: string;
  ok: boolean;
  detail?: string;
}

export interface PartResult {
  figures: Figure[];
  checks: Check[];
  /** Extra lines for the reader: how a figure was taken. */
  notes: string[];
}

export const emptyResult = (): PartResult => ({ figures: [], checks: [], notes: [] });

export function formatValue(x: number | undefined, unit: Unit): string {
  if (x === undefined || !Number.isFinite(x)) return '-';
  const n = (digits: number): string => x.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits });
  switch (unit) {
    case 'chunks/s':
    case 'records/s':
    case 'us':
      return n(0);
    case 'MB/s':
    case 'MiB':
      return n(1);
    case 'ms':
      return x < 10 ? n(2) : x < 100 ? n(1) : n(0);
    case '%':
      return x === 100 ? '100' : n(1);
  }
}

export interface Row {
  figure: string;
  value: string;
  spread: string;
  yardstick: string;
  yardstickValue: string;
  ratio: string;
  target: string;
  met: string;
  issue: string;
}

export function rowOf(f: Figure): Row {
  const v = f.value?.median;
  const y = f.yardstick?.value?.median;
  const ratio = v !== undefined ? ratioOf(v, y) : undefined;
  const met = v !== undefined && Number.isFinite(v) ? f.target.met(v, y) : undefined;
  const withUnit = (x: number | undefined): string => (x === undefined || !Number.isFinite(x) ? '-' : `${formatValue(x, f.unit)} ${f.unit}`);
  const spread = f.value && f.value.runs.length > 1 ? `${formatValue(f.value.min, f.unit)}-${formatValue(f.value.max, f.unit)} (${f.value.runs.length})` : '';
  return {
    figure: f.name,
    value: withUnit(v),
    spread,
    yardstick: f.yardstick?.name ?? '-',
    yardstickValue: withUnit(y),
    ratio: ratio === undefined ? '-' : `${ratio.toFixed(2)} x`,
    target: f.target.text,
    met: [met === undefined ? '-' : met ? 'met' : 'NOT MET', f.note].filter(Boolean).join(': ').replace(/^-: /, ''),
    issue: f.issue ? `#${f.issue}` : '-',
  };
}

const columns: Array<[keyof Row, string]> = [
  ['figure', 'figure'],
  ['value', 'value (median)'],
  ['spread', 'min-max (runs)'],
  ['yardstick', 'yardstick'],
  ['yardstickValue', 'yardstick value'],
  ['ratio', 'ratio'],
  ['target', 'target'],
  ['met', 'met'],
  ['issue', 'issue'],
];

/** A plain-text table: first column left-aligned, numbers right-aligned. */
export function textTable(headers: string[], rows: string[][]): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const numeric = headers.map((_, i) => i > 0 && rows.every((r) => /^[-\d.,]+( \S+)?$|^$|^-$/.test(r[i] ?? '')));
  const line = (r: string[]): string =>
    r
      .map((c, i) => (numeric[i] ? c.padStart(widths[i]!) : c.padEnd(widths[i]!)))
      .join('  ')
      .trimEnd();
  return [line(headers), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(line)].join('\n');
}

export function markdownTable(headers: string[], rows: string[][]): string {
  const esc = (c: string): string => c.replaceAll('|', '\\|');
  return [headers, headers.map(() => '---'), ...rows].map((r) => `| ${r.map(esc).join(' | ')} |`).join('\n');
}

export function figureTable(figures: Figure[], markdown: boolean): string {
  const rows = figures.map(rowOf).map((r) => columns.map(([key]) => r[key]));
  const headers = columns.map(([, h]) => h);
  return markdown ? markdownTable(headers, rows) : textTable(headers, rows);
}
