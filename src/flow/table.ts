/**
 * The live-flow table's storage, under FlowTracker (tracker.ts: what events mean) and the flow
 * records built from it (records.ts).
 *
 * Memory. A busy host holds a million entries, so flows are not objects: each column is a typed
 * array indexed by a dense position (41 bytes per flow), strings shared between flows (destination
 * key, source address) are interned and referenced by number, and an open-addressing index (linear
 * probing, load ≤ 1/2, 4 bytes per bucket) maps an id to its position. A removed flow's position is
 * filled by the last one, so the columns stay dense. Capacity doubles when full and halves when a
 * quarter full: 49 bytes per slot, so 51 bytes per flow at 1 M flows, 64 at 100 k, and at worst 98
 * just after a doubling (bench/engine.mjs measures it).
 *
 * The live counts by state (whole table and per destination) and by protocol are kept here too,
 * moved by every insert, state change and removal, so they are known at any moment without a scan.
 */

import type { ConntrackEvent, ProcessInfo, Unattributed } from '../source/types.js';
import { TCP_STATES } from '../source/names.js';
import { InternTable } from './intern.js';
import { destinationCode, destinationOf, destinationParts, protoCode, type Destination } from './keys.js';
import { objectArray } from '../util/arrays.js';

// flag bits, 16 per flow
export const ASSURED = 1;
export const REPLIED = 2;
export const PREEXISTING = 4;
export const IPV6 = 8;
export const PORTS = 16;
export const ICMP = 32;
export const MARK = 64;
export const ZONE = 128;
/** the kernel translated the destination (DST_NAT): a DNATed service address, e.g. a ClusterIP */
export const DNAT = 256;

/** State codes per flow are a byte, but per-destination counts keep a row of this many. */
export const STATE_CODES = 16;

const MIN_CAPACITY = 16;

/** Who owned a flow's local socket, as process attribution named it at NEW (or the dump): the
 * process, or why none could be named. */
export type FlowOwner = ProcessInfo | Unattributed;

/** TCP states a connection enters once either side sent FIN or RST. The time of the first one is
 * when the connection (as the application saw it) ended; the entry then lingers, in TIME_WAIT for
 * two minutes by default, which is what fills tables. */
const CLOSING_STATES = new Set(['FIN_WAIT', 'CLOSE_WAIT', 'LAST_ACK', 'TIME_WAIT', 'CLOSE']);

export class FlowTable {
  private readonly minCapacity: number;
  private capacity = 0;
  /** live flows: positions [0, n) */
  n = 0;

  // columns, indexed by position [0, n)
  ids!: Uint32Array;
  /** µs, when the collector first saw the flow */
  starts!: Float64Array;
  /** ns, kernel start timestamp; NaN when unknown */
  kernelStarts!: Float64Array;
  /** ms after `starts` when the TCP connection first began to close (FIN or RST seen: the state
   * left ESTABLISHED for a closing one); NaN while open, unknown, or without update events */
  closings!: Float32Array;
  states!: Uint8Array;
  flags!: Uint16Array;
  protos!: Uint8Array;
  dsts!: Uint32Array;
  srcs!: Uint32Array;
  /** ports, or for ICMP the echo id and type << 8 | code */
  sports!: Uint16Array;
  dports!: Uint16Array;
  marks!: Uint32Array;
  zones!: Uint16Array;
  /** the owner of each flow, kept only with process attribution on (an object per flow cannot be a
   * typed array; unattributed flows share their reason's string): undefined when none was named,
   * e.g. a flow first seen by an UPDATE */
  readonly owners: (FlowOwner | undefined)[] | undefined;
  /** flows holding an owner or a reason */
  owned = 0;

  /** id → position + 1 (0 = empty), linear probing, 2 × capacity buckets */
  private index!: Uint32Array;
  private shift = 0;

  readonly destinations = new InternTable();
  /** destination number → its address, for records of flows ended without an event */
  readonly dstAddrs: string[] = objectArray();
  /** destination number → what its key is made of, for readers of the key (alert hints) */
  readonly dstParts: Destination[] = objectArray();
  readonly sources = new InternTable();

