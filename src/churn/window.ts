/**
 * Sliding-window rates: how many flows per second something opened or closed over the last 1 s,
 * 10 s and 60 s. There is one pair of these per heavy-hitter key, so a window is a single small
 * typed array (72 counters, under 400 bytes with the object) and never allocates after creation.
 *
 * Definition (alerts and tests rely on it). Times are µs since the epoch, as on events. A window
 * of W seconds is counted in buckets of width b: b = 100 ms for the 1 s window, b = 1 s for the
 * 10 s and 60 s windows. At query time t:
 *
 *   end   = the start of the bucket holding t. That bucket is still filling, so it is left out:
 *           a half-filled bucket would read as a dip every time a new bucket starts.
 *   count = events with time in [end − W, end)
 *   span  = min(W, max(b, end − origin))
 *   rate  = count / span  (per second), and 0 while end ≤ origin (no complete bucket yet)
 *
 * `origin` is when observation began: the time of the first event added, unless `start()` set it
 * earlier. Dividing by the observed span rather than W means a key first seen 3 s ago at a steady
 * 500/s reads 500/s on all three windows, not 150/s on the 10 s window; the `max(b, …)` floor keeps
 * a single event just before a bucket boundary from reading as a million per second.
 *
 * Consequences worth knowing: the 1 s rate lags by up to 100 ms and the 10/60 s rates by up to 1 s;
 * queries are meant for t at or after the newest event; an event older than the 60 s ring (or the
 * 1.1 s fine ring) is dropped from that ring.
 */

export const US_PER_S = 1_000_000;

const FINE_US = 100_000;
const COARSE_US = US_PER_S;
/** complete buckets in each window, plus one for the bucket still filling */
const FINE_LEN = 11;
const COARSE_LEN = 61;

/** The window lengths a RateWindow answers, in seconds. */
export type Span = 1 | 10 | 60;

export interface WindowRates {
  rate1: number;
  rate10: number;
  rate60: number;
}

export class RateWindow {
  /** [0, FINE_LEN): 100 ms ring; [FINE_LEN, FINE_LEN + COARSE_LEN): 1 s ring */
  private readonly buckets = new Uint32Array(FINE_LEN + COARSE_LEN);
  /** absolute bucket number (time / width) of the newest bucket in each ring, and its index in
   * the buckets. Bucket numbers are ~1.7e10, beyond small integers: `%` on them is a floating
   * point remainder costing tens of ns, so slots are tracked apart and moved by small steps. */
  private fineHead = -Infinity;
  private fineSlot = 0;
  private coarseHead = -Infinity;
  private coarseSlot = FINE_LEN;
  /** the oldest bucket number each ring counts: buckets before it hold whatever they held. A
   * ring starting afresh (its first event, a gap longer than the ring) moves its floor rather than
   * zero all its buckets: a heavy-hitter slot changing hands under a scan, the hot-path
   * benchmark's rotating ports, starts four windows per new destination, and zeroing their
   * 4 × 72 counters was 6 % of the JavaScript thread there (bench/README.md). */
  private fineFloor = -Infinity;
  private coarseFloor = -Infinity;
  /** µs; NaN until the first event or start() */
  origin = NaN;

  /** Declares when observation began, so that quiet time before the first event counts in the span. */
  start(origin: number): void {
    if (!(origin >= this.origin)) this.origin = origin;
  }

