/** Address bytes → text, on the hot path (two per tuple, four per event). */

// Addresses repeat (a host talks to a few peers), so their text is kept by value: a repeated
// address costs no string and no allocation, and the string handed out is the same one each
// time, whose hash the flow table's and the churn counters' maps have already computed.
//
// The caches are fixed tables of buckets of two (the address read last first), indexed by a hash
// of the address bytes: a lookup allocates nothing, and memory is bounded however many addresses
// come. A Map cleared when full (what this was before) cost a Map lookup per address, and under
// traffic from many sources (a scan, a flood from spoofed addresses) it grew to its bound and was
// dropped whole, again and again: every repeated address then became a new string, and the
// entries were medium-lived garbage for the full collections (bench/README.md "Address text
// without a Map").
const BUCKETS = 1 << 13;
const SLOTS = 2 * BUCKETS;
const SHIFT = 32 - 13;

const v4keys = new Int32Array(SLOTS);
/** '' marks an empty slot (no address's text is empty) */
const v4text: string[] = new Array<string>(SLOTS).fill('');

const v6keys = new Int32Array(4 * SLOTS);
const v6text: string[] = new Array<string>(SLOTS).fill('');

export function ipv4(bytes: Uint8Array, off: number): string {
  const key = (bytes[off] << 24) | (bytes[off + 1] << 16) | (bytes[off + 2] << 8) | bytes[off + 3];
  const a = (Math.imul(key, 0x9e3779b1) >>> SHIFT) << 1;
  const first = v4text[a];
  if (v4keys[a] === key && first !== '') return first;
  const b = a + 1;
  const second = v4text[b];
  if (v4keys[b] === key && second !== '') {
    // the address read last goes first: of two that alternate, neither is made again
    v4keys[b] = v4keys[a];
    v4text[b] = first;
    v4keys[a] = key;
    v4text[a] = second;
    return second;
  }
  const s = `${bytes[off]}.${bytes[off + 1]}.${bytes[off + 2]}.${bytes[off + 3]}`;
  v4keys[b] = v4keys[a];
  v4text[b] = first;
  v4keys[a] = key;
  v4text[a] = s;
  return s;
}

/** RFC 5952 text: lower case, leading zeros dropped, the longest run (≥ 2) of zero groups as "::". */
export function ipv6(bytes: Uint8Array, off: number): string {
  const w0 = word(bytes, off);
  const w1 = word(bytes, off + 4);
  const w2 = word(bytes, off + 8);
  const w3 = word(bytes, off + 12);
  const h = Math.imul(w0 ^ Math.imul(w1 ^ Math.imul(w2 ^ Math.imul(w3, 0x85ebca6b), 0xc2b2ae35), 0x27d4eb2f), 0x9e3779b1);
  const a = (h >>> SHIFT) << 1;
  if (v6text[a] !== '' && sameWords(a, w0, w1, w2, w3)) return v6text[a];
  const b = a + 1;
  let s: string;
  if (v6text[b] !== '' && sameWords(b, w0, w1, w2, w3)) s = v6text[b];
  else s = ipv6Text(bytes, off);
  // b takes a's, a takes this one (read last first, as for IPv4)
  v6text[b] = v6text[a];
  v6keys.copyWithin(4 * b, 4 * a, 4 * a + 4);
  v6text[a] = s;
  const k = 4 * a;
  v6keys[k] = w0;
  v6keys[k + 1] = w1;
  v6keys[k + 2] = w2;
  v6keys[k + 3] = w3;
  return s;
}

function word(bytes: Uint8Array, at: number): number {
  return (bytes[at] << 24) | (bytes[at + 1] << 16) | (bytes[at + 2] << 8) | bytes[at + 3];
}

function sameWords(slot: number, w0: number, w1: number, w2: number, w3: number): boolean {
  const k = 4 * slot;
  return v6keys[k] === w0 && v6keys[k + 1] === w1 && v6keys[k + 2] === w2 && v6keys[k + 3] === w3;
}

function ipv6Text(bytes: Uint8Array, off: number): string {
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
