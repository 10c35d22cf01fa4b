/**
 * Heavy hitters by Space-Saving (Metwally, Agrawal, El Abbadi 2005): at most `capacity` keys are
 * tracked whatever the key space, so a scan from millions of sources costs the same memory as a
 * quiet host. Every key whose true count exceeds total/capacity is guaranteed to be tracked, and a
 * tracked key's count overestimates its true count by at most its `error`.
 *
 * Filtered, as Filtered Space-Saving (Homem and Carvalho 2010; ClickHouse's topK does the same):
 * an untracked key is counted in one of `16 × capacity` hash buckets (rounded up to a power of two)
 * and takes the slot of the key with the smallest count only once its bucket's count plus this
 * weight reaches that smallest count. It then starts from its bucket's count (count = bucket +
 * weight, error = bucket: it may have occurred that often while untracked), and the evicted key's
 * count goes to the evicted key's bucket. A bucket never exceeds the smallest tracked count, so
 * Space-Saving's guarantee holds: an untracked key occurred at most that often. Plain Space-Saving
 * (every untracked key evicts) recycled a slot for nearly every NEW under rotating ports or a
 * scan, each a cold slot's rate windows: 23 % of the JavaScript thread at the hot-path benchmark's
 * ceiling; filtered, a key space far wider than the table evicts on about capacity / (capacity +
 * buckets) of its untracked events (bench/README.md). The minimum is found with a binary min-heap
 * on the counts, so an update is O(log K) and never a scan.
 *
 * Each slot carries a caller-owned payload (the engine keeps its rate windows there). A payload is
 * created once per slot and recycled on eviction, so a key-space attack allocates nothing.
 *
 * Keys the caller already numbers (the flow table's interned destinations and sources,
 * src/flow/intern.ts) are found by their number in a typed array, not by hashing the string: under
 * rotating ports nearly every NEW is a key new to the table, and its Map lookup, delete and insert
 * were the costliest of the engine's per-event work (bench/README.md). `numberOf` says a key's
 * number (-1: none); the caller calls forget(n) before giving n to another key. A slot whose key
 * has no number, or lost it, is found by its key in a Map of such slots, so every key is tracked
 * at most once however it is asked for.
 */
import { objectArray } from '../util/arrays.js';

export const DEFAULT_CAPACITY = 256;
/** untracked keys' buckets per slot. ClickHouse's topK uses 6; 16 evicts a quarter less under the
 * benchmark's 20 000 rotating ports (96 k instead of 131 k of 400 k connections) for 32 KiB. */
const BUCKETS_PER_SLOT = 16;

/** FNV-1a over the key's UTF-16 units: the same bucket for a key on every run, live or replayed. */
export function bucketHash(key: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < key.length; i++) h = Math.imul(h ^ key.charCodeAt(i), 0x01000193);
  return h >>> 0;
}

export class HeavyHitters<T> {
  readonly capacity: number;
  /** slots of keys without a number (or without one now) */
  private readonly orphans = new Map<string, number>();
  /** key number -> its slot, -1 when not tracked */
  private slotOf = new Int32Array(0);
  /** slot -> the number it is found by, -1 for an orphan */
  private readonly numbers: Int32Array;
  private readonly keys: string[] = objectArray();
  private readonly values: T[] = objectArray();
  private readonly counts: Float64Array;
  private readonly errors: Float64Array;
  /** heap[i] = slot; heap order on counts, smallest first */
  private readonly heap: Int32Array;
  /** slot -> its position in heap */
  private readonly place: Int32Array;
  /** slot -> its key's bucket */
  private readonly bucketOf: Int32Array;
  /** bucket -> occurrences its untracked keys may have had (never above the smallest count) */
  private readonly buckets: Float64Array;
  private readonly bucketMask: number;

  /**
   * @param create makes the payload of a new slot
   * @param recycle readies an evicted slot's payload for its new key
   * @param numberOf the number the caller gives key, -1 for none (default: no key has one)
   */
  constructor(
    capacity: number = DEFAULT_CAPACITY,
    private readonly create: (key: string) => T = () => undefined as T,
    private readonly recycle: (value: T, key: string) => void = () => {},
    private readonly numberOf: (key: string) => number = () => -1,
  ) {
    if (!(capacity >= 1)) throw new RangeError(`heavy-hitter capacity must be >= 1, got ${capacity}`);
    this.capacity = capacity;
    this.numbers = new Int32Array(capacity);
    this.counts = new Float64Array(capacity);
    this.errors = new Float64Array(capacity);
    this.heap = new Int32Array(capacity);
    this.place = new Int32Array(capacity);
    this.bucketOf = new Int32Array(capacity);
    const buckets = 2 ** Math.ceil(Math.log2(Math.max(16, BUCKETS_PER_SLOT * capacity)));
    this.buckets = new Float64Array(buckets);
    this.bucketMask = buckets - 1;
  }

  get size(): number {
    return this.keys.length;
  }

  /** Counts `weight` occurrences of key and returns its payload when it is tracked (from now on,
   * if it just entered), undefined when it is counted only in its bucket. */
  hit(key: string, weight = 1): T | undefined {
    return this.hitNumbered(this.numberOf(key), key, weight);
  }

