/**
 * The bounded in-memory queue every delivery uses (sinks, webhooks, exec hooks): a FIFO with a
 * record and a byte bound, and an overflow policy that says which record goes when it is full.
 * Nothing a receiver does can make it grow past its bounds; what it drops is returned, to count.
 */
import type { OverflowPolicy } from './types.js';

export interface QueueBounds {
  maxRecords: number;
  /** in the units of `size` (UTF-16 length for payload strings) */
  maxBytes: number;
}

export class RecordQueue<T> {
  private items: T[] = [];
  private head = 0;
  private total = 0;

  constructor(
    private readonly bounds: QueueBounds,
    private readonly overflow: OverflowPolicy,
    private readonly size: (item: T) => number = () => 0,
  ) {}

  get length(): number {
    return this.items.length - this.head;
  }

  get bytes(): number {
    return this.total;
  }

  /** Adds an item within the bounds; returns how many items were dropped for it (0 or 1). */
  push(item: T): number {
    const n = this.size(item);
    if (this.length >= this.bounds.maxRecords || this.total + n > this.bounds.maxBytes) {
      // drop-newest refuses the newcomer; drop-oldest makes room, unless there is nothing to drop
      if (this.overflow === 'drop-newest' || this.length === 0) return 1;
      this.total -= this.size(this.items[this.head]);
      this.head++;
      this.items.push(item);
      this.total += n;
      return 1;
    }
    this.items.push(item);
    this.total += n;
    return 0;
  }

  shift(): T | undefined {
    return this.take(1, Infinity)[0];
  }

  /** Up to `maxRecords` items and (past the first) `maxBytes`, oldest first. */
  take(maxRecords: number, maxBytes: number): T[] {
    const out: T[] = [];
    let bytes = 0;
    while (this.head < this.items.length && out.length < maxRecords) {
      const item = this.items[this.head];
      const n = this.size(item);
      if (out.length > 0 && bytes + n > maxBytes) break;
      out.push(item);
      bytes += n;
      this.head++;
    }
    this.total -= bytes;
    this.compact();
    return out;
  }

  /** Empties the queue, returning what was in it. */
  clear(): T[] {
    const rest = this.items.slice(this.head);
    this.items = [];
    this.head = 0;
    this.total = 0;
    return rest;
  }

  private compact(): void {
    if (this.head === this.items.length) {
      this.items = [];
      this.head = 0;
    } else if (this.head > 4096 && this.head * 2 > this.items.length) {
      this.items = this.items.slice(this.head);
      this.head = 0;
    }
  }
}
