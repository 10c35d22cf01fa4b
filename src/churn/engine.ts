/**
 * The churn engine: turns batches of conntrack events into flow records (FlowEnd) and, on demand,
 * into the periodic ChurnSnapshot that alerts, `top`, `stats` and metrics read.
 *
 * Pure and deterministic: no clock is read; every figure is computed at the event times given, so
 * replaying a recording gives the same records and snapshots as the live run did.
 *
 * What counts as churn: a NEW opens a flow, a DESTROY closes one. Flows found by a table dump
 * (snapshot) or first seen by an UPDATE are live but were not opened now, and flows ended by a
 * resync were not closed now, so neither moves a rate; both move live counts.
 *
 * Per destination and per source, the keys are Space-Saving heavy hitters (HeavyHitters) counting
 * NEW and DESTROY events alike: a scan over millions of sources costs at most `topK` tracked keys
 * per dimension. Each tracked key has its own rate windows, started when the key began to be
 * tracked, so a key that displaced another reports rates since then and a nonzero `error` (in
 * events, decayed like the counts: 0 means the key's figures are complete). Live counts and states
 * come from the tracker and are exact for every key. Protocols are few and counted exactly.
 * Heavy-hitter counts and lifetime histograms are halved every 60 s of event time, so keys and
 * lifetimes from an hour ago give way to what is happening now.
 *
 * Lifetimes (p50/p99 and the short-lived share) only use flows whose duration is exact: seen to
 * begin, or timed by the kernel. A flow that predates the collector has only a lower bound.
 *
 * One engine per network namespace: conntrack ids are only unique within one. This file is the
 * dispatch of each event to every counter and the assembly of a snapshot; the counters are in
 * rates.ts (per key), owners.ts (per process and group), snat.ts, pressure.ts.
 */

import type { ConntrackEvent, SourceEvent } from '../source/types.js';
import type { FlowEnd } from '../flow/types.js';
import { FlowTracker } from '../flow/tracker.js';
import { destinationParts, endpointKey } from '../flow/keys.js';
import type { ChurnSnapshot, DestinationChurn, DestinationFigure, DestinationFigures, KeyChurn, SnatView, UnrepliedView } from './snapshot.js';
import { DEFAULT_CAPACITY, HeavyHitters } from './heavy.js';
import { growthRate, kernelTotals, pushSample, tablePressure } from './pressure.js';
import type { KernelStats, TableSample } from './pressure.js';
import { US_PER_S } from './window.js';
import { SnatPorts } from './snat.js';
import { zoneView, countBackend, destinationRates, recycleDestination, endOf, keyRates, ranked, ratesOf, resetRates, share, startRates, topBackend, endRates, type DestinationRates, type EndRates, type KeyRates, type Ranked } from './rates.js';
import { OwnerChurn, type OwnerChurnOptions } from './owners.js';

/** A flow that lived less than this many seconds is short-lived. */
export const SHORT_LIVED_S = 1;
const DECAY_EVERY_US = 60 * US_PER_S;
const DECAY_FACTOR = 0.5;

/** Kernel table statistics read alongside a snapshot. */
export interface TableReading {
  /** CTA_STATS_GLOBAL_ENTRIES */
  entries: number;
  /** CTA_STATS_GLOBAL_MAX_ENTRIES (nf_conntrack_max) */
  max: number;
  /** per-CPU statistic records (summed here) or their totals */
  kernel?: KernelStats | readonly KernelStats[];
}

export interface ChurnEngineOptions {
  /** keys tracked per dimension (destinations, sources); default 256 */
  topK?: number;
  /** keys reported per list in a snapshot; default 10 */
  topN?: number;
  /** initial live-flow table capacity; default 1024 */
  capacity?: number;
  /** the ports SNAT / masquerade can give one pair (src/pipeline/port-range.ts): what its port
   * use is judged against; `from` says whether an nft rule gave it or it is the kernel default */
  snatPortRange?: { low: number; high: number; from?: string };
  /** UPDATE events are subscribed, so a flow without SEEN_REPLY really has no reply (live: the
   * assembly knows; a replay infers it from the first UPDATE) */
  replies?: boolean;
  /** process attribution is on: flows keep their owner (flow ends name it) and are counted per
   * process, unit / container / pod and unattributed reason (owners.ts) */
  owners?: OwnerChurnOptions;
}

