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
 *
 * A key can also be found by its parts, without building or hashing its string: a group (a
 * destination address) and a small integer code (port, protocol and family, keys.ts
 * destinationCode). Under rotating ports nearly every NEW is a destination new to the live set,
 * and finding its key cost two Map lookups to build it and one to number it, each a cache miss in
 * maps of tens of thousands of entries (bench/README.md); the parts index is one probe of a
 * typed array behind a Map of the few addresses.
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
  /** parts index: group (address) → its number; numbers of groups with no key indexed are reused */
  private readonly groups = new Map<string, number>();
  private readonly groupKeys: number[] = numberArray();
  private readonly groupNames: string[] = objectArray();
  private readonly freeGroups: number[] = [];
  /** open addressing, linear probing, 3 ints a slot: group + 1 (0: empty), code, key number */
  private parts = new Int32Array(3 * 1024);
  private partsShift = 32 - 10;
  private partsUsed = 0;
  /** key number → its group in the parts index (-1: not indexed) and code */
  private groupOf = new Int32Array(64).fill(-1);
  private codeOf = new Int32Array(64);
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
        const groupOf = new Int32Array(this.groupOf.length * 2).fill(-1);
        groupOf.set(this.groupOf);
        this.groupOf = groupOf;
        const codeOf = new Int32Array(this.codeOf.length * 2);
        codeOf.set(this.codeOf);
        this.codeOf = codeOf;
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

  /**
   * acquire() of the key indexed under (group, code), or -1 with no reference taken when none is:
   * the caller then acquires the key by its string and indexes it (index()).
   */
  acquireByParts(group: string, code: number): number {
    const g = this.groups.get(group);
    if (g === undefined) return -1;
    const parts = this.parts;
    const mask = parts.length / 3 - 1;
    for (let i = partsHash(g, code) >>> this.partsShift; ; i = (i + 1) & mask) {
      const at = 3 * i;
      const held = parts[at];
      if (held === 0) return -1;
      if (held === g + 1 && parts[at + 1] === code) {
        const id = parts[at + 2];
        this.created = false;
        if (this.refs[id]++ === 0) {
          this.inUse++;
          this.idleKeys--;
        }
        return id;
      }
    }
  }

  /** Indexes the key numbered id under (group, code) for acquireByParts(), unless it already is. */
  index(id: number, group: string, code: number): void {
    if (this.groupOf[id] >= 0) return;
    let g = this.groups.get(group);
    if (g === undefined) {
      g = this.freeGroups.pop() ?? this.groupKeys.length;
      if (g === this.groupKeys.length) {
        this.groupKeys.push(0);
        this.groupNames.push(group);
      } else {
        this.groupNames[g] = group;
      }
      this.groups.set(group, g);
    }
    this.groupKeys[g]++;
    this.groupOf[id] = g;
    this.codeOf[id] = code;
    if (2 * (this.partsUsed + 1) > this.parts.length / 3) this.regrow(2 * this.parts.length);
    this.put(g, code, id);
  }

  private put(g: number, code: number, id: number): void {
    const parts = this.parts;
    const mask = parts.length / 3 - 1;
    let i = partsHash(g, code) >>> this.partsShift;
    while (parts[3 * i] !== 0) i = (i + 1) & mask;
    parts[3 * i] = g + 1;
    parts[3 * i + 1] = code;
    parts[3 * i + 2] = id;
    this.partsUsed++;
  }

  private regrow(length: number): void {
    const old = this.parts;
    this.parts = new Int32Array(length);
    this.partsShift = 32 - Math.log2(length / 3);
    this.partsUsed = 0;
    for (let at = 0; at < old.length; at += 3) if (old[at] !== 0) this.put(old[at] - 1, old[at + 1], old[at + 2]);
  }

  /** Takes the forgotten key numbered id out of the parts index (backward-shift deletion). */
  private unindex(id: number): void {
    const g = this.groupOf[id];
    this.groupOf[id] = -1;
    const parts = this.parts;
    const mask = parts.length / 3 - 1;
    let i = partsHash(g, this.codeOf[id]) >>> this.partsShift;
    while (parts[3 * i + 2] !== id || parts[3 * i] !== g + 1) i = (i + 1) & mask;
    // each later slot of the run moves into the hole unless its home lies after the hole
    for (let j = (i + 1) & mask; parts[3 * j] !== 0; j = (j + 1) & mask) {
      const home = partsHash(parts[3 * j] - 1, parts[3 * j + 1]) >>> this.partsShift;
      if (((j - home) & mask) >= ((j - i) & mask)) {
        parts[3 * i] = parts[3 * j];
        parts[3 * i + 1] = parts[3 * j + 1];
        parts[3 * i + 2] = parts[3 * j + 2];
        i = j;
      }
    }
    parts[3 * i] = 0;
    this.partsUsed--;
    if (--this.groupKeys[g] === 0) {
      this.groups.delete(this.groupNames[g]);
      this.freeGroups.push(g);
    }
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
      if (this.groupOf[id] >= 0) this.unindex(id);
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

/** (group, code) mixed into 32 bits (murmur3's finalizer); the top bits pick the slot */
function partsHash(g: number, code: number): number {
  let h = Math.imul(g, 0x9e3779b1) ^ code;
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b);
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
  return h ^ (h >>> 16);
}