  readonly stateNames: string[] = ['', ...TCP_STATES];
  readonly stateCodes = new Map<string, number>();
  readonly stateTotals = new Uint32Array(STATE_CODES);
  /** destination number × STATE_CODES + state code → live flows */
  dstStates = new Uint32Array(64 * STATE_CODES);
  readonly protoLive = new Uint32Array(256);

  constructor(capacity: number, o: { owners?: boolean } = {}) {
    if (o.owners) this.owners = objectArray();
    this.minCapacity = 2 ** Math.ceil(Math.log2(Math.max(MIN_CAPACITY, capacity)));
    this.resize(this.minCapacity);
    for (let code = 1; code < this.stateNames.length; code++) this.stateCodes.set(this.stateNames[code], code);
  }

  /** The flow's source address and destination address (interned strings). */
  src(p: number): string {
    return this.sources.key(this.srcs[p]);
  }

  dst(p: number): string {
    return this.dstAddrs[this.dsts[p]];
  }

  /** The destination key the flow is counted under. */
  destination(p: number): string {
    return this.destinations.key(this.dsts[p]);
  }

  /** Whether the flow at p has the event's original tuple (else its id was reused). */
  sameTuple(p: number, ev: ConntrackEvent): boolean {
    return (
      this.sports[p] === sportCode(ev) &&
      this.dports[p] === dportCode(ev) &&
      this.protos[p] === protoCode(ev.proto) &&
      this.dstAddrs[this.dsts[p]] === ev.dst &&
      this.sources.key(this.srcs[p]) === ev.src
    );
  }

  /** `destination` is the event's destination key when the caller has it; else it is found by its
   * parts (intern.ts), and built only for a destination new to the table. */
  insert(ev: ConntrackEvent, destination: string | undefined, flags: number): void {
    if (this.n === this.capacity) this.resize(this.capacity * 2);
    const p = this.n++;
    this.ids[p] = ev.id;
    this.starts[p] = ev.time;
    this.kernelStarts[p] = ev.start ?? NaN;
    this.closings[p] = NaN;

    const dests = this.destinations;
    let d: number;
    if (destination !== undefined) {
      // the caller's name for it: not indexed by parts, which name only what destinationOf builds
      d = dests.acquire(destination);
    } else {
      const code = destinationCode(ev);
      d = code >= 0 ? dests.acquireByParts(ev.dst, code) : -1;
      if (d < 0) {
        d = dests.acquire(destinationOf(ev));
        if (code >= 0) dests.index(d, ev.dst, code);
      }
    }
    // a number new to this key (an idle key that comes back keeps its parts and state row)
    if (this.destinations.created) {
      this.dstAddrs[d] = ev.dst;
      this.dstParts[d] = destinationParts(ev);
      if ((d + 1) * STATE_CODES > this.dstStates.length) {
        const grown = new Uint32Array(this.dstStates.length * 2);
        grown.set(this.dstStates);
        this.dstStates = grown;
      }
    }
    this.dsts[p] = d;
    this.srcs[p] = this.sources.acquire(ev.src);
    const proto = protoCode(ev.proto);
    this.protos[p] = proto;
    this.protoLive[proto]++;

    flags |= statusBits(ev.status);
    if (ev.family === 'ipv6') flags |= IPV6;
    if (ev.sport !== undefined || ev.dport !== undefined) flags |= PORTS;
    else if (ev.icmp !== undefined) flags |= ICMP;
    this.sports[p] = sportCode(ev);
    this.dports[p] = dportCode(ev);
    this.marks[p] = 0;
    this.zones[p] = 0;
    if (ev.mark !== undefined) {
      flags |= MARK;
      this.marks[p] = ev.mark;
    }
    if (ev.zone !== undefined) {
      flags |= ZONE;
      this.zones[p] = ev.zone;
    }
    this.flags[p] = flags;

    const state = this.stateCode(ev.state);
    this.states[p] = state;
    if (state !== 0) {
      this.stateTotals[state]++;
      this.dstStates[d * STATE_CODES + state]++;
    }
    if (this.owners !== undefined) this.own(p, ev);
    this.indexInsert(ev.id, p);
  }

