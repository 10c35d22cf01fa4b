/**
 * leak_fill's memory and arithmetic (issue 16: the first alert within 2 s of a leak that would fill
 * the table, and none on a pool refilling).
 *
 * Per destination, a run: consecutive snapshots in which its live entries grew by at least
 * `min_rate` per second. What the run has added (live now − live just before the run began) is
 * what stayed of the destination's new flows while it kept growing. The rule fires once that
 * reaches `burst` and, at the growth of the last snapshot, the destination alone would fill what is
 * left of the table within `threshold`.
 *
 * Why live counts and not the 1 s rates: a burst of B connections adds at most B live entries to
 * any run, however it falls across snapshot boundaries, so a pool that refills fewer than `burst`
 * connections never fires, and once the pool is full its growth stops and the run ends. (Rates
 * cannot give that bound: a destination first seen 300 ms ago reads its count over 0.3 s, so a
 * refill of 1 200 connections landing at once read 4 000/s.) A leak keeps adding: at 2 000/s the
 * first whole second it is seen passes a burst of 1 500, so it fires on the snapshot after the one
 * that first saw it — within 2 s of the first leaked connection. A slower leak of r/s needs about
 * burst / r seconds more.
 *
 * The tracker's live counts are exact for every destination (ChurnEngine.figures); entries a resync
 * or the kernel removed are gone from them, so the growth is net of flows that ended.
 */
import type { LeakFillRule } from './rule-set.js';

const US = 1e6;
/** A record older than this is not the previous snapshot: the destination starts afresh. */
const MAX_GAP_US = 10 * US;

interface Run {
  time: number;
  live: number;
  /** live entries just before the current run began (= live when not in a run) */
  base: number;
  running: boolean;
}

export interface LeakVerdict {
  /** live entries gained per second since the previous snapshot */
  growth: number;
  /** live entries added by the current run (0 when the destination is not growing fast enough) */
  stayed: number;
  /** seconds until this destination alone fills what is left of the table; null when not growing */
  timeToFull: number | null;
  fire: boolean;
  clear: boolean;
}

/** One rule's runs, per network namespace and destination. */
export class LeakRuns {
  private readonly runs = new Map<string, Map<string, Run>>();
  private readonly pruned = new Map<string, number>();

  /**
   * The verdict for one destination at snapshot time `t` (µs) with `live` entries, against the
   * table's free room; null when this is the first snapshot that sees it (nothing to compare with).
   * Call once per destination per snapshot.
   */
  judge(rule: LeakFillRule, ns: string, key: string, t: number, live: number, table: { entries: number; max: number }): LeakVerdict | null {
    const runs = this.of(ns, t);
    const prev = runs.get(key);
    if (!prev || t <= prev.time || t - prev.time > MAX_GAP_US) {
      runs.set(key, { time: t, live, base: live, running: false });
      return null;
    }
    const growth = (live - prev.live) / ((t - prev.time) / US);
    const running = growth >= rule.minRate;
    const base = running ? (prev.running ? prev.base : prev.live) : live;
    runs.set(key, { time: t, live, base, running });
    const stayed = running ? live - base : 0;
    const timeToFull = growth > 0 ? Math.max(0, table.max - table.entries) / growth : null;
    return {
      growth,
      stayed,
      timeToFull,
      fire: running && stayed >= rule.burst && timeToFull !== null && timeToFull < rule.threshold,
      clear: timeToFull === null || timeToFull >= rule.resolve,
    };
  }

  /** This netns's runs, dropping the ones too old to be a previous snapshot (once per snapshot time). */
  private of(ns: string, t: number): Map<string, Run> {
    let runs = this.runs.get(ns);
    if (!runs) this.runs.set(ns, (runs = new Map()));
    if (this.pruned.get(ns) !== t) {
      this.pruned.set(ns, t);
      for (const [key, r] of runs) if (t - r.time > MAX_GAP_US) runs.delete(key);
    }
    return runs;
  }
}
