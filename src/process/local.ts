/**
 * Which addresses are a namespace's own: its RTN_LOCAL routes (the kernel's `local` table), which
 * include whole prefixes such as 127.0.0.0/8 that no interface lists. A flow whose ends are both
 * foreign (forwarded or bridged traffic) has no local socket to look for.
 */

interface Prefix {
  v6: boolean;
  /** IPv4: one word; IPv6: eight 16-bit groups */
  words: number[];
  len: number;
}

/** IPv4 text to a 32-bit number, or null. */
export function parseIPv4(text: string): number | null {
  const parts = text.split('.');
  if (parts.length !== 4) return null;
  let v = 0;
  for (const p of parts) {
    if (!/^\d{1,3}$/.test(p)) return null;
    const n = Number(p);
    if (n > 255) return null;
    v = v * 256 + n;
  }
  return v;
}

/** IPv6 text (with '::' and an optional dotted IPv4 tail) to eight groups, or null. */
export function parseIPv6(text: string): number[] | null {
  let s = text;
  const zone = s.indexOf('%');
  if (zone >= 0) s = s.slice(0, zone);
  const tail: number[] = [];
  if (s.includes('.')) {
    const i = s.lastIndexOf(':');
    if (i < 0) return null;
    const v4 = parseIPv4(s.slice(i + 1));
    if (v4 === null) return null;
    tail.push(Math.floor(v4 / 65536), v4 % 65536);
    s = s.slice(0, i);
    if (s.endsWith(':')) s = `${s}:`; // "...::1.2.3.4": keep the '::'
  }
  const want = 8 - tail.length;
  const halves = s.split('::');
  if (halves.length > 2) return null;
  const group = (h: string) => (h === '' ? [] : h.split(':'));
  const head = group(halves[0]);
  const back = halves.length === 2 ? group(halves[1]) : [];
  const given = head.length + back.length;
  if (halves.length === 1 ? given !== want : given > want - 1) return null;
  const out: number[] = [];
  for (const g of head) out.push(hex(g));
  for (let i = 0; i < want - given; i++) out.push(0);
  for (const g of back) out.push(hex(g));
  out.push(...tail);
  return out.some(Number.isNaN) ? null : out;
}

function hex(g: string): number {
  return /^[0-9a-fA-F]{1,4}$/.test(g) ? parseInt(g, 16) : NaN;
}

function parsePrefix(text: string): Prefix | null {
  const slash = text.lastIndexOf('/');
  const addr = slash >= 0 ? text.slice(0, slash) : text;
  const v6 = addr.includes(':');
  const len = slash >= 0 ? Number(text.slice(slash + 1)) : v6 ? 128 : 32;
  if (!Number.isInteger(len) || len < 0 || len > (v6 ? 128 : 32)) return null;
  if (v6) {
    const words = parseIPv6(addr);
    return words ? { v6, words, len } : null;
  }
  const v = parseIPv4(addr);
  return v === null ? null : { v6, words: [v], len };
}

function matches(p: Prefix, words: number[]): boolean {
  if (!p.v6) {
    if (p.len === 0) return true;
    const shift = 32 - p.len;
    return Math.floor(words[0] / 2 ** shift) === Math.floor(p.words[0] / 2 ** shift);
  }
  let bits = p.len;
  for (let i = 0; i < 8 && bits > 0; i++, bits -= 16) {
    if (bits >= 16) {
      if (words[i] !== p.words[i]) return false;
    } else {
      const mask = (0xffff << (16 - bits)) & 0xffff;
      if ((words[i] & mask) !== (p.words[i] & mask)) return false;
    }
  }
  return true;
}

const CACHE_MAX = 65_536;

export class LocalAddresses {
  private prefixes: Prefix[] = [];
  private readonly cache = new Map<string, boolean>();
  /** false until routes were set once: then every address counts as local (look it up) */
  known = false;

  setRoutes(routes: readonly string[]): void {
    this.prefixes = routes.map(parsePrefix).filter((p): p is Prefix => p !== null);
    this.cache.clear();
    this.known = true;
  }

  isLocal(addr: string): boolean {
    if (!this.known) return true;
    let v = this.cache.get(addr);
    if (v !== undefined) return v;
    v = this.compute(addr);
    if (this.cache.size >= CACHE_MAX) this.cache.clear();
    this.cache.set(addr, v);
    return v;
  }

  private compute(addr: string): boolean {
    const v6 = addr.includes(':');
    const words = v6 ? parseIPv6(addr) : (() => {
      const v = parseIPv4(addr);
      return v === null ? null : [v];
    })();
    if (!words) return false;
    for (const p of this.prefixes) if (p.v6 === v6 && matches(p, words)) return true;
    return false;
  }
}