/** An entry unreplied this long is stale: no real peer takes 5 s to answer (TCP retries its SYN at 1 s and 3 s). */
export const UNREPLIED_STALE_S = 5;
/** conntrack zones counted on their own (zone ids are 16 bits; the rest are "other") */
const MAX_ZONES = 256;


export class ChurnEngine {
  readonly tracker: FlowTracker;
  private readonly topN: number;
  private readonly all: EndRates = endRates();
  private readonly destinations: HeavyHitters<DestinationRates>;
  private readonly sources: HeavyHitters<KeyRates>;
  private readonly protocols = new Map<string, KeyRates>();
  /** per conntrack zone ("0", "7"); at most MAX_ZONES, the rest under "other" */
  private readonly zones = new Map<string, KeyRates>();
  /**
   * Destinations an alert rule is judging (pending or firing), counted on their own whether or not
   * they hold a heavy-hitter slot: decoys that push a leak out of the top-K cannot blind the rule.
   */
  private watched = new Map<string, DestinationRates>();

  /** µs of the first event; NaN before */
  private origin = NaN;
  /** the next whole second of event time, when the live count is sampled */
  private nextTick = -Infinity;
  private nextDecay = Infinity;
  /** live flows once per second of event time, for growth when the kernel's count is unknown */
  private readonly liveSamples: TableSample[] = [];
  private readonly tableSamples: TableSample[] = [];
  private overflowCount = 0;
  private ns: string | undefined;
  private replies: boolean;
  /** SNAT: translated source ports of live entries per "translated source → destination key" */
  private readonly snat: SnatPorts;
  private readonly owners?: OwnerChurn;

  constructor(options: ChurnEngineOptions = {}) {
    const topK = options.topK ?? DEFAULT_CAPACITY;
    this.topN = options.topN ?? 10;
    this.replies = options.replies ?? false;
    this.snat = new SnatPorts(options.snatPortRange ?? null);
    this.tracker = new FlowTracker({ capacity: options.capacity, owners: options.owners !== undefined });
    if (options.owners) this.owners = new OwnerChurn(options.owners);
    // keyed by the flow table's numbers for destination keys and source addresses (heavy.ts)
    const tracker = this.tracker;
    this.destinations = new HeavyHitters<DestinationRates>(topK, destinationRates, recycleDestination, (key) => tracker.destinationNumberOf(key));
    this.sources = new HeavyHitters<KeyRates>(topK, keyRates, resetRates, (src) => tracker.sourceNumberOf(src));
    tracker.onForget((n) => this.destinations.forget(n), (n) => this.sources.forget(n));
  }

  /** Overflow events seen: each one means events were lost and a resync is due. */
  get overflows(): number {
    return this.overflowCount;
  }

  /** The namespace the events came from, when they say. */
  get netns(): string | undefined {
    return this.ns;
  }

  /** Applies a batch in order; returns the flow records of flows that ended in it. */
  ingest(events: readonly SourceEvent[]): FlowEnd[] {
    const out: FlowEnd[] = [];
    for (const ev of events) {
      const t = ev.time;
      if (t >= this.nextTick) this.tick(t);
      if (ev.netns !== undefined) this.ns = ev.netns;
      switch (ev.event) {
        case 'new': {
          // with attribution: whether a dump found this flow first, and as whose
          const dumped = this.owners ? this.tracker.preexistingOwner(ev) : undefined;
          if (this.tracker.open(ev, out) === 'opened') {
            this.opened(ev);
            this.snat.add(ev);
            if (dumped !== undefined) this.owners!.joined(ev, dumped.owner);
            else this.owners?.opened(ev);
          }
          break;
        }
        case 'destroy': {
          this.snat.release(ev.id);
          const key = this.tracker.destroy(ev, out);
          this.closed(out[out.length - 1], key);
          break;
        }
        case 'snapshot':
          if (this.tracker.insertDumped(ev, out) === 'inserted') {
            this.snat.add(ev);
            this.owners?.dumped(ev);
          }
          break;
        case 'update':
          this.replies = true;
          // an entry we did not hold (its NEW was lost): live, so its port is in use
          if (this.tracker.update(ev, out) === 'late') this.snat.add(ev);
          break;
        case 'overflow':
          this.overflowCount++;
          break;
        case 'snapshot_done':
          break;
      }
    }
    if (this.owners) for (const end of out) this.owners.ended(end);
    return out;
  }

