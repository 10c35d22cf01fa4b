import { describe, expect, it } from 'vitest';
import { HeavyHitters } from '../../src/churn/heavy.js';

/** mulberry32: a seeded generator, so the streams are the same on every run */
function rng(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

describe('HeavyHitters', () => {
  it('counts exactly while keys fit', () => {
    const h = new HeavyHitters(128);
    const truth = new Map<string, number>();
    const rand = rng(1);
    for (let i = 0; i < 50_000; i++) {
      const key = `10.0.0.${Math.floor(rand() * 100)}`;
      h.hit(key);
      truth.set(key, (truth.get(key) ?? 0) + 1);
    }
    expect(h.size).toBe(100);
    for (const [key, n] of truth) {
      expect(h.count(key)).toBe(n);
      expect(h.error(key)).toBe(0);
    }
  });

  it('gives a new key the minimum slot, its count plus one and the minimum as error', () => {
    const h = new HeavyHitters(2);
    h.hit('a');
    h.hit('a');
    h.hit('b');
    h.hit('c');
    expect(h.get('b')).toBeUndefined();
    expect(h.count('c')).toBe(2);
    expect(h.error('c')).toBe(1);
    expect(h.count('a')).toBe(2);
    // a and c tie at 2; the next newcomer takes one of them and inherits 2
    h.hit('d', 3);
    expect(h.count('d')).toBe(5);
    expect(h.error('d')).toBe(2);
    expect(h.size).toBe(2);
  });

  it('counts weights', () => {
    const h = new HeavyHitters(4);
    h.hit('a', 2.5);
    h.hit('a', 0.5);
    expect(h.count('a')).toBe(3);
    expect(h.count('zz')).toBe(0);
  });

  it('creates a payload once per slot and recycles it on eviction', () => {
    let created = 0;
    const recycled: string[] = [];
    const h = new HeavyHitters<{ key: string }>(
      3,
      (key) => {
        created++;
        return { key };
      },
      (value, key) => {
        recycled.push(`${value.key}->${key}`);
        value.key = key;
      },
    );
    for (const k of ['a', 'a', 'b', 'b', 'c', 'd', 'e']) h.hit(k);
    expect(created).toBe(3);
    expect(recycled).toEqual(['c->d', 'd->e']);
    expect(h.get('e')).toEqual({ key: 'e' });
  });

  it('keeps its bound with a million distinct keys, in well under a second', () => {
    const h = new HeavyHitters(256);
    const began = performance.now();
    for (let i = 0; i < 1_000_000; i++) h.hit(`k${i}`);
    expect(performance.now() - began).toBeLessThan(2000);
    expect(h.size).toBe(256);
    let keys = 0;
    let total = 0;
    h.forEach((_key, _value, count, error) => {
      keys++;
      total += count;
      // each key was seen once: its count is all inherited error
      expect(count - error).toBe(1);
    });
    expect(keys).toBe(256);
    // Space-Saving invariant: the counts sum to the stream length
    expect(total).toBe(1_000_000);
  });

  it('finds the true top 10 of a Zipf stream drowned in one-off keys', () => {
    const keys = 1_000_000;
    const cdf = new Float64Array(keys);
    let acc = 0;
    for (let i = 0; i < keys; i++) cdf[i] = acc += 1 / (i + 1) ** 1.1;
    const rand = rng(42);
    const h = new HeavyHitters(256);
    const truth = new Map<number, number>();
    for (let i = 0; i < 2_000_000; i++) {
      const u = rand() * acc;
      let lo = 0;
      let hi = keys - 1;
      while (lo < hi) {
        const mid = (lo + hi) >> 1;
        if (cdf[mid] < u) lo = mid + 1;
        else hi = mid;
      }
      truth.set(lo, (truth.get(lo) ?? 0) + 1);
      h.hit(`dst${lo}`);
      // adversarial noise: every other event a source never seen again
      if (i % 2 === 0) h.hit(`noise${i}`);
    }
    const trueTop = [...truth].sort((a, b) => b[1] - a[1]).slice(0, 10);
    const tracked: [string, number][] = [];
    h.forEach((key, _v, count) => tracked.push([key, count]));
    const estTop = tracked.sort((a, b) => b[1] - a[1]).slice(0, 10).map(([k]) => k);
    expect(new Set(estTop)).toEqual(new Set(trueTop.map(([k]) => `dst${k}`)));
    for (const [k, n] of trueTop) {
      const key = `dst${k}`;
      expect(h.count(key)).toBeGreaterThanOrEqual(n);
      expect(h.count(key) - h.error(key)).toBeLessThanOrEqual(n);
    }
    expect(h.size).toBe(256);
  });

  it('decays counts and errors alike, keeping the minimum evictable', () => {
    const h = new HeavyHitters(2);
    h.hit('a', 8);
    h.hit('b', 4);
    h.hit('c'); // takes b: count 5, error 4
    h.decay(0.5);
    expect(h.count('a')).toBe(4);
    expect(h.count('c')).toBe(2.5);
    expect(h.error('c')).toBe(2);
    h.hit('d');
    expect(h.get('c')).toBeUndefined();
    expect(h.count('d')).toBe(3.5);
  });

  it('rejects a capacity below 1', () => {
    expect(() => new HeavyHitters(0)).toThrow(RangeError);
  });
});
