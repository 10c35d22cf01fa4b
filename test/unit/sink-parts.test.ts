/** The pieces beside the delivery engine: its counters (tally.ts) and its one wait (wakeup.ts). */
import { describe, expect, it } from 'vitest';
import { SinkTally } from '../../src/sinks/tally.js';
import { Wakeup } from '../../src/sinks/wakeup.js';
import type { SinkLogger } from '../../src/sinks/types.js';
import { monoMs } from '../../src/util/clock.js';

function logger(): SinkLogger & { warns: { obj: Record<string, unknown>; msg?: string }[] } {
  const warns: { obj: Record<string, unknown>; msg?: string }[] = [];
  return { warns, debug() {}, info() {}, error() {}, warn: (obj, msg) => warns.push({ obj: obj as Record<string, unknown>, msg }) };
}

describe('SinkTally', () => {
  it('counts drops with their reason, and says so once for a burst', () => {
    const log = logger();
    const t = new SinkTally('siem', log, () => []);
    t.drop(0, 'memory full');
    expect(t.counters.dropped).toBe(0);
    expect(log.warns).toHaveLength(0);
    t.drop(3, 'memory full');
    t.drop(2, 'memory full');
    expect(t.counters.dropped).toBe(5);
    // the first drop is said at once; the rest wait for the interval (or stop())
    expect(log.warns).toEqual([{ obj: { sink: 'siem', reason: 'memory full', dropped: 3, count: 3 }, msg: 'sink dropped records' }]);
    t.stop();
    expect(log.warns[1]).toEqual({ obj: { sink: 'siem', reason: 'memory full', dropped: 5, count: 2 }, msg: 'sink dropped records' });
  });

  it('a give-up is failed and dropped, and its error kept without the secrets', () => {
    let secrets = ['s3cr3t-token'];
    const t = new SinkTally('hec', logger(), () => secrets);
    t.giveUp(4, 'rejected', 'HTTP 403 for token s3cr3t-token');
    expect(t.counters).toMatchObject({ failed: 4, dropped: 4, lastError: 'HTTP 403 for token [REDACTED]' });
    // the secrets are asked for each time
    secrets = ['other-secret'];
    expect(t.clean(new Error('other-secret leaked'))).toBe('[REDACTED] leaked');
    t.stop();
  });

  it('a spool append: kept records counted spooled; drops by the policy and a failed write counted dropped, with their reasons', () => {
    const log = logger();
    const t = new SinkTally('s', log, () => []);
    t.spooled({ appended: 7, dropped: 2, failed: 3, error: 'the disk is full (ENOSPC)' });
    expect(t.counters).toMatchObject({ spooled: 7, dropped: 5, failed: 0, lastError: 'spool write failed: the disk is full (ENOSPC)' });
    t.spoolFailed(4, new Error('spool unavailable'));
    expect(t.counters).toMatchObject({ spooled: 7, dropped: 9, lastError: 'spool write failed: spool unavailable' });
    expect(log.warns[0].obj).toMatchObject({ reason: 'spool full', count: 2 });
    t.stop();
  });

  it('starts from zero on every counter', () => {
    const t = new SinkTally('x', logger(), () => []);
    expect(t.counters).toEqual({
      sent: 0, retried: 0, spooled: 0, dropped: 0, failed: 0, lastError: null,
      queued: 0, spoolRecords: 0, spoolBytes: 0, spoolCorruptBytes: 0, truncated: 0,
    });
  });
});

describe('Wakeup', () => {
  it('wake() ends the wait at once; a wake with nobody waiting is lost, not kept', async () => {
    const w = new Wakeup();
    w.wake();
    let woke = false;
    const waiting = w.wait().then(() => (woke = true));
    await new Promise((r) => setImmediate(r));
    expect(woke).toBe(false);
    w.wake();
    await waiting;
    expect(woke).toBe(true);
  });

  it('a deadline ends the wait when nothing wakes it', async () => {
    const w = new Wakeup();
    const t0 = monoMs();
    await w.wait(monoMs() + 30);
    expect(monoMs() - t0).toBeGreaterThanOrEqual(25);
  });

  it('arm() needs a waiter, and keeps the first deadline', async () => {
    const w = new Wakeup();
    w.arm(0); // nobody waits: no timer
    let woke = false;
    const waiting = w.wait().then(() => (woke = true));
    await new Promise((r) => setTimeout(r, 20));
    expect(woke).toBe(false);
    w.arm(monoMs() + 10);
    w.arm(monoMs() + 60_000); // a second deadline does not replace the first
    await waiting;
    expect(woke).toBe(true);
    w.stop();
  });
});