  /**
   * Ends the flows a fresh dump no longer shows (after an overflow), see FlowTracker.reconcile.
   * They leave the live counts but are not counted as closed churn.
   */
  reconcile(present: { has(id: number): boolean }, time: number, seenBefore = time): FlowEnd[] {
    return this.withNetns(this.released(this.tracker.reconcile(present, time, seenBefore)));
  }

  /** Ends every live flow with reason 'shutdown', for a collector asked to emit them on exit. */
  drain(time: number): FlowEnd[] {
    return this.withNetns(this.released(this.tracker.drain(time)));
  }

  /**
   * Counts these destinations on their own from now on (and stops counting any other watched
   * before): the subjects alert rules are judging, so their figures stay exact outside the top-K.
   */
  watch(keys: Iterable<string>, time: number): void {
    const next = new Map<string, DestinationRates>();
    for (const key of keys) {
      let w = this.watched.get(key);
      if (w === undefined) {
        w = destinationRates();
        startRates(w, time);
      }
      next.set(key, w);
    }
    this.watched = next;
  }

  /** Keys counted on their own (watch()). */
  get watching(): string[] {
    return [...this.watched.keys()];
  }

  /**
   * Figures for any destination at `time`, beyond a snapshot's top-N: what alert rules judge. Rates
   * come from the heavy-hitter slot or the watched counters, whichever has counted longer; live
   * counts and states from the tracker (exact). Built on demand, once per key.
   */
  figures(time: number): DestinationFigures {
    const memo = new Map<string, DestinationFigure | null>();
    return {
      keys: () => {
        const keys: string[] = [];
        this.destinations.forEach((key) => keys.push(key));
        for (const key of this.watched.keys()) if (this.destinations.get(key) === undefined) keys.push(key);
        return keys;
      },
      get: (key) => {
        let f = memo.get(key);
        if (f === undefined) memo.set(key, (f = this.destinationFigure(key, time)));
        return f;
      },
      inState: (state, above) => this.tracker.destinationsInState(state, above).map((x) => x.key),
    };
  }

  private destinationFigure(key: string, time: number): DestinationFigure | null {
    const heavy = this.destinations.get(key);
    const watched = this.watched.get(key);
    const h = heavy !== undefined && heavy.since === heavy.since ? heavy : undefined;
    // the one that began counting first has seen more of this destination's flows
    const d = h !== undefined && (watched === undefined || h.since <= watched.since) ? h : watched;
    if (d === undefined) {
      const live = this.tracker.liveByDestination(key);
      if (live === 0) return null;
      const zero = { new1: 0, new10: 0, new60: 0, end1: 0, end10: 0, end60: 0 };
      return { key, ...this.tracker.destinationPartsOf(key), ...zero, live, states: this.tracker.destinationStates(key), rated: false };
    }
    const error = d === h ? this.destinations.error(key) : 0;
    return { ...this.describeDestination(key, d, error, time), rated: true };
  }

  private describeDestination(key: string, d: DestinationRates, error: number, time: number): DestinationChurn {
    const churn: DestinationChurn = {
      key,
      // a watched key counted no event yet: the table's flows say what it is
      ...(d.parts ?? this.tracker.destinationPartsOf(key)),
      ...ratesOf(d, time),
      live: this.tracker.liveByDestination(key),
      states: this.tracker.destinationStates(key),
    };
    const p50 = d.lifetimes.quantile(0.5);
    if (p50 !== undefined) {
      churn.lifetimeP50 = p50;
      churn.lifetimeP99 = d.lifetimes.quantile(0.99);
    }
    const short = share(d.short.count(time, 60), d.timed.count(time, 60));
    if (short !== undefined) churn.shortLived = short;
    churn.error = error;
    const top = d.backends !== undefined ? topBackend(d.backends) : undefined;
    if (top !== undefined) {
      churn.backend = top.backend;
      churn.backends = top.backends;
    }
    return churn;
  }

