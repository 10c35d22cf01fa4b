/**
 * What "normal" churn is for each destination, so an operator does not have to guess a threshold:
 * the median of per-bucket mean rates over the last `window / bucket` buckets in which the
 * destination was learned. The median, not the mean, so one past burst does not raise the bar for
 * the next hour.
 *
 * Buckets are counted, not timed: while learning is paused (during an alert) or the destination is
 * out of the top list, its history waits instead of expiring, so an alert never loses the very
 * baseline it is measured against.
 *
 * Memory is bounded twice: each key keeps a fixed ring of bucket means, and at most `maxKeys` keys
 * are kept, the least recently seen forgotten first.
 */
import type { BaselineConfig } from './rules.js';

interface History {
  /** means of completed buckets, a ring written at `next` */
  means: Float64Array;
  next: number;
  filled: number;
  /** the bucket being filled */
  openId: number;
  openSum: number;
  openCount: number;
}

export class BaselineTracker {
  private readonly keys = new Map<string, History>();
  private readonly slots: number;
  private readonly bucketUs: number;

  constructor(private cfg: Readonly<BaselineConfig>) {
    this.slots = Math.max(1, Math.floor(cfg.window / cfg.bucket));
    this.bucketUs = cfg.bucket * 1e6;
  }

  get config(): Readonly<BaselineConfig> {
    return this.cfg;
  }

  get size(): number {
    return this.keys.size;
  }

  /**
   * Takes new limits while keeping what was learned, when the buckets still mean the same thing.
   * Returns false (and changes nothing) when rate, window or bucket differ: the caller starts afresh.
   */
  reconfigure(config: Readonly<BaselineConfig>): boolean {
    const c = this.cfg;
    if (config.rate !== c.rate || config.window !== c.window || config.bucket !== c.bucket) return false;
    this.cfg = config;
    for (const key of this.keys.keys()) {
      if (this.keys.size <= config.maxKeys) break;
      this.keys.delete(key);
    }
    return true;
  }

  /**
   * Records a rate seen at `timeUs`. With `learn` false the key is only kept fresh: the evaluator
   * stops learning while a baseline alert is pending or active, or a leak would teach the baseline
   * that the leak is normal and resolve its own alert.
   */
  observe(key: string, timeUs: number, rate: number, learn = true): void {
    let h = this.keys.get(key);
    if (h) {
      // Map order is insertion order: re-inserting keeps it in least-recently-seen order
      this.keys.delete(key);
    } else {
      h = { means: new Float64Array(this.slots), next: 0, filled: 0, openId: 0, openSum: 0, openCount: 0 };
      if (this.keys.size >= this.cfg.maxKeys) {
        const oldest = this.keys.keys().next().value;
        if (oldest !== undefined) this.keys.delete(oldest);
      }
    }
    this.keys.set(key, h);
    if (!learn || !Number.isFinite(rate)) return;
    const id = Math.floor(timeUs / this.bucketUs);
    if (h.openCount > 0 && id !== h.openId) {
      h.means[h.next] = h.openSum / h.openCount;
      h.next = (h.next + 1) % this.slots;
      h.filled = Math.min(this.slots, h.filled + 1);
      h.openSum = 0;
      h.openCount = 0;
    }
    h.openId = id;
    h.openSum += rate;
    h.openCount++;
  }

  /**
   * The median of the key's completed buckets, or null while fewer than `minSamples` exist. The
   * bucket still being filled at `timeUs` is left out: it is partial, and it is the one an anomaly
   * would be in.
   */
  median(key: string, timeUs: number): number | null {
    const h = this.keys.get(key);
    if (!h) return null;
    // the open bucket is complete once its time is over, even if no later sample has closed it
    const openDone = h.openCount > 0 && h.openId < Math.floor(timeUs / this.bucketUs);
    const n = h.filled + (openDone ? 1 : 0);
    if (n < this.cfg.minSamples) return null;
    const values = Array.from(h.filled === this.slots ? h.means : h.means.subarray(0, h.filled));
    if (openDone) {
      // the open bucket replaces the oldest when the ring is full, as closing it would
      if (h.filled === this.slots) values[h.next] = h.openSum / h.openCount;
      else values.push(h.openSum / h.openCount);
    }
    values.sort((a, b) => a - b);
    const mid = values.length >> 1;
    return values.length % 2 === 1 ? values[mid] : (values[mid - 1] + values[mid]) / 2;
  }
}
