/**
 * A sparkline: a series drawn as one line of block characters, for `top`'s last minute of table
 * fill and churn. Pure, so the scaling rules are tested rather than eyeballed.
 */

const BLOCKS = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];

export interface SparklineOptions {
  /** characters to draw; the most recent values are kept (default: all of them) */
  width?: number;
  /** the value drawn as a full block (default: the series' maximum); e.g. 1 for a table fill */
  max?: number;
  /** the value drawn as the lowest block (default 0: rates and fills start at zero) */
  min?: number;
}

/**
 * One character per value. A missing value (null, NaN) is a space, so a gap in the kernel's
 * figures reads as a gap, not as zero. A value above 0 never draws as the lowest block, so a
 * trickle is visible next to a burst; an all-zero series is a flat row of lowest blocks.
 */
export function sparkline(values: readonly (number | null | undefined)[], options: SparklineOptions = {}): string {
  const width = options.width ?? values.length;
  const shown = values.slice(Math.max(0, values.length - width));
  const finite = shown.filter((v): v is number => typeof v === 'number' && Number.isFinite(v));
  const min = options.min ?? 0;
  const max = options.max ?? (finite.length > 0 ? Math.max(...finite) : 0);
  const span = max - min;
  let out = '';
  for (const v of shown) {
    if (typeof v !== 'number' || !Number.isFinite(v)) {
      out += ' ';
      continue;
    }
    if (span <= 0 || v <= min) {
      out += BLOCKS[0];
      continue;
    }
    const level = Math.min(BLOCKS.length - 1, Math.max(1, Math.round(((v - min) / span) * (BLOCKS.length - 1))));
    out += BLOCKS[level];
  }
  return out.padStart(width);
}

/** The last `size` values, oldest first: `top` keeps one per snapshot. */
export class History {
  private readonly values: (number | null)[] = [];
  constructor(readonly size = 60) {}

  push(v: number | null): void {
    this.values.push(v);
    if (this.values.length > this.size) this.values.shift();
  }

  get all(): readonly (number | null)[] {
    return this.values;
  }
}