  /** The owner the event's attribution named (process, else the reason), replacing what was held. */
  own(p: number, ev: ConntrackEvent): void {
    const owners = this.owners!;
    const o = ev.process ?? ev.unattributed;
    if (o === undefined) return;
    if (owners[p] === undefined) this.owned++;
    owners[p] = o;
  }

  /** Applies what an UPDATE says about a held flow. */
  refresh(p: number, ev: ConntrackEvent): void {
    let f = this.flags[p] | statusBits(ev.status);
    if (ev.mark !== undefined) {
      f |= MARK;
      this.marks[p] = ev.mark;
    }
    if (ev.zone !== undefined) {
      f |= ZONE;
      this.zones[p] = ev.zone;
    }
    this.flags[p] = f;
    if (ev.start !== undefined) this.kernelStarts[p] = ev.start;
    if (ev.state !== undefined) {
      const state = this.stateCode(ev.state);
      const was = this.states[p];
      if (state !== was) {
        const row = this.dsts[p] * STATE_CODES;
        if (was !== 0) {
          this.stateTotals[was]--;
          this.dstStates[row + was]--;
        }
        if (state !== 0) {
          this.stateTotals[state]++;
          this.dstStates[row + state]++;
        }
        this.states[p] = state;
        if (CLOSING_STATES.has(ev.state) && this.closings[p] !== this.closings[p] && !(this.flags[p] & PREEXISTING)) {
          this.closings[p] = (ev.time - this.starts[p]) / 1000;
        }
      }
    }
  }

  remove(p: number): void {
    const d = this.dsts[p];
    const state = this.states[p];
    if (state !== 0) {
      this.stateTotals[state]--;
      this.dstStates[d * STATE_CODES + state]--;
    }
    this.protoLive[this.protos[p]]--;
    this.destinations.release(d);
    this.sources.release(this.srcs[p]);

    this.indexDelete(this.bucketOf(this.ids[p]));
    const last = --this.n;
    const owners = this.owners;
    if (owners !== undefined) {
      if (owners[p] !== undefined) this.owned--;
      owners[p] = owners[last];
      owners[last] = undefined;
    }
    if (p !== last) {
      this.index[this.bucketOf(this.ids[last])] = p + 1;
      this.ids[p] = this.ids[last];
      this.starts[p] = this.starts[last];
      this.kernelStarts[p] = this.kernelStarts[last];
      this.closings[p] = this.closings[last];
      this.states[p] = this.states[last];
      this.flags[p] = this.flags[last];
      this.protos[p] = this.protos[last];
      this.dsts[p] = this.dsts[last];
      this.srcs[p] = this.srcs[last];
      this.sports[p] = this.sports[last];
      this.dports[p] = this.dports[last];
      this.marks[p] = this.marks[last];
      this.zones[p] = this.zones[last];
    }
    if (this.n < this.capacity >> 2 && this.capacity > this.minCapacity) this.resize(this.capacity >> 1);
  }

  stateCode(name: string | undefined): number {
    if (name === undefined) return 0;
    let code = this.stateCodes.get(name);
    if (code === undefined) {
      // Kernel names are pre-seeded; a stray name gets a spare code while any is left, and is
      // otherwise not counted by state (the flow record still carries the event's name).
      if (this.stateNames.length >= STATE_CODES) return 0;
      code = this.stateNames.length;
      this.stateNames.push(name);
      this.stateCodes.set(name, code);
    }
    return code;
  }

  /** The counts of a row of STATE_CODES (stateTotals, or a destination's in dstStates) by name. */
  countsOf(counts: Uint32Array, at: number): Record<string, number> {
    const out: Record<string, number> = {};
    for (let code = 1; code < this.stateNames.length; code++) {
      if (counts[at + code] > 0) out[this.stateNames[code]] = counts[at + code];
    }
    return out;
  }

  // --- the id index -------------------------------------------------------------------------

