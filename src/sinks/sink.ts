/**
 * The delivery engine shared by every transport: write() formats and queues synchronously; one
 * async loop sends batches in order, one at a time, retrying with backoff.
 *
 * With a spool, the engine runs in one of two modes:
 *   direct  memory -> transport. The normal case: no disk I/O.
 *   spool   memory -> spool (disk) -> transport. Entered when a send fails or the memory queue
 *           passes its high-water mark (a slow receiver); left when the spool is empty again.
 * Order is kept across the switch: the batch that failed (or is still in flight when the receiver
 * turns slow) goes to the spool before anything queued after it. A batch still in flight at the
 * switch is left to finish; if it succeeds, its copy at the head of the spool is skipped.
 *
 * Longer than most files here on purpose: the two modes, the switch between them and the order
 * guarantee are one state machine, and reading it in one place is how it stays correct. What is
 * not the state machine lives beside it: the options (./sink-options.ts), the counters and drop
 * warnings (./tally.ts), the loop's wait (./wakeup.ts), when to give a batch up (./util.ts).
 */
import type { SinkRecord } from '../formats/common.js';
import { Spool, type SpoolBatch } from './spool.js';
import { refused } from './spool-lock.js';
import { privateDirectoryFor, type FileOwner } from '../util/safe-file.js';
import { type OverflowPolicy, type Sink, type SinkCounters, type SinkLogger, type Transport, TransportError, silentLogger } from './types.js';
import { DEFAULT_RETRY, type RetryOptions, backoffMs, giveUpBefore } from './util.js';
import { RecordQueue } from './queue.js';
import { SinkTally } from './tally.js';
import { Wakeup } from './wakeup.js';
import { DEFAULT_BATCH, DEFAULT_MEMORY, type BatchOptions, type MemoryOptions, type SinkOptions } from './sink-options.js';
import { sleep } from '../util/timers.js';
// batching, back-off and drain deadlines on the monotonic clock: a wall-clock step cannot hold a batch
import { monoMs } from '../util/clock.js';

export { DEFAULT_BATCH, DEFAULT_MEMORY, type BatchOptions, type MemoryOptions, type SinkOptions } from './sink-options.js';

interface Inflight {
  records: string[];
  /** a copy is in the spool (the receiver turned slow while it was out) */
  copied: boolean;
  copyGeneration: number;
}

interface DeliverResult {
  /** records not delivered because close() cut the retries short */
  left: string[];
  /** direct mode: the batch failed and was handed over to the spool */
  handedOff: boolean;
}

export class DeliverySink implements Sink {
  readonly name: string;
  private readonly tally: SinkTally;
  private readonly c: SinkCounters;
  private readonly batch: BatchOptions;
  private readonly retry: RetryOptions;
  private readonly memory: MemoryOptions;
  private readonly overflow: OverflowPolicy;
  private readonly logger: SinkLogger;

  private readonly mem: RecordQueue<string>;
  private firstQueuedAt = 0;

  private mode: 'direct' | 'spool' = 'direct';
  private spool: Spool | null = null;
  private spoolFailed = false;
  private ready!: Promise<void>;
  private spoolStarted = false;
  private loopRestarts = 0;
  /** spool appends not yet finished; the spool serialises them in call order */
  private appending = 0;
  private spooler = false;
  /** delivered records at the spool's head to skip (an in-flight batch's copy) */
  private skip = { count: 0, generation: -1 };
  private inflight: Inflight | null = null;
  private leftovers: string[] = [];

  private readonly wakeup = new Wakeup();
  private closing = false;
  private closed = false;
  private closeDeadline = Infinity;
  private readonly abort = new AbortController();
  private readonly loop: Promise<void>;

