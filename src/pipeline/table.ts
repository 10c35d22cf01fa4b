/** Where a tick's kernel table figures come from: the kernel (live) or the recording (replay). */
import type { TableReading } from '../churn/engine.js';
import type { LiveSource } from '../source/live.js';
import type { AnyRecord } from '../recording/schema.js';

/** How often the reader thread reads the table statistics for the ticks: a tick's figures are at
 * most this old (plus the reader's batch linger), and a reading costs the reader ~0.1 ms. */
export const TABLE_READING_MS = 200;
/** A reading older than this is not used for a tick (see liveTable). */
export const STALE_READING_MS = 1000;

/**
 * Entries, limit and per-CPU counters from the kernel at each tick. The reader thread reads them
 * on its own clock (every TABLE_READING_MS) and the tick takes the latest: asking it synchronously
 * made the JavaScript thread wait 8–28 ms for a busy reader once a second, and the flow lines of
 * the events read meanwhile with it. Only the first tick, before any reading, asks and waits.
 * Replay stays exact: the reading a tick used is what its `churn` line records.
 */
export function liveTable(source: Pick<LiveSource, 'statsEvery' | 'latestStats' | 'stats'>): (time: number) => TableReading | undefined {
  source.statsEvery(TABLE_READING_MS);
  return () => {
    try {
      // A reading older than a second is from before a stall (the reader waiting for batch
      // credits takes none) or from a reader that has stopped: ask, which wakes a waiting reader
      // and fails for a stopped one, rather than show the table as it was before the trouble.
      const latest = source.latestStats();
      const s = latest && latest.ageMs <= STALE_READING_MS ? latest : source.stats();
      if (s.entries === null || s.max === null) return undefined;
      return { entries: s.entries, max: s.max, kernel: s.cpus };
    } catch {
      return undefined;
    }
  };
}

/**
 * A recording's `churn` lines carry the kernel's figures as they were; replay uses them at the same
 * tick, so a replayed snapshot equals the recorded one.
 */
export class RecordedTables {
  private readonly byTime = new Map<number, TableReading>();

  onRecord = (rec: AnyRecord): void => {
    if (rec.event !== 'churn') return;
    const t = rec.table as { entries: number | null; max: number | null; kernel?: Record<string, number> } | undefined;
    if (t && t.entries !== null && t.max !== null) this.byTime.set(rec.time, { entries: t.entries, max: t.max, kernel: t.kernel ?? {} });
  };

  reading = (time: number): TableReading | undefined => {
    const r = this.byTime.get(time);
    if (r) this.byTime.delete(time);
    return r;
  };
}
