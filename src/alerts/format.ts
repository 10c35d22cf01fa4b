/**
 * Number and duration wording for alert lines. Alerts end up on pagers and in chat, read by someone
 * woken at night, so figures are rounded to what a person can act on ("~3 min", not "187.4 s").
 */

/**
 * How thousands are grouped. Spaces, not commas, because a comma is the decimal mark in half the
 * world (the SI rule). 'thin' uses U+202F NARROW NO-BREAK SPACE, so a figure never wraps across lines
 * in a chat message; 'space' is plain ASCII for sinks that mangle non-ASCII and for grep.
 */
export type Grouping = 'thin' | 'space' | 'none';

const SEPARATOR: Record<Grouping, string> = { thin: '\u202f', space: ' ', none: '' };

function group(digits: string, grouping: Grouping): string {
  const sep = SEPARATOR[grouping];
  if (sep === '' || digits.length < 4) return digits;
  let out = '';
  for (let i = 0; i < digits.length; i++) {
    if (i > 0 && (digits.length - i) % 3 === 0) out += sep;
    out += digits[i];
  }
  return out;
}

/** Rounds to an integer and groups thousands: 2340 -> "2 340". */
export function formatCount(n: number, grouping: Grouping = 'thin'): string {
  if (!Number.isFinite(n)) return String(n);
  const r = Math.round(n);
  const sign = r < 0 ? '-' : '';
  return sign + group(String(Math.abs(r)), grouping);
}

/** For the structured `values`: figures a machine reads, without float noise such as 58.50000001. */
export function round(n: number, decimals: number): number {
  const f = 10 ** decimals;
  return Math.round(n * f) / f;
}

/** Trailing ".0" adds nothing a reader needs. */
function oneDecimal(n: number): string {
  return n.toFixed(1).replace(/\.0$/, '');
}

/**
 * A per-second rate: one decimal below 10 (so 0.4/s does not read as 0), whole numbers above.
 */
export function formatRate(n: number, grouping: Grouping = 'thin'): string {
  if (!Number.isFinite(n)) return String(n);
  if (Math.abs(n) < 9.95) return oneDecimal(n);
  return formatCount(n, grouping);
}

/**
 * A 0..1 fraction as a percentage. Never rounds up to "100 %" unless it is 100 %: a table at 99.6 %
 * is not full, and saying so would be the one wrong figure in the line.
 */
export function formatPercent(fraction: number): string {
  if (!Number.isFinite(fraction)) return String(fraction);
  const pct = fraction * 100;
  let text: string;
  if (pct >= 100) text = String(Math.round(pct));
  else if (pct < 9.95) text = oneDecimal(pct);
  else text = String(Math.min(99, Math.round(pct)));
  return `${text} %`;
}

/** A ratio against a baseline: "×40", "×2.5", and "×0.02" for a collapse (not "×0"). */
export function formatFactor(x: number, grouping: Grouping = 'thin'): string {
  if (!Number.isFinite(x)) return '×∞';
  if (x > 0 && x < 0.95) return `×${Number(x.toPrecision(1))}`;
  return `×${formatRate(x, grouping)}`;
}

/**
 * A duration in seconds. Approximate form ("~3 min") for projections and ages, where one unit is all
 * a reader needs; exact form ("3 min 20 s") for configured values and how long something lasted.
 */
export function formatDuration(seconds: number, approx = true): string {
  if (!Number.isFinite(seconds)) return String(seconds);
  const s = Math.max(0, seconds);
  if (approx) {
    if (s < 1) return '<1 s';
    if (s < 90) return `~${Math.round(s)} s`;
    if (s < 90 * 60) return `~${Math.round(s / 60)} min`;
    if (s < 48 * 3600) return `~${Math.round(s / 3600)} h`;
    return `~${Math.round(s / 86400)} d`;
  }
  if (s < 1) return s === 0 ? '0 s' : `${Math.round(s * 1000)} ms`;
  const units: [number, string][] = [
    [86400, 'd'],
    [3600, 'h'],
    [60, 'min'],
    [1, 's'],
  ];
  let rest = Math.round(s);
  const parts: string[] = [];
  for (const [size, unit] of units) {
    if (rest >= size) {
      parts.push(`${Math.floor(rest / size)} ${unit}`);
      rest %= size;
    }
    // two units are enough ("2 h 5 min"); seconds after hours are noise
    if (parts.length === 2) break;
  }
  return parts.join(' ');
}

/** A flow lifetime: short-lived flows are the story, so keep two significant digits below 1 s. */
export function formatLifetime(seconds: number): string {
  if (!Number.isFinite(seconds)) return String(seconds);
  if (seconds < 1) return `${Number(seconds.toPrecision(2))} s`;
  if (seconds < 90) return `${oneDecimal(seconds)} s`;
  return formatDuration(seconds, false);
}

/**
 * Reading durations is the config grammar's job (src/config/units.ts); this name stays for callers
 * that want null instead of a reason.
 */
export { durationOrNull as parseDuration } from '../config/units.js';