  /** hit(), for a key the caller knows the number of (`n` = numberOf(key)). */
  hitNumbered(n: number, key: string, weight = 1): T | undefined {
    let slot = this.slotOfKey(n, key);
    if (slot >= 0) {
      this.counts[slot] += weight;
      this.down(this.place[slot]);
      return this.values[slot];
    }
    if (this.keys.length < this.capacity) {
      slot = this.keys.length;
      this.keys.push(key);
      this.values.push(this.create(key));
      this.counts[slot] = weight;
      this.errors[slot] = 0;
      this.heap[slot] = slot;
      this.place[slot] = slot;
      this.bucketOf[slot] = bucketHash(key) & this.bucketMask;
      this.link(slot, n, key);
      this.up(slot);
      return this.values[slot];
    }
    const b = bucketHash(key) & this.bucketMask;
    const had = this.buckets[b];
    slot = this.heap[0];
    const min = this.counts[slot];
    if (had + weight < min) {
      this.buckets[b] = had + weight;
      return undefined;
    }
    // the evicted key's count stays with its bucket, so it too is bounded once untracked
    const evicted = this.bucketOf[slot];
    if (this.buckets[evicted] < min) this.buckets[evicted] = min;
    const old = this.numbers[slot];
    if (old >= 0) this.slotOf[old] = -1;
    else this.orphans.delete(this.keys[slot]);
    this.keys[slot] = key;
    this.bucketOf[slot] = b;
    this.link(slot, n, key);
    this.errors[slot] = had;
    this.counts[slot] = had + weight;
    this.recycle(this.values[slot], key);
    this.down(0);
    return this.values[slot];
  }

  /** The caller gives number n to another key from now on: its slot, if any, is found by key. */
  forget(n: number): void {
    const slot = n < this.slotOf.length ? this.slotOf[n] : -1;
    if (slot < 0) return;
    this.slotOf[n] = -1;
    this.numbers[slot] = -1;
    this.orphans.set(this.keys[slot], slot);
  }

  /** The payload of a tracked key, without counting. */
  get(key: string): T | undefined {
    const slot = this.slotOfKey(this.numberOf(key), key);
    return slot < 0 ? undefined : this.values[slot];
  }

  /** Estimated count (an upper bound of the true count); 0 for untracked keys. */
  count(key: string): number {
    const slot = this.slotOfKey(this.numberOf(key), key);
    return slot < 0 ? 0 : this.counts[slot];
  }

  /** Overestimation bound of count(key). */
  error(key: string): number {
    const slot = this.slotOfKey(this.numberOf(key), key);
    return slot < 0 ? 0 : this.errors[slot];
  }

  /** key's slot, -1 when untracked; an orphan found under its number from now on */
  private slotOfKey(n: number, key: string): number {
    if (n >= 0 && n < this.slotOf.length) {
      const slot = this.slotOf[n];
      if (slot >= 0) return slot;
    }
    if (this.orphans.size === 0) return -1;
    const slot = this.orphans.get(key);
    if (slot === undefined) return -1;
    if (n >= 0) {
      this.orphans.delete(key);
      this.link(slot, n, key);
    }
    return slot;
  }

  private link(slot: number, n: number, key: string): void {
    this.numbers[slot] = n;
    if (n < 0) {
      this.orphans.set(key, slot);
      return;
    }
    if (n >= this.slotOf.length) {
      const grown = new Int32Array(Math.max(64, 2 ** Math.ceil(Math.log2(n + 1)))).fill(-1);
      grown.set(this.slotOf);
      this.slotOf = grown;
    }
    this.slotOf[n] = slot;
  }

  forEach(fn: (key: string, value: T, count: number, error: number) => void): void {
    for (let slot = 0; slot < this.keys.length; slot++) {
      fn(this.keys[slot], this.values[slot], this.counts[slot], this.errors[slot]);
    }
  }

  /**
   * Scales every count and error (0 < factor ≤ 1). Without it a key that was heavy once would hold
   * its slot forever and the eviction threshold would only rise. Scaling by a positive constant
   * keeps the heap order, so this is O(K) with no reordering.
   */
  decay(factor: number): void {
    for (let slot = 0; slot < this.keys.length; slot++) {
      this.counts[slot] *= factor;
      this.errors[slot] *= factor;
    }
    const buckets = this.buckets;
    for (let b = 0; b < buckets.length; b++) buckets[b] *= factor;
  }

  private up(i: number): void {
    const { heap, place, counts } = this;
    const slot = heap[i];
    const c = counts[slot];
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (counts[heap[parent]] <= c) break;
      heap[i] = heap[parent];
      place[heap[i]] = i;
      i = parent;
    }
    heap[i] = slot;
    place[slot] = i;
  }

  private down(i: number): void {
    const { heap, place, counts } = this;
    const n = this.keys.length;
    const slot = heap[i];
    const c = counts[slot];
    for (;;) {
      let child = 2 * i + 1;
      if (child >= n) break;
      if (child + 1 < n && counts[heap[child + 1]] < counts[heap[child]]) child++;
      if (counts[heap[child]] >= c) break;
      heap[i] = heap[child];
      place[heap[i]] = i;
      i = child;
    }
    heap[i] = slot;
    place[slot] = i;
  }
}