  constructor(
    private readonly transport: Transport,
    private readonly o: SinkOptions,
  ) {
    this.name = o.name;
    this.batch = { ...DEFAULT_BATCH, ...o.batch };
    this.retry = { ...DEFAULT_RETRY, ...o.retry };
    this.memory = { ...DEFAULT_MEMORY, ...o.memory };
    this.overflow = o.spool?.policy ?? o.overflow ?? 'drop-newest';
    this.mem = new RecordQueue<string>(this.memory, this.overflow, (p) => p.length);
    this.logger = o.logger ?? silentLogger;
    this.tally = new SinkTally(o.name, this.logger, () => [...(o.secrets ?? []), ...(transport.secrets ?? [])]);
    this.c = this.tally.counters;
    // `deferSpool`: the daemon opens spools itself (start()), after --user, and fails loudly
    if (!o.deferSpool) void this.start().catch(() => {});
    this.loop = this.supervise();
  }

  /**
   * Start-up, before `--user` switches: opens the transport's files (file sinks) and, for `owner`,
   * creates the spool directory for that account (0700, handed over through its descriptor) or
   * checks it is already the account's own; the spool itself is opened by start(), after the
   * switch, as the account. Throws one line (SpoolError, FileRefused) when something is not safe.
   */
  prepare(owner?: FileOwner): void {
    if (this.o.spool && owner) {
      try {
        privateDirectoryFor(this.o.spool.dir, owner);
      } catch (err) {
        throw refused(this.o.spool.dir, err);
      }
    }
    this.transport.prepare?.(owner);
  }

  /**
   * Opens the spool (once; the constructor does it unless `deferSpool`). Rejects, in one line,
   * when the spool cannot be used; delivery then goes on from memory only, and says so.
   */
  start(): Promise<void> {
    if (!this.spoolStarted) {
      this.spoolStarted = true;
      this.ready = this.openSpool();
      this.ready.catch(() => {});
    }
    return this.ready;
  }

  /**
   * The delivery loop never ends before close(): an error it did not expect (an I/O error on the
   * spool) is logged once per restart and the loop starts again after a backoff.
   */
  private async supervise(): Promise<void> {
    for (let attempt = 0; ; attempt++) {
      try {
        await this.run();
        return;
      } catch (err) {
        this.inflight = null;
        if (this.abort.signal.aborted || (this.closing && monoMs() >= this.closeDeadline)) return;
        const delay = Math.min(30_000, 500 * 2 ** Math.min(attempt, 6));
        this.loopRestarts++;
        this.c.lastError = this.tally.clean(err);
        this.logger.error({ sink: this.name, err: this.c.lastError, restarts: this.loopRestarts, retryInMs: delay }, 'sink delivery loop failed: restarting it');
        await sleep(Math.min(delay, Math.max(0, this.closeDeadline - monoMs())), this.abort.signal);
      }
    }
  }

  get counters(): Readonly<SinkCounters> {
    this.c.queued = this.mem.length;
    const skipping = this.spool && this.skip.generation === this.spool.generation ? this.skip.count : 0;
    this.c.spoolRecords = this.spool ? Math.max(0, this.spool.pendingRecords - skipping) : 0;
    this.c.spoolBytes = this.spool ? this.spool.pendingBytes : 0;
    this.c.spoolCorruptBytes = this.spool ? this.spool.corruptBytes : 0;
    this.c.truncated = this.transport.stats?.truncated ?? 0;
    return this.c;
  }

  private async openSpool(): Promise<void> {
    if (!this.o.spool) return;
    this.spool = await Spool.open(this.o.spool, this.logger);
    if (this.spool.pendingRecords > 0) {
      // a previous run left records: they go first, everything new queues behind them
      this.mode = 'spool';
      this.logger.info(
        { sink: this.name, records: this.spool.pendingRecords, bytes: this.spool.pendingBytes },
        'sink resumes from its spool',
      );
      this.kickSpooler();
    }
  }

  private get queued(): number {
    return this.mem.length;
  }

  /** Records handed to the transport and not yet settled (delivered, given up, or spooled). */
  get inFlight(): number {
    return this.inflight?.records.length ?? 0;
  }

