import { describe, expect, it } from 'vitest';
import { InternTable } from '../../src/flow/intern.js';

describe('InternTable', () => {
  it('counts references per key and keeps a key idle, not counted, once its last reference goes', () => {
    const t = new InternTable(2);
    const a = t.acquire('a');
    expect(t.created).toBe(true);
    expect(t.acquire('a')).toBe(a);
    expect(t.created).toBe(false);
    expect(t.count('a')).toBe(2);
    t.release(a);
    t.release(a);
    expect(t.size).toBe(0);
    expect(t.count('a')).toBe(0);
    expect(t.find('a')).toBe(-1);
    // it comes back under the same number, not as a new one
    expect(t.acquire('a')).toBe(a);
    expect(t.created).toBe(false);
    expect(t.size).toBe(1);
    expect(t.find('a')).toBe(a);
  });

  it('forgets the oldest idle key beyond maxIdle and reuses its number: memory stays bounded', () => {
    const t = new InternTable(2);
    for (let i = 0; i < 1000; i++) t.release(t.acquire(`k${i}`));
    expect(t.size).toBe(0);
    expect(t.capacity).toBeLessThanOrEqual(4);
    // the newest idle keys are still named; old ones were forgotten
    const last = t.acquire('k999');
    expect(t.created).toBe(false);
    expect(t.key(last)).toBe('k999');
    t.acquire('k0');
    expect(t.created).toBe(true);
  });

  it('never forgets a key in use, even one that was idle before', () => {
    const t = new InternTable(1);
    const a = t.acquire('a');
    t.release(a);
    t.acquire('a'); // in use again while still queued as idle
    for (let i = 0; i < 100; i++) t.release(t.acquire(`k${i}`));
    expect(t.find('a')).toBe(a);
    expect(t.key(a)).toBe('a');
    expect(t.count('a')).toBe(1);
  });
});
