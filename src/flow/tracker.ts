/**
 * The live-flow table: every connection the kernel is tracking, keyed by conntrack id, so that a
 * DESTROY can be turned into a flow record with a lifetime, and live counts by state, destination,
 * source and protocol are known at any moment without a scan.
 *
 * Memory. A busy host holds a million entries, so flows are not objects: each column is a typed
 * array indexed by a dense position (41 bytes per flow), strings shared between flows (destination
 * key, source address) are interned and referenced by number, and an open-addressing index (linear
 * probing, load ≤ 1/2, 4 bytes per bucket) maps an id to its position. A removed flow's position is
 * filled by the last one, so the columns stay dense. Capacity doubles when full and halves when a
 * quarter full: 49 bytes per slot, so 51 bytes per flow at 1 M flows, 64 at 100 k, and at worst 98
 * just after a doubling (bench/engine.mjs measures it).
 *
 * Ids repeat (KERNEL-NOTES "Conntrack ids repeat"): the kernel reuses an id once its entry is
 * freed. Two live entries do not share one, so an id that arrives with a different original tuple
 * (source, destination, ports, protocol) than the flow we hold means that flow's DESTROY was lost
 * and the kernel has moved on. That stale flow is ended with reason 'resync' (its end time is when
 * we noticed) before the event is applied; this holds for NEW, snapshot, UPDATE and DESTROY alike.
 *
 * Events:
 * - new: inserts. A NEW for a flow we hold from the start-up dump (same tuple, preexisting) is the
 *   dump and the event socket racing: the flow becomes a normal one begun at the earlier of the
 *   two times, keeping the dump's (newer) state. A NEW repeated for a flow we saw begin is ignored
 *   ('duplicate').
 * - snapshot: inserts with preexisting=true, unless the id is already held with the same tuple
 *   (subscribe-then-dump overlap): then it is ignored, so nothing is counted twice.
 * - update: refreshes state, status flags, mark, kernel start. An unknown id is inserted as
 *   late-seen (preexisting=true: its NEW was lost or predates us).
 * - destroy: removes and returns the flow record, see destroy().
 *
 * One tracker per network namespace: ids are only unique within one.
 */

import type { ConntrackEvent, Family, IcmpFields } from '../source/types.js';
import { TCP_STATES } from '../source/names.js';
import { natOf, type FlowEnd, type FlowEndReason } from './types.js';
import { InternTable } from './intern.js';
import { destinationOf, destinationParts, protoCode, protoName, type Destination } from './keys.js';

// flag bits, 16 per flow
const ASSURED = 1;
const REPLIED = 2;
const PREEXISTING = 4;
const IPV6 = 8;
const PORTS = 16;
const ICMP = 32;
const MARK = 64;
const ZONE = 128;
/** the kernel translated the destination (DST_NAT): a DNATed service address, e.g. a ClusterIP */
const DNAT = 256;

/** State codes per flow are a byte, but per-destination counts keep a row of this many. */
const STATE_CODES = 16;

const MIN_CAPACITY = 16;

/** What an event did to the table. */
export type Applied =
  /** new: a flow began (counts as churn) */
  | 'opened'
  /** new: repeated for a flow we saw begin */
  | 'duplicate'
  /** snapshot: a preexisting flow was added */
  | 'inserted'
  /** snapshot: the flow was already held */
  | 'ignored'
  /** update: a held flow changed */
  | 'updated'
  /** update: an unknown flow was added as late-seen */
  | 'late'
  /** destroy: the flow record was pushed */
  | 'ended';

/** One live flow, read back from the columns (for inspection and tests; allocates). */
export interface FlowView {
  id: number;
  family: Family;
  proto: string;
  src: string;
  dst: string;
  /** the destination key the flow is counted under */
  destination: string;
  sport?: number;
  dport?: number;
  icmp?: IcmpFields;
  /** µs since epoch when the collector first saw the flow */
  start: number;
  /** ns since epoch, the kernel's start timestamp, when known */
  kernelStart?: number;
  state?: string;
  assured: boolean;
  replied: boolean;
  preexisting: boolean;
  mark?: number;
  zone?: number;
}