  /** The churn view at `time` (µs); `table` is the kernel's statistics when they were read. */
  snapshot(time: number, table?: TableReading): ChurnSnapshot {
    let growth: number;
    let kernel: KernelStats = {};
    if (table !== undefined) {
      pushSample(this.tableSamples, { time, entries: table.entries });
      growth = growthRate(this.tableSamples, time);
      kernel = kernelTotals(table.kernel);
    } else {
      growth = growthRate([...this.liveSamples, { time, entries: this.tracker.size }], time);
    }
    const all = this.all;
    return {
      event: 'churn',
      time,
      ...(this.ns !== undefined ? { netns: this.ns } : {}),
      overall: ratesOf(all, time),
      live: this.tracker.size,
      states: this.tracker.stateCounts(),
      shortLived: share(all.short.count(time, 60), all.timed.count(time, 60)) ?? 0,
      table: tablePressure(table?.entries ?? null, table?.max ?? null, growth, kernel),
      destinations: this.top(this.destinations, time, (key, d, error) => this.describeDestination(key, d, error, time)),
      sources: this.top(this.sources, time, (key, s, error) => ({
        key,
        ...ratesOf(s, time),
        live: this.tracker.liveBySource(key),
        error,
      })),
      ...(this.replies ? { unreplied: this.unrepliedView(time) } : {}),
      ...this.snatView(),
      protocols: ranked(
        [...this.protocols].map(([key, s]) => ({ key, s, error: 0, new1: s.opened.rate(time, 1), new10: s.opened.rate(time, 10) })),
        this.topN,
      ).map(({ key, s }) => ({ key, ...ratesOf(s, time), live: this.tracker.liveByProtocol(key) })),
      // only once a zone other than the default one is seen: most hosts have none
      ...zoneView(this.zones, this.tracker.liveByZone(), MAX_ZONES, this.topN, time),
      ...this.owners?.rows(time),
    };
  }

  private unrepliedView(time: number): UnrepliedView {
    const u = this.tracker.unreplied(time, UNREPLIED_STALE_S * US_PER_S, this.topN);
    return { total: u.total, stale: u.stale, staleAfter: UNREPLIED_STALE_S, destinations: u.destinations, complete: u.complete };
  }

  /** Just after the tracker opened ev's flow: its numbers are the tracker's. */
  private opened(ev: ConntrackEvent): void {
    const t = ev.time;
    this.all.opened.add(t);
    const n = this.tracker.destinationNumber;
    const key = this.tracker.destinationKeyNumbered(n);
    const d = this.track(this.destinations, n, key, t);
    if (d !== undefined) {
      d.opened.add(t);
      d.parts ??= this.tracker.destinationPartsNumbered(n);
    }
    const w = this.watched.size > 0 ? this.watched.get(key) : undefined;
    if (w !== undefined) {
      w.opened.add(t);
      w.parts ??= this.tracker.destinationPartsNumbered(n);
    }
    const r = ev.reply;
    // DNAT: the reply comes from the backend, not from the address the flow was sent to
    if (r.src !== ev.dst || r.sport !== ev.dport) {
      if (r.src !== '' && r.src !== undefined && (d !== undefined || w !== undefined)) {
        const backend = endpointKey(ev.family, r.src, r.sport);
        if (d !== undefined) countBackend(d, backend);
        if (w !== undefined) countBackend(w, backend);
      }
    }
    this.track(this.sources, this.tracker.sourceNumber, ev.src, t)?.opened.add(t);
    this.protocol(ev.proto).opened.add(t);
    this.zone(ev.zone).opened.add(t);
  }

