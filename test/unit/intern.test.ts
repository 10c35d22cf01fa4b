import { describe, expect, it } from 'vitest';
import { InternTable } from '../../src/flow/intern.js';
import { destinationCode } from '../../src/flow/keys.js';

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

  it('forgets the key idle longest: one that came back and fell idle again waits from then', () => {
    const t = new InternTable(2);
    const a = t.acquire('a');
    t.release(a); // a idle first
    t.release(t.acquire('b'));
    t.acquire('a');
    t.release(a); // a idle again, now after b
    t.release(t.acquire('c')); // three idle: b, the longest, is forgotten
    expect(t.find('a') === -1 && t.count('a') === 0).toBe(true);
    t.acquire('a');
    expect(t.created).toBe(false);
    t.acquire('b');
    expect(t.created).toBe(true);
  });

  it('holds at most maxIdle idle keys after a mass release', () => {
    const t = new InternTable(3);
    const ids = Array.from({ length: 100 }, (_, i) => t.acquire(`k${i}`));
    for (const id of ids) t.release(id);
    let named = 0;
    for (let i = 0; i < 100; i++) {
      t.acquire(`k${i}`);
      if (!t.created) named++;
    }
    expect(named).toBe(3);
  });

  it('finds a key by its parts exactly while it holds its number, through forgetting and regrowing', () => {
    let seed = 99;
    const random = () => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 2 ** 32);
    const t = new InternTable(50);
    const held: number[] = [];
    for (let op = 0; op < 40_000; op++) {
      const group = `10.0.${Math.floor(random() * 30)}.1`;
      const code = Math.floor(random() * 200) * 4099; // spread codes, so runs of the probe collide
      const key = `${group}|${code}`;
      if (held.length === 0 || random() < 0.55) {
        let id = t.acquireByParts(group, code);
        if (id >= 0) {
          expect(t.key(id)).toBe(key);
          expect(t.created).toBe(false);
        } else {
          // not indexed means not named: the table holds no number for it
          expect(t.numberOf(key)).toBe(-1);
          id = t.acquire(key);
          expect(t.created).toBe(true);
          t.index(id, group, code);
        }
        held.push(id);
      } else {
        const at = Math.floor(random() * held.length);
        t.release(held[at]);
        held[at] = held[held.length - 1];
        held.pop();
      }
      if (op % 1000 === 999) {
        // every key in use is found by its parts (taking a reference and giving it back)
        for (const id of new Set(held)) {
          const [group, code] = t.key(id).split('|');
          expect(t.acquireByParts(group, Number(code))).toBe(id);
          t.release(id);
        }
      }
    }
    expect(held.length).toBeGreaterThan(2000); // past the index's first 1 024 slots
    expect(t.size).toBe(new Set(held).size);
  });

  it('codes every destination on an address apart, and gives no code to a port the kernel cannot send', () => {
    const seen = new Set<number>();
    for (const family of ['ipv4', 'ipv6'] as const) {
      for (const proto of ['tcp', 'udp', 'sctp', 'icmp', '200']) {
        for (const dport of [undefined, 0, 1, 80, 65_535]) {
          const code = destinationCode({ family, dst: '10.0.0.1', dport, proto });
          expect(code).toBeGreaterThanOrEqual(0);
          expect(code).toBeLessThan(2 ** 26); // held in an Int32Array
          expect(seen.has(code)).toBe(false);
          seen.add(code);
        }
      }
    }
    for (const dport of [65_536, -1, 80.5, 2 ** 22, NaN]) expect(destinationCode({ family: 'ipv4', dst: '10.0.0.1', dport, proto: 'tcp' })).toBe(-1);
    expect(destinationCode({ family: 'ipv4', dst: '10.0.0.1', dport: 80, proto: 'no-such-protocol' })).toBe(-1);
  });
});