/** Unreplied live entries of one destination (FlowTracker.unreplied). */
export interface UnrepliedDestination {
  key: string;
  /** live entries that never saw a reply */
  unreplied: number;
  /** of them, older than the stale age */
  stale: number;
  /** of them, DNATed (the destination is a translated service address) */
  dnat: number;
  /** seconds since the oldest of them began */
  oldestAge: number;
}

export interface UnrepliedFigures {
  total: number;
  stale: number;
  destinations: UnrepliedDestination[];
  /** every destination with unreplied entries is listed */
  complete: boolean;
}

export interface TrackerOptions {
  /** flows the table holds before its first growth, and never shrinks below (default 1024) */
  capacity?: number;
}

/** TCP states a connection enters once either side sent FIN or RST. The time of the first one is
 * when the connection (as the application saw it) ended; the entry then lingers, in TIME_WAIT for
 * two minutes by default, which is what fills tables. */
const CLOSING_STATES = new Set(['FIN_WAIT', 'CLOSE_WAIT', 'LAST_ACK', 'TIME_WAIT', 'CLOSE']);

export class FlowTracker {
  private readonly minCapacity: number;
  private capacity = 0;
  private n = 0;

  // columns, indexed by position [0, n)
  private ids!: Uint32Array;
  /** µs, when the collector first saw the flow */
  private starts!: Float64Array;
  /** ns, kernel start timestamp; NaN when unknown */
  private kernelStarts!: Float64Array;
  /** ms after `starts` when the TCP connection first began to close (FIN or RST seen: the state
   * left ESTABLISHED for a closing one); NaN while open, unknown, or without update events */
  private closings!: Float32Array;
  private states!: Uint8Array;
  private flags!: Uint16Array;
  private protos!: Uint8Array;
  private dsts!: Uint32Array;
  private srcs!: Uint32Array;
  /** ports, or for ICMP the echo id and type << 8 | code */
  private sports!: Uint16Array;
  private dports!: Uint16Array;
  private marks!: Uint32Array;
  private zones!: Uint16Array;

  /** id → position + 1 (0 = empty), linear probing, 2 × capacity buckets */
  private index!: Uint32Array;
  private shift = 0;

  private readonly destinations = new InternTable();
  /** destination number → its address, for records of flows ended without an event */
  private readonly dstAddrs: string[] = [];
  /** destination number → what its key is made of, for readers of the key (alert hints) */
  private readonly dstParts: Destination[] = [];
  private readonly sources = new InternTable();

  private readonly stateNames: string[] = ['', ...TCP_STATES];
  private readonly stateCodes = new Map<string, number>();
  private readonly stateTotals = new Uint32Array(STATE_CODES);
  /** destination number × STATE_CODES + state code → live flows */
  private dstStates = new Uint32Array(64 * STATE_CODES);
  private readonly protoLive = new Uint32Array(256);

  constructor(options: TrackerOptions = {}) {
    this.minCapacity = 2 ** Math.ceil(Math.log2(Math.max(MIN_CAPACITY, options.capacity ?? 1024)));
    this.resize(this.minCapacity);
    for (let code = 1; code < this.stateNames.length; code++) this.stateCodes.set(this.stateNames[code], code);
  }

  /** Live flows. */
  get size(): number {
    return this.n;
  }

  has(id: number): boolean {
    return this.find(id) >= 0;
  }

  /**
   * Applies one conntrack event. Flow records for flows it ended (the destroyed one, and any stale
   * flow displaced by a reused id) are pushed onto `out`. `destination` is the event's destination
   * key when the caller already built it.
   */
  apply(ev: ConntrackEvent, out: FlowEnd[], destination?: string): Applied {
    switch (ev.event) {
      case 'new':
        return this.open(ev, out, destination);
      case 'snapshot':
        return this.insertDumped(ev, out, destination);
      case 'update':
        return this.update(ev, out, destination);
      case 'destroy':
        this.destroy(ev, out);
        return 'ended';
    }
  }

