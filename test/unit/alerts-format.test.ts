import { describe, expect, it } from 'vitest';
import {
  formatCount,
  formatDuration,
  formatFactor,
  formatLifetime,
  formatPercent,
  formatRate,
  parseDuration,
} from '../../src/alerts/format.js';

const NNBSP = '\u202f';

describe('formatCount', () => {
  it('groups thousands with a narrow no-break space by default', () => {
    expect(formatCount(2340)).toBe(`2${NNBSP}340`);
    expect(formatCount(65536)).toBe(`65${NNBSP}536`);
    expect(formatCount(1234567)).toBe(`1${NNBSP}234${NNBSP}567`);
  });

  it('groups with a plain space or not at all on request', () => {
    expect(formatCount(2340, 'space')).toBe('2 340');
    expect(formatCount(1234567, 'none')).toBe('1234567');
  });

  it('leaves short numbers alone and rounds', () => {
    expect(formatCount(999, 'space')).toBe('999');
    expect(formatCount(0)).toBe('0');
    expect(formatCount(1999.6, 'space')).toBe('2 000');
    expect(formatCount(-12345, 'space')).toBe('-12 345');
  });
});

describe('formatRate', () => {
  it('keeps one decimal below 10 so small rates do not read as zero', () => {
    expect(formatRate(0.4)).toBe('0.4');
    expect(formatRate(3)).toBe('3');
    expect(formatRate(9.94)).toBe('9.9');
  });

  it('rounds and groups from 10 up', () => {
    expect(formatRate(9.96, 'space')).toBe('10');
    expect(formatRate(2340.4, 'space')).toBe('2 340');
  });
});

describe('formatPercent', () => {
  it('prints whole percentages with a space before the sign', () => {
    expect(formatPercent(0.61)).toBe('61 %');
    expect(formatPercent(0.8)).toBe('80 %');
  });

  it('keeps a decimal for small shares', () => {
    expect(formatPercent(0.004)).toBe('0.4 %');
    expect(formatPercent(0.05)).toBe('5 %');
  });

  it('never says 100 % for a table that is not full', () => {
    expect(formatPercent(0.996)).toBe('99 %');
    expect(formatPercent(1)).toBe('100 %');
  });
});

describe('formatFactor', () => {
  it('prints multiples against a baseline', () => {
    expect(formatFactor(40.3)).toBe('×40');
    expect(formatFactor(2.5)).toBe('×2.5');
    expect(formatFactor(Infinity)).toBe('×∞');
    expect(formatFactor(1)).toBe('×1');
    expect(formatFactor(0.0167)).toBe('×0.02');
    expect(formatFactor(0.5)).toBe('×0.5');
  });
});

describe('formatDuration', () => {
  it('approximates to one unit', () => {
    expect(formatDuration(0.3)).toBe('<1 s');
    expect(formatDuration(45)).toBe('~45 s');
    expect(formatDuration(187)).toBe('~3 min');
    expect(formatDuration(89 * 60)).toBe('~89 min');
    expect(formatDuration(2 * 3600 + 100)).toBe('~2 h');
    expect(formatDuration(3 * 86400)).toBe('~3 d');
  });

  it('gives up to two units when exact', () => {
    expect(formatDuration(0, false)).toBe('0 s');
    expect(formatDuration(0.25, false)).toBe('250 ms');
    expect(formatDuration(45, false)).toBe('45 s');
    expect(formatDuration(200, false)).toBe('3 min 20 s');
    expect(formatDuration(7500, false)).toBe('2 h 5 min');
    expect(formatDuration(1800, false)).toBe('30 min');
  });
});

describe('formatLifetime', () => {
  it('keeps two significant digits below a second', () => {
    expect(formatLifetime(0.0234)).toBe('0.023 s');
    expect(formatLifetime(0.5)).toBe('0.5 s');
    expect(formatLifetime(1.26)).toBe('1.3 s');
    expect(formatLifetime(125)).toBe('2 min 5 s');
  });
});

describe('parseDuration', () => {
  it('reads units and combinations as seconds', () => {
    expect(parseDuration('500ms')).toBe(0.5);
    expect(parseDuration('5s')).toBe(5);
    expect(parseDuration('2m')).toBe(120);
    expect(parseDuration('2min')).toBe(120);
    expect(parseDuration('1h')).toBe(3600);
    expect(parseDuration('1d')).toBe(86400);
    expect(parseDuration('1m30s')).toBe(90);
    expect(parseDuration('1.5s')).toBe(1.5);
    expect(parseDuration('0')).toBe(0);
    expect(parseDuration(0)).toBe(0);
  });

  it('rejects numbers without a unit and anything else', () => {
    expect(parseDuration(10)).toBeNull();
    expect(parseDuration('10')).toBeNull();
    expect(parseDuration('5 parsecs')).toBeNull();
    expect(parseDuration('')).toBeNull();
    expect(parseDuration('s')).toBeNull();
    expect(parseDuration('-5s')).toBeNull();
  });
});
