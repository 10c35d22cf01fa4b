/** Backoff, Retry-After parsing, rate-limited warnings, secret scrubbing. */
import { describe, expect, it } from 'vitest';
import { DEFAULT_RETRY, RateLimitedWarning, backoffMs, giveUpBefore, parseRetryAfter, scrub } from '../../src/sinks/util.js';

describe('backoff', () => {
  const o = { ...DEFAULT_RETRY, initialMs: 100, maxMs: 1000 };
  it('doubles with equal jitter and stops growing at max', () => {
    expect(backoffMs(1, o, undefined, () => 0)).toBe(50);
    expect(backoffMs(1, o, undefined, () => 1)).toBe(100);
    expect(backoffMs(3, o, undefined, () => 0.5)).toBe(300);
    expect(backoffMs(20, o, undefined, () => 1)).toBe(1000);
  });
  it('honours Retry-After, capped', () => {
    expect(backoffMs(1, o, 2000, () => 0)).toBe(2000);
    expect(backoffMs(1, { ...o, maxRetryAfterMs: 5000 }, 3_600_000, () => 0)).toBe(5000);
  });
  it('parses Retry-After seconds and HTTP-dates', () => {
    expect(parseRetryAfter('3')).toBe(3000);
    const now = Date.UTC(2024, 0, 1, 0, 0, 0);
    expect(parseRetryAfter('Mon, 01 Jan 2024 00:00:10 GMT', now)).toBe(10_000);
    expect(parseRetryAfter('soon')).toBeUndefined();
    expect(parseRetryAfter(undefined)).toBeUndefined();
  });
});

describe('giveUpBefore', () => {
  const o = { ...DEFAULT_RETRY, maxAttempts: 3, maxRetryAfterMs: 120_000 };
  it('gives up a batch with nowhere else to go when its attempts run out, not before', () => {
    expect(giveUpBefore(2, undefined, o, true)).toBeUndefined();
    expect(giveUpBefore(3, undefined, o, true)).toEqual({ reason: 'retries exhausted', detail: 'after 3 attempts' });
    // from the spool, or with one: tried until delivered
    expect(giveUpBefore(30, undefined, o, false)).toBeUndefined();
  });
  it('gives up on a Retry-After past the limit only when the policy says so', () => {
    expect(giveUpBefore(1, 600_000, o, false)).toBeUndefined();
    expect(giveUpBefore(1, 600_000, { ...o, longRetryAfter: 'give-up' }, false)).toEqual({
      reason: 'retry-after too long',
      detail: 'with Retry-After 600 s, over the 120 s limit',
    });
    expect(giveUpBefore(1, 120_000, { ...o, longRetryAfter: 'give-up' }, false)).toBeUndefined();
  });
});

describe('RateLimitedWarning', () => {
  it('logs at most once per interval with the accumulated count', async () => {
    const lines: any[] = [];
    let now = 0;
    const log = { debug() {}, info() {}, error() {}, warn: (o: object, m?: string) => lines.push({ ...o, m }) };
    const w = new RateLimitedWarning(log, 'dropped', 60_000, () => now);
    w.note(1, { reason: 'a' });
    w.note(5);
    w.note(2);
    expect(lines).toEqual([{ count: 1, reason: 'a', m: 'dropped' }]);
    now = 61_000;
    w.note(1);
    expect(lines[1]).toMatchObject({ count: 8 });
    w.note(4);
    w.stop(); // shutdown flushes what was held back
    expect(lines[2]).toMatchObject({ count: 4 });
  });
});

describe('scrub', () => {
  it('removes every occurrence of each secret', () => {
    expect(scrub('a tok-123 b tok-123', ['tok-123', undefined])).toBe('a [REDACTED] b [REDACTED]');
  });
});