  write(rec: SinkRecord): void {
    if (this.closing) {
      this.tally.drop(1, 'closed');
      return;
    }
    if (this.o.filter && !this.o.filter(rec)) return;
    let payload: string;
    try {
      payload = this.transport.encode(rec, this.o.format(rec));
      // A payload built by concatenation (ECS and CEF lines, syslog headers, HEC envelopes) is a
      // tree of a hundred-odd strings until something reads it whole. Reading it now, while the
      // pieces are in cache, flattens it for far less than when its batch is sent, and the queue
      // holds one string per record instead of a tree that every scavenge has to copy.
      Buffer.byteLength(payload, 'utf8');
    } catch (err) {
      this.c.lastError = `cannot encode ${String(rec.event)} record: ${this.tally.clean(err)}`;
      this.tally.drop(1, 'encode');
      return;
    }
    const wasEmpty = this.queued === 0;
    const dropped = this.mem.push(payload);
    if (dropped) this.tally.drop(dropped, 'memory full');
    if (this.queued === 0) return;
    if (wasEmpty) this.firstQueuedAt = monoMs();

    if (this.mode === 'spool') {
      this.kickSpooler();
    } else if (this.spoolUsable && this.mem.bytes > (this.memory.spillBytes ?? this.memory.maxBytes / 4)) {
      this.spill('receiver slow');
    } else if (this.queued >= this.batch.maxRecords || this.mem.bytes >= this.batch.maxBytes) {
      this.wakeup.wake();
    } else {
      this.armTimer();
    }
  }

  /** A partial batch waits for its first record's deadline, no longer. */
  private armTimer(): void {
    this.wakeup.arm(this.firstQueuedAt + this.batch.maxWaitMs);
  }

  private waitForWork(): Promise<void> {
    return this.wakeup.wait(this.mode === 'direct' && this.queued > 0 ? this.firstQueuedAt + this.batch.maxWaitMs : undefined);
  }

  /** The spool is configured and did not fail to open (it may still be opening). */
  private get spoolUsable(): boolean {
    return this.o.spool !== undefined && !this.spoolFailed;
  }

  private appendToSpool(records: string[]): void {
    this.appending++;
    // appends wait for the spool to open; then-callbacks run in registration order, so order holds
    this.ready.then(() => {
      if (!this.spool) throw new Error('spool unavailable');
      return this.spool.append(records);
    }).then(
      (r) => this.tally.spooled(r),
      (err) => this.tally.spoolFailed(records.length, err),
    ).finally(() => {
      this.appending--;
      this.wakeup.wake();
    });
  }

  /** Switch to spool mode: the batch in flight (if any) first, then the memory queue. */
  private spill(reason: string): void {
    if (!this.spoolUsable || this.mode === 'spool') return;
    this.mode = 'spool';
    this.logger.warn({ sink: this.name, reason, lastError: this.c.lastError }, 'sink spooling to disk');
    if (this.inflight && !this.inflight.copied) {
      this.inflight.copied = true;
      this.inflight.copyGeneration = this.spool?.generation ?? 0;
      this.appendToSpool(this.inflight.records);
    }
    this.kickSpooler();
    this.wakeup.wake();
  }

  private kickSpooler(): void {
    if (this.spooler || !this.spoolUsable) return;
    this.spooler = true;
    // batched so a burst becomes a few large appends instead of one per record
    setImmediate(() => {
      this.spooler = false;
      while (this.queued > 0 && this.mode === 'spool') this.appendToSpool(this.mem.take(1000, 4 << 20));
      this.wakeup.wake();
    });
  }

