/** The one grammar for durations and sizes (flags, rules file, sinks file). */
import { describe, expect, it } from 'vitest';
import { formatDurationValue, formatSizeValue, parseCount, parseDuration, parseSize, ValueError } from '../../src/config/units.js';

function reason(f: () => unknown): string {
  try {
    f();
  } catch (err) {
    expect(err).toBeInstanceOf(ValueError);
    return (err as ValueError).reason;
  }
  throw new Error('expected a ValueError');
}

describe('durations', () => {
  it('reads units and combinations, in seconds', () => {
    expect(parseDuration('500ms')).toBe(0.5);
    expect(parseDuration('10s')).toBe(10);
    expect(parseDuration('5m')).toBe(300);
    expect(parseDuration('5min')).toBe(300);
    expect(parseDuration('2h')).toBe(7200);
    expect(parseDuration('1d')).toBe(86_400);
    expect(parseDuration('30d')).toBe(2_592_000);
    expect(parseDuration('1h30m')).toBe(5400);
    expect(parseDuration('1h 30m')).toBe(5400);
    expect(parseDuration(' 1.5s ')).toBe(1.5);
    expect(parseDuration('0')).toBe(0);
    expect(parseDuration(0)).toBe(0);
  });

  it('refuses a bare number other than 0, suggesting the units', () => {
    expect(reason(() => parseDuration(10))).toBe('10 needs a unit: write 10s, 10m or 10h');
    expect(reason(() => parseDuration('30'))).toBe('"30" needs a unit: write 30s, 30m or 30h');
    expect(reason(() => parseDuration(0.5))).toBe('0.5 needs a unit: write 0.5s, 0.5m or 0.5h');
  });

  it('reads a bare number as seconds only where asked (a monitoring plugin\'s -t 10)', () => {
    expect(parseDuration('10', { bareSeconds: true })).toBe(10);
    expect(parseDuration(2.5, { bareSeconds: true })).toBe(2.5);
    expect(parseDuration('1m', { bareSeconds: true })).toBe(60);
  });

  it('refuses anything else with an example', () => {
    for (const bad of ['soon', '', 's', '-5s', '10 minutes', '5 parsecs', '1e3s', '1h30', 'Infinitys']) {
      expect(reason(() => parseDuration(bad))).toBe(`${JSON.stringify(bad)} is not a duration: write e.g. 500ms, 10s, 5m, 1h30m`);
    }
    expect(reason(() => parseDuration(-5))).toMatch(/is not a duration/);
  });

  it('checks ranges and says them in the same notation', () => {
    expect(reason(() => parseDuration('0', { positive: true }))).toBe('"0" is out of range: use more than 0');
    expect(reason(() => parseDuration('2h', { max: 3600 }))).toBe('"2h" is out of range: use at most 1h');
    expect(reason(() => parseDuration('30d', { min: 0.001, max: 86_400 }))).toBe('"30d" is out of range: use 1ms to 1d');
    expect(parseDuration('1h', { max: 3600 })).toBe(3600);
  });

  it('writes seconds back in the grammar', () => {
    expect(formatDurationValue(0)).toBe('0');
    expect(formatDurationValue(0.25)).toBe('250ms');
    expect(formatDurationValue(90)).toBe('1m30s');
    expect(formatDurationValue(86_400 + 1.5)).toBe('1d1s500ms');
    for (const s of [0.001, 5, 3600, 5400, 2_592_000]) expect(parseDuration(formatDurationValue(s))).toBe(s);
  });
});

describe('sizes', () => {
  it('K M G T (and KiB MiB GiB TiB) are powers of 1024, as coreutils reads them', () => {
    expect(parseSize('512K')).toBe(512 * 1024);
    expect(parseSize('64M')).toBe(64 * 2 ** 20);
    expect(parseSize('64m')).toBe(64 * 2 ** 20);
    expect(parseSize('64MiB')).toBe(64 * 2 ** 20);
    expect(parseSize('64Mi')).toBe(64 * 2 ** 20);
    expect(parseSize('1G')).toBe(2 ** 30);
    expect(parseSize('1.5K')).toBe(1536);
    expect(parseSize('2T')).toBe(2 * 2 ** 40);
  });

  it('kB MB GB TB are powers of 1000', () => {
    expect(parseSize('64MB')).toBe(64_000_000);
    expect(parseSize('64mb')).toBe(64_000_000);
    expect(parseSize('100kB')).toBe(100_000);
    expect(parseSize('1GB')).toBe(1e9);
  });

  it('a bare number or B is bytes', () => {
    expect(parseSize(1_048_576)).toBe(1_048_576);
    expect(parseSize('4096')).toBe(4096);
    expect(parseSize('4096B')).toBe(4096);
    expect(parseSize(0)).toBe(0);
  });

  it('refuses the rest, and checks ranges', () => {
    for (const bad of ['lots', '', '-1K', '64 M B', '1e6', '64Q']) {
      expect(reason(() => parseSize(bad))).toBe(`${JSON.stringify(bad)} is not a size: write e.g. 64M, 512K or 1G`);
    }
    expect(reason(() => parseSize(1.5))).toMatch(/is not a size/);
    expect(reason(() => parseSize('0', { positive: true }))).toBe('"0" is out of range: use more than 0');
    expect(reason(() => parseSize('2G', { min: 4096, max: 2 ** 30 }))).toBe('"2G" is out of range: use 4K to 1G');
    expect(reason(() => parseSize('100TB', { max: 1e12 }))).toBe('"100TB" is out of range: use at most 1TB');
  });

  it('writes bytes back in the grammar', () => {
    expect(formatSizeValue(4096)).toBe('4K');
    expect(formatSizeValue(2 ** 30)).toBe('1G');
    expect(formatSizeValue(64_000_000)).toBe('64MB');
    expect(formatSizeValue(1000)).toBe('1kB');
    expect(formatSizeValue(1500)).toBe('1500');
  });
});

describe('counts', () => {
  it('whole numbers, 0 and up unless the range says otherwise', () => {
    expect(parseCount('10')).toBe(10);
    expect(parseCount(3)).toBe(3);
    expect(reason(() => parseCount('ten'))).toBe('"ten" is not a whole number');
    expect(reason(() => parseCount('1.5'))).toBe('"1.5" is not a whole number');
    expect(reason(() => parseCount('-3'))).toBe('"-3" is out of range: use at least 0');
    expect(reason(() => parseCount(0, { min: 1, max: 100 }))).toBe('0 is out of range: use 1 to 100');
  });
});
