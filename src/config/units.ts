/**
 * The one grammar for the values operators type: durations and sizes, on the command line, in the
 * rules file and in the sinks file alike. Pure functions; a bad value throws a ValueError whose
 * `reason` starts with the value as written, so any caller can frame it (`--duration "soon" is not
 * a duration: ...`, `file:line: field: "soon" is not a duration: ...`).
 *
 * Durations: one or more `NUMBER UNIT` groups, units ms s m (or min) h d: `500ms`, `10s`, `5m`,
 * `1h30m`, `1d`. A unit is required: `for: 10` could mean seconds or minutes, and guessing wrong
 * makes an alert fire sixty times late (Go's time.ParseDuration and Prometheus refuse it too). `0`
 * alone is zero in any unit. Returned in seconds.
 *
 * Sizes, as GNU coreutils reads them: K M G T (or KiB MiB GiB TiB) are powers of 1024; kB MB GB TB
 * are powers of 1000; a bare number or a `B` suffix is bytes. Letters in any case. Returned in bytes.
 */

/** What `--help` and the docs say, once. */
export const DURATION_SYNTAX = 'TIME: 500ms, 10s, 5m, 1h30m, 1d (a unit is required; 0 alone is zero)';
export const SIZE_SYNTAX = 'SIZE: 512K, 64M, 1G (or KiB, MiB, GiB) are powers of 1024; 64kB, 64MB powers of 1000; bare numbers are bytes';

export class ValueError extends Error {
  constructor(readonly reason: string) {
    super(reason);
    this.name = 'ValueError';
  }
}

/** Inclusive bounds, in the value's unit (seconds, bytes). `positive` excludes 0. */
export interface Range {
  min?: number;
  max?: number;
  positive?: boolean;
  /**
   * Durations only: a bare number is seconds. For the one flag whose unit an outside convention
   * fixes (a monitoring plugin's `-t 10`, Nagios guidelines); everywhere else a unit is required.
   */
  bareSeconds?: boolean;
}

const DURATION_UNITS: Record<string, number> = { ms: 0.001, s: 1, m: 60, min: 60, h: 3600, d: 86400 };
const DURATION_GROUP = /\s*(\d+(?:\.\d+)?)\s*(ms|min|s|m|h|d)/y;
const NUMBER = /^\d+(?:\.\d+)?$/;

/** The value as the operator wrote it: strings quoted, numbers (a YAML number) as they are. */
function shown(input: string | number): string {
  return typeof input === 'number' ? String(input) : JSON.stringify(input);
}

/** `"30d"` → 2 592 000 (seconds). Throws ValueError. */
export function parseDuration(input: string | number, range: Range = {}): number {
  let seconds: number | null = null;
  if (typeof input === 'number') {
    if (input === 0) seconds = 0;
    else if (Number.isFinite(input) && input > 0) {
      if (!range.bareSeconds) throw new ValueError(needsUnit(String(input), input));
      seconds = input;
    }
  } else {
    const t = input.trim();
    if (t === '0') seconds = 0;
    else if (NUMBER.test(t)) {
      if (!range.bareSeconds) throw new ValueError(needsUnit(shown(input), Number(t)));
      seconds = Number(t);
    }
    else seconds = durationGroups(t);
  }
  if (seconds === null) throw new ValueError(`${shown(input)} is not a duration: write e.g. 500ms, 10s, 5m, 1h30m`);
  checkRange(seconds, input, range, formatDurationValue);
  return seconds;
}

function durationGroups(t: string): number | null {
  DURATION_GROUP.lastIndex = 0;
  let total = 0;
  let pos = 0;
  let m: RegExpExecArray | null;
  while ((m = DURATION_GROUP.exec(t)) !== null) {
    total += Number(m[1]) * DURATION_UNITS[m[2]];
    pos = DURATION_GROUP.lastIndex;
  }
  return pos > 0 && pos === t.length && Number.isFinite(total) ? total : null;
}

