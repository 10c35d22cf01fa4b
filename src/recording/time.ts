/** RFC 3339 timestamps for the JSONL schema, fast enough to write one per event. */

let cachedSecond = -1;
let cachedPrefix = '';

/** µs since epoch → "2026-11-25T15:04:05.123456Z" (UTC, always 6 fraction digits) */
export function formatMicros(us: number): string {
  const second = Math.floor(us / 1e6);
  if (second !== cachedSecond) {
    cachedSecond = second;
    cachedPrefix = new Date(second * 1000).toISOString().slice(0, 19);
  }
  const frac = Math.round(us - second * 1e6);
  return `${cachedPrefix}.${String(frac).padStart(6, '0')}Z`;
}

/** ns since epoch → "…T15:04:05.123456789Z". A double holds ns since 1970 to about 256 ns, which
 * is far below anything a flow duration needs. */
let nsSecond = -1;
let nsPrefix = '';

export function formatNanos(ns: number): string {
  const second = Math.floor(ns / 1e9);
  if (second !== nsSecond) {
    nsSecond = second;
    nsPrefix = new Date(second * 1000).toISOString().slice(0, 19);
  }
  const frac = Math.max(0, Math.min(999_999_999, Math.round(ns - second * 1e9)));
  return `${nsPrefix}.${String(frac).padStart(9, '0')}Z`;
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
