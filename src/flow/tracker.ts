/**
 * The live-flow table: every connection the kernel is tracking, keyed by conntrack id, so that a
 * DESTROY can be turned into a flow record with a lifetime, and live counts by state, destination,
 * source and protocol are known at any moment without a scan.
 *
 * Flows are not objects but columns of typed arrays (table.ts, which also says what a flow costs
 * in memory); the records made when a flow ends are built in records.ts.
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

import type { ConntrackEvent } from '../source/types.js';
import type { FlowEnd, FlowEndReason } from './types.js';
import { destinationOf, protoCode, type Destination } from './keys.js';
import { DNAT, FlowTable, PREEXISTING, REPLIED, STATE_CODES, ZONE, statusBits, type FlowOwner } from './table.js';
import { destroyRecord, endedRecord, flowView, type FlowView } from './records.js';

export type { FlowView };

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
  /** keep each flow's owner (process attribution on): flow ends then name it (records.ts) */
  owners?: boolean;
}

export class FlowTracker {
  private readonly t: FlowTable;

  constructor(options: TrackerOptions = {}) {
    this.t = new FlowTable(options.capacity ?? 1024, { owners: options.owners });
  }

  /**
   * For a NEW about a flow held as preexisting (found by a dump, or first seen by an UPDATE) with
   * the same tuple: the owner it is held with, which the NEW's replaces. Undefined otherwise.
   */
  preexistingOwner(ev: ConntrackEvent): { owner: FlowOwner | undefined } | undefined {
    const t = this.t;
    const p = t.find(ev.id);
    if (p < 0 || !(t.flags[p] & PREEXISTING) || !t.sameTuple(p, ev)) return undefined;
    return { owner: t.owners?.[p] };
  }

  /** Live flows holding an owner, or the reason none is known (process attribution on). */
  get owned(): number {
    return this.t.owned;
  }

  /** Live flows. */
  get size(): number {
    return this.t.n;
  }

  has(id: number): boolean {
    return this.t.find(id) >= 0;
  }

  /**
   * The numbers the flow table gives the destination key and the source address of the flow the
   * last open() that returned 'opened', or the last destroy(), was about; -1 after a destroy() of
   * a flow not held. Counters keyed by them (the churn engine's heavy hitters) find a key by
   * number, without hashing it; see numberOf() and onForget().
   */
  destinationNumber = -1;
  sourceNumber = -1;

  private numbered(p: number): void {
    this.destinationNumber = this.t.dsts[p];
    this.sourceNumber = this.t.srcs[p];
  }

  /** The number a destination key or a source address has now (-1: none). */
  destinationNumberOf(key: string): number {
    return this.t.destinations.numberOf(key);
  }

  sourceNumberOf(src: string): number {
    return this.t.sources.numberOf(src);
  }

  /** `destination` and `source` are told each number the table is about to give another key. */
  onForget(destination: (n: number) => void, source: (n: number) => void): void {
    // one listener: a second would leave the first's slots under numbers given to other keys
    if (this.t.destinations.onForget !== undefined) throw new Error('FlowTracker.onForget: a listener is already set');
    this.t.destinations.onForget = destination;
    this.t.sources.onForget = source;
  }

  /** The destination key numbered n. */
  destinationKeyNumbered(n: number): string {
    return this.t.destinations.key(n);
  }

  /** What the destination numbered n is made of (one record per number, shared: not to change). */
  destinationPartsNumbered(n: number): Destination {
    return this.t.dstParts[n];
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
    const t = this.t;
    const p = this.held(ev, out);
    if (p < 0) {
      t.insert(ev, destination, 0);
      this.numbered(t.n - 1);
      return 'opened';
    }
    if (!(t.flags[p] & PREEXISTING)) return 'duplicate';
    this.numbered(p);
    // The dump showed the entry, so it was read after this NEW happened: keep the dump's state and
    // mark, take only what the NEW knows better (that the flow began now, its kernel start).
    t.flags[p] = (t.flags[p] & ~PREEXISTING) | statusBits(ev.status);
    if (ev.time < t.starts[p]) t.starts[p] = ev.time;
    if (ev.start !== undefined && t.kernelStarts[p] !== t.kernelStarts[p]) t.kernelStarts[p] = ev.start;
    // the NEW's owner was joined when the socket was used; the dump's, later
    if (t.owners !== undefined) t.own(p, ev);
    return 'opened';
  }

  /** An entry from a table dump (a `snapshot` event): inserted as a live flow unless already held. */
  insertDumped(ev: ConntrackEvent, out: FlowEnd[], destination?: string): 'inserted' | 'ignored' {
    if (this.held(ev, out) >= 0) return 'ignored';
    this.t.insert(ev, destination, PREEXISTING);
    return 'inserted';
  }