function needsUnit(text: string, n: number): string {
  return `${text} needs a unit: write ${n}s, ${n}m or ${n}h`;
}

/** The same value read as a duration, or null: for callers that only need yes or no. */
export function durationOrNull(input: string | number): number | null {
  try {
    return parseDuration(input);
  } catch {
    return null;
  }
}

/** Seconds in the grammar's own notation, the shortest exact form: 90 → "1m30s", 0.25 → "250ms". */
export function formatDurationValue(seconds: number): string {
  if (seconds === 0) return '0';
  let ms = Math.round(seconds * 1000);
  let out = '';
  for (const [unit, size] of [['d', 86_400_000], ['h', 3_600_000], ['m', 60_000], ['s', 1000]] as const) {
    if (ms >= size) {
      out += `${Math.floor(ms / size)}${unit}`;
      ms %= size;
    }
  }
  return ms > 0 ? `${out}${ms}ms` : out;
}

const SIZE = /^(\d+(?:\.\d+)?)\s*(?:([kmgt])(i?)b?|(b)?)$/i;
const POWER: Record<string, number> = { k: 1, m: 2, g: 3, t: 4 };

/** `"64M"` → 67 108 864, `"64MB"` → 64 000 000 (bytes). Throws ValueError. */
export function parseSize(input: string | number, range: Range = {}): number {
  let bytes: number | null = null;
  if (typeof input === 'number') {
    if (Number.isInteger(input) && input >= 0) bytes = input;
  } else {
    const m = SIZE.exec(input.trim());
    if (m) {
      const letter = m[2]?.toLowerCase();
      // "64MB" (B, no i) is SI; "64M", "64MiB" and "64Mi" are binary
      const decimal = letter !== undefined && m[3] === '' && /b$/i.test(input.trim());
      const scale = letter === undefined ? 1 : (decimal ? 1000 : 1024) ** POWER[letter];
      bytes = Math.round(Number(m[1]) * scale);
    }
  }
  if (bytes === null || !Number.isSafeInteger(bytes)) throw new ValueError(`${shown(input)} is not a size: write e.g. 64M, 512K or 1G`);
  checkRange(bytes, input, range, formatSizeValue);
  return bytes;
}

/** Bytes in the grammar's notation: 4096 → "4K", 1e6 → "1MB", 1000 → "1000". */
export function formatSizeValue(bytes: number): string {
  for (const [unit, p] of [['T', 4], ['G', 3], ['M', 2], ['K', 1]] as const) {
    if (bytes >= 1024 ** p && bytes % 1024 ** p === 0) return `${bytes / 1024 ** p}${unit}`;
    if (bytes >= 1000 ** p && bytes % 1000 ** p === 0) return `${bytes / 1000 ** p}${unit === 'K' ? 'k' : unit}B`;
  }
  return String(bytes);
}

/** A count: a whole number within the range. Throws ValueError. */
export function parseCount(input: string | number, range: Range = {}): number {
  const n = typeof input === 'number' ? input : /^\s*-?\d+\s*$/.test(input) ? Number(input) : NaN;
  if (!Number.isSafeInteger(n)) throw new ValueError(`${shown(input)} is not a whole number`);
  checkRange(n, input, { min: 0, ...range }, String);
  return n;
}

function checkRange(v: number, input: string | number, r: Range, show: (n: number) => string): void {
  const { min, max } = r;
  if (r.positive && v <= 0) {
    throw new ValueError(`${shown(input)} is out of range: use more than 0${max !== undefined ? `, at most ${show(max)}` : ''}`);
  }
  if ((min === undefined || v >= min) && (max === undefined || v <= max)) return;
  const bounds =
    min !== undefined && max !== undefined ? `use ${show(min)} to ${show(max)}` : min !== undefined ? `use at least ${show(min)}` : `use at most ${show(max!)}`;
  throw new ValueError(`${shown(input)} is out of range: ${bounds}`);
}
