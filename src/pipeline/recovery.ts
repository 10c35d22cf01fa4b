/**
 * Overflow recovery, after conntrackd: when the kernel reports that it dropped events for us
 * (ENOBUFS), count it, grow the receive buffer (doubling, up to a maximum), and after a short
 * back-off dump the table and reconcile the flow tracker with it: flows that vanished while we
 * were deaf end with reason `resync`, flows we never saw are added (marked as seen late). A
 * permanently overloaded host does not dump in a loop: resyncs are at least `minIntervalMs` apart.
 * A dump that failed part way shows only part of the table: reconciling with it would end live
 * flows as `resync`. Nothing is ended then; the record says the dump failed, and the dump is
 * tried again after the back-off.
 */
import { constants } from 'node:os';
import type { ChurnEngine } from '../churn/engine.js';
import type { FlowEnd } from '../flow/types.js';
import type { SourceEvent } from '../source/types.js';
import { monoMs } from '../util/clock.js';

/** What a live source must offer for recovery. */
export interface Resyncable {
  dump(): void;
  setReceiveBuffer(bytes: number): void;
  readonly counters: { rcvbuf: number; overflows: number };
}

export interface RecoveryOptions {
  /** receive buffer ceiling in bytes (what the kernel reports; it doubles requests) */
  maxRcvbuf?: number;
  /** wait this long after an overflow before dumping, so a burst can pass */
  backoffMs?: number;
  /** at most one resync per this many ms */
  minIntervalMs?: number;
  now?: () => number;
}

/** The `resync` record: what a resync found. */
export interface ResyncRecord {
  event: 'resync';
  time: number;
  /** flows we held that the table no longer had: ended with reason `resync` */
  vanished: number;
  /** entries the table had that we did not know: added as seen late */
  appeared: number;
  /** entries in the dump */
  entries: number;
  /** overflows since the previous resync */
  overflows: number;
  /** the dump failed part way with this errno: nothing was reconciled (vanished is 0), a retry follows */
  failed?: number;
  /** receive buffer now, bytes */
  rcvbuf: number;
  netns?: string;
}

export class OverflowRecovery {
  private readonly maxRcvbuf: number;
  private readonly backoffMs: number;
  private readonly minIntervalMs: number;
  private readonly now: () => number;
  private pending: NodeJS.Timeout | undefined;
  private dumping = false;
  private dumpStartedUs = 0;
  private lastResyncMs = -Infinity;
  private overflowsSince = 0;
  private ids = new Set<number>();
  private appeared = 0;
  resyncs = 0;
  /** dumps that failed part way (not reconciled, retried) */
  failedDumps = 0;
  private failedStreak = 0;

  constructor(
    private readonly source: Resyncable,
    private readonly engine: ChurnEngine,
    options: RecoveryOptions = {},
  ) {
    this.maxRcvbuf = options.maxRcvbuf ?? 512 * 1024 * 1024;
    this.backoffMs = options.backoffMs ?? 1000;
    this.minIntervalMs = options.minIntervalMs ?? 30_000;
    // intervals and back-off: the monotonic clock, which a wall-clock step cannot stretch
    this.now = options.now ?? monoMs;
  }

  /** Before the engine sees `part`: note overflows, and which dumped entries are news to us. */
  before(part: readonly SourceEvent[]): void {
    for (const e of part) {
      if (e.event === 'overflow') this.onOverflow();
      else if (e.event === 'snapshot' && this.dumping) {
        // The reader stamps events when it reads them, and it runs the dump between reads: events
        // stamped before the dump's first entry were read before the dump began, however late the
        // kernel sent them, so this (not our request time) divides "older than the dump" from
        // "newer".
        if (Number.isNaN(this.dumpStartedUs)) this.dumpStartedUs = e.time;
        this.ids.add(e.id);
        if (!this.engine.tracker.has(e.id)) this.appeared++;
      }
    }
  }

  /** After the engine saw `part`: when our dump has completed, reconcile. */
  after(part: readonly SourceEvent[]): { flows: FlowEnd[]; record?: ResyncRecord } {
    if (!this.dumping) return { flows: [] };
    const done = part.find((e) => e.event === 'snapshot_done');
    if (!done) return { flows: [] };
    if (done.failed) {
      const record: ResyncRecord = {
        event: 'resync',
        time: done.time,
        vanished: 0,
        appeared: this.appeared,
        entries: this.ids.size,
        overflows: this.overflowsSince,
        rcvbuf: this.source.counters.rcvbuf,
        failed: done.failed,
        ...(done.netns !== undefined ? { netns: done.netns } : {}),
      };
      this.dumping = false;
      this.ids = new Set();
      this.appeared = 0;
      this.failedDumps++;
      // again after the back-off, doubling while it keeps failing (never more than minIntervalMs)
      this.failedStreak++;
      this.schedule(this.now() + Math.min(this.backoffMs * 2 ** (this.failedStreak - 1), this.minIntervalMs));
      return { flows: [], record };
    }
    this.failedStreak = 0;
    const flows = this.engine.reconcile(this.ids, done.time, Number.isNaN(this.dumpStartedUs) ? done.time : this.dumpStartedUs);
    const record: ResyncRecord = {
      event: 'resync',
      time: done.time,
      vanished: flows.length,
      appeared: this.appeared,
      entries: this.ids.size,
      overflows: this.overflowsSince,
      rcvbuf: this.source.counters.rcvbuf,
      ...(done.netns !== undefined ? { netns: done.netns } : {}),
    };
    this.dumping = false;
    this.ids = new Set();
    this.appeared = 0;
    this.overflowsSince = 0;
    this.resyncs++;
    return { flows, record };
  }

  private onOverflow(): void {
    this.overflowsSince++;
    const current = this.source.counters.rcvbuf;
    if (current > 0 && current < this.maxRcvbuf) {
      // The kernel doubles what it is asked for and reports the doubled size: asking for the
      // current size doubles the buffer.
      this.source.setReceiveBuffer(Math.min(current, this.maxRcvbuf / 2));
    }
    if (this.pending || this.dumping) return;
    this.schedule(Math.max(this.now() + this.backoffMs, this.lastResyncMs + this.minIntervalMs));
  }

  private schedule(at: number): void {
    if (this.pending || this.dumping) return;
    this.pending = setTimeout(() => {
      this.pending = undefined;
      this.dumping = true;
      this.lastResyncMs = this.now();
      this.dumpStartedUs = NaN;
      this.source.dump();
    }, Math.max(0, at - this.now()));
    this.pending.unref();
  }

  /** One log line for a resync record, in the operator's words. */
  static describe(r: ResyncRecord): string {
    return r.failed
      ? `a table dump after lost events failed (${errnoName(r.failed)}): nothing was reconciled, no flow was ended; trying again`
      : 'resynchronised with the kernel table after lost events';
  }

  stop(): void {
    if (this.pending) clearTimeout(this.pending);
    this.pending = undefined;
  }
}

function errnoName(errno: number): string {
  const name = Object.entries(constants.errno).find(([, n]) => n === errno)?.[0];
  return name ? `${name}, errno ${errno}` : `errno ${errno}`;
}
