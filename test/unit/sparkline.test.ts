import { describe, expect, it } from 'vitest';
import { History, sparkline } from '../../src/cli/sparkline.js';
import { renderTop, TopHistory } from '../../src/cli/top-view.js';
import type { ChurnSnapshot } from '../../src/churn/snapshot.js';

describe('sparkline', () => {
  it('scales to the series maximum from zero', () => {
    expect(sparkline([0, 1, 2, 3, 4, 5, 6, 7])).toBe('▁▂▃▄▅▆▇█');
    expect(sparkline([0, 70])).toBe('▁█');
  });
  it('draws a fixed scale (a fill of 0..1) and clamps above it', () => {
    expect(sparkline([0, 0.5, 1, 2], { max: 1 })).toBe('▁▅██');
  });
  it('keeps a trickle visible next to a burst', () => {
    expect(sparkline([0, 1, 1000])).toBe('▁▂█');
  });
  it('shows missing values as gaps, not zeros', () => {
    expect(sparkline([1, null, Number.NaN, 1])).toBe('█  █');
  });
  it('keeps the most recent values and right-aligns a short series', () => {
    expect(sparkline([9, 0, 1], { width: 2 })).toBe('▁█');
    expect(sparkline([1], { width: 4 })).toBe('   █');
  });
  it('an all-zero or empty series is flat', () => {
    expect(sparkline([0, 0, 0])).toBe('▁▁▁');
    expect(sparkline([], { width: 3 })).toBe('   ');
  });
  it('History keeps the last N values', () => {
    const h = new History(3);
    for (const v of [1, 2, 3, 4]) h.push(v);
    expect(h.all).toEqual([2, 3, 4]);
  });
});

function snap(i: number, fill: number | null): ChurnSnapshot {
  const rates = { new1: i * 100, new10: 0, new60: 0, end1: 0, end10: 0, end60: 0 };
  return {
    event: 'churn', time: 1_700_000_000_000_000 + i * 1e6, overall: rates, live: i * 10, states: {}, shortLived: 0,
    table: { entries: fill === null ? null : Math.round(fill * 1000), max: fill === null ? null : 1000, fill, growth: 0, timeToFull: null, kernel: {} },
    destinations: [], sources: [], protocols: [],
  };
}

describe('top draws the last minute', () => {
  it('table fill and churn as sparklines under the figures', () => {
    const h = new TopHistory();
    for (let i = 0; i <= 7; i++) h.push(snap(i, i / 7));
    const screen = renderTop(snap(7, 1), { history: h, width: 200 });
    // a fixed minute wide: the newest value at the right edge, room on the left for what is to come
    expect(screen).toContain(`fill 1m ${' '.repeat(52)}▁▂▃▄▅▆▇█  (0–100 %)`);
    expect(screen).toContain(`new  1m ${' '.repeat(52)}▁▂▃▄▅▆▇█  (peak 700/s; ended peak 0/s)`);
  });
  it('without kernel figures, draws the tracked flows and says so', () => {
    const h = new TopHistory();
    for (let i = 0; i < 3; i++) h.push(snap(i, null));
    expect(renderTop(snap(2, null), { history: h, width: 200 })).toMatch(/live 1m +▁▅█  \(peak 20 tracked\)/);
  });
  it('keeps 60 values', () => {
    const h = new TopHistory();
    for (let i = 0; i < 100; i++) h.push(snap(i, 0.5));
    expect(h.fill.all.length).toBe(60);
  });
});