  private hash(id: number): number {
    // murmur3's finaliser, top bits kept. Kernel ids are hashes already, but a plain multiplicative
    // hash clusters ids that happen to be multiples of a related constant: seen in the benchmark,
    // whose synthetic ids turned every probe into a long run.
    id = Math.imul(id ^ (id >>> 16), 0x85ebca6b);
    id = Math.imul(id ^ (id >>> 13), 0xc2b2ae35);
    return (id ^ (id >>> 16)) >>> this.shift;
  }

  /** Position of the flow with this id, or -1. */
  find(id: number): number {
    const mask = this.index.length - 1;
    for (let b = this.hash(id); ; b = (b + 1) & mask) {
      const e = this.index[b];
      if (e === 0) return -1;
      if (this.ids[e - 1] === id) return e - 1;
    }
  }

  /** The bucket holding a held id. */
  private bucketOf(id: number): number {
    const mask = this.index.length - 1;
    let b = this.hash(id);
    while (this.ids[this.index[b] - 1] !== id) b = (b + 1) & mask;
    return b;
  }

  private indexInsert(id: number, p: number): void {
    const mask = this.index.length - 1;
    let b = this.hash(id);
    while (this.index[b] !== 0) b = (b + 1) & mask;
    this.index[b] = p + 1;
  }

  /** Empties bucket b, shifting back later entries of its probe run (no tombstones). */
  private indexDelete(b: number): void {
    const index = this.index;
    const mask = index.length - 1;
    let hole = b;
    for (let j = (b + 1) & mask; index[j] !== 0; j = (j + 1) & mask) {
      const home = this.hash(this.ids[index[j] - 1]);
      // The entry at j may move to the hole unless its home lies cyclically in (hole, j].
      const stays = hole <= j ? home > hole && home <= j : home > hole || home <= j;
      if (!stays) {
        index[hole] = index[j];
        hole = j;
      }
    }
    index[hole] = 0;
  }

  private resize(capacity: number): void {
    const n = this.n;
    const grow = <A extends Uint8Array | Uint16Array | Uint32Array | Float32Array | Float64Array>(
      old: A | undefined,
      make: new (length: number) => A,
    ): A => {
      const a = new make(capacity);
      if (old !== undefined) a.set(old.subarray(0, n) as never);
      return a;
    };
    this.ids = grow(this.ids, Uint32Array);
    this.starts = grow(this.starts, Float64Array);
    this.kernelStarts = grow(this.kernelStarts, Float64Array);
    this.closings = grow(this.closings, Float32Array);
    this.states = grow(this.states, Uint8Array);
    this.flags = grow(this.flags, Uint16Array);
    this.protos = grow(this.protos, Uint8Array);
    this.dsts = grow(this.dsts, Uint32Array);
    this.srcs = grow(this.srcs, Uint32Array);
    this.sports = grow(this.sports, Uint16Array);
    this.dports = grow(this.dports, Uint16Array);
    this.marks = grow(this.marks, Uint32Array);
    this.zones = grow(this.zones, Uint16Array);
    // every owner past n is undefined: a shrunk table lets go of their slots too
    if (this.owners !== undefined && this.owners.length > capacity) this.owners.length = capacity;
    this.capacity = capacity;

    const buckets = capacity * 2;
    this.index = new Uint32Array(buckets);
    this.shift = 32 - Math.log2(buckets);
    for (let p = 0; p < n; p++) this.indexInsert(this.ids[p], p);
  }
}

export function statusBits(status: readonly string[]): number {
  let bits = 0;
  // indexed: a for-of allocated an iterator result per name where V8 did not optimize it away
  for (let i = 0; i < status.length; i++) {
    const s = status[i];
    if (s === 'ASSURED') bits |= ASSURED;
    else if (s === 'SEEN_REPLY') bits |= REPLIED;
    else if (s === 'DST_NAT') bits |= DNAT;
  }
  return bits;
}

function sportCode(ev: ConntrackEvent): number {
  return ev.sport ?? ev.icmp?.id ?? 0;
}

function dportCode(ev: ConntrackEvent): number {
  if (ev.dport !== undefined) return ev.dport;
  return ev.icmp === undefined ? 0 : ((ev.icmp.type & 0xff) << 8) | (ev.icmp.code & 0xff);
}
