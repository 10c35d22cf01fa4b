/**
 * Strings shared by many live flows (a destination key, a source address) stored once and named
 * by a small integer, so a flow slot holds a Uint32 instead of a string pointer per field. Entries
 * are reference counted by the live flows that use them; a key's reference count is also its
 * live-flow count.
 *
 * A key whose last flow ended is kept, idle, for when it comes back: short connections to one
 * service take its count from 0 to 1 and back per connection, and forgetting the key each time
 * cost a Map delete and insert per flow (6.5 % of the JavaScript thread at the benchmark's
 * ceiling, bench/README.md). Idle keys are forgotten oldest first once more than `maxIdle` of them
 * are held, and their numbers reused: the table holds at most the peak number of distinct keys
 * alive at once plus `maxIdle`, however many sources a scan walks through over time.
 */
import { numberArray, objectArray } from '../util/arrays.js';
// as many as src/flow/keys.ts caches destination keys: a scan of a port range that comes back
// (the benchmark's load, a health checker's sweep) finds its keys still named
const DEFAULT_MAX_IDLE = 65_536;

export class InternTable {
  private readonly ids = new Map<string, number>();
  private readonly keys: (string | undefined)[] = objectArray();
  private refs = new Uint32Array(64);
  /** 1 while the number is in `idle` (at most once) */
  private queued = new Uint8Array(64);
  /** when the number last fell idle (a count of releases to 0) */
  private idleSince = new Float64Array(64);
  private idleCount = 0;
  /** numbers whose count fell to 0, with when they were queued, oldest first from `idleHead`;
   * some are in use again, or fell idle again later */
  private idle: number[] = [];
  private idleAt: number[] = numberArray();
  private idleHead = 0;
  /** numbers held by no key */
  private readonly free: number[] = [];
  private inUse = 0;
  private idleKeys = 0;
  /** whether the last acquire() gave its key a number it did not hold before */
  created = false;
  /** told before a forgotten key's number can go to another key (the heavy hitters that find
   * keys by number, src/churn/heavy.ts) */
  onForget: ((id: number) => void) | undefined;

  constructor(private readonly maxIdle = DEFAULT_MAX_IDLE) {}

  /** Distinct keys in use (idle ones are not). */
  get size(): number {
    return this.inUse;
  }

  /** Numbers ever handed out: the peak of `size` plus the idle keys held, which bounds memory. */
  get capacity(): number {
    return this.keys.length;
  }

  /** Takes a reference on key and returns its number; `created` says whether it is a new one. */
  acquire(key: string): number {
    let id = this.ids.get(key);
    if (id !== undefined) {
      this.created = false;
      if (this.refs[id]++ === 0) {
        this.inUse++;
        this.idleKeys--;
      }
      return id;
    }
    id = this.free.pop();
    if (id === undefined) {
      id = this.keys.length;
      this.keys.push(key);
      if (id >= this.refs.length) {
        const refs = new Uint32Array(this.refs.length * 2);
        refs.set(this.refs);
        this.refs = refs;
        const queued = new Uint8Array(this.queued.length * 2);
        queued.set(this.queued);
        this.queued = queued;
        const since = new Float64Array(this.idleSince.length * 2);
        since.set(this.idleSince);
        this.idleSince = since;
      }
    } else {
      this.keys[id] = key;
    }
    this.ids.set(key, id);
    this.refs[id] = 1;
    this.inUse++;
    this.created = true;
    return id;
  }

  /** Drops a reference; at none the key becomes idle (still named, no longer counted in size). */
  release(id: number): void {
    if (--this.refs[id] !== 0) return;
    this.inUse--;
    this.idleKeys++;
    this.idleSince[id] = ++this.idleCount;
    if (this.queued[id] === 0) {
      this.queued[id] = 1;
      this.idle.push(id);
      this.idleAt.push(this.idleCount);
    }
    // the one place idle keys grow, so the one place the bound is kept (a mass release, too)
    if (this.idleKeys > this.maxIdle) this.forgetOldestIdle();
  }

  /** Forgets the idle key that has waited longest; its number goes to `free`. */
  private forgetOldestIdle(): void {
    while (this.idleHead < this.idle.length) {
      const at = this.idleHead++;
      const id = this.idle[at];
      if (this.refs[id] !== 0) {
        this.queued[id] = 0;  // in use again since it fell idle: queued again when it does
        continue;
      }
      if (this.idleSince[id] !== this.idleAt[at]) {
        // it came back and fell idle again since: it waits from then, at the tail
        this.idle.push(id);
        this.idleAt.push(this.idleSince[id]);
        continue;
      }
      this.queued[id] = 0;
      this.onForget?.(id);
      this.ids.delete(this.keys[id] as string);
      this.keys[id] = undefined;
      this.free.push(id);
      this.idleKeys--;
      break;
    }
    if (this.idleHead > 1024 && this.idleHead * 2 > this.idle.length) {
      this.idle = this.idle.slice(this.idleHead);
      this.idleAt = this.idleAt.slice(this.idleHead);
      this.idleHead = 0;
    }
  }

  key(id: number): string {
    return this.keys[id] as string;
  }

  /** The key's number, in use or idle; -1 when it has none. */
  numberOf(key: string): number {
    return this.ids.get(key) ?? -1;
  }

  /** The key's number, or -1 when not in use (idle keys are not). */
  find(key: string): number {
    const id = this.ids.get(key);
    return id === undefined || this.refs[id] === 0 ? -1 : id;
  }

  /** References held on a number (0 when free or idle). */
  refsOf(id: number): number {
    return this.refs[id];
  }

  /** References held on a key: the number of live flows using it. */
  count(key: string): number {
    const id = this.ids.get(key);
    return id === undefined ? 0 : this.refs[id];
  }
}
