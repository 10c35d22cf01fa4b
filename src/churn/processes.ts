/**
 * Churn per process ("api-worker[4121]"): the same windows as destinations, fed by process
 * attribution. Attribution answers after the NEW was read (the socket lookup runs off the hot
 * path), so opened() takes the NEW's own time: the windows accept events up to a minute late.
 */
import type { KeyChurn } from './snapshot.js';
import { HeavyHitters } from './heavy.js';
import { RateWindow } from './window.js';
import { ratesOf } from './engine.js';

interface ProcessRates {
  since: number;
  opened: RateWindow;
  closed: RateWindow;
}

export class ProcessChurn {
  private readonly heavy: HeavyHitters<ProcessRates>;
  /** live attributed flows per process; keys leave when they reach 0 */
  private readonly live = new Map<string, number>();

  constructor(capacity = 256, private readonly topN = 10) {
    this.heavy = new HeavyHitters<ProcessRates>(
      capacity,
      () => ({ since: NaN, opened: new RateWindow(), closed: new RateWindow() }),
      (s) => {
        s.since = NaN;
        s.opened.reset();
        s.closed.reset();
      },
    );
  }

  private track(key: string, t: number): ProcessRates {
    const s = this.heavy.hit(key);
    if (s.since !== s.since) {
      s.since = t;
      s.opened.start(t);
      s.closed.start(t);
    }
    return s;
  }

  /** A new flow of `key`, at the NEW's time (µs). */
  opened(key: string, t: number): void {
    this.track(key, t).opened.add(t);
    this.live.set(key, (this.live.get(key) ?? 0) + 1);
  }

  /** A flow of `key` ended at `t`. */
  closed(key: string, t: number): void {
    this.track(key, t).closed.add(t);
    const n = (this.live.get(key) ?? 0) - 1;
    if (n > 0) this.live.set(key, n);
    else this.live.delete(key);
  }

  /** The top processes by new flows over the last 10 seconds (new10; then live flows, then key), as KeyChurn rows. */
  top(t: number): KeyChurn[] {
    const rows: KeyChurn[] = [];
    this.heavy.forEach((key, s, _count, error) => {
      rows.push({ key, ...ratesOf(s, t), live: this.live.get(key) ?? 0, error });
    });
    rows.sort((a, b) => b.new10 - a.new10 || b.live - a.live || (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
    return rows.slice(0, this.topN);
  }
}
