/**
 * The contracts between the delivery engine (sink.ts), its transports (syslog, HTTP, file) and the
 * spool. Kept free of I/O so the config layer and tests can import them cheaply.
 */
import type { SinkRecord } from '../formats/common.js';

/** The subset of a pino logger the sinks use; pino.Logger satisfies it. */
export interface SinkLogger {
  debug(obj: object, msg?: string): void;
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
}

export const silentLogger: SinkLogger = {
  debug() {},
  info() {},
  warn() {},
  error() {},
};

export interface SinkCounters {
  /** records the receiver accepted (at least once: a replay after a failure can count twice) */
  sent: number;
  /** record-sends that failed with a transient error and were tried again (a last failed attempt
   * that is given up on counts in `failed`, not here) */
  retried: number;
  /** records written to the spool because the receiver was down or slow */
  spooled: number;
  /** records lost for good: spool/memory full, rejected by the receiver, unencodable */
  dropped: number;
  /** of `dropped`, those given up after the receiver was tried: rejected, too large, retries exhausted */
  failed: number;
  /** the most recent delivery error, secrets removed; null until one happens */
  lastError: string | null;
  /** records waiting in memory */
  queued: number;
  /** records and bytes waiting in the spool */
  spoolRecords: number;
  spoolBytes: number;
  /** bytes of the spool skipped as corrupt (torn records cut at open, damage stepped over in reads) */
  spoolCorruptBytes: number;
  /** messages cut to the transport's size limit (syslog) */
  truncated: number;
}

/** What a transport says about a batch it did not entirely deliver. */
export interface SendOutcome {
  /** indexes (into the batch) of records that failed transiently and should be sent again */
  retry?: number[];
  /** indexes of records the receiver refused for good (mapping error, malformed) */
  rejected?: number[];
  /** accepted records the receiver already had (idempotent replays) */
  duplicates?: number;
  error?: string;
  /** the receiver asked us to wait this long (Retry-After) */
  retryAfterMs?: number;
}

export class TransportError extends Error {
  readonly retryable: boolean;
  readonly retryAfterMs?: number;
  /** the batch is too large for the receiver: send it in halves */
  readonly split: boolean;
  constructor(
    message: string,
    opts: { retryable: boolean; retryAfterMs?: number; split?: boolean; cause?: unknown },
  ) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = 'TransportError';
    this.retryable = opts.retryable;
    this.retryAfterMs = opts.retryAfterMs;
    this.split = opts.split ?? false;
  }
}

/**
 * A way to get payloads to a receiver. `encode` runs synchronously in write() and produces the
 * per-record wire payload (what the spool stores, so a replay after a restart is byte-identical);
 * `send` delivers a batch and resolves once the receiver (or the kernel, for syslog) has it.
 */
export interface Transport {
  /** for logs and errors: never contains credentials */
  readonly description: string;
  encode(rec: SinkRecord, line: string): string;
  send(batch: readonly string[], signal: AbortSignal): Promise<SendOutcome | void>;
  close(): Promise<void>;
  /** reopen files (SIGHUP, logrotate) or connections */
  reopen?(): void;
  /** open its files now, with the safe-file checks (start-up); `owner`: created for the `--user`
   * account before the switch. Throws a one-line error when a path is not safe to write. */
  prepare?(owner?: { name: string; uid: number; gid: number }): void;
  /** credentials it sends, in every form, to scrub from errors before they reach lastError or a log */
  readonly secrets?: readonly string[];
  /** transport-specific counters merged into the sink's (truncated, ...) */
  readonly stats?: { truncated: number };
}

export type OverflowPolicy = 'drop-oldest' | 'drop-newest';

export interface Sink {
  readonly name: string;
  /** synchronous and non-blocking: formats, queues and returns */
  write(rec: SinkRecord): void;
  /** resolves true once everything written so far is delivered, false at the timeout */
  flush(timeoutMs?: number): Promise<boolean>;
  /** stop: deliver what can be delivered within the timeout, spool (or count as dropped) the rest;
   * DeliverySink resolves true when nothing was left over */
  close(timeoutMs?: number): Promise<boolean | void>;
  reopen(): void;
  readonly counters: Readonly<SinkCounters>;
}
