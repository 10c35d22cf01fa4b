/** Parsing of the values operators type: sizes (32M), durations (1m30s), lists. */
import { CtwatchError, EXIT } from '../util/errors.js';

const SIZE_UNITS: Record<string, number> = { '': 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3 };

export function parseSize(text: string, flag: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*([kmg]?)i?b?$/i.exec(text.trim());
  if (!m) throw new CtwatchError('ERR_USAGE', `${flag} ${JSON.stringify(text)} is not a size: write e.g. 64M, 512K or 1G`, { exitCode: EXIT.usage });
  return Math.round(Number(m[1]) * SIZE_UNITS[m[2].toLowerCase()]);
}

const DURATION_UNITS: Record<string, number> = { ms: 0.001, s: 1, m: 60, h: 3600, d: 86400 };

/** "90s", "1m30s", "250ms", "2h" → seconds */
export function parseDuration(text: string, flag: string): number {
  const t = text.trim();
  const re = /(\d+(?:\.\d+)?)(ms|s|m|h|d)/gy;
  let total = 0;
  let m: RegExpExecArray | null;
  let consumed = 0;
  while ((m = re.exec(t)) !== null) {
    total += Number(m[1]) * DURATION_UNITS[m[2]];
    consumed = re.lastIndex;
  }
  if (consumed !== t.length || t.length === 0) {
    if (/^\d+(\.\d+)?$/.test(t)) return Number(t);
    throw new CtwatchError('ERR_USAGE', `${flag} ${JSON.stringify(text)} is not a duration: write e.g. 10s, 5m, 1h30m`, { exitCode: EXIT.usage });
  }
  return total;
}

export function parseCount(text: string, flag: string): number {
  const n = Number(text);
  if (!Number.isInteger(n) || n < 0) throw new CtwatchError('ERR_USAGE', `${flag} ${JSON.stringify(text)} is not a whole number`, { exitCode: EXIT.usage });
  return n;
}