  /** `end` is the DESTROY's record, just made by the tracker: its numbers are the tracker's (-1
   * for a flow it did not hold); its addresses and `key` are interned strings when held. */
  private closed(end: FlowEnd, key: string): void {
    const t = end.time;
    const all = this.all;
    all.closed.add(t);
    const tracker = this.tracker;
    const src = tracker.sourceNumber;
    this.track(this.sources, src >= 0 ? src : tracker.sourceNumberOf(end.src), end.src, t)?.closed.add(t);
    this.protocol(end.proto).closed.add(t);
    this.zone(end.zone).closed.add(t);
    const timed = end.clock === 'kernel' || !end.preexisting;
    const short = timed && end.duration < SHORT_LIVED_S;
    if (timed) all.timed.add(t);
    if (short) all.short.add(t);
    const n = tracker.destinationNumber;
    const d = this.track(this.destinations, n >= 0 ? n : tracker.destinationNumberOf(key), key, t);
    if (d !== undefined) {
      endOf(d, end, timed, short);
      d.parts ??= n >= 0 ? tracker.destinationPartsNumbered(n) : destinationParts(end);
    }
    if (this.watched.size > 0) {
      const w = this.watched.get(key);
      if (w !== undefined) {
        endOf(w, end, timed, short);
        w.parts ??= d?.parts ?? (n >= 0 ? tracker.destinationPartsNumbered(n) : destinationParts(end));
      }
    }
  }

  /** Counts one event for key (numbered n by the flow table) and returns its windows, started
   * now if the key is newly tracked; undefined while the key is counted only in its bucket. */
  private track<T extends KeyRates>(heavy: HeavyHitters<T>, n: number, key: string, t: number): T | undefined {
    const s = heavy.hitNumbered(n, key);
    if (s !== undefined && s.since !== s.since) startRates(s, t);
    return s;
  }

  private zone(zone: number | undefined): KeyRates {
    let key = String(zone ?? 0);
    let s = this.zones.get(key);
    if (s === undefined) {
      if (this.zones.size >= MAX_ZONES) key = 'other';
      s = this.zones.get(key);
      if (s === undefined) {
        s = keyRates();
        startRates(s, this.origin);
        this.zones.set(key, s);
      }
    }
    return s;
  }

  private protocol(proto: string): KeyRates {
    let s = this.protocols.get(proto);
    if (s === undefined) {
      s = keyRates();
      startRates(s, this.origin);
      this.protocols.set(proto, s);
    }
    return s;
  }

  /** Once per second of event time (and at the first event): samples and decay. */
  private tick(t: number): void {
    if (this.origin !== this.origin) {
      this.origin = t;
      startRates(this.all, t);
      this.nextDecay = t + DECAY_EVERY_US;
    }
    if (t >= this.nextDecay) {
      const periods = Math.floor((t - this.nextDecay) / DECAY_EVERY_US) + 1;
      const factor = DECAY_FACTOR ** periods;
      this.destinations.decay(factor);
      this.sources.decay(factor);
      this.destinations.forEach((_key, d) => d.lifetimes.decay(factor));
      for (const w of this.watched.values()) w.lifetimes.decay(factor);
      this.nextDecay += periods * DECAY_EVERY_US;
    }
    pushSample(this.liveSamples, { time: t, entries: this.tracker.size });
    this.nextTick = (Math.floor(t / US_PER_S) + 1) * US_PER_S;
  }

  private top<T extends KeyRates, R extends KeyChurn>(
    heavy: HeavyHitters<T>,
    t: number,
    describe: (key: string, s: T, error: number) => R,
  ): R[] {
    const all: Ranked<T>[] = [];
    heavy.forEach((key, s, _count, error) => all.push({ key, s, error, new1: s.opened.rate(t, 1), new10: s.opened.rate(t, 10) }));
    return ranked(all, this.topN).map(({ key, s, error }) => describe(key, s, error));
  }

  /** Flows ended without a DESTROY (resync, drain) free their SNAT ports too, and leave their owner's counts. */
  private released(ends: FlowEnd[]): FlowEnd[] {
    if (this.snat.size > 0) for (const end of ends) this.snat.release(end.id);
    if (this.owners) for (const end of ends) this.owners.ended(end);
    return ends;
  }

  private snatView(): { snat?: SnatView } {
    const snat = this.snat.view(this.topN);
    return snat ? { snat } : {};
  }

  private withNetns(ends: FlowEnd[]): FlowEnd[] {
    if (this.ns !== undefined) for (const end of ends) end.netns = this.ns;
    return ends;
  }
}
