/**
 * The one place a pipeline is composed. Commands parse their options, open a source, assemble,
 * run with the hooks that print or write, and report; none of them wires the stages itself.
 *
 *   live:   LiveSource → attribution (names each NEW's process) → OverflowRecovery → ChurnEngine (tracker: flows keep their owner) → hooks
 *           kernel table figures read at each tick; wall-clock ticks while the table is quiet;
 *           the per-event path warmed up on synthetic flows before the first batch (warmup.ts)
 *   replay: RecordingSource → ChurnEngine (tracker) → hooks     (replay, top --replay, report)
 *           the recorded table figures at the same tick; event time only, so replay == live
 *
 * Every live engine run gets overflow recovery: a lost event otherwise leaves a flow open in the
 * tracker for good (and `stats` would measure from a tracker that drifted from the table).
 */
import type { RuleSet } from '../alerts/evaluator.js';
import { ChurnEngine, type ChurnEngineOptions, type TableReading } from '../churn/engine.js';
import { readSnatPortRange } from './port-range.js';
import type { LiveSource } from '../source/live.js';
import { loadAddon } from '../source/native.js';
import { RecordingSource, type RecordingSourceOptions } from '../recording/input.js';
import type { EventSource } from '../source/types.js';
import type { Logger } from '../util/log.js';
import type { FlowAttribution } from './attribution.js';
import { Pipeline, type PipelineHooks, type PipelineOptions } from './pipeline.js';
import { OverflowRecovery, type Resyncable } from './recovery.js';
import { liveTable, RecordedTables } from './table.js';
import { EventTimeline, systemClock } from '../util/clock.js';
import { warmUp, type WarmUpOptions, type WarmUpResult } from './warmup.js';

export class Assembly<E extends ChurnEngine | undefined = ChurnEngine> {
  private pipeline?: Pipeline;

  constructor(
    readonly source: EventSource,
    readonly engine: E,
    private readonly options: Omit<PipelineOptions, 'engine' | 'attribution'> & { attribution?: FlowAttribution },
    private readonly log?: Logger,
    /** live engine assemblies: what the warm-up before the first batch runs like (warmup.ts) */
    private readonly warm?: Omit<WarmUpOptions, 'rules'>,
  ) {}

  get recovery(): OverflowRecovery | undefined {
    return this.options.recovery;
  }

  get attribution(): FlowAttribution | undefined {
    return this.options.attribution;
  }

  /** The kernel's table figures for a tick (live: read now; replay: as recorded; else none). */
  get table(): (time: number) => TableReading | undefined {
    return this.options.table ?? (() => undefined);
  }

  /** Snapshots taken so far. */
  get snapshots(): number {
    return this.pipeline?.snapshots ?? 0;
  }

  /**
   * Runs until the source ends; a resync is logged here, in the operator's words, before
   * `hooks.resync`. A live engine assembly first warms its per-event path up (warmup.ts), its
   * snapshots judged by `rules` when given (the rules the caller will judge real ones with);
   * events the kernel sends meanwhile wait in the reader's queue.
   */
  async run(hooks: PipelineHooks, rules?: RuleSet): Promise<void> {
    const log = this.log;
    // The first tick follows the second the run began in, as the events read meanwhile do: a
    // tick aligned after the warm-up would come a second late for events stamped before it (the
    // start-up dump's), which a replay, ticking from the first event, would not skip.
    const startUs = this.options.timeline?.now();
    if (this.warm) {
      // an optimisation: one that fails is said once, and the real run goes on without it
      try {
        const w = await warmUpLive({ ...this.warm, rules });
        log?.debug({ ms: w.ms, flows: w.flows, events: w.events, lines: w.lines, snapshots: w.snapshots, cut: w.cut, busy: w.busy, attribution: w.attribution }, w.flows === 0 ? 'skipped the warm-up of the per-event path: events were already waiting' : `warmed up the per-event path in ${w.ms} ms${w.busy ? ' (cut short: events were waiting)' : ''}`);
      } catch (err) {
        log?.warn(`the warm-up of the per-event path failed (${(err as Error).message}); running without it: the first second of load may lag`);
      }
    }
    const resync: PipelineHooks['resync'] = log
      ? (r) => {
          log.warn({ vanished: r.vanished, appeared: r.appeared, entries: r.entries, overflows: r.overflows, rcvbuf: r.rcvbuf }, OverflowRecovery.describe(r));
          return hooks.resync?.(r);
        }
      : hooks.resync;
    this.pipeline = new Pipeline(this.source, { ...hooks, resync }, { ...this.options, engine: this.engine, startUs });
    try {
      await this.pipeline.run();
    } finally {
      await this.options.attribution?.close();
    }
  }

  /** After run(): the ticks up to `timeUs` that no event reached (a recording's quiet tail). */
  async tickUntil(timeUs: number): Promise<void> {
    await this.pipeline?.tickUntil(timeUs);
  }
}

export interface LiveAssemblyOptions {
  /** false: events only, no engine work at all (plain `record`) */
  engine?: boolean;
  /** the mode chosen at start (src/process/attribution.ts), whose handle the source was opened
   * with; none: no attribution */
  attribution?: FlowAttribution;
  /** where a resync is logged (none: not logged) */
  log?: Logger;
  /** false: no warm-up before the first batch (a one-shot measurement such as `stats`) */
  warm?: boolean;
}

