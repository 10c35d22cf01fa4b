import { describe, expect, it } from 'vitest';
import { LifetimeHistogram, binOf, valueOf } from '../../src/churn/lifetime.js';

describe('LifetimeHistogram', () => {
  it('is empty until something is added', () => {
    expect(new LifetimeHistogram().quantile(0.5)).toBeUndefined();
  });

  it('reads every value back within 4.5 %', () => {
    for (let v = 1e-4; v < 1e6; v *= 1.37) {
      expect(Math.abs(valueOf(binOf(v)) - v) / v).toBeLessThan(0.045);
    }
  });

  it('puts lifetimes under 0.1 ms in bin 0, read as 0, and caps the top', () => {
    expect(binOf(0)).toBe(0);
    expect(binOf(5e-5)).toBe(0);
    expect(valueOf(0)).toBe(0);
    expect(binOf(1e9)).toBe(binOf(1e12));
  });

  it('gives p50 and p99 of a known distribution', () => {
    const h = new LifetimeHistogram();
    // 1..1000 ms, one each: p50 ≈ 0.5 s, p99 ≈ 0.99 s
    for (let ms = 1; ms <= 1000; ms++) h.add(ms / 1000);
    expect(h.total).toBe(1000);
    expect(h.quantile(0.5)!).toBeCloseTo(0.5, 1);
    expect(Math.abs(h.quantile(0.5)! - 0.5) / 0.5).toBeLessThan(0.045);
    expect(Math.abs(h.quantile(0.99)! - 0.99) / 0.99).toBeLessThan(0.045);
    expect(h.quantile(0)!).toBeLessThan(0.00105);
    expect(h.quantile(1)!).toBeGreaterThan(0.95);
  });

  it('lets new lifetimes outweigh decayed ones', () => {
    const h = new LifetimeHistogram();
    h.add(120, 100);
    h.decay(0.25);
    expect(h.total).toBe(25);
    h.add(0.2, 30);
    expect(Math.abs(h.quantile(0.5)! - 0.2) / 0.2).toBeLessThan(0.045);
    h.reset();
    expect(h.quantile(0.5)).toBeUndefined();
    // nothing of the old contents survives a reset
    h.add(5);
    expect(h.total).toBe(1);
    expect(Math.abs(h.quantile(0)! - 5) / 5).toBeLessThan(0.045);
    expect(Math.abs(h.quantile(1)! - 5) / 5).toBeLessThan(0.045);
  });
});
