import { describe, expect, it } from 'vitest';
import { EventTimeline, type ClockSource } from '../../src/util/clock.js';
import { Pipeline } from '../../src/pipeline/pipeline.js';
import { ChurnEngine } from '../../src/churn/engine.js';
import type { ConntrackEvent, EventSource, SourceEvent } from '../../src/source/types.js';

const S = 1_000_000;
const T0 = 1_800_000_000 * S;

/** Batches that are all there already, as a live source's queue is after a stall; then, with
 * `quietMs`, nothing for that long before the end (a quiet table). */
class Backlog implements EventSource {
  constructor(private readonly batches: SourceEvent[][], private readonly quietMs = 0) {}
  async *[Symbol.asyncIterator](): AsyncIterator<SourceEvent[]> {
    for (const b of this.batches) yield b;
    if (this.quietMs > 0) await new Promise((r) => setTimeout(r, this.quietMs));
  }
}

function event(kind: 'new' | 'destroy', id: number, time: number): ConntrackEvent {
  return {
    event: kind, time, id, family: 'ipv4', proto: 'tcp', src: '127.0.1.7', dst: '127.0.0.5', sport: 30000 + id, dport: 6379,
    reply: { src: '127.0.0.5', dst: '127.0.1.7', sport: 6379, dport: 30000 + id }, status: [],
  } as ConntrackEvent;
}

/** `n` batches of one flow each (NEW, DESTROY), all within 2 ms of T0. */
function flows(n: number): SourceEvent[][] {
  return Array.from({ length: n }, (_, i) => [event('new', i + 1, T0 + 1000 + i * 10), event('destroy', i + 1, T0 + 1000 + i * 10 + 5)]);
}

const spin = (ms: number) => {
  const until = performance.now() + ms;
  while (performance.now() < until) { /* a batch that takes this long */ }
};

describe('Pipeline over a backlog', () => {
  it('lets the event loop turn between batches, so finished writes hand on the next lines', async () => {
    let processed = 0;
    let turnedAt = -1;
    setImmediate(() => (turnedAt = processed));
    const pipeline = new Pipeline(new Backlog(flows(50)), {
      flows: () => {
        spin(2);
        processed++;
      },
    }, { engine: new ChurnEngine() });
    await pipeline.run();
    expect(processed).toBe(50);
    // before, the whole backlog ran as one chain of microtasks: the loop turned after batch 50
    expect(turnedAt).toBeGreaterThanOrEqual(0);
    expect(turnedAt).toBeLessThan(5);
  });

  it('takes no wall-clock tick while batches wait (their events reach the engine before their second is judged), and takes them once the source is quiet', async () => {
    // the wall clock is 10 s past the backlog's events, as after a long stall
    const clock: ClockSource = { wallUs: () => T0 + 10 * S + performance.now() * 1000, monoUs: () => 5 * S + performance.now() * 1000 };
    let processed = 0;
    const snapshotsAfter: number[] = [];
    const pipeline = new Pipeline(new Backlog(flows(100), 350), {
      // 300 ms in all, every other batch waiting as a full output makes it: the 100 ms wall-clock
      // timer comes due during the backlog, during turns and during waits
      flows: () => {
        spin(3);
        processed++;
        return processed % 2 ? new Promise((r) => setTimeout(r, 1)) : undefined;
      },
      snapshot: () => void snapshotsAfter.push(processed),
    }, { engine: new ChurnEngine(), wallClock: true, timeline: new EventTimeline(clock), startUs: T0 + 1 });
    await pipeline.run();
    expect(processed).toBe(100);
    // the quiet table's ticks came, all after the last batch (a replay of these events ticks
    // only when one crosses a boundary)
    expect(snapshotsAfter.length).toBeGreaterThan(0);
    expect(snapshotsAfter).toEqual(snapshotsAfter.map(() => 100));
  });
});
