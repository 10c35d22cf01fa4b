/**
 * The live event source: the kernel's conntrack events for one network namespace, as an async
 * iterable of batches. Backpressure runs end to end: the addon hands over at most `maxBatches`
 * batches that JavaScript has not taken yet; a consumer that stops pulling stops the reader thread,
 * and the kernel then reports the loss (ENOBUFS) as an `overflow` event in the stream.
 */
import { CtwatchError, EXIT, fromNativeError } from '../util/errors.js';
import { netnsPath } from '../util/netns.js';
import { loadAddon, type KernelStats, type NativeAttribution, type NativeJoinCounters, type NativeReader } from './native.js';
import { KIND, makeDecoder } from './decode.js';
import { compileFilters } from './filter.js';
import type { ConntrackEvent, EventSource, SourceCounters, SourceEvent } from './types.js';

export type SubscribedEvent = 'new' | 'update' | 'destroy';

export interface LiveSourceOptions {
  /** a name under /run/netns, or a path such as /proc/PID/ns/net; absent: our own namespace */
  netns?: string;
  /** which kernel events to subscribe to; default new + destroy (updates are 3-6× the volume) */
  events?: SubscribedEvent[];
  /** receive buffer in bytes; default 32 MiB (the kernel doubles it) */
  rcvbuf?: number;
  /** NETLINK_BROADCAST_SEND_ERROR + NETLINK_NO_ENOBUFS: see the README before turning it on */
  reliable?: boolean;
  /** records per batch handed to JavaScript */
  batchSize?: number;
  /** batches JavaScript may hold before the reader stops reading */
  maxBatches?: number;
  /** longest an event waits in a partial batch (ms); default 2: the kernel → line latency starts
   * here, and at a high rate a batch fills (batchSize) before that anyway */
  flushMs?: number;
  /** --filter expressions (src/source/filter.ts): run by the kernel where it can */
  filter?: string[];
  /** dump the existing table after subscribing (as `snapshot` events, then `snapshot_done`) */
  snapshot?: boolean;
  /** an opened attribution handle (src/process/attribution.ts): NEW and snapshot events carry
   * their owner */
  attribution?: NativeAttribution;
}

export const DEFAULT_RCVBUF = 32 * 1024 * 1024;
const GROUP_BITS: Record<SubscribedEvent, number> = { new: 1, update: 2, destroy: 4 };

export function parseEventList(text: string): SubscribedEvent[] {
  const list = text.split(',').map((s) => s.trim().toLowerCase()).filter(Boolean);
  if (list.length === 0) throw new CtwatchError('ERR_EVENTS', `--events is empty: use a comma list of new,update,destroy`, { exitCode: EXIT.usage });
  for (const e of list) {
    if (!(e in GROUP_BITS)) {
      throw new CtwatchError('ERR_EVENTS', `unknown event type '${e}' in --events: use a comma list of new,update,destroy`, { exitCode: EXIT.usage });
    }
  }
  return list as SubscribedEvent[];
}

export class LiveSource implements EventSource {
  readonly netns?: string;
  private readonly reader: NativeReader;
  private readonly decode: ReturnType<typeof makeDecoder>;
  private readonly pending: ArrayBuffer[] = [];
  private readonly maxBatches: number;
  private waiter: (() => void) | undefined;
  private readonly recordSize: number;
  private readonly endKind: number;
  private ended = false;
  /** resolves when the reader's final batch (ending in the end marker) has reached JavaScript */
  private readonly endReceived: Promise<void>;
  private resolveEndReceived!: () => void;
  private closed = false;
  /** errnos of failed dumps, for the caller to report */
  readonly dumpErrors: number[] = [];
  /** what the filter could not do in the kernel and does in user space instead */
  readonly filterNotes: string[] = [];
  /** events the user-space part of the filter dropped */
  filteredInUserSpace = 0;
  private readonly userFilter?: (e: ConntrackEvent) => boolean;

  /** the kernel events subscribed to */
  readonly subscribed: readonly SubscribedEvent[];

  constructor(options: LiveSourceOptions = {}) {
    const addon = loadAddon();
    const events = options.events ?? ['new', 'destroy'];
    this.subscribed = events;
    let groups = 0;
    for (const e of events) groups |= GROUP_BITS[e];
    const rcvbuf = options.rcvbuf ?? DEFAULT_RCVBUF;
    if (!Number.isInteger(rcvbuf) || rcvbuf < 4096 || rcvbuf > 1 << 30) {
      throw new CtwatchError('ERR_RCVBUF', `receive buffer ${rcvbuf} is out of range: use 4K to 1G, e.g. 32M`, { exitCode: EXIT.usage });
    }
    this.netns = options.netns;
    const compiled = compileFilters(options.filter ?? []);
    this.filterNotes.push(...compiled.notes);
    const user = compiled.user;
    const dumped = compiled.kernelMatch;
    // Dumps come on another socket the kernel filter does not cover: apply its rules here.
    this.userFilter = user || dumped
      ? (e) => (user ? user(e) : true) && (e.event !== 'snapshot' || !dumped || dumped(e))
      : undefined;
    this.decode = makeDecoder(addon.layout, options.netns);
    this.recordSize = addon.layout.size;
    this.endKind = KIND.end;
    this.endReceived = new Promise((resolve) => (this.resolveEndReceived = resolve));
    this.maxBatches = options.maxBatches ?? 64;
    this.reader = new addon.Reader(
      {
        netns: options.netns === undefined ? undefined : netnsPath(options.netns),
        groups,
        rcvbuf,
        reliable: options.reliable ?? false,
        batchSize: options.batchSize ?? 1024,
        maxBatches: this.maxBatches,
        flushMs: options.flushMs ?? 2,
        filter: compiled.kernel,
        attribution: options.attribution,
      },
      (batch) => this.onBatch(batch),
    );
    try {
      this.reader.open();
    } catch (err) {
      throw fromNativeError(err);
    }
    if (options.snapshot) this.reader.dump();
  }

