/**
 * A sink's counters and how they move: drops counted and warned about at most once a minute,
 * give-ups counted as failed and dropped, errors scrubbed of the sink's secrets before they reach
 * `lastError` or a log line.
 */
import type { AppendResult } from './spool.js';
import type { SinkCounters, SinkLogger } from './types.js';
import { RateLimitedWarning, errorMessage } from './util.js';
import { scrub } from '../config/secrets.js';

export class SinkTally {
  readonly counters: SinkCounters = {
    sent: 0,
    retried: 0,
    spooled: 0,
    dropped: 0,
    failed: 0,
    lastError: null,
    queued: 0,
    spoolRecords: 0,
    spoolBytes: 0,
    spoolCorruptBytes: 0,
    truncated: 0,
  };
  private readonly dropWarning: RateLimitedWarning;

  constructor(
    private readonly sink: string,
    logger: SinkLogger,
    /** the secrets to scrub, asked for each time (the transport's may change when it reconnects) */
    private readonly secrets: () => readonly string[],
  ) {
    this.dropWarning = new RateLimitedWarning(logger, 'sink dropped records', 60_000);
  }

  /** An error (or a message) in one line, without the sink's secrets. */
  clean(err: unknown): string {
    const msg = typeof err === 'string' ? err : errorMessage(err);
    return scrub(msg, this.secrets());
  }

  /** Records lost without being tried further (memory full, spool full, closed, ...). */
  drop(count: number, reason: string): void {
    if (count <= 0) return;
    this.counters.dropped += count;
    this.dropWarning.note(count, { sink: this.sink, reason, dropped: this.counters.dropped });
  }

  /** Given up after trying: also counted in `dropped`, and in `failed`. */
  giveUp(count: number, reason: string, error: string): void {
    this.counters.lastError = this.clean(error);
    this.counters.failed += count;
    this.drop(count, reason);
  }

  /** What a spool append did: records kept, dropped by the spool's policy, lost to a failed write. */
  spooled(r: AppendResult): void {
    this.counters.spooled += r.appended;
    this.drop(r.dropped, 'spool full');
    if (r.failed > 0) this.spoolFailed(r.failed, r.error ?? 'unknown error');
  }

  /** `count` records that could not be written to the spool at all. */
  spoolFailed(count: number, err: unknown): void {
    this.counters.lastError = `spool write failed: ${this.clean(err)}`;
    this.drop(count, 'spool write failed');
  }

  /** Says what is still pending in the drop warning (at close). */
  stop(): void {
    this.dropWarning.stop();
  }
}
