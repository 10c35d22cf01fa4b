/**
 * Heavy hitters by Space-Saving (Metwally, Agrawal, El Abbadi 2005): at most `capacity` keys are
 * tracked whatever the key space, so a scan from millions of sources costs the same memory as a
 * quiet host. Every key whose true count exceeds total/capacity is guaranteed to be tracked, and a
 * tracked key's count overestimates its true count by at most its `error`.
 *
 * A new key that finds the table full takes the slot of the key with the smallest count and
 * inherits that count (count = min + weight, error = min): it may have occurred before, while it
 * was not tracked, up to min times. The minimum is found with a binary min-heap on the counts, so an
 * update is O(log K) and never a scan.
 *
 * Each slot carries a caller-owned payload (the engine keeps its rate windows there). A payload is
 * created once per slot and recycled on eviction, so a key-space attack allocates nothing.
 */
import { objectArray } from '../util/arrays.js';

export const DEFAULT_CAPACITY = 256;

export class HeavyHitters<T> {
  readonly capacity: number;
  private readonly slots = new Map<string, number>();
  private readonly keys: string[] = objectArray();
  private readonly values: T[] = objectArray();
  private readonly counts: Float64Array;
  private readonly errors: Float64Array;
  /** heap[i] = slot; heap order on counts, smallest first */
  private readonly heap: Int32Array;
  /** slot -> its position in heap */
  private readonly place: Int32Array;

  /**
   * @param create makes the payload of a new slot
   * @param recycle readies an evicted slot's payload for its new key
   */
  constructor(
    capacity: number = DEFAULT_CAPACITY,
    private readonly create: (key: string) => T = () => undefined as T,
    private readonly recycle: (value: T, key: string) => void = () => {},
  ) {
    if (!(capacity >= 1)) throw new RangeError(`heavy-hitter capacity must be >= 1, got ${capacity}`);
    this.capacity = capacity;
    this.counts = new Float64Array(capacity);
    this.errors = new Float64Array(capacity);
    this.heap = new Int32Array(capacity);
    this.place = new Int32Array(capacity);
  }

  get size(): number {
    return this.keys.length;
  }

  /** Counts `weight` occurrences of key and returns its payload (tracked from now on). */
  hit(key: string, weight = 1): T {
    let slot = this.slots.get(key);
    if (slot !== undefined) {
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
      this.slots.set(key, slot);
      this.up(slot);
      return this.values[slot];
    }
    slot = this.heap[0];
    this.slots.delete(this.keys[slot]);
    this.slots.set(key, slot);
    this.keys[slot] = key;
    this.errors[slot] = this.counts[slot];
    this.counts[slot] += weight;
    this.recycle(this.values[slot], key);
    this.down(0);
    return this.values[slot];
  }

  /** The payload of a tracked key, without counting. */
  get(key: string): T | undefined {
    const slot = this.slots.get(key);
    return slot === undefined ? undefined : this.values[slot];
  }

  /** Estimated count (an upper bound of the true count); 0 for untracked keys. */
  count(key: string): number {
    const slot = this.slots.get(key);
    return slot === undefined ? 0 : this.counts[slot];
  }

  /** Overestimation bound of count(key). */
  error(key: string): number {
    const slot = this.slots.get(key);
    return slot === undefined ? 0 : this.errors[slot];
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