  open(ev: ConntrackEvent, out: FlowEnd[], destination?: string): 'opened' | 'duplicate' {
    const p = this.held(ev, out);
    if (p < 0) {
      this.insert(ev, destination ?? destinationOf(ev), 0);
      return 'opened';
    }
    if (!(this.flags[p] & PREEXISTING)) return 'duplicate';
    // The dump showed the entry, so it was read after this NEW happened: keep the dump's state and
    // mark, take only what the NEW knows better (that the flow began now, its kernel start).
    this.flags[p] = (this.flags[p] & ~PREEXISTING) | statusBits(ev.status);
    if (ev.time < this.starts[p]) this.starts[p] = ev.time;
    if (ev.start !== undefined && this.kernelStarts[p] !== this.kernelStarts[p]) this.kernelStarts[p] = ev.start;
    return 'opened';
  }

  /** An entry from a table dump (a `snapshot` event): inserted as a live flow unless already held. */
  insertDumped(ev: ConntrackEvent, out: FlowEnd[], destination?: string): 'inserted' | 'ignored' {
    if (this.held(ev, out) >= 0) return 'ignored';
    this.insert(ev, destination ?? destinationOf(ev), PREEXISTING);
    return 'inserted';
  }

  update(ev: ConntrackEvent, out: FlowEnd[], destination?: string): 'updated' | 'late' {
    const p = this.held(ev, out);
    if (p < 0) {
      this.insert(ev, destination ?? destinationOf(ev), PREEXISTING);
      return 'late';
    }
    this.refresh(p, ev);
    return 'updated';
  }

  /**
   * Removes the flow and pushes its record (last on `out`). Counters, state and status come from
   * the DESTROY, which carries the final ones. Duration:
   * - kernel start (from the event, else as stored) and the event's kernel end both known: their
   *   difference, clock 'kernel';
   * - otherwise event time minus begin, clock 'collector', where begin is the kernel start when
   *   known, else when we first saw the flow (a lower bound when preexisting).
   * For an id we do not hold (its NEW was lost, or it predates us and showed in no dump) the record
   * is preexisting=true with begin = the kernel start when present, else the event time with
   * duration 0: an honest "unknown", which consumers exclude from lifetime statistics.
   *
   * Returns the destination key the flow was counted under. For a held flow it and the record's
   * addresses are the interned strings, whose hashes are already computed: a churn counter keyed on
   * them then costs no string hashing (a fresh string costs a few hundred ns to hash).
   */
  destroy(ev: ConntrackEvent, out: FlowEnd[]): string {
    const p = this.held(ev, out);
    const end: FlowEnd = {
      event: 'flow',
      time: ev.time,
      id: ev.id,
      family: ev.family,
      proto: ev.proto,
      src: p >= 0 ? this.sources.key(this.srcs[p]) : ev.src,
      dst: p >= 0 ? this.dstAddrs[this.dsts[p]] : ev.dst,
      begin: ev.time,
      duration: 0,
      clock: 'collector',
      preexisting: true,
      assured: false,
      replied: false,
      reason: 'destroy',
    };
    if (ev.sport !== undefined) end.sport = ev.sport;
    if (ev.dport !== undefined) end.dport = ev.dport;
    if (ev.icmp !== undefined) end.icmp = ev.icmp;

    let kernelStart = ev.start;
    let bits = statusBits(ev.status);
    let state = ev.state;
    if (p >= 0) {
      if (kernelStart === undefined && this.kernelStarts[p] === this.kernelStarts[p]) {
        kernelStart = this.kernelStarts[p];
      }
      bits |= this.flags[p];
      end.preexisting = (this.flags[p] & PREEXISTING) !== 0;
      end.begin = this.starts[p];
      if (state === undefined && this.states[p] !== 0) state = this.stateNames[this.states[p]];
      if (this.closings[p] === this.closings[p]) end.open = Math.max(0, this.closings[p] / 1000);
    }
    if (kernelStart !== undefined) {
      end.begin = Math.floor(kernelStart / 1000);
      if (ev.end !== undefined) {
        end.duration = Math.max(0, (ev.end - kernelStart) / 1e9);
        end.clock = 'kernel';
      } else {
        end.duration = Math.max(0, (ev.time - end.begin) / 1e6);
      }
    } else if (p >= 0) {
      end.duration = Math.max(0, (ev.time - end.begin) / 1e6);
    }
    if (state !== undefined) end.state = state;
    end.assured = (bits & ASSURED) !== 0;
    end.replied = (bits & REPLIED) !== 0;
    if (ev.orig !== undefined) end.orig = { packets: ev.orig.packets, bytes: ev.orig.bytes };
    if (ev.reply.packets !== undefined && ev.reply.bytes !== undefined) {
      end.reply = { packets: ev.reply.packets, bytes: ev.reply.bytes };
    }
    const mark = ev.mark ?? (p >= 0 && this.flags[p] & MARK ? this.marks[p] : undefined);
    const zone = ev.zone ?? (p >= 0 && this.flags[p] & ZONE ? this.zones[p] : undefined);
    if (mark !== undefined) end.mark = mark;
    if (zone !== undefined) end.zone = zone;
    if (ev.netns !== undefined) end.netns = ev.netns;
    const nat = natOf(ev);
    if (nat !== undefined) end.nat = nat;
    out.push(end);
    if (p < 0) return destinationOf(ev);
    const destination = this.destinations.key(this.dsts[p]);
    this.remove(p);
    return destination;
  }

