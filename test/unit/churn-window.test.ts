import { describe, expect, it } from 'vitest';
import { RateWindow } from '../../src/churn/window.js';

const S = 1_000_000;
const MS = 1_000;
/** a whole second, so bucket boundaries fall on round offsets */
const T0 = 1_700_000_000 * S;

function rates(w: RateWindow, t: number): [number, number, number] {
  return [w.rate(t, 1), w.rate(t, 10), w.rate(t, 60)];
}

describe('RateWindow', () => {
  it('reads 0 with no events', () => {
    const w = new RateWindow();
    expect(rates(w, T0)).toEqual([0, 0, 0]);
    expect(w.count(T0, 60)).toBe(0);
  });

  it('leaves out the bucket still filling', () => {
    const w = new RateWindow();
    w.add(T0);
    expect(rates(w, T0)).toEqual([0, 0, 0]);
    expect(rates(w, T0 + 99 * MS)).toEqual([0, 0, 0]);
    // first complete 100 ms bucket: 1 event over 100 ms observed
    expect(rates(w, T0 + 100 * MS)).toEqual([10, 0, 0]);
    expect(w.count(T0 + 100 * MS, 1)).toBe(1);
    expect(rates(w, T0 + S)).toEqual([1, 1, 1]);
    // the 100 ms bucket holding the event has left the 1 s window; [T0, T0 + 2 s) is observed
    expect(rates(w, T0 + 1100 * MS)).toEqual([0, 1, 1]);
    expect(rates(w, T0 + 2 * S)).toEqual([0, 0.5, 0.5]);
  });

  it('measures a steady 500/s exactly, and divides by the observed span while warming up', () => {
    const w = new RateWindow();
    for (let i = 0; i < 2000; i++) w.add(T0 + i * 2 * MS);
    // 4 s observed: 2000 / 4 on the long windows
    expect(rates(w, T0 + 4 * S)).toEqual([500, 500, 500]);
    expect(rates(w, T0 + 4 * S + 50 * MS)).toEqual([500, 500, 500]);
    // half of the last second is now empty; the 1 s buckets have not moved
    expect(rates(w, T0 + 4500 * MS)).toEqual([250, 500, 500]);
    expect(w.count(T0 + 4500 * MS, 1)).toBe(250);
    expect(rates(w, T0 + 5 * S)).toEqual([0, 400, 400]);
    // 10 s window now past the events; 60 s one holds them over 14 s observed
    expect(rates(w, T0 + 14 * S)).toEqual([0, 0, 2000 / 14]);
    expect(w.count(T0 + 13 * S, 10)).toBe(500);
    // full 60 s observed: divide by 60
    expect(rates(w, T0 + 63 * S)).toEqual([0, 0, 500 / 60]);
    expect(rates(w, T0 + 64 * S)).toEqual([0, 0, 0]);
  });

  it('counts quiet time after start() in the span', () => {
    const w = new RateWindow();
    w.start(T0);
    w.add(T0 + 5 * S, 10);
    expect(w.origin).toBe(T0);
    expect(rates(w, T0 + 6 * S)).toEqual([10, 10 / 6, 10 / 6]);
    expect(rates(w, T0 + 20 * S)).toEqual([0, 0, 10 / 20]);
  });

  it('floors the span at one bucket, so an event just before a boundary is no spike', () => {
    const w = new RateWindow();
    w.add(T0 + S - 1);
    expect(rates(w, T0 + S)).toEqual([10, 1, 1]);
  });

  it('divides by the observed span when the first event came mid-bucket', () => {
    const w = new RateWindow();
    for (let i = 0; i < 850; i++) w.add(T0 + 300 * MS + i * 2 * MS); // 500/s from T0 + 0.3 s
    // 1.7 s observed up to the bucket boundary at T0 + 2 s
    expect(w.rate(T0 + 2 * S, 10)).toBeCloseTo(500, 9);
    expect(w.rate(T0 + 2 * S, 60)).toBeCloseTo(500, 9);
    expect(w.rate(T0 + 2 * S, 1)).toBe(500);
  });

  it('keeps counts straight across ring wrap-around', () => {
    const w = new RateWindow();
    for (let s = 0; s < 200; s++) w.add(T0 + s * S + 500 * MS);
    expect(rates(w, T0 + 200 * S)).toEqual([1, 1, 1]);
    expect(w.count(T0 + 200 * S, 60)).toBe(60);
    expect(w.count(T0 + 200 * S, 10)).toBe(10);
  });

  it('clears buckets skipped by a gap longer than the ring', () => {
    const w = new RateWindow();
    w.add(T0, 10);
    w.add(T0 + 100 * S);
    expect(w.count(T0 + 101 * S, 60)).toBe(1);
    expect(rates(w, T0 + 101 * S)).toEqual([1, 0.1, 1 / 60]);
  });

  it('clears buckets skipped by a gap shorter than the ring', () => {
    const w = new RateWindow();
    w.add(T0, 7);
    w.add(T0 + 61 * S, 1); // lands in the slot T0 used
    expect(w.count(T0 + 62 * S, 60)).toBe(1);
    w.add(T0 + 62 * S + 100 * MS, 2);
    w.add(T0 + 62 * S + 1200 * MS, 3); // 11 fine buckets later: the same fine slot
    expect(w.count(T0 + 63 * S + 300 * MS, 1)).toBe(3);
  });

  it('adds a late event to its bucket while the ring holds it, drops it after', () => {
    const w = new RateWindow();
    w.add(T0 + 5 * S);
    w.add(T0 + 3500 * MS); // 15 fine buckets back: too old for the 1.1 s ring, fine for 1 s buckets
    expect(w.count(T0 + 6 * S, 10)).toBe(2);
    expect(w.count(T0 + 6 * S, 1)).toBe(1);
    // the late event moved the origin back: observation began by then
    expect(w.origin).toBe(T0 + 3500 * MS);
    expect(w.rate(T0 + 6 * S, 10)).toBe(2 / 2.5);
    w.add(T0 + 5 * S - 61 * S); // older than the 61 s ring: dropped
    expect(w.count(T0 + 6 * S, 60)).toBe(2);
  });

  it('adds weighted counts', () => {
    const w = new RateWindow();
    w.add(T0, 3);
    w.add(T0 + 10 * MS, 4);
    expect(w.count(T0 + S, 1)).toBe(7);
    expect(w.count(T0 + S, 60)).toBe(7);
  });

  it('rates() returns the three windows', () => {
    const w = new RateWindow();
    for (let i = 0; i < 100; i++) w.add(T0 + i * 10 * MS);
    expect(w.rates(T0 + S)).toEqual({ rate1: 100, rate10: 100, rate60: 100 });
  });

  it('forgets everything on reset()', () => {
    const w = new RateWindow();
    w.add(T0, 5);
    w.reset();
    expect(w.origin).toBeNaN();
    expect(w.count(T0 + S, 60)).toBe(0);
    w.add(T0 + 2 * S);
    expect(w.origin).toBe(T0 + 2 * S);
    expect(rates(w, T0 + 3 * S)).toEqual([1, 1, 1]);
  });

  it('counts what a model of its definition counts, through resets, gaps and late events', () => {
    // The model keeps every event a ring accepted (its bucket newer than the ring's length before
    // the newest bucket since the last reset) and sums those in [end − k, end) still in the ring.
    // A slot reused after a reset or a long gap holds a former key's counts: none may be read.
    type Ring = { width: number; len: number; head: number; events: { bucket: number; n: number }[] };
    const ring = (width: number, len: number): Ring => ({ width, len, head: -Infinity, events: [] });
    const accept = (r: Ring, time: number, n: number) => {
      const bucket = Math.floor(time / r.width);
      if (bucket <= r.head - r.len) return;
      r.head = Math.max(r.head, bucket);
      r.events.push({ bucket, n });
    };
    const modelCount = (r: Ring, t: number, k: number) => {
      const end = Math.floor(t / r.width);
      let total = 0;
      for (const e of r.events) if (e.bucket >= end - k && e.bucket < end && e.bucket > r.head - r.len) total += e.n;
      return total;
    };
    let seed = 12345;
    const random = () => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 2 ** 32);
    const w = new RateWindow();
    let fine = ring(100 * MS, 11), coarse = ring(S, 61);
    let t = T0;
    for (let step = 0; step < 20_000; step++) {
      const r = random();
      if (r < 0.002) {
        w.reset();
        fine = ring(100 * MS, 11);
        coarse = ring(S, 61);
      } else if (r < 0.01) {
        t += Math.floor(random() * 120 * S); // a gap, often longer than either ring
      } else {
        t += Math.floor(random() * 300 * MS);
      }
      // now and then an event from the past: within a ring, before its floor, or too old
      const late = random() < 0.15;
      const time = late ? t - Math.floor(random() * 70 * S) : t;
      const n = 1 + Math.floor(random() * 4);
      w.add(time, n);
      accept(fine, time, n);
      accept(coarse, time, n);
      const q = t + Math.floor(random() * 2 * S);
      expect(w.count(q, 1)).toBe(modelCount(fine, q, 10));
      expect(w.count(q, 10)).toBe(modelCount(coarse, q, 10));
      expect(w.count(q, 60)).toBe(modelCount(coarse, q, 60));
    }
  });
});
