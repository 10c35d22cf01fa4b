/** Where a tick's kernel table figures come from: the kernel (live) or the recording (replay). */
import type { TableReading } from '../churn/engine.js';
import type { LiveSource } from '../source/live.js';
import type { AnyRecord } from '../recording/schema.js';

/** Reads entries, limit and per-CPU counters from the kernel at each tick (netlink, ~ms). */
export function liveTable(source: LiveSource): (time: number) => TableReading | undefined {
  return () => {
    try {
      const s = source.stats();
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