  /** Send records, retrying transient failures. */
  private async deliver(records: string[], fromSpool: boolean, valid?: () => boolean): Promise<DeliverResult> {
    let pending = records;
    let attempt = 0;
    while (pending.length > 0) {
      let retryAfter: number | undefined;
      try {
        const out = (await this.transport.send(pending, this.abort.signal)) ?? {};
        const retry = out.retry ?? [];
        const rejected = out.rejected ?? [];
        this.c.sent += pending.length - retry.length - rejected.length;
        if (rejected.length) this.tally.giveUp(rejected.length, 'rejected', out.error ?? 'records rejected by the receiver');
        if (retry.length === 0) return { left: [], handedOff: false };
        this.c.lastError = this.tally.clean(out.error ?? 'some records failed');
        retryAfter = out.retryAfterMs;
        pending = retry.map((i) => pending[i]);
      } catch (err) {
        if (this.abort.signal.aborted) return { left: pending, handedOff: false };
        this.c.lastError = this.tally.clean(err);
        const te = err instanceof TransportError ? err : null;
        if (te && !te.retryable) {
          this.tally.giveUp(pending.length, 'rejected', this.c.lastError);
          return { left: [], handedOff: false };
        }
        if (te?.split) {
          if (pending.length === 1) {
            this.tally.giveUp(1, 'too large', this.c.lastError);
            return { left: [], handedOff: false };
          }
          const half = Math.ceil(pending.length / 2);
          const first = await this.deliver(pending.slice(0, half), fromSpool, valid);
          if (first.handedOff || first.left.length) {
            return { left: [...first.left, ...pending.slice(half)], handedOff: first.handedOff };
          }
          pending = pending.slice(half);
          continue;
        }
        retryAfter = te?.retryAfterMs;
      }
      attempt++;
      // only a batch with nowhere else to go (not from the spool, and no spool) runs out of attempts
      const stop = giveUpBefore(attempt, retryAfter, this.retry, !fromSpool && !this.spoolUsable);
      if (stop) {
        this.tally.giveUp(pending.length, stop.reason, `${this.c.lastError ?? 'send failed'} ${stop.detail}`);
        return { left: [], handedOff: false };
      }
      // counted only when another attempt follows, from here or from the spool
      this.c.retried += pending.length;
      if (!fromSpool) {
        if (this.spoolUsable) {
          // the receiver is failing: keep the rest on disk, in order, and drain from there
          const inf = this.inflight;
          if (inf && !inf.copied) this.appendToSpool(pending);
          if (inf) inf.copied = true;
          this.skip = { count: 0, generation: -1 };
          this.spill('send failed');
          return { left: [], handedOff: true };
        }
      }
      if (valid && !valid()) return { left: [], handedOff: false };
      const delay = backoffMs(attempt, this.retry, retryAfter, this.o.random);
      if (monoMs() + delay > this.closeDeadline) return { left: pending, handedOff: false };
      await sleep(delay, this.abort.signal);
      if (this.abort.signal.aborted) return { left: pending, handedOff: false };
      if (valid && !valid()) return { left: [], handedOff: false };
    }
    return { left: [], handedOff: false };
  }

  private async run(): Promise<void> {
    if (this.o.spool && !this.spoolFailed) {
      // deferSpool: wait for start() (the daemon calls it at once, after --user)
      while (!this.spoolStarted && !this.closing) await sleep(10, this.abort.signal);
      try {
        if (this.spoolStarted) await this.ready;
        else throw new Error('closed before the spool was opened');
      } catch (err) {
        this.c.lastError = `cannot open spool: ${this.tally.clean(err)}`;
        // deferSpool: start()'s caller was told, and stops (watch exits with one line)
        if (!this.o.deferSpool) this.logger.error({ sink: this.name, err: this.c.lastError }, 'spool unavailable: delivering from memory only');
        this.spool = null;
        this.spoolFailed = true;
        if (this.mode === 'spool') this.mode = 'direct';
      }
    }
    for (;;) {
      if (this.abort.signal.aborted) return;
      if (this.mode === 'spool') {
        const r = await this.drainSpoolOnce();
        if (r === 'stop') return;
        if (r === 'wait') await this.waitForWork();
        continue;
      }
      if (this.queued === 0) {
        if (this.closing) return;
        await this.waitForWork();
        continue;
      }
      const full = this.queued >= this.batch.maxRecords || this.mem.bytes >= this.batch.maxBytes;
      if (!full && !this.closing && monoMs() - this.firstQueuedAt < this.batch.maxWaitMs) {
        await this.waitForWork();
        continue;
      }
      const inflight: Inflight = {
        records: this.mem.take(this.batch.maxRecords, this.batch.maxBytes),
        copied: false,
        copyGeneration: -1,
      };
      if (this.queued > 0) this.firstQueuedAt = monoMs();
      this.inflight = inflight;
      const res = await this.deliver(inflight.records, false);
      this.inflight = null;
      if (inflight.copied && !res.handedOff && res.left.length === 0) {
        // delivered after its copy went to the spool: skip the copy
        this.skip = { count: inflight.records.length, generation: inflight.copyGeneration };
      }
      if (res.left.length) {
        // close() cut the retries short: it spools (or drops) what is left
        if (!inflight.copied) this.leftovers = res.left;
        return;
      }
    }
  }

