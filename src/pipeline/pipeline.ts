/**
 * Drives the flow engine from any event source: live or a recording, the same code. Snapshots are
 * taken on whole-second boundaries of *event time* (just before the first event at or past the
 * boundary), so a recording replayed gives the same snapshots as the live run that made it. A live
 * source also ticks on the wall clock when the table is quiet, a little after the boundary (`grace`)
 * so that events read before it have arrived.
 *
 * Live event times are re-timed onto an EventTimeline (src/util/clock.ts) before anything sees them:
 * a backward step of the wall clock must not stop snapshots, alerts and deliveries for its length.
 */
import type { ChurnEngine, TableReading } from '../churn/engine.js';
import type { ChurnSnapshot } from '../churn/snapshot.js';
import type { FlowEnd } from '../flow/types.js';
import type { EventSource, SourceEvent } from '../source/types.js';
import type { OverflowRecovery, ResyncRecord } from './recovery.js';
import type { FlowAttribution } from './attribution.js';
import { EventTimeline } from '../util/clock.js';

export interface PipelineHooks {
  /** every batch as it came from the source (before the engine sees it) */
  events?(batch: SourceEvent[]): void | Promise<void>;
  /** flows that ended in a batch */
  flows?(flows: FlowEnd[]): void | Promise<void>;
  /** the engine's view at each tick */
  snapshot?(snap: ChurnSnapshot): void | Promise<void>;
  /** a resync after overflow finished (its vanished flows went to `flows`) */
  resync?(record: ResyncRecord): void | Promise<void>;
}

export interface PipelineOptions {
  /** absent: events only (plain `record`), no engine work at all */
  engine?: ChurnEngine;
  /** µs between snapshots; default 1 s */
  tickUs?: number;
  /** the kernel's table statistics for a tick (live: read now; replay: as recorded) */
  table?: (time: number) => TableReading | undefined;
  /** tick on the wall clock too, and re-time events across its steps (live sources) */
  wallClock?: boolean;
  /** the timeline for wallClock; default one on the system clocks */
  timeline?: EventTimeline;
  /** wallClock: when the run began (µs, on the timeline), if before run() (the warm-up ran
   * first); the first tick is the next whole second after it */
  startUs?: number;
  graceUs?: number;
  /** overflow recovery (live sources): grow the buffer, dump, reconcile */
  recovery?: OverflowRecovery;
  /** process attribution (live sources): one stage before everything else sees a batch, naming
   * each new flow's process on its event (the engine keeps it for the flow's end) */
  attribution?: Pick<FlowAttribution, 'enrich'>;
}

/** After this many empty ticks in a row, every window is empty: skip ahead instead of emitting
 * identical snapshots for a long quiet gap. */
const MAX_QUIET_TICKS = 61;

/**
 * Longest run of batch processing without a turn of the event loop (ms). Batches a source already
 * holds come back as resolved promises, so a backlog (the first second of load, what queued behind
 * a tick or a collection) was processed in one chain of microtasks: no write completed meanwhile,
 * so the lines of its first batch reached the file only after its last batch was processed (up to
 * 64 batches of 1024 events: hundreds of ms; bench/README.md "The JavaScript thread: idle keys,
 * and the event loop turning during a backlog"). A turn lets the output's finished write hand the
 * next lines to the kernel.
 */
const TURN_EVERY_MS = 1;
const turn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

export class Pipeline {
  private readonly engine?: ChurnEngine;
  private readonly tickUs: number;
  private readonly graceUs: number;
  private nextTick = NaN;
  private busy: Promise<void> = Promise.resolve();
  private readonly timeline?: EventTimeline;
  snapshots = 0;

  constructor(
    private readonly source: EventSource,
    private readonly hooks: PipelineHooks,
    private readonly options: PipelineOptions = {},
  ) {
    this.engine = options.engine;
    this.tickUs = options.tickUs ?? 1_000_000;
    this.graceUs = options.graceUs ?? 100_000;
    if (options.wallClock) this.timeline = options.timeline ?? new EventTimeline();
  }

