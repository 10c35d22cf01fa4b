/**
 * The figures of an incident report: a recording replayed through the same engine and alert rules
 * as `ctwatch replay` and `ctwatch watch`, kept as one point per second of recorded time. The page
 * (html.ts) only draws what is collected here, so a test can hold the two side by side.
 */
import { AlertEvaluator, defaultConfig, type AlertConfig } from '../alerts/index.js';
import type { Alert } from '../alerts/types.js';
import type { ChurnSnapshot, KeyChurn } from '../churn/snapshot.js';
import { assembleReplay } from '../pipeline/assemble.js';
import type { AnyRecord } from '../recording/schema.js';
import { destinationOf } from '../flow/keys.js';

/** One second of the recording, as the replayed snapshot saw it. */
export interface ReportPoint {
  /** µs since epoch (recorded time) */
  time: number;
  /** kernel table figures, from the recording's churn lines; null when it has none */
  entries: number | null;
  max: number | null;
  fill: number | null;
  timeToFull: number | null;
  growth: number;
  /** flows the engine tracked */
  live: number;
  new1: number;
  end1: number;
  timeWait: number;
  /** kernel drop + early_drop + insert_failed, as counted by the kernel (cumulative) */
  drops: number | null;
  /** live entries unreplied for over 5 s, and the destination with most of them; null without UPDATE events */
  unrepliedStale: number | null;
  unrepliedTop?: { key: string; stale: number; dnat: number };
}

/** One destination's or process's new flows per second at each point; null: not in that second's top list. */
export interface KeySeries {
  key: string;
  values: (number | null)[];
  /** new connections: NEW events counted exactly (destinations, sources), or, for processes (whose
   * names come from the recorded churn lines), the sum of the per-second rates while listed */
  total: number;
  /** total is a sum of rates, not a count */
  approximate: boolean;
  peak: number;
  peakAt: number;
}

export interface ReportData {
  file: string;
  netns?: string;
  points: ReportPoint[];
  destinations: KeySeries[];
  sources: KeySeries[];
  processes: KeySeries[];
  /** alerts the built-in (or given) rules raise on the replay, and those the recording holds */
  alerts: Alert[];
  recordedAlerts: AnyRecord[];
  events: number;
  /** NEW events in the recording */
  newConnections: number;
  overflows: number;
  skippedLines: number;
}

export interface CollectOptions {
  rules?: AlertConfig;
  /** destinations / sources / processes kept as series (default 5) */
  topN?: number;
  onError?: 'stop' | 'skip';
}

const DROP_COUNTERS = ['drop', 'early_drop', 'insert_failed'];

function drops(kernel: Record<string, number>): number | null {
  let sum = 0;
  let any = false;
  for (const k of DROP_COUNTERS) {
    if (typeof kernel[k] === 'number') {
      sum += kernel[k];
      any = true;
    }
  }
  return any ? sum : null;
}

/**
 * Per-key series from each point's top list, the `n` keys with most new connections first:
 * counted (`counts`) when given, else the sum of the per-second rates.
 */
export function keySeries(lists: (readonly KeyChurn[] | undefined)[], times: readonly number[], n: number, counts?: ReadonlyMap<string, number>): KeySeries[] {
  const byKey = new Map<string, KeySeries>();
  lists.forEach((list, i) => {
    for (const k of list ?? []) {
      let s = byKey.get(k.key);
      if (!s) {
        s = { key: k.key, values: new Array<number | null>(lists.length).fill(null), total: counts ? counts.get(k.key) ?? 0 : 0, approximate: !counts, peak: 0, peakAt: times[i] };
        byKey.set(k.key, s);
      }
      s.values[i] = k.new1;
      if (!counts) s.total += k.new1;
      if (k.new1 > s.peak) {
        s.peak = k.new1;
        s.peakAt = times[i];
      }
    }
  });
  return [...byKey.values()]
    .sort((a, b) => b.total - a.total || (a.key < b.key ? -1 : a.key > b.key ? 1 : 0))
    .slice(0, n);
}

export function pointOf(s: ChurnSnapshot): ReportPoint {
  return {
    time: s.time,
    entries: s.table.entries,
    max: s.table.max,
    fill: s.table.fill,
    timeToFull: s.table.timeToFull,
    growth: s.table.growth,
    live: s.live,
    new1: s.overall.new1,
    end1: s.overall.end1,
    timeWait: s.states.TIME_WAIT ?? 0,
    drops: drops(s.table.kernel),
    unrepliedStale: s.unreplied ? s.unreplied.stale : null,
    ...(s.unreplied?.destinations[0] ? { unrepliedTop: { key: s.unreplied.destinations[0].key, stale: s.unreplied.destinations[0].stale, dnat: s.unreplied.destinations[0].dnat } } : {}),
  };
}

/** Replays `file` and keeps what the page shows. */
export async function collectReport(file: string, options: CollectOptions = {}): Promise<ReportData> {
  const recordedAlerts: AnyRecord[] = [];
  /** processes are looked up live only: the recording's churn lines carry them */
  const recordedProcesses = new Map<number, KeyChurn[]>();
  /** the last churn line's time: the live run's ticks went on after the last event */
  let lastTick = NaN;
  const onOther = (rec: AnyRecord) => {
    if (rec.event === 'churn') lastTick = rec.time;
    if (rec.event === 'alert' || rec.event === 'resolved') recordedAlerts.push(rec);
    if (rec.event === 'churn' && Array.isArray(rec.processes)) recordedProcesses.set(rec.time, rec.processes as KeyChurn[]);
  };
  const assembly = await assembleReplay(file, { onOther, onError: options.onError });
  const source = assembly.source;
  const evaluator = new AlertEvaluator(options.rules ?? defaultConfig());
  const snaps: ChurnSnapshot[] = [];
  const alerts: Alert[] = [];
  let netns: string | undefined;
  let newConnections = 0;
  const byDestination = new Map<string, number>();
  const bySource = new Map<string, number>();
  await assembly.run({
    events: (batch) => {
      for (const ev of batch) {
        if (ev.event !== 'new') continue;
        newConnections++;
        const d = destinationOf(ev);
        byDestination.set(d, (byDestination.get(d) ?? 0) + 1);
        bySource.set(ev.src, (bySource.get(ev.src) ?? 0) + 1);
      }
    },
    snapshot: (snap) => {
      netns ??= snap.netns;
      snaps.push(snap);
      alerts.push(...evaluator.evaluate(snap));
    },
  });
  if (!Number.isNaN(lastTick)) await assembly.tickUntil(lastTick);
  const n = options.topN ?? 5;
  const times = snaps.map((s) => s.time);
  return {
    file,
    ...(netns !== undefined ? { netns } : {}),
    points: snaps.map(pointOf),
    destinations: keySeries(snaps.map((s) => s.destinations), times, n, byDestination),
    sources: keySeries(snaps.map((s) => s.sources), times, n, bySource),
    processes: keySeries(snaps.map((s) => s.processes ?? recordedProcesses.get(s.time)), times, n),
    alerts,
    recordedAlerts,
    events: source.counters.events,
    newConnections,
    overflows: source.counters.overflows,
    skippedLines: source.counters.decodeErrors,
  };
}
