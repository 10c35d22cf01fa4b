import { describe, expect, it } from 'vitest';
import { EventTimeline, type ClockSource, type ClockStep } from '../../src/util/clock.js';
import { Pipeline } from '../../src/pipeline/pipeline.js';
import { ChurnEngine } from '../../src/churn/engine.js';
import type { ChurnSnapshot } from '../../src/churn/snapshot.js';
import type { ConntrackEvent, EventSource, SourceEvent } from '../../src/source/types.js';

const S = 1_000_000;
const T0 = 1_800_000_000 * S;

/** A wall clock an operator can step, and a monotonic clock that only runs. */
class SteppedClock implements ClockSource {
  mono = 5 * S;
  wall = T0;
  run(us: number): void {
    this.mono += us;
    this.wall += us;
  }
  step(us: number): void {
    this.wall += us;
  }
  wallUs(): number {
    return this.wall;
  }
  monoUs(): number {
    return this.mono;
  }
}

const stamped = (...times: number[]) => times.map((time) => ({ time }));

describe('EventTimeline (wall-clock steps)', () => {
  it('follows the wall clock while it runs steadily', () => {
    const c = new SteppedClock();
    const tl = new EventTimeline(c);
    c.run(S);
    expect(tl.align(stamped(c.wall - 10, c.wall)).map((e) => e.time)).toEqual([T0 + S - 10, T0 + S]);
    expect(tl.now()).toBe(T0 + S);
    expect(tl.steps).toBe(0);
  });

  it('keeps running on a backward step (an hour back), and takes it back when the clock steps forward again', () => {
    const c = new SteppedClock();
    const steps: ClockStep[] = [];
    const tl = new EventTimeline(c, (s) => steps.push(s));
    c.run(S);
    tl.align(stamped(c.wall));
    c.run(S / 2);
    const before = c.wall; // an event stamped just before the step, read after it
    c.step(-3600 * S);
    c.run(S / 2);
    const times = tl.align(stamped(before, c.wall)).map((e) => e.time);
    // the old stamp keeps its time; the new one continues half a second later, not an hour back
    expect(times).toEqual([T0 + 1.5 * S, T0 + 2 * S]);
    expect(tl.now()).toBe(T0 + 2 * S);
    expect(tl.aheadUs).toBe(3600 * S);
    expect(steps).toEqual([{ stepUs: -3600 * S, aheadUs: 3600 * S }]);
    // ticks on a quiet table keep coming: now() runs with the monotonic clock
    c.run(10 * S);
    expect(tl.now()).toBe(T0 + 12 * S);
    // the correction: forward by the hour; nothing jumps
    c.run(S);
    const old = c.wall;
    c.step(3600 * S);
    c.run(S / 2);
    expect(tl.align(stamped(old, c.wall)).map((e) => e.time)).toEqual([T0 + 13 * S, T0 + 13.5 * S]);
    expect(tl.aheadUs).toBe(0);
    expect(tl.steps).toBe(2);
  });

  it('follows a forward step (a gap), and never lets event times go back', () => {
    const c = new SteppedClock();
    const tl = new EventTimeline(c);
    tl.align(stamped(c.wall));
    c.step(600 * S);
    c.run(S);
    expect(tl.align(stamped(c.wall)).map((e) => e.time)).toEqual([T0 + 601 * S]);
    expect(tl.aheadUs).toBe(0);
    // a stamp older than what was already handed out is held at the last time
    expect(tl.align(stamped(T0)).map((e) => e.time)).toEqual([T0 + 601 * S]);
  });

  it('ignores jitter and slew below the tolerance', () => {
    const c = new SteppedClock();
    const tl = new EventTimeline(c);
    for (let i = 0; i < 100; i++) {
      c.run(S);
      c.step(-4000); // 4 ms back a second: a slewing NTP
      tl.align(stamped(c.wall));
    }
    expect(tl.steps).toBe(0);
    expect(tl.aheadUs).toBe(0);
  });
});

/** A live-like source: batches on demand, stamped by the stepped wall clock. */
class StampedSource implements EventSource {
  private queue: SourceEvent[][] = [];
  private wake?: () => void;
  private done = false;
  push(batch: SourceEvent[]): void {
    this.queue.push(batch);
    this.wake?.();
  }
  end(): void {
    this.done = true;
    this.wake?.();
  }
  async *[Symbol.asyncIterator](): AsyncIterator<SourceEvent[]> {
    for (;;) {
      const b = this.queue.shift();
      if (b) yield b;
      else if (this.done) return;
      else await new Promise<void>((r) => (this.wake = r));
    }
  }
}

function newFlow(id: number, time: number): ConntrackEvent {
  return {
    event: 'new', time, id, family: 'ipv4', proto: 'tcp', src: '127.0.1.7', dst: '127.0.0.5', sport: 30000 + id, dport: 6379,
    reply: { src: '127.0.0.5', dst: '127.0.1.7', sport: 6379, dport: 30000 + id }, status: [],
  } as ConntrackEvent;
}

describe('Pipeline across a backward wall-clock step', () => {
  it('keeps taking a snapshot per second and keeps the leak rate (an hour back does not blind it)', async () => {
    const c = new SteppedClock();
    const source = new StampedSource();
    const snaps: ChurnSnapshot[] = [];
    const pipeline = new Pipeline(source, { snapshot: (s) => void snaps.push(s) }, { engine: new ChurnEngine(), wallClock: true, timeline: new EventTimeline(c) });
    const running = pipeline.run();
    let id = 0;
    // 20 s of a 500/s leak, one batch per 100 ms; the wall clock steps back an hour at 10 s
    for (let tenth = 0; tenth < 200; tenth++) {
      if (tenth === 100) c.step(-3600 * S);
      const batch: SourceEvent[] = [];
      for (let i = 0; i < 50; i++) {
        c.run(2000);
        batch.push(newFlow(++id, c.wall));
      }
      source.push(batch);
      await new Promise((r) => setImmediate(r));
    }
    source.end();
    await running;
    const seconds = snaps.map((s) => (s.time - T0) / S);
    // one snapshot per second all the way through, none an hour back
    expect(seconds).toEqual(Array.from({ length: 21 }, (_, i) => i));
    expect(snaps.at(-1)!.destinations[0].key).toBe('127.0.0.5:6379/tcp');
    expect(snaps.at(-1)!.destinations[0].new10).toBeCloseTo(500, 0);
  });
});