  async run(): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    const timeline = this.timeline;
    /** between taking a batch and asking the source for the next: its hooks may wait (a full
     * output), the loop may turn, and more batches may be waiting meanwhile */
    let behind = false;
    if (this.engine && timeline) {
      this.nextTick = this.align(this.options.startUs ?? timeline.now());
      timer = setInterval(() => {
        // A quiet table's tick, so only while the source has nothing: events still waiting are
        // older than the wall clock and must reach the engine before their second's tick, as in
        // a replay of them (while batches come, their own times cross the boundaries).
        if (behind) return;
        // Only between batches: ticks run in the same queue as batch processing.
        this.busy = this.busy.then(() => this.ticksUpTo(timeline.now() - this.graceUs));
      }, 100);
    }
    try {
      let turned = performance.now();
      for await (const batch of this.source) {
        behind = true;
        // before anyone sees the batch, so recordings hold the times the engine used
        timeline?.align(batch);
        // Batches and wall-clock ticks share one queue, so a tick never lands inside a batch.
        this.busy = this.busy.then(() => this.process(batch));
        await this.busy;
        if (performance.now() - turned >= TURN_EVERY_MS) {
          await turn();
          turned = performance.now();
        }
        behind = false;
      }
      await this.busy;
    } finally {
      if (timer) clearInterval(timer);
      this.options.recovery?.stop();
    }
  }

  /**
   * After run(): the ticks up to `timeUs` that no event reached. A recording's quiet tail (churn
   * lines after the last event) is replayed this way by `report`, which shows the whole recording.
   */
  async tickUntil(timeUs: number): Promise<void> {
    await this.ticksUpTo(timeUs);
  }

  private align(timeUs: number): number {
    return Math.ceil(timeUs / this.tickUs) * this.tickUs;
  }

  /**
   * Splits the batch at tick boundaries: for each part, the ticks it crosses come first, then its
   * events, so a recording holds each `churn` line before the events after its boundary, and a
   * replay finds the recorded kernel figures when it reaches the same tick.
   */
  private async process(batch: SourceEvent[]): Promise<void> {
    this.options.attribution?.enrich(batch);
    if (!this.engine) {
      if (this.hooks.events) await this.hooks.events(batch);
      return;
    }
    if (Number.isNaN(this.nextTick) && batch.length > 0) this.nextTick = this.align(batch[0].time + 1);
    let start = 0;
    for (let i = 0; i <= batch.length; i++) {
      const boundary = i === batch.length || batch[i].time >= this.nextTick;
      if (!boundary) continue;
      if (i > start) {
        const part = start === 0 && i === batch.length ? batch : batch.slice(start, i);
        const recovery = this.options.recovery;
        recovery?.before(part);
        if (this.hooks.events) await this.hooks.events(part);
        await this.deliverFlows(this.engine.ingest(part));
        if (recovery) {
          const r = recovery.after(part);
          await this.deliverFlows(r.flows);
          if (r.record && this.hooks.resync) await this.hooks.resync(r.record);
        }
      }
      if (i < batch.length) await this.ticksUpTo(batch[i].time);
      start = i;
    }
  }

  private async deliverFlows(flows: FlowEnd[]): Promise<void> {
    if (flows.length > 0 && this.hooks.flows) await this.hooks.flows(flows);
  }

  private async ticksUpTo(timeUs: number): Promise<void> {
    if (!this.engine || Number.isNaN(this.nextTick)) return;
    let emitted = 0;
    while (timeUs >= this.nextTick) {
      if (emitted === MAX_QUIET_TICKS) {
        // Jump to the last boundary before timeUs; the windows are empty by now.
        this.nextTick = Math.floor(timeUs / this.tickUs) * this.tickUs;
      }
      const t = this.nextTick;
      this.nextTick += this.tickUs;
      const snap = this.engine.snapshot(t, this.options.table?.(t));
      this.snapshots++;
      emitted++;
      if (this.hooks.snapshot) await this.hooks.snapshot(snap);
    }
  }
}
