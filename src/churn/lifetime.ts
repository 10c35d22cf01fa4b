/**
 * Flow lifetime quantiles per destination. There is one histogram per heavy-hitter destination
 * (hundreds), so it is a fixed 273-bin Float64Array (2.2 KB). hdr-histogram-js was not used: over the
 * range needed (0.1 ms to ~12 days) it takes 15 KB per instance at 2 significant digits (18 KB
 * from 1 µs, 128 KB at 3 digits), and it cannot decay, while an operator wants the lifetimes of flows ending now, not since start-up.
 *
 * Bins are logarithmic, 8 per octave from 0.1 ms: bin i ≥ 1 holds [MIN·2^((i−1)/8), MIN·2^(i/8)),
 * a quantile is reported as the bin's geometric middle, so it is within 4.5 % of the true value.
 * Bin 0 holds lifetimes under 0.1 ms and reads as 0; the last bin also takes everything longer.
 * Counts are floats so that decay() can weigh older flows down smoothly.
 */

const MIN_S = 1e-4;
const PER_OCTAVE = 8;
const OCTAVES = 34;
const BINS = 1 + OCTAVES * PER_OCTAVE;

export class LifetimeHistogram {
  private readonly bins = new Float64Array(BINS);
  /** the range of bins ever touched since the last reset: one destination's flows mostly live
   * alike, so reset, decay and quantiles walk a few bins instead of 273 */
  private lo = BINS;
  private hi = -1;
  /** sum of the bins */
  total = 0;

  add(seconds: number, weight = 1): void {
    const bin = binOf(seconds);
    this.bins[bin] += weight;
    this.total += weight;
    if (bin < this.lo) this.lo = bin;
    if (bin > this.hi) this.hi = bin;
  }

  /** The q-quantile (0..1) in seconds; undefined when empty. */
  quantile(q: number): number | undefined {
    if (!(this.total > 0)) return undefined;
    const target = q * this.total;
    let seen = 0;
    let last = this.lo;
    for (let i = this.lo; i <= this.hi; i++) {
      const c = this.bins[i];
      if (c === 0) continue;
      seen += c;
      last = i;
      if (seen >= target) break;
    }
    return valueOf(last);
  }

  /** Multiplies every count by factor (0 < factor ≤ 1), so older flows weigh less. */
  decay(factor: number): void {
    for (let i = this.lo; i <= this.hi; i++) this.bins[i] *= factor;
    this.total *= factor;
  }

  /** Empties it, for reuse by another destination (a heavy-hitter slot changing hands). */
  reset(): void {
    for (let i = this.lo; i <= this.hi; i++) this.bins[i] = 0;
    this.lo = BINS;
    this.hi = -1;
    this.total = 0;
  }
}

export function binOf(seconds: number): number {
  if (!(seconds >= MIN_S)) return 0;
  const i = 1 + Math.floor(Math.log2(seconds / MIN_S) * PER_OCTAVE);
  return i < BINS ? i : BINS - 1;
}

/** The value a bin reads as: its geometric middle, 0 for the underflow bin. */
export function valueOf(bin: number): number {
  return bin === 0 ? 0 : MIN_S * 2 ** ((bin - 0.5) / PER_OCTAVE);
}
