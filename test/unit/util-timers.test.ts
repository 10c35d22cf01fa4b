/** Timers for operator-chosen delays: past 24.8 days a Node timer would fire at once. */
import { describe, expect, it } from 'vitest';
import { deadlineSignal, MAX_TIMER_MS, setLongInterval, setLongTimeout, sleep } from '../../src/util/timers.js';

const DAY = 86_400_000;

async function until(cond: () => boolean, what: string, ms = 3000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

describe('setLongTimeout', () => {
  it('a 30-day timer does not fire at once (a plain setTimeout would, after 1 ms)', async () => {
    let plain = false;
    const warnings: string[] = [];
    const onWarning = (w: Error) => warnings.push(w.name);
    process.on('warning', onWarning);
    const t0 = setTimeout(() => (plain = true), 30 * DAY);
    let long = false;
    const t1 = setLongTimeout(() => (long = true), 30 * DAY);
    try {
      await until(() => plain, 'the plain timer to misfire');
      expect(long).toBe(false);
    } finally {
      clearTimeout(t0);
      t1.clear();
      process.off('warning', onWarning);
    }
    expect(MAX_TIMER_MS).toBe(2 ** 31 - 1);
  });

  it('waits the whole delay in steps, then fires once', async () => {
    let fired = 0;
    const start = performance.now();
    setLongTimeout(() => fired++, 120, 25);
    await until(() => fired > 0, 'the stepped timer');
    expect(performance.now() - start).toBeGreaterThanOrEqual(119);
    await new Promise((r) => setTimeout(r, 60));
    expect(fired).toBe(1);
  });

  it('clear() stops it between steps', async () => {
    let fired = false;
    const t = setLongTimeout(() => (fired = true), 80, 20);
    await new Promise((r) => setTimeout(r, 30));
    t.clear();
    await new Promise((r) => setTimeout(r, 100));
    expect(fired).toBe(false);
  });
});

describe('setLongInterval, sleep, deadlineSignal', () => {
  it('repeats until cleared', async () => {
    let n = 0;
    const t = setLongInterval(() => n++, 10);
    await until(() => n >= 3, 'three runs');
    t.clear();
    const seen = n;
    await new Promise((r) => setTimeout(r, 50));
    expect(n).toBe(seen);
  });

  it('sleep ends early on abort; a 30-day sleep does not end by itself', async () => {
    const ctl = new AbortController();
    let done = false;
    const p = sleep(30 * DAY, ctl.signal).then(() => (done = true));
    await new Promise((r) => setTimeout(r, 30));
    expect(done).toBe(false);
    ctl.abort();
    await p;
    expect(done).toBe(true);
  });

  it('a deadline signal aborts at its time, or with its parent, and says which', async () => {
    const d = deadlineSignal(20);
    await until(() => d.signal.aborted, 'the deadline');
    expect(d.expired()).toBe(true);
    const parent = new AbortController();
    const d2 = deadlineSignal(30 * DAY, parent.signal);
    parent.abort();
    expect(d2.signal.aborted).toBe(true);
    expect(d2.expired()).toBe(false);
    d2.clear();
  });
});
