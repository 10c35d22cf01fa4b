/** Small helpers for the sinks: backoff, Retry-After, rate-limited warnings, secret scrubbing. */
import type { SinkLogger } from './types.js';
import { monoMs } from '../util/clock.js';

export interface RetryOptions {
  /** first delay, ms */
  initialMs: number;
  /** delays stop growing here, ms */
  maxMs: number;
  /** tries per batch before it is dropped when there is no spool; Infinity: never give up */
  maxAttempts: number;
  /** longest Retry-After we obey, ms (a misconfigured receiver must not park us for a day) */
  maxRetryAfterMs: number;
  /**
   * A longer Retry-After: 'wait' maxRetryAfterMs and try again (the data is kept, e.g. spooled), or
   * 'give-up' on the batch at once (alerts: a stale page is worth less than the queue behind it).
   */
  longRetryAfter: 'wait' | 'give-up';
}

export const DEFAULT_RETRY: RetryOptions = {
  initialMs: 200,
  maxMs: 30_000,
  maxAttempts: Infinity,
  maxRetryAfterMs: 300_000,
  longRetryAfter: 'wait',
};

/**
 * Exponential backoff with "equal jitter": half the delay is fixed, half random, so many sinks (or
 * many collectors) that failed together do not retry together, yet none retries immediately.
 */
export function backoffMs(attempt: number, o: RetryOptions, retryAfterMs?: number, rand = Math.random): number {
  if (retryAfterMs !== undefined) {
    const wait = Math.min(Math.max(0, retryAfterMs), o.maxRetryAfterMs);
    return wait + rand() * Math.min(wait * 0.1, 1000);
  }
  const exp = Math.min(o.maxMs, o.initialMs * 2 ** Math.max(0, attempt - 1));
  return exp / 2 + rand() * (exp / 2);
}

/**
 * Whether a batch that just failed its `attempt`-th try is given up now: out of attempts (only when
 * it has nowhere else to go: `bounded`), or a receiver asking to wait longer than we obey when the
 * policy is to give up then. The detail follows the last error in the operator's words.
 */
export function giveUpBefore(attempt: number, retryAfterMs: number | undefined, o: RetryOptions, bounded: boolean): { reason: string; detail: string } | undefined {
  if (bounded && attempt >= o.maxAttempts) return { reason: 'retries exhausted', detail: `after ${attempt} attempts` };
  if (retryAfterMs !== undefined && retryAfterMs > o.maxRetryAfterMs && o.longRetryAfter === 'give-up') {
    const s = (ms: number) => Math.round(ms / 1000);
    return { reason: 'retry-after too long', detail: `with Retry-After ${s(retryAfterMs)} s, over the ${s(o.maxRetryAfterMs)} s limit` };
  }
  return undefined;
}

/** Retry-After is either delta-seconds or an HTTP-date (RFC 9110 §10.2.3). */
export function parseRetryAfter(value: string | string[] | undefined, now = Date.now()): number | undefined {
  const v = Array.isArray(value) ? value[0] : value;
  if (v === undefined || v === '') return undefined;
  if (/^\s*\d+\s*$/.test(v)) return Number(v) * 1000;
  const t = Date.parse(v);
  if (Number.isNaN(t)) return undefined;
  return Math.max(0, t - now);
}


/**
 * Warn at most once per interval, with the counts accumulated meanwhile: a receiver that is down
 * for an hour must not write a log line per dropped event.
 */
export class RateLimitedWarning {
  private pending = 0;
  private last = -Infinity;
  private timer: NodeJS.Timeout | null = null;
  private lastDetail: object = {};
  constructor(
    private readonly logger: SinkLogger,
    private readonly msg: string,
    private readonly intervalMs = 60_000,
    private readonly now: () => number = monoMs,
  ) {}

  note(count: number, detail: object = {}): void {
    this.pending += count;
    this.lastDetail = detail;
    const t = this.now();
    if (t - this.last >= this.intervalMs) {
      this.emit(t);
    } else if (!this.timer) {
      this.timer = setTimeout(() => {
        this.timer = null;
        if (this.pending > 0) this.emit(this.now());
      }, this.last + this.intervalMs - t);
      this.timer.unref();
    }
  }

  private emit(t: number): void {
    this.logger.warn({ ...this.lastDetail, count: this.pending }, this.msg);
    this.pending = 0;
    this.last = t;
  }

  stop(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    if (this.pending > 0) this.emit(this.now());
  }
}

export { scrub } from '../config/secrets.js';

export function errorMessage(err: unknown): string {
  if (err instanceof Error) {
    const code = (err as NodeJS.ErrnoException).code;
    // a wrapper that already quotes its cause (TransportError) does not say it twice
    const cause = err.cause instanceof Error && err.cause.message && !err.message.includes(err.cause.message) ? `: ${err.cause.message}` : '';
    const message = err.message || code || err.name;
    return code && !message.includes(code) ? `${message} (${code})${cause}` : message + cause;
  }
  return String(err);
}