  /**
   * Ends every flow absent from a fresh table dump (reason 'resync', time = `time`): their DESTROY
   * was lost while events overflowed. Flows first seen at or after `seenBefore` (default `time`)
   * are kept, since a NEW read during the dump may be newer than the dump's view. The record's
   * duration runs to `time`, the first moment we know the flow had gone: an upper bound.
   */
  reconcile(present: { has(id: number): boolean }, time: number, seenBefore = time): FlowEnd[] {
    return this.sweep(time, 'resync', (p) => this.starts[p] >= seenBefore || present.has(this.ids[p]));
  }

  /** Ends every live flow with reason 'shutdown', emptying the table. */
  drain(time: number): FlowEnd[] {
    return this.sweep(time, 'shutdown', () => false);
  }

  private sweep(time: number, reason: FlowEndReason, keep: (p: number) => boolean): FlowEnd[] {
    const ended: FlowEnd[] = [];
    // Backwards, because removing position p moves the last flow (already visited) into p.
    for (let p = this.n - 1; p >= 0; p--) {
      if (keep(p)) continue;
      ended.push(this.ended(p, time, reason));
      this.remove(p);
    }
    return ended;
  }

  /** Live flows by TCP state, whole table. */
  stateCounts(): Record<string, number> {
    return this.countsOf(this.stateTotals, 0);
  }

  /** What a live destination's key is made of; undefined when none of its flows is live. */
  destinationPartsOf(destination: string): Destination | undefined {
    const d = this.destinations.find(destination);
    return d < 0 ? undefined : this.dstParts[d];
  }

  /** Live flows by TCP state for one destination key (empty when none is live). */
  destinationStates(destination: string): Record<string, number> {
    const d = this.destinations.find(destination);
    return d < 0 ? {} : this.countsOf(this.dstStates, d * STATE_CODES);
  }

