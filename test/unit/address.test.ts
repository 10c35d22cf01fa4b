import { describe, expect, it } from 'vitest';
import { ipv4, ipv6 } from '../../src/source/address.js';

// A reference for the text, independent of the caches: WHATWG URL serializes IPv6 hosts per
// RFC 5952 (lower case, longest zero run of two or more as "::", the first of equal runs), except
// IPv4-mapped ones, which ctwatch writes as ss(8) does.
function reference6(b: Uint8Array, off: number): string {
  const g: string[] = [];
  for (let i = 0; i < 8; i++) g.push(((b[off + 2 * i] << 8) | b[off + 2 * i + 1]).toString(16));
  const mapped = g.slice(0, 5).every((x) => x === '0') && g[5] === 'ffff';
  if (mapped) return `::ffff:${b[off + 12]}.${b[off + 13]}.${b[off + 14]}.${b[off + 15]}`;
  return new URL(`http://[${g.join(':')}]/`).hostname.slice(1, -1);
}

/** a deterministic generator (the suite must not depend on chance) */
function lcg(seed: number) {
  let s = seed >>> 0;
  return () => (s = (Math.imul(s, 1664525) + 1013904223) >>> 0);
}

describe('address text', () => {
  it('is right for every address, however many there are and however they repeat', () => {
    const next = lcg(7);
    const buf = new Uint8Array(64);
    // a few hot addresses among many cold ones: the buckets evict, swap and hit
    const hot = Array.from({ length: 24 }, () => next());
    for (let i = 0; i < 120_000; i++) {
      const r = next();
      const v = r % 3 === 0 ? hot[r % hot.length] : next();
      const off = (r >>> 8) % 40;
      buf[off] = v >>> 24; buf[off + 1] = (v >>> 16) & 255; buf[off + 2] = (v >>> 8) & 255; buf[off + 3] = v & 255;
      expect(ipv4(buf, off)).toBe(`${buf[off]}.${buf[off + 1]}.${buf[off + 2]}.${buf[off + 3]}`);
    }
    for (const v of [0, 0xffffffff, 0x7f000001, 0x80000000]) {
      const b = Uint8Array.of(v >>> 24, (v >>> 16) & 255, (v >>> 8) & 255, v & 255);
      expect(ipv4(b, 0)).toBe([...b].join('.'));
      expect(ipv4(b, 0)).toBe([...b].join('.'));
    }
  });

  it('writes IPv6 per RFC 5952 from any cache state, zero runs and mapped addresses included', () => {
    const next = lcg(11);
    const b = new Uint8Array(16);
    const hot = Array.from({ length: 16 }, () => Array.from({ length: 8 }, () => next() & 0xffff));
    for (let i = 0; i < 60_000; i++) {
      const r = next();
      const groups = r % 4 === 0 ? hot[r % hot.length] : Array.from({ length: 8 }, () => {
        const x = next();
        // zero groups often, so runs of every length and place come up
        return x % 3 === 0 ? 0 : x % 5 === 0 ? 0xffff : x & (x % 7 === 0 ? 0xf : 0xffff);
      });
      if (r % 17 === 0) groups.splice(0, 6, 0, 0, 0, 0, 0, 0xffff);
      groups.forEach((g, k) => { b[2 * k] = g >>> 8; b[2 * k + 1] = g & 255; });
      expect(ipv6(b, 0)).toBe(reference6(b, 0));
    }
  });
});
