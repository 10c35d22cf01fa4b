import { describe, expect, it } from 'vitest';
import {
  fillRatio,
  growthRate,
  kernelTotals,
  statsDelta,
  sumPerCpu,
  tablePressure,
  timeToFull,
} from '../../src/churn/pressure.js';

const S = 1_000_000;
const T0 = 1_700_000_000 * S;

describe('growthRate', () => {
  it('is the slope of a straight line, in entries per second', () => {
    const samples = Array.from({ length: 11 }, (_, i) => ({ time: T0 + i * S, entries: 1000 + 50 * i }));
    expect(growthRate(samples, T0 + 10 * S)).toBeCloseTo(50, 9);
  });

  it('uses only samples in (t − 10 s, t]', () => {
    const samples = [
      { time: T0, entries: 0 }, // exactly 10 s before: out
      { time: T0 + 1 * S, entries: 100 },
      { time: T0 + 10 * S, entries: 10 },
      { time: T0 + 11 * S, entries: 99999 }, // after t: out
    ];
    expect(growthRate(samples, T0 + 10 * S)).toBeCloseTo(-10, 9);
  });

  it('is least squares, so one outlier only tilts it', () => {
    const samples = [0, 10, 20, 130, 40, 50].map((entries, i) => ({ time: T0 + i * S, entries }));
    // without the outlier the slope is 10; least squares through all six (x = 0..5): 225 / 17.5
    expect(growthRate(samples, T0 + 5 * S)).toBeCloseTo(225 / 17.5, 9);
  });

  it('is 0 with fewer than two samples or all at one time', () => {
    expect(growthRate([], T0)).toBe(0);
    expect(growthRate([{ time: T0, entries: 5 }], T0)).toBe(0);
    expect(growthRate([{ time: T0, entries: 5 }, { time: T0, entries: 9 }], T0)).toBe(0);
  });
});

describe('timeToFull and fillRatio', () => {
  it('divides the room left by the growth', () => {
    expect(timeToFull(65536 - 1000, 65536, 100)).toBe(10);
  });

  it('is null when not growing or without a limit, 0 when full', () => {
    expect(timeToFull(100, 65536, 0)).toBeNull();
    expect(timeToFull(100, 65536, -5)).toBeNull();
    expect(timeToFull(100, 0, 5)).toBeNull();
    expect(timeToFull(65536, 65536, -5)).toBe(0);
  });

  it('gives the fill, null when unknown', () => {
    expect(fillRatio(16384, 65536)).toBe(0.25);
    expect(fillRatio(null, 65536)).toBeNull();
    expect(fillRatio(10, null)).toBeNull();
    expect(fillRatio(10, 0)).toBeNull();
  });
});

describe('kernel statistics', () => {
  it('sums per-CPU records by name', () => {
    expect(
      sumPerCpu([
        { found: 1, drop: 2, early_drop: 0 },
        { found: 10, drop: 3, insert_failed: 7 },
      ]),
    ).toEqual({ found: 11, drop: 5, early_drop: 0, insert_failed: 7 });
    expect(sumPerCpu([])).toEqual({});
  });

  it('totals counters read per CPU (live) or already summed (a recording), and none', () => {
    const summed = { drop: 5 };
    expect(kernelTotals([{ drop: 2 }, { drop: 3, found: 1 }])).toEqual({ drop: 5, found: 1 });
    expect(kernelTotals(summed)).toEqual({ drop: 5 });
    expect(kernelTotals(summed)).not.toBe(summed);
    expect(kernelTotals(undefined)).toEqual({});
  });

  it('takes deltas, counting a reset counter from 0', () => {
    expect(statsDelta({ drop: 5, found: 100 }, { drop: 8, found: 40, invalid: 2 })).toEqual({
      drop: 3,
      found: 40,
      invalid: 2,
    });
  });
});

describe('tablePressure', () => {
  it('fills the snapshot block', () => {
    expect(tablePressure(60000, 65536, 100, { drop: 1 })).toEqual({
      entries: 60000,
      max: 65536,
      fill: 60000 / 65536,
      growth: 100,
      timeToFull: 55.36,
      kernel: { drop: 1 },
    });
  });

  it('leaves fill and time to full null without table statistics', () => {
    expect(tablePressure(null, null, 12, {})).toEqual({
      entries: null,
      max: null,
      fill: null,
      growth: 12,
      timeToFull: null,
      kernel: {},
    });
  });
});