  /**
   * Destination keys with more than `above` live flows in TCP state `state`, and how many: what a
   * pile-up rule judges, whatever their new-flow rate. One pass over the per-destination rows.
   */
  destinationsInState(state: string, above: number): { key: string; count: number }[] {
    const code = this.stateCodes.get(state);
    const out: { key: string; count: number }[] = [];
    if (code === undefined) return out;
    const rows = this.destinations.capacity;
    for (let d = 0; d < rows; d++) {
      const n = this.dstStates[d * STATE_CODES + code];
      if (n > above && this.destinations.refsOf(d) > 0) out.push({ key: this.destinations.key(d), count: n });
    }
    return out;
  }

  /**
   * Live flows that never saw a reply (no SEEN_REPLY), per destination: how many, how many of them
   * are older than `staleUs`, how many were DNATed, and the oldest one's age. Only meaningful when
   * UPDATE events arrive (SEEN_REPLY is set by one). One pass over the table; the `limit`
   * destinations with most stale entries (then most unreplied) come back.
   */
  unreplied(now: number, staleUs: number, limit: number): UnrepliedFigures {
    const rows = this.destinations.capacity;
    const count = new Uint32Array(rows);
    const stale = new Uint32Array(rows);
    const dnat = new Uint32Array(rows);
    const oldest = new Float64Array(rows).fill(Infinity);
    let total = 0;
    let staleTotal = 0;
    for (let p = 0; p < this.n; p++) {
      const f = this.flags[p];
      if (f & REPLIED) continue;
      const d = this.dsts[p];
      // the kernel's start when known: a flow found by the start-up dump may be hours old
      const ks = this.kernelStarts[p];
      const start = ks === ks ? ks / 1000 : this.starts[p];
      count[d]++;
      total++;
      if (now - start >= staleUs) {
        stale[d]++;
        staleTotal++;
      }
      if (f & DNAT) dnat[d]++;
      if (start < oldest[d]) oldest[d] = start;
    }
    const out: UnrepliedDestination[] = [];
    for (let d = 0; d < rows; d++) {
      if (count[d] === 0) continue;
      out.push({ key: this.destinations.key(d), unreplied: count[d], stale: stale[d], dnat: dnat[d], oldestAge: Math.max(0, (now - oldest[d]) / 1e6) });
    }
    out.sort((a, b) => b.stale - a.stale || b.unreplied - a.unreplied || (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
    return { total, stale: staleTotal, destinations: out.slice(0, limit), complete: out.length <= limit };
  }

  /** Live flows per conntrack zone (0 when the flow has none). One pass over the table. */
  liveByZone(): Map<number, number> {
    const out = new Map<number, number>();
    for (let p = 0; p < this.n; p++) {
      const z = this.flags[p] & ZONE ? this.zones[p] : 0;
      out.set(z, (out.get(z) ?? 0) + 1);
    }
    return out;
  }

  liveByDestination(destination: string): number {
    return this.destinations.count(destination);
  }

  liveBySource(src: string): number {
    return this.sources.count(src);
  }

  liveByProtocol(proto: string): number {
    return this.protoLive[protoCode(proto)];
  }

  /** Distinct destination keys and sources alive (what the intern tables hold). */
  get distinct(): { destinations: number; sources: number } {
    return { destinations: this.destinations.size, sources: this.sources.size };
  }

  get(id: number): FlowView | undefined {
    const p = this.find(id);
    if (p < 0) return undefined;
    const f = this.flags[p];
    const view: FlowView = {
      id: this.ids[p],
      family: f & IPV6 ? 'ipv6' : 'ipv4',
      proto: protoName(this.protos[p]),
      src: this.sources.key(this.srcs[p]),
      dst: this.dstAddrs[this.dsts[p]],
      destination: this.destinations.key(this.dsts[p]),
      start: this.starts[p],
      assured: (f & ASSURED) !== 0,
      replied: (f & REPLIED) !== 0,
      preexisting: (f & PREEXISTING) !== 0,
    };
    this.tupleInto(p, view);
    if (this.kernelStarts[p] === this.kernelStarts[p]) view.kernelStart = this.kernelStarts[p];
    if (this.states[p] !== 0) view.state = this.stateNames[this.states[p]];
    if (f & MARK) view.mark = this.marks[p];
    if (f & ZONE) view.zone = this.zones[p];
    return view;
  }

  /**
   * Position of the flow the event is about, or -1. A held flow with another tuple is a stale one
   * whose id the kernel reused: it is ended ('resync') and -1 returned.
   */
  private held(ev: ConntrackEvent, out: FlowEnd[]): number {
    const p = this.find(ev.id);
    if (p < 0 || this.sameTuple(p, ev)) return p;
    out.push(this.ended(p, ev.time, 'resync'));
    this.remove(p);
    return -1;
  }

  private sameTuple(p: number, ev: ConntrackEvent): boolean {
    return (
      this.sports[p] === sportCode(ev) &&
      this.dports[p] === dportCode(ev) &&
      this.protos[p] === protoCode(ev.proto) &&
      this.dstAddrs[this.dsts[p]] === ev.dst &&
      this.sources.key(this.srcs[p]) === ev.src
    );
  }

  /** The record of a flow ended without a DESTROY, from what the table holds. */
  private ended(p: number, time: number, reason: FlowEndReason): FlowEnd {
    const f = this.flags[p];
    const kernelStart = this.kernelStarts[p];
    const begin = kernelStart === kernelStart ? Math.floor(kernelStart / 1000) : this.starts[p];
    const end: FlowEnd = {
      event: 'flow',
      time,
      id: this.ids[p],
      family: f & IPV6 ? 'ipv6' : 'ipv4',
      proto: protoName(this.protos[p]),
      src: this.sources.key(this.srcs[p]),
      dst: this.dstAddrs[this.dsts[p]],
      begin,
      duration: Math.max(0, (time - begin) / 1e6),
      clock: 'collector',
      preexisting: (f & PREEXISTING) !== 0,
      assured: (f & ASSURED) !== 0,
      replied: (f & REPLIED) !== 0,
      reason,
    };
    this.tupleInto(p, end);
    if (this.states[p] !== 0) end.state = this.stateNames[this.states[p]];
    if (f & MARK) end.mark = this.marks[p];
    if (f & ZONE) end.zone = this.zones[p];
    return end;
  }

  private tupleInto(p: number, to: { sport?: number; dport?: number; icmp?: IcmpFields }): void {
    const f = this.flags[p];
    if (f & PORTS) {
      to.sport = this.sports[p];
      to.dport = this.dports[p];
    } else if (f & ICMP) {
      to.icmp = { type: this.dports[p] >> 8, code: this.dports[p] & 0xff, id: this.sports[p] };
    }
  }

  private insert(ev: ConntrackEvent, destination: string, flags: number): void {
    if (this.n === this.capacity) this.resize(this.capacity * 2);
    const p = this.n++;
    this.ids[p] = ev.id;
    this.starts[p] = ev.time;
    this.kernelStarts[p] = ev.start ?? NaN;
    this.closings[p] = NaN;

    const d = this.destinations.acquire(destination);
    if (this.destinations.refsOf(d) === 1) {
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
    this.indexInsert(ev.id, p);
  }

  /** Applies what an UPDATE says about a held flow. */
  private refresh(p: number, ev: ConntrackEvent): void {
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

  private remove(p: number): void {
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

  private stateCode(name: string | undefined): number {
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

  private countsOf(counts: Uint32Array, at: number): Record<string, number> {
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

  private find(id: number): number {
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
    this.capacity = capacity;

    const buckets = capacity * 2;
    this.index = new Uint32Array(buckets);
    this.shift = 32 - Math.log2(buckets);
    for (let p = 0; p < n; p++) this.indexInsert(this.ids[p], p);
  }
}


function statusBits(status: readonly string[]): number {
  let bits = 0;
  for (const s of status) {
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