  private onBatch(batch: ArrayBuffer): void {
    this.pending.push(batch);
    // The end marker is always the last record of the reader's last batch.
    if (this.lastKind(batch) === this.endKind) {
      this.resolveEndReceived();
    }
    const w = this.waiter;
    this.waiter = undefined;
    w?.();
  }

  /** The kind of a batch's last record (0 for an empty batch). */
  private lastKind(batch: ArrayBuffer): number {
    const n = Math.floor(batch.byteLength / this.recordSize);
    return n === 0 ? 0 : new Uint8Array(batch, (n - 1) * this.recordSize, 1)[0];
  }

  /** What the reader handed over that the pipeline has not taken yet: batches, the kernel's
   * events in them (a table dump's not counted: the reader hands a dump over in batches of its
   * own, ending in a dump record), and whether the reader may hand over no more (it stops
   * reading). Counted when asked (the warm-up asks; at most maxBatches batches), not per batch. */
  get waiting(): { batches: number; events: number; full: boolean } {
    let events = 0;
    for (const b of this.pending) {
      const last = this.lastKind(b);
      if (last !== KIND.snapshot && last !== KIND.snapshotDone) events += Math.floor(b.byteLength / this.recordSize);
    }
    return { batches: this.pending.length, events, full: this.pending.length >= this.maxBatches };
  }

  get counters(): SourceCounters {
    const c = this.reader.counters();
    return { events: c.events, batches: c.batches, overflows: c.overflows, decodeErrors: c.decodeErrors, queueHighWater: c.queueHighWater, rcvbuf: c.rcvbuf };
  }

  /** the reader's join, when attribution is on */
  get attribution(): NativeJoinCounters | undefined {
    return this.reader.counters().attribution;
  }

  /** entries, limit and the kernel's per-CPU counters for this namespace (netlink, not procfs) */
  stats(): KernelStats {
    try {
      return this.reader.stats();
    } catch (err) {
      throw fromNativeError(err);
    }
  }

  /**
   * The table statistics the reader thread read last, taken every `statsEvery(ms)` on its own
   * clock: the caller never waits for a busy reader thread. null before the first reading.
   */
  latestStats(): (KernelStats & { ageMs: number }) | null {
    try {
      return this.reader.latestStats();
    } catch (err) {
      throw fromNativeError(err);
    }
  }

  statsEvery(ms: number): void {
    this.reader.statsEvery(ms);
  }

  /** ask for a table dump: `snapshot` events followed by one `snapshot_done` */
  dump(): void {
    this.reader.dump();
  }

  setReceiveBuffer(bytes: number): void {
    this.reader.setRcvbuf(bytes);
  }

  /** let the process exit even while the source is open (e.g. a one-shot `stats`) */
  unref(): void {
    this.reader.unref();
  }

  async *[Symbol.asyncIterator](): AsyncIterator<SourceEvent[]> {
    for (;;) {
      const buffer = this.pending.shift();
      if (buffer === undefined) {
        if (this.ended) return;
        await new Promise<void>((resolve) => (this.waiter = resolve));
        continue;
      }
      // The batch is ours now: give its credit back so the reader can hand over another.
      if (!this.closed) this.reader.release();
      const { events, end, dumpErrors } = this.decode(buffer);
      if (dumpErrors.length) this.dumpErrors.push(...dumpErrors);
      // An end we did not ask for: the reader thread failed (out of memory, ...). Say why, loudly.
      const failure = end && !this.closed ? this.reader.failure() : null;
      if (end) this.ended = true;
      const keep = this.userFilter;
      let out = events;
      if (keep) {
        out = events.filter((e) => (e.event === 'overflow' || e.event === 'snapshot_done' ? true : keep(e)));
        this.filteredInUserSpace += events.length - out.length;
      }
      if (out.length > 0) yield out;
      if (failure) throw fromNativeError(failure);
    }
  }

  /** Stops reading; events already read are still delivered, then iteration ends. */
  async close(): Promise<void> {
    if (!this.closed) {
      this.closed = true;
      this.reader.close();
    }
    await this.endReceived;
  }
}
