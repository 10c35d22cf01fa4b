/**
 * Every timestamp ctwatch renders or reads: RFC 3339 in UTC, `…T15:04:05.123456Z`. The recording
 * schema, the JSON lines of `watch` and every SIEM format go through these few functions, so a
 * time reads the same everywhere. Times are µs since the epoch (event time, flow begin); kernel
 * timestamps are ns since the epoch, written with nine digits where the schema keeps them
 * (`start`, `end` of conntrack events).
 */

let cachedDay = NaN;
/** `YYYY-MM-DDT` of cachedDay, or '' when its year needs the extended (±YYYYYY) form */
let cachedDayPrefix = '';
let cachedSecond = NaN;
let cachedPrefix = '';
const TWO_DIGITS = Array.from({ length: 60 }, (_, i) => String(i).padStart(2, '0'));

/**
 * `YYYY-MM-DDTHH:MM:SS` of a whole second since the epoch. A flow end asks for three or four
 * different seconds (its time, begin, the syslog header), so the last second alone is cached, the
 * date is computed once per day, and the time of day is arithmetic (Date.toISOString costs ~0.7 µs).
 */
export function secondPrefix(second: number): string {
  if (second === cachedSecond) return cachedPrefix;
  const day = Math.floor(second / 86_400);
  if (day !== cachedDay) {
    const iso = new Date(day * 86_400_000).toISOString();
    cachedDay = day;
    cachedDayPrefix = iso.length === 24 ? iso.slice(0, 11) : '';
  }
  let prefix: string;
  if (cachedDayPrefix === '') {
    prefix = new Date(second * 1000).toISOString().slice(0, 19);
  } else {
    let s = second - day * 86_400;
    const h = Math.floor(s / 3600);
    s -= h * 3600;
    const m = Math.floor(s / 60);
    prefix = `${cachedDayPrefix}${TWO_DIGITS[h]}:${TWO_DIGITS[m]}:${TWO_DIGITS[s - m * 60]}`;
  }
  cachedSecond = second;
  cachedPrefix = prefix;
  return prefix;
}

/** µs since epoch → "2026-11-25T15:04:05.123456Z" (always 6 fraction digits; a fraction of a µs is cut) */
export function formatMicros(us: number): string {
  const whole = Math.floor(us);
  const second = Math.floor(whole / 1e6);
  // The fraction is joined first: under 13 characters V8 copies it into one flat string, so the
  // result is two pieces instead of four for whoever flattens it.
  return secondPrefix(second) + ('.' + String(whole - second * 1e6).padStart(6, '0') + 'Z');
}

/** ns since epoch → "…T15:04:05.123456789Z". A double holds ns since 1970 to about 256 ns, which
 * is far below anything a flow duration needs. */
export function formatNanos(ns: number): string {
  const second = Math.floor(ns / 1e9);
  const frac = Math.max(0, Math.min(999_999_999, Math.round(ns - second * 1e9)));
  return `${secondPrefix(second)}.${String(frac).padStart(9, '0')}Z`;
}

const RFC3339 = /^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(?:\.(\d{1,9}))?(Z|[+-]\d{2}:\d{2})$/;

function parseParts(text: string): { seconds: number; fraction: string } | null {
  const m = RFC3339.exec(text);
  if (!m) return null;
  const ms = Date.parse(`${m[1]}${m[3]}`);
  if (Number.isNaN(ms)) return null;
  return { seconds: ms / 1000, fraction: m[2] ?? '' };
}

/** RFC 3339 → µs since epoch, or NaN */
export function parseMicros(text: string): number {
  const p = parseParts(text);
  if (!p) return NaN;
  return p.seconds * 1e6 + Number(p.fraction.padEnd(6, '0').slice(0, 6));
}

/** RFC 3339 → ns since epoch, or NaN */
export function parseNanos(text: string): number {
  const p = parseParts(text);
  if (!p) return NaN;
  return p.seconds * 1e9 + Number(p.fraction.padEnd(9, '0').slice(0, 9));
}
