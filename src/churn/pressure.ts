/**
 * Table pressure: how full the kernel's conntrack table is, how fast it fills and when it will be
 * full, plus the kernel's per-CPU statistics (drop, early_drop, insert_failed, ...) summed.
 * Pure functions on samples; the engine keeps the samples.
 */

import type { TablePressure } from './snapshot.js';
import { US_PER_S } from './window.js';

/** One reading of the table size. */
export interface TableSample {
  /** µs since epoch */
  time: number;
  entries: number;
}

/** Kernel statistics by counter name, e.g. { drop: 3, early_drop: 0, insert_failed: 1 }. */
export type KernelStats = Record<string, number>;

export const GROWTH_WINDOW_US = 10 * US_PER_S;

/**
 * Net growth in entries per second over (t − 10 s, t]: the least-squares slope through the samples
 * in that window. Least squares rather than last-minus-first so that one sample taken during a
 * burst of expiries (the kernel's garbage collector frees entries in batches) does not swing the
 * figure. 0 with fewer than two samples or when they all share one time.
 */
export function growthRate(
  samples: readonly TableSample[],
  t: number,
  windowUs: number = GROWTH_WINDOW_US,
): number {
  const from = t - windowUs;
  let n = 0;
  let sx = 0;
  let sy = 0;
  for (const s of samples) {
    if (s.time <= from || s.time > t) continue;
    n++;
    sx += s.time;
    sy += s.entries;
  }
  if (n < 2) return 0;
  // Centred sums: times are ~1.7e15 µs, whose squares would lose all precision.
  const mx = sx / n;
  const my = sy / n;
  let sxx = 0;
  let sxy = 0;
  for (const s of samples) {
    if (s.time <= from || s.time > t) continue;
    const dx = (s.time - mx) / US_PER_S;
    sxx += dx * dx;
    sxy += dx * (s.entries - my);
  }
  return sxx > 0 ? sxy / sxx : 0;
}

/** Seconds until entries reach max at `growth` entries/s; null when not growing (or no limit known),
 * 0 when already full. */
export function timeToFull(entries: number, max: number, growth: number): number | null {
  if (!(max > 0)) return null;
  if (entries >= max) return 0;
  if (!(growth > 0)) return null;
  return (max - entries) / growth;
}

/** entries / max, or null when either is unknown or max is 0. */
export function fillRatio(entries: number | null, max: number | null): number | null {
  if (entries === null || max === null || !(max > 0)) return null;
  return entries / max;
}

/** Sums per-CPU statistic records into one total per counter name. */
export function sumPerCpu(records: readonly KernelStats[]): KernelStats {
  const total: KernelStats = {};
  for (const r of records) {
    for (const name in r) total[name] = (total[name] ?? 0) + r[name];
  }
  return total;
}

/** The kernel's counters as one total per name, whether read per CPU (live) or already summed
 * (a recording's `churn` line). */
export function kernelTotals(k: KernelStats | readonly KernelStats[] | undefined): KernelStats {
  if (k === undefined) return {};
  return Array.isArray(k) ? sumPerCpu(k) : { ...(k as KernelStats) };
}

/**
 * What each counter added between two totals. A counter that went down was reset (module reload,
 * CPU hot-unplug), so its delta is its current value, as Prometheus treats counter resets; a
 * counter absent from `prev` counts from 0.
 */
export function statsDelta(prev: KernelStats, cur: KernelStats): KernelStats {
  const delta: KernelStats = {};
  for (const name in cur) {
    const before = prev[name] ?? 0;
    delta[name] = cur[name] >= before ? cur[name] - before : cur[name];
  }
  return delta;
}

/** The snapshot's table block. entries/max are null when unknown (a replay without stats). */
export function tablePressure(
  entries: number | null,
  max: number | null,
  growth: number,
  kernel: KernelStats,
): TablePressure {
  return {
    entries,
    max,
    fill: fillRatio(entries, max),
    growth,
    timeToFull: entries === null || max === null ? null : timeToFull(entries, max, growth),
    kernel,
  };
}

/** Appends a sample and drops those too old to matter for growth. */
export function pushSample(samples: TableSample[], sample: TableSample): void {
  samples.push(sample);
  let old = 0;
  while (old < samples.length && samples[old].time <= sample.time - GROWTH_WINDOW_US) old++;
  if (old > 0) samples.splice(0, old);
}
