/**
 * The one place the wall clock is read for the event timeline, and the monotonic clock beside it.
 *
 * The reader thread stamps events with the wall clock (CLOCK_REALTIME): records carry dates an
 * operator can read. But the wall clock steps (NTP at boot, an operator's `date -s`, a VM resumed),
 * and an engine driven by event time that sees time go back by an hour sees nothing new for that
 * hour: no snapshot, no alert, SIEM batches held. So live event times go through an EventTimeline:
 *
 * - Steps are noticed by comparing the wall clock with the monotonic clock (their difference only
 *   changes when the wall clock steps, or very slowly when NTP slews it; slew is followed).
 * - A backward step is not followed: event times keep running at the monotonic pace, ahead of the
 *   wall clock by the step ("ahead"), so windows, rates and ticks carry on as if nothing happened.
 * - A forward step first takes back what is ahead (the usual correction of a backward step), and
 *   past that is followed: the timeline jumps, which the engine treats as a quiet gap.
 * - Events stamped before the step but read after it keep the old offset: each event goes to the
 *   era (old or new wall clock) its stamp is closer to. Event times never go back.
 *
 * Timers, ages, batching and deadlines use `monoMs()` (performance.now), never Date.now().
 */

/** A wall clock and a monotonic clock, in µs; injectable so tests can step the wall clock. */
export interface ClockSource {
  /** µs since the epoch, as the reader thread stamps events (CLOCK_REALTIME) */
  wallUs(): number;
  /** µs on a clock that never steps (only differences mean anything) */
  monoUs(): number;
}

export const systemClock: ClockSource = {
  wallUs: () => Date.now() * 1000,
  monoUs: () => performance.now() * 1000,
};

/** Milliseconds on the monotonic clock, for timers, ages, batching and deadlines. */
export function monoMs(): number {
  return performance.now();
}

/** A wall-clock step the timeline noticed. */
export interface ClockStep {
  /** µs the wall clock moved, beyond the monotonic clock (negative: backward) */
  stepUs: number;
  /** µs the event timeline now runs ahead of the wall clock */
  aheadUs: number;
}

/** Steps below this are jitter between reading the two clocks, or slew. */
export const STEP_TOLERANCE_US = 500_000;

export class EventTimeline {
  /** (wall − mono) at the last check */
  private skew: number;
  /** µs added to wall stamps from now on (what the timeline is ahead) */
  private target = 0;
  /** µs added to events so far: lags `target` until the first event stamped after the step */
  private applied = 0;
  /** the step not yet seen in the events: its size, for telling old stamps from new */
  private pendingStep = 0;
  private last = -Infinity;
  /** wall-clock steps noticed */
  steps = 0;

  constructor(
    private readonly clock: ClockSource = systemClock,
    private readonly onStep?: (step: ClockStep) => void,
    private readonly toleranceUs = STEP_TOLERANCE_US,
  ) {
    this.skew = clock.wallUs() - clock.monoUs();
  }

  /** µs the timeline runs ahead of the wall clock */
  get aheadUs(): number {
    return this.target;
  }

  /** Now on the event timeline (for ticks on a quiet table). Never goes back. */
  now(): number {
    this.check();
    const t = Math.max(this.last, this.clock.wallUs() + this.target);
    return t;
  }

  /** Re-times a batch of wall-stamped events, in place, onto the timeline. */
  align<T extends { time: number }>(events: T[]): T[] {
    this.check();
    const wall = this.clock.wallUs();
    for (const ev of events) {
      let t = ev.time;
      if (this.pendingStep !== 0) {
        // stamped after the step: close to the wall clock now; before: close to where it was
        if (Math.abs(t - wall) <= Math.abs(t - (wall - this.pendingStep))) {
          this.applied = this.target;
          this.pendingStep = 0;
        }
      }
      t += this.applied;
      if (t < this.last) t = this.last;
      this.last = t;
      ev.time = t;
    }
    return events;
  }

  /** Notices a step of the wall clock since the last check. */
  private check(): void {
    const skew = this.clock.wallUs() - this.clock.monoUs();
    const d = skew - this.skew;
    this.skew = skew;
    if (Math.abs(d) < this.toleranceUs) return;
    this.steps++;
    // backward (d < 0): run ahead by it; forward: take back what runs ahead first
    this.target = Math.max(0, this.target - d);
    this.pendingStep += d;
    if (this.target === this.applied) this.pendingStep = 0;
    this.onStep?.({ stepUs: d, aheadUs: this.target });
  }
}
