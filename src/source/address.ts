/** Address bytes → text, on the hot path (two per tuple, four per event). */

// Addresses repeat (a host talks to a few peers), so their text is cached by value; this also
// spares the garbage collector most of the strings a busy table would otherwise create.
const v4cache = new Map<number, string>();

export function ipv4(bytes: Uint8Array, off: number): string {
  const key = ((bytes[off] << 24) | (bytes[off + 1] << 16) | (bytes[off + 2] << 8) | bytes[off + 3]) >>> 0;
  let s = v4cache.get(key);
  if (s === undefined) {
    s = `${bytes[off]}.${bytes[off + 1]}.${bytes[off + 2]}.${bytes[off + 3]}`;
    if (v4cache.size >= 65536) v4cache.clear();
    v4cache.set(key, s);
  }
  return s;
}

/** RFC 5952 text: lower case, leading zeros dropped, the longest run (≥ 2) of zero groups as "::". */
export function ipv6(bytes: Uint8Array, off: number): string {
  const groups = new Array<number>(8);
  for (let i = 0; i < 8; i++) groups[i] = (bytes[off + 2 * i] << 8) | bytes[off + 2 * i + 1];
  // IPv4-mapped (::ffff:a.b.c.d) reads better the way ss(8) prints it.
  if (groups[0] === 0 && groups[1] === 0 && groups[2] === 0 && groups[3] === 0 && groups[4] === 0 && groups[5] === 0xffff) {
    return `::ffff:${ipv4(bytes, off + 12)}`;
  }
  let bestStart = -1;
  let bestLen = 1;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) { i++; continue; }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLen) { bestStart = i; bestLen = j - i; }
    i = j;
  }
  if (bestStart < 0) return groups.map((g) => g.toString(16)).join(':');
  const head = groups.slice(0, bestStart).map((g) => g.toString(16)).join(':');
  const tail = groups.slice(bestStart + bestLen).map((g) => g.toString(16)).join(':');
  return `${head}::${tail}`;
}