  update(ev: ConntrackEvent, out: FlowEnd[], destination?: string): 'updated' | 'late' {
    const p = this.held(ev, out);
    if (p < 0) {
      this.t.insert(ev, destination, PREEXISTING);
      return 'late';
    }
    this.t.refresh(p, ev);
    return 'updated';
  }

  /**
   * Removes the flow and pushes its record (last on `out`; records.ts destroyRecord says how its
   * figures are found, also for an id we do not hold).
   *
   * Returns the destination key the flow was counted under. For a held flow it and the record's
   * addresses are the interned strings, whose hashes are already computed: a churn counter keyed on
   * them then costs no string hashing (a fresh string costs a few hundred ns to hash).
   */
  destroy(ev: ConntrackEvent, out: FlowEnd[]): string {
    const p = this.held(ev, out);
    out.push(destroyRecord(this.t, p, ev));
    if (p < 0) {
      this.destinationNumber = this.sourceNumber = -1;
      return destinationOf(ev);
    }
    this.numbered(p);
    const destination = this.t.destination(p);
    const src = this.t.src(p);
    this.t.remove(p);
    // releasing the flow's keys can forget them (intern.ts keeps idle keys bounded), their
    // numbers then free for other keys: a key without a number is found by its string. (remove()
    // only releases: no key is given a number in it, so a number still on its key is its own.)
    if (this.t.destinations.key(this.destinationNumber) !== destination) this.destinationNumber = -1;
    if (this.t.sources.key(this.sourceNumber) !== src) this.sourceNumber = -1;
    return destination;
  }

  /**
   * Ends every flow absent from a fresh table dump (reason 'resync', time = `time`): their DESTROY
   * was lost while events overflowed. Flows first seen at or after `seenBefore` (default `time`)
   * are kept, since a NEW read during the dump may be newer than the dump's view. The record's
   * duration runs to `time`, the first moment we know the flow had gone: an upper bound.
   */
  reconcile(present: { has(id: number): boolean }, time: number, seenBefore = time): FlowEnd[] {
    const t = this.t;
    return this.sweep(time, 'resync', (p) => t.starts[p] >= seenBefore || present.has(t.ids[p]));
  }

  /** Ends every live flow with reason 'shutdown', emptying the table. */
  drain(time: number): FlowEnd[] {
    return this.sweep(time, 'shutdown', () => false);
  }

  private sweep(time: number, reason: FlowEndReason, keep: (p: number) => boolean): FlowEnd[] {
    const ended: FlowEnd[] = [];
    // Backwards, because removing position p moves the last flow (already visited) into p.
    for (let p = this.t.n - 1; p >= 0; p--) {
      if (keep(p)) continue;
      ended.push(endedRecord(this.t, p, time, reason));
      this.t.remove(p);
    }
    return ended;
  }

  /** Live flows by TCP state, whole table. */
  stateCounts(): Record<string, number> {
    return this.t.countsOf(this.t.stateTotals, 0);
  }

  /** What a live destination's key is made of; undefined when none of its flows is live. */
  destinationPartsOf(destination: string): Destination | undefined {
    const d = this.t.destinations.find(destination);
    return d < 0 ? undefined : this.t.dstParts[d];
  }

  /** Live flows by TCP state for one destination key (empty when none is live). */
  destinationStates(destination: string): Record<string, number> {
    const d = this.t.destinations.find(destination);
    return d < 0 ? {} : this.t.countsOf(this.t.dstStates, d * STATE_CODES);
  }

  /**
   * Destination keys with more than `above` live flows in TCP state `state`, and how many: what a
   * pile-up rule judges, whatever their new-flow rate. One pass over the per-destination rows.
   */
  destinationsInState(state: string, above: number): { key: string; count: number }[] {
    const t = this.t;
    const code = t.stateCodes.get(state);
    const out: { key: string; count: number }[] = [];
    if (code === undefined) return out;
    const rows = t.destinations.capacity;
    if (t.n < rows) {
      // fewer live flows than destination rows (the rows include keys kept idle, intern.ts):
      // the destinations are found from the flows, each row read once, in row order as below
      const found: number[] = [];
      const seen = this.scratchRows(rows, 0);
      for (let p = 0; p < t.n; p++) {
        const d = t.dsts[p];
        if (t.states[p] !== code || seen[d] !== 0) continue;
        seen[d] = 1;
        found.push(d);
      }
      found.sort((a, b) => a - b);
      for (const d of found) {
        seen[d] = 0;
        const n = t.dstStates[d * STATE_CODES + code];
        if (n > above) out.push({ key: t.destinations.key(d), count: n });
      }
      return out;
    }
    for (let d = 0; d < rows; d++) {
      const n = t.dstStates[d * STATE_CODES + code];
      if (n > above && t.destinations.refsOf(d) > 0) out.push({ key: t.destinations.key(d), count: n });
    }
    return out;
  }