  add(time: number, n = 1): void {
    // An event before the origin means observation began earlier; NaN also takes this branch.
    if (!(time >= this.origin)) this.origin = time;
    const b = this.buckets;

    const fine = Math.floor(time / FINE_US);
    const df = fine - this.fineHead;
    if (df === 0) b[this.fineSlot] += n;
    else if (df > 0) {
      if (df >= FINE_LEN) this.fineFloor = fine;
      else this.fineSlot = advance(b, 0, FINE_LEN, this.fineSlot, df);
      this.fineHead = fine;
      b[this.fineSlot] = n;
    } else if (df > -FINE_LEN) {
      if (fine < this.fineFloor) this.fineFloor = lower(b, 0, FINE_LEN, this.fineSlot, this.fineHead, this.fineFloor, fine);
      b[back(0, FINE_LEN, this.fineSlot, -df)] += n;
    }

    const coarse = Math.floor(time / COARSE_US);
    const dc = coarse - this.coarseHead;
    if (dc === 0) b[this.coarseSlot] += n;
    else if (dc > 0) {
      if (dc >= COARSE_LEN) this.coarseFloor = coarse;
      else this.coarseSlot = advance(b, FINE_LEN, COARSE_LEN, this.coarseSlot, dc);
      this.coarseHead = coarse;
      b[this.coarseSlot] = n;
    } else if (dc > -COARSE_LEN) {
      if (coarse < this.coarseFloor) this.coarseFloor = lower(b, FINE_LEN, COARSE_LEN, this.coarseSlot, this.coarseHead, this.coarseFloor, coarse);
      b[back(FINE_LEN, COARSE_LEN, this.coarseSlot, -dc)] += n;
    }
  }

  /** Events in [end − W, end), see the module comment. */
  count(t: number, span: Span): number {
    if (span === 1) {
      return sum(this.buckets, 0, FINE_LEN, this.fineHead, this.fineSlot, this.fineFloor, Math.floor(t / FINE_US), 10);
    }
    const end = Math.floor(t / COARSE_US);
    return sum(this.buckets, FINE_LEN, COARSE_LEN, this.coarseHead, this.coarseSlot, this.coarseFloor, end, span);
  }

  /** Events per second over the last `span` seconds, see the module comment. */
  rate(t: number, span: Span): number {
    const width = span === 1 ? FINE_US : COARSE_US;
    const end = Math.floor(t / width) * width;
    if (!(end > this.origin)) return 0;
    const observed = Math.min(span * US_PER_S, Math.max(width, end - this.origin));
    return (this.count(t, span) * US_PER_S) / observed;
  }

  rates(t: number): WindowRates {
    return { rate1: this.rate(t, 1), rate10: this.rate(t, 10), rate60: this.rate(t, 60) };
  }

  /** Forgets everything, for reuse by another key. The buckets are left as they are: with no head,
   * nothing reads them, and the next add() puts each ring's floor at its bucket. */
  reset(): void {
    this.fineHead = -Infinity;
    this.coarseHead = -Infinity;
    this.origin = NaN;
  }
}

/**
 * Moves the newest slot of the ring at [off, off + len) forward by `steps` (< len) buckets,
 * zeroing the buckets it enters; returns the new slot. (A longer step moves the floor instead.)
 */
function advance(b: Uint32Array, off: number, len: number, slot: number, steps: number): number {
  // A loop, not fill(): for 11 or 61 slots the builtin's call overhead costs more than the work.
  for (let k = 0; k < steps; k++) {
    slot = slot + 1 === off + len ? off : slot + 1;
    b[slot] = 0;
  }
  return slot;
}

/**
 * A late event's bucket `to`, before the floor but still within the ring (newest bucket `head` at
 * `slot`): zeroes buckets [to, floor), which held a former key's counts, and returns `to` as the
 * new floor.
 */
function lower(b: Uint32Array, off: number, len: number, slot: number, head: number, floor: number, to: number): number {
  // by steps back from the head (fewer than len), not by bucket numbers, which are floats
  for (let steps = head - floor + 1; steps <= head - to; steps++) b[back(off, len, slot, steps)] = 0;
  return to;
}

/** The slot `steps` (< len) buckets before `slot`. */
function back(off: number, len: number, slot: number, steps: number): number {
  const i = slot - steps;
  return i < off ? i + len : i;
}

/** Sums absolute buckets [end − k, end) that the ring (newest bucket `head` at `slot`, oldest
 * counted `floor`) still holds. */
function sum(
  b: Uint32Array,
  off: number,
  len: number,
  head: number,
  slot: number,
  floor: number,
  end: number,
  k: number,
): number {
  const from = Math.max(end - k, head - len + 1, floor);
  const to = Math.min(end - 1, head);
  if (to < from) return 0;
  let total = 0;
  let i = back(off, len, slot, head - to);
  for (let n = to - from; n >= 0; n--) {
    total += b[i];
    i = i === off ? off + len - 1 : i - 1;
  }
  return total;
}