  private async drainSpoolOnce(): Promise<'sent' | 'wait' | 'stop'> {
    const spool = this.spool!;
    const batch: SpoolBatch | null = await spool.read(this.batch.maxRecords, this.batch.maxBytes);
    if (!batch) {
      if (this.appending === 0 && !this.spooler) {
        // spool drained and nothing on its way in: back to direct delivery
        this.mode = 'direct';
        this.skip = { count: 0, generation: -1 };
        this.logger.info({ sink: this.name }, 'sink spool drained');
        return 'sent';
      }
      return this.closing && monoMs() > this.closeDeadline ? 'stop' : 'wait';
    }
    let records = batch.records;
    if (this.skip.count > 0) {
      if (this.skip.generation === batch.generation) {
        const n = Math.min(this.skip.count, records.length);
        this.skip.count -= n;
        records = records.slice(n);
      } else {
        this.skip = { count: 0, generation: -1 };
      }
    }
    if (batch.skippedBytes > 0) {
      this.logger.warn({ sink: this.name, bytes: batch.skippedBytes, segment: batch.seq }, 'spool: skipped corrupt bytes to the next whole record');
    }
    if (records.length > 0) {
      const res = await this.deliver(records, true, () => spool.generation === batch.generation);
      // cut short by close(): the batch stays in the spool and is sent on the next start
      if (res.left.length) return 'stop';
    }
    await spool.commit(batch);
    if (spool.stateError) this.c.lastError = this.tally.clean(spool.stateError);
    return this.closing && monoMs() > this.closeDeadline ? 'stop' : 'sent';
  }

  private isIdle(): boolean {
    return this.mode === 'direct' && this.queued === 0 && this.inflight === null && this.appending === 0;
  }

  async flush(timeoutMs = 10_000): Promise<boolean> {
    const deadline = monoMs() + timeoutMs;
    const saved = this.batch.maxWaitMs;
    // a flush means "now": do not let a partial batch wait for its timer
    this.batch.maxWaitMs = 0;
    try {
      while (!this.isIdle()) {
        if (monoMs() >= deadline) return false;
        this.wakeup.wake();
        await sleep(Math.min(20, Math.max(1, deadline - monoMs())));
      }
      return true;
    } finally {
      this.batch.maxWaitMs = saved;
    }
  }

  reopen(): void {
    this.transport.reopen?.();
  }

  /**
   * Stops: delivers what it can within the timeout, spools the rest (or counts it as dropped).
   * Resolves true when nothing was left over.
   */
  async close(timeoutMs = 5000): Promise<boolean> {
    if (this.closed || this.closing) return true;
    this.closing = true;
    this.closeDeadline = monoMs() + timeoutMs;
    const timer = setTimeout(() => this.abort.abort(), timeoutMs);
    this.wakeup.wake();
    await this.loop;
    clearTimeout(timer);
    this.abort.abort();
    this.wakeup.stop();
    // whatever could not be delivered in time goes to the spool (sent on the next start) or is lost
    const rest = [...this.leftovers, ...this.mem.clear()];
    this.leftovers = [];
    if (this.spoolUsable) {
      while (this.spooler) await sleep(1);
      if (rest.length) this.appendToSpool(rest);
      while (this.appending > 0) await sleep(1);
      await this.spool?.close().catch((err) => {
        this.c.lastError = `spool close failed: ${this.tally.clean(err)}`;
      });
    } else {
      this.tally.drop(rest.length, 'closed before delivery');
    }
    this.tally.stop();
    this.closed = true;
    await this.transport.close().catch(() => {});
    return rest.length === 0;
  }
}