/**
 * When the warm-up gives way to events already waiting (the load is here): 4 096 of the kernel's
 * events. While it runs, the reader's queue and then the socket hold what comes; measured, at
 * 100 000 events/s they held 0.3 s of it but not 0.8 s (bench/README.md, "Started under load").
 * With this the warm-up stopped after 80–190 ms at 20 000–100 000 events/s, with no overflow
 * (bench/startload.mjs). Also when the reader's 64 batches are all a table dump's (64 Ki entries
 * or more): blocked in the dump, the reader sees none of the load that may be coming, and a table
 * that large is more often a busy one. A dump's records are not load and are not counted.
 */
export function warmUpGivesWay(waiting: { events: number; full: boolean }): boolean {
  return waiting.events >= 4096 || (waiting.full && waiting.events === 0);
}

/** The kernel as a source: its table figures each tick, wall-clock ticks, recovery, attribution. */
export function assembleLive(source: LiveSource, o: LiveAssemblyOptions & { engine: false }): Assembly<undefined>;
export function assembleLive(source: LiveSource, o?: LiveAssemblyOptions & { engine?: true }): Assembly;
export function assembleLive(source: LiveSource, o: LiveAssemblyOptions): Assembly<ChurnEngine | undefined>;
export function assembleLive(source: LiveSource, o: LiveAssemblyOptions = {}): Assembly<ChurnEngine | undefined> {
  if (o.engine === false) return new Assembly(source, undefined, {}, o.log);
  const updates = source.subscribed.includes('update');
  const engineOptions = { replies: updates, snatPortRange: readSnatPortRange(source.netns) };
  const engine = liveEngine(engineOptions, o.attribution);
  const warm = o.warm === false ? undefined
    : { layout: loadAddon().layout, netns: source.netns, engine: engineOptions, updates, attribution: o.attribution?.mode, busy: () => warmUpGivesWay(source.waiting) };
  return new Assembly(source, engine, liveOptions(source, engine, o.attribution, o.log), o.log, warm);
}

/** A live pipeline's engine: with attribution, flows keep their owner until they end and
 * snapshots list the top processes and groups. */
function liveEngine(options: Omit<ChurnEngineOptions, 'owners'>, a: FlowAttribution | undefined): ChurnEngine {
  return new ChurnEngine({ ...options, owners: a ? { nameGroups: (rows) => a.nameGroups(rows) } : undefined });
}

/** A live pipeline's stages (one literal: the warm-up's pipeline has the very same shape). */
function liveOptions(source: Parameters<typeof liveTable>[0] & Resyncable, engine: ChurnEngine, attribution: FlowAttribution | undefined, log: Logger | undefined) {
  return {
    wallClock: true,
    timeline: liveTimeline(log),
    table: liveTable(source),
    recovery: new OverflowRecovery(source, engine),
    attribution,
  };
}

/**
 * The warm-up (warmup.ts) through a throwaway assembly of the live kind: its synthetic source,
 * engine and attribution stage behind the same stages as assembleLive's, so what V8 compiles for
 * the warm-up is what the first real batch runs.
 */
export function warmUpLive(o: WarmUpOptions): Promise<WarmUpResult> {
  return warmUp(o, async (w) => {
    const engine = liveEngine(o.engine ?? {}, w.attribution);
    const throwaway = new Assembly(w.source, engine, liveOptions(w.source, engine, w.attribution, undefined));
    await throwaway.run(w.hooks(engine));
    return { snapshots: throwaway.snapshots };
  });
}

/**
 * Live event times across wall-clock steps (src/util/clock.ts), each step logged in the operator's
 * words: a backward one is not followed, so the log says how far ahead of the wall clock times run.
 */
function liveTimeline(log?: Logger): EventTimeline {
  const s = (us: number): number => Math.round(Math.abs(us) / 1e6);
  return new EventTimeline(systemClock, (step) =>
    log?.warn(
      { stepMs: Math.round(step.stepUs / 1000), aheadMs: Math.round(step.aheadUs / 1000) },
      step.stepUs < 0
        ? `the wall clock stepped back ${s(step.stepUs)} s: event times keep running on the monotonic clock, ${s(step.aheadUs)} s ahead of it until it steps forward again or ctwatch restarts`
        : `the wall clock stepped forward ${s(step.stepUs)} s: event times follow it${step.aheadUs > 0 ? `, still ${s(step.aheadUs)} s ahead` : ''}`,
    ),
  );
}

/**
 * A recording as a source, checked (a missing file or a device is refused now, not mid-run). Its
 * other records (churn, alert, ...) lend their table figures to the replayed ticks, then go to
 * `onOther`.
 */
export async function assembleReplay(file: string, o: RecordingSourceOptions = {}): Promise<Assembly> {
  const tables = new RecordedTables();
  const onOther = o.onOther;
  const source = new RecordingSource(file, {
    ...o,
    onOther: onOther ? (rec) => { tables.onRecord(rec); onOther(rec); } : tables.onRecord,
  });
  await source.check();
  return new Assembly(source, new ChurnEngine(), { table: tables.reading });
}
