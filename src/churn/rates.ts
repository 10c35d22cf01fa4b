/**
 * The counters behind each row of a snapshot: a tracked key's rate windows (opened, closed; for
 * destinations also timed and short-lived ends, lifetimes and DNAT backends), how a key's windows
 * start, reset and read, and how rows are ranked. Pure; the engine (engine.ts) decides when each
 * one moves, and processes.ts reads per-process rows the same way.
 */
import type { FlowEnd } from '../flow/types.js';
import type { Destination } from '../flow/keys.js';
import type { KeyChurn, Rates } from './snapshot.js';
import { LifetimeHistogram } from './lifetime.js';
import { RateWindow } from './window.js';

export interface KeyRates {
  /** µs, when the key began to be tracked; NaN in a fresh or recycled slot */
  since: number;
  opened: RateWindow;
  closed: RateWindow;
}

export interface EndRates extends KeyRates {
  /** ends with an exact duration, and those of them shorter than SHORT_LIVED_S */
  timed: RateWindow;
  short: RateWindow;
}

export interface DestinationRates extends EndRates {
  lifetimes: LifetimeHistogram;
  /** DNATed service address: new flows per translated backend ("127.0.0.5:6379"), at most
   * MAX_BACKENDS (a service rarely has more worth naming; the rest are not counted) */
  backends: Map<string, number> | undefined;
  /** what the key is made of, from the first event counted (a row carries it beside the key) */
  parts: Destination | undefined;
}

const MAX_BACKENDS = 8;

export interface Ranked<T> {
  key: string;
  s: T;
  error: number;
  new1: number;
  new10: number;
}

/** The first n by new1 descending, then key ascending (so ties read the same on every run). */
export function ranked<T>(all: Ranked<T>[], n: number): Ranked<T>[] {
  // Ties on the last second (all 0 once a burst is over) fall back to the last ten seconds, so
  // the keys that just churned stay on top of the list while their rates decay.
  // Rates are compared at 0.001/s: equal rates computed along different paths must still tie.
  const r = (x: number) => Math.round(x * 1000);
  all.sort((a, b) => r(b.new1) - r(a.new1) || r(b.new10) - r(a.new10) || (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  return all.slice(0, n);
}


export function keyRates(): KeyRates {
  return { since: NaN, opened: new RateWindow(), closed: new RateWindow() };
}

export function endRates(): EndRates {
  return { ...keyRates(), timed: new RateWindow(), short: new RateWindow() };
}

export function destinationRates(): DestinationRates {
  return { ...endRates(), lifetimes: new LifetimeHistogram(), backends: undefined, parts: undefined };
}

/** A destination's slot given to another key (the heavy hitters evicted its key). A module's
 * function, not a closure per engine: the per-event code V8 compiles calls it by identity. */
export function recycleDestination(d: DestinationRates): void {
  resetRates(d);
  d.timed.reset();
  d.short.reset();
  d.lifetimes.reset();
  d.backends = undefined;
  d.parts = undefined;
}

export function countBackend(d: DestinationRates, backend: string): void {
  const m = (d.backends ??= new Map());
  const n = m.get(backend);
  if (n !== undefined) m.set(backend, n + 1);
  else if (m.size < MAX_BACKENDS) m.set(backend, 1);
}

/** The backend with most new flows (ties by name), and how many were seen. */
export function topBackend(backends: ReadonlyMap<string, number>): { backend: string; backends: number } | undefined {
  let best: string | undefined;
  let most = -1;
  for (const [b, n] of backends) if (n > most || (n === most && best !== undefined && b < best)) { best = b; most = n; }
  return best === undefined ? undefined : { backend: best, backends: backends.size };
}

/** One ended flow on a destination's figures. */
export function endOf(d: DestinationRates, end: FlowEnd, timed: boolean, short: boolean): void {
  const t = end.time;
  d.closed.add(t);
  if (timed) {
    d.timed.add(t);
    d.lifetimes.add(end.duration);
    if (short) d.short.add(t);
  }
}

export function startRates(s: KeyRates | EndRates, t: number): void {
  s.since = t;
  s.opened.start(t);
  s.closed.start(t);
  if ('timed' in s) {
    s.timed.start(t);
    s.short.start(t);
  }
}

export function resetRates(s: KeyRates): void {
  s.since = NaN;
  s.opened.reset();
  s.closed.reset();
}

export function ratesOf(s: { opened: RateWindow; closed: RateWindow }, t: number): Rates {
  return {
    new1: s.opened.rate(t, 1),
    new10: s.opened.rate(t, 10),
    new60: s.opened.rate(t, 60),
    end1: s.closed.rate(t, 1),
    end10: s.closed.rate(t, 10),
    end60: s.closed.rate(t, 60),
  };
}

export function share(part: number, whole: number): number | undefined {
  return whole > 0 ? part / whole : undefined;
}


/**
 * Zones by live entries: those churning and those only found by the start-up dump alike; `live`
 * is the tracker's count per zone, and zones past the `maxZones` counted on their own are "other".
 */
export function zoneView(
  zones: ReadonlyMap<string, KeyRates>,
  live: ReadonlyMap<number, number>,
  maxZones: number,
  topN: number,
  time: number,
): { zones?: KeyChurn[] } {
  const keys = new Set(zones.keys());
  for (const z of live.keys()) keys.add(zones.size >= maxZones && !zones.has(String(z)) ? 'other' : String(z));
  // only once a zone other than the default one is seen: most hosts have none
  if (keys.size === 0 || (keys.size === 1 && keys.has('0'))) return {};
  const liveOf = (key: string): number => {
    if (key !== 'other') return live.get(Number(key)) ?? 0;
    let n = 0;
    for (const [z, c] of live) if (!zones.has(String(z))) n += c;
    return n;
  };
  const out = [...keys].map((key) => {
    const s = zones.get(key);
    const rates = s ? ratesOf(s, time) : { new1: 0, new10: 0, new60: 0, end1: 0, end10: 0, end60: 0 };
    return { key, ...rates, live: liveOf(key) };
  });
  return { zones: out.sort((a, b) => b.live - a.live || b.new1 - a.new1 || (a.key < b.key ? -1 : 1)).slice(0, topN) };
}
