/**
 * Churn per process ("api-worker[4121]"): the same windows as destinations, fed by process
 * attribution. Attribution answers after the NEW was read (the socket lookup runs off the hot
 * path), so opened() takes the NEW's own time: the windows accept events up to a minute late.
 * A row carries what its key names (pid and command, unit, ...): `describe` turns the process of
 * the event that started tracking a key into those fields, once per tracked key.
 */
import type { KeyChurn } from './snapshot.js';
import { HeavyHitters } from './heavy.js';
import { RateWindow } from './window.js';
import { keyRates, ratesOf, resetRates } from './rates.js';

interface ProcessRates {
  since: number;
  /** the row's fields beside its key (describe's answer), from the event that started the slot */
  parts: object | undefined;
  opened: RateWindow;
  closed: RateWindow;
}

// Module functions, not closures per instance: the per-event code V8 compiles calls them by
// identity, and a new instance's closures (the live one's, after the warm-up's) would not match.
const processRates = (): ProcessRates => ({ ...keyRates(), parts: undefined });
function recycleProcess(s: ProcessRates): void {
  resetRates(s);
  s.parts = undefined;
}

/** `T` is what an event is counted for (a process), `R` the fields a row gains from it. */
export class ProcessChurn<T = never, R extends object = object> {
  private readonly heavy: HeavyHitters<ProcessRates>;
  /** live attributed flows per process; keys leave when they reach 0 */
  private readonly live = new Map<string, number>();

  constructor(
    capacity = 256,
    private readonly topN = 10,
    private readonly describe?: (of: T) => R,
  ) {
    this.heavy = new HeavyHitters<ProcessRates>(capacity, processRates, recycleProcess);
  }

  /** The process's windows (started now if it is newly tracked); undefined while it is counted
   * only in its bucket (heavy.ts). */
  private track(key: string, t: number, of: T | undefined): ProcessRates | undefined {
    const s = this.heavy.hit(key);
    if (s !== undefined && s.since !== s.since) {
      s.since = t;
      if (of !== undefined && this.describe) s.parts = this.describe(of);
      s.opened.start(t);
      s.closed.start(t);
    }
    return s;
  }

  /** A new flow of `key` (counted for `of`), at the NEW's time (µs). */
  opened(key: string, t: number, of?: T): void {
    this.track(key, t, of)?.opened.add(t);
    this.live.set(key, (this.live.get(key) ?? 0) + 1);
  }

  /** A flow of `key` ended at `t`. */
  closed(key: string, t: number, of?: T): void {
    this.track(key, t, of)?.closed.add(t);
    this.absent(key);
  }

  /** A live flow of `key` that did not open now (a table dump found it): live, not a new flow. */
  present(key: string): void {
    this.live.set(key, (this.live.get(key) ?? 0) + 1);
  }

  /** A live flow of `key` that is no longer counted under it, without ending (or after closed()). */
  absent(key: string): void {
    const n = (this.live.get(key) ?? 0) - 1;
    if (n > 0) this.live.set(key, n);
    else this.live.delete(key);
  }

  /** The top processes by new flows over the last 10 seconds (new10; then live flows, then key), as KeyChurn rows. */
  top(t: number): (KeyChurn & Partial<R>)[] {
    const rows: (KeyChurn & Partial<R>)[] = [];
    this.heavy.forEach((key, s, _count, error) => {
      rows.push({ key, ...s.parts, ...ratesOf(s, t), live: this.live.get(key) ?? 0, error } as KeyChurn & Partial<R>);
    });
    rows.sort((a, b) => b.new10 - a.new10 || b.live - a.live || (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
    return rows.slice(0, this.topN);
  }
}