  /** Per-destination-row scratch counters (`which` of 3), all 0 between uses: per snapshot
   * figures neither allocate nor clear a row per destination key ever held. */
  private scratchRows(rows: number, which: number): Uint32Array {
    if (this.scratch.length === 0 || this.scratch[0].length < rows) {
      const size = Math.max(rows, 2 * (this.scratch[0]?.length ?? 0), 64);
      this.scratch = [new Uint32Array(size), new Uint32Array(size), new Uint32Array(size)];
    }
    return this.scratch[which];
  }
  private scratch: Uint32Array[] = [];
  private oldestRows = new Float64Array(0);

  /**
   * Live flows that never saw a reply (no SEEN_REPLY), per destination: how many, how many of them
   * are older than `staleUs`, how many were DNATed, and the oldest one's age. Only meaningful when
   * UPDATE events arrive (SEEN_REPLY is set by one). One pass over the table; the `limit`
   * destinations with most stale entries (then most unreplied) come back.
   */
  unreplied(now: number, staleUs: number, limit: number): UnrepliedFigures {
    const t = this.t;
    const rows = t.destinations.capacity;
    // scratch rows, cleared again below for the rows this pass touched (not one per key ever held)
    const count = this.scratchRows(rows, 0);
    const stale = this.scratchRows(rows, 1);
    const dnat = this.scratchRows(rows, 2);
    if (this.oldestRows.length < count.length) this.oldestRows = new Float64Array(count.length);
    const oldest = this.oldestRows; // set at a row's first flow: never read stale
    const touched: number[] = [];
    let total = 0;
    let staleTotal = 0;
    for (let p = 0; p < t.n; p++) {
      const f = t.flags[p];
      if (f & REPLIED) continue;
      const d = t.dsts[p];
      // the kernel's start when known: a flow found by the start-up dump may be hours old
      const ks = t.kernelStarts[p];
      const start = ks === ks ? ks / 1000 : t.starts[p];
      if (count[d]++ === 0) {
        touched.push(d);
        oldest[d] = start;
      } else if (start < oldest[d]) {
        oldest[d] = start;
      }
      total++;
      if (now - start >= staleUs) {
        stale[d]++;
        staleTotal++;
      }
      if (f & DNAT) dnat[d]++;
    }
    touched.sort((a, b) => a - b);
    const out: UnrepliedDestination[] = [];
    for (const d of touched) {
      out.push({ key: t.destinations.key(d), unreplied: count[d], stale: stale[d], dnat: dnat[d], oldestAge: Math.max(0, (now - oldest[d]) / 1e6) });
      count[d] = 0;
      stale[d] = 0;
      dnat[d] = 0;
    }
    out.sort((a, b) => b.stale - a.stale || b.unreplied - a.unreplied || (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
    return { total, stale: staleTotal, destinations: out.slice(0, limit), complete: out.length <= limit };
  }

  /** Live flows per conntrack zone (0 when the flow has none). One pass over the table. */
  liveByZone(): Map<number, number> {
    const t = this.t;
    const out = new Map<number, number>();
    for (let p = 0; p < t.n; p++) {
      const z = t.flags[p] & ZONE ? t.zones[p] : 0;
      out.set(z, (out.get(z) ?? 0) + 1);
    }
    return out;
  }

  liveByDestination(destination: string): number {
    return this.t.destinations.count(destination);
  }

  liveBySource(src: string): number {
    return this.t.sources.count(src);
  }

  liveByProtocol(proto: string): number {
    return this.t.protoLive[protoCode(proto)];
  }

  /** Distinct destination keys and sources alive (what the intern tables hold). */
  get distinct(): { destinations: number; sources: number } {
    return { destinations: this.t.destinations.size, sources: this.t.sources.size };
  }

  get(id: number): FlowView | undefined {
    const p = this.t.find(id);
    return p < 0 ? undefined : flowView(this.t, p);
  }

  /**
   * Position of the flow the event is about, or -1. A held flow with another tuple is a stale one
   * whose id the kernel reused: it is ended ('resync') and -1 returned.
   */
  private held(ev: ConntrackEvent, out: FlowEnd[]): number {
    const p = this.t.find(ev.id);
    if (p < 0 || this.t.sameTuple(p, ev)) return p;
    out.push(endedRecord(this.t, p, ev.time, 'resync'));
    this.t.remove(p);
    return -1;
  }
}
